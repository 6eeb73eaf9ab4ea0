"""Compare V-SEAM head modulation with baselines on the same GQA test examples, per model.

    vseam compare --models checkpoints/tiny-llava checkpoints/tiny-instructblip    # runs/compare/comparison.*
    vseam compare ... --out docs                                                    # the shipped docs/comparison.*

Methods (`vseam_pl.baselines.METHODS`): zero-shot frozen model; closed-form scales from discovery scores (no
training); scales learned from ones; scales learned from the discovery initialisation; K random heads learned
(K = heads the discovery top-K selects; several seeds); peft IA3 and LoRA on the language decoder;
ITI as honest_llama implements it (probe-selected heads, center-of-mass shifts at the last token; `iti_mass_mean`:
the vectors untrained, K and alpha chosen on the validation split; `iti_learned`: vectors learned from 0 on the
probe-selected heads, at every position); LoFiT as lo-fit implements it (`lofit`: half the steps learn a scaling vector per head with an
L1 on it, the heads of largest vector norm then get bias vectors for the other half). Every
trained method gets the same data (training fraction and data seed), batches and number of optimizer steps.

Discovery runs once per model on the *train* split's clean/edited pairs (`DATA/train/pairs/pairs.jsonl`). Each
method's per-example correctness is saved under `--runs_dir` as soon as it finishes, so a restarted comparison skips
finished methods. Writes `<out>/comparison.json` and `<out>/comparison.md`: accuracy overall and per level,
trainable parameters, and the exact McNemar p-value of each method against the zero-shot model on the same examples.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Trainer, seed_everything

from ..argparsing import default_of
from ..argparsing import parse_config as parse_config_of
from ..baselines import (
    BASELINES,
    METHODS,
    REFERENCE,
    HeadShift,
    HeadShiftModule,
    LoFiTScalingModule,
    build_method,
    claim_run_dir,
    discovery_head_count,
    discovery_heads,
    lofit_bias_init,
    lofit_heads,
    trainable_count,
)
from ..data import GQADataModule
from ..discovery import DiscoveryConfig, HeadScores, init_scales_from_scores, run_discovery
from ..evaluation import is_correct
from ..io import read_cached, write_json, write_text
from ..iti import DEFAULT_ALPHA, DEFAULT_K, ITISelection, answer_activations, select_iti
from ..levels import LEVELS
from ..lit_module import HeadModulationModule
from ..pairs import load_pairs
from ..stats import cluster_count, cluster_permutation_test, mcnemar_exact
from ..vlm import load_vlm, model_display_name

ROW_KEYS = (
    "method",
    "seed",
    "trainable_params",
    "n",
    "n_images",
    "accuracy",
    "levels",
    "delta",
    "p_value",
    "p_value_images",
    "method_only",
    "zero_shot_only",
    "train_steps",
    "seconds",
    "selection",
    "decision",
)


@dataclass
class CompareConfig:
    """`vseam compare`'s settings: every field is a flag (`--top_k 8`), declared here once."""

    models: list[str] = field(
        default_factory=lambda: ["checkpoints/tiny-llava", "checkpoints/tiny-instructblip"]
    )
    data_root: str = "data/synth"
    """synthetic world (train/ val/ test/ folders)"""
    out: str = "runs/compare"
    """where comparison.json and comparison.md go (docs/ ships the reference)"""
    runs_dir: str = "runs/compare"
    """per-method results (the resume state)"""
    methods: list[str] = field(default_factory=lambda: list(METHODS), metadata={"choices": METHODS})
    steps: int = 52
    """optimizer steps of every trained method (52: one epoch over 25% of the synthetic train split)"""
    batch_size: int = 32
    fraction: float = 0.25
    """training fraction shared by the trained methods"""
    data_seed: int = 0
    """subsample + shuffle seed shared by the trained methods"""
    test_batches: int = 32
    """test batches (of --batch_size questions); 0: all"""
    random_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """seeds of the random-heads runs"""
    top_k: int = DiscoveryConfig.top_k
    """discovery top-K positive and negative heads"""
    discovery_method: str = field(
        default="ablation", metadata={"choices": ("ablation", "patching", "attribution")}
    )
    discovery_pairs: int = 64
    """train pairs scored by discovery"""
    lr: float = default_of(HeadModulationModule, "lr")
    """learning rate of the scale methods and IA3"""
    lora_lr: float = 0.002
    lora_r: int = 4
    shift_lr: float = 0.01
    """learning rate of the ITI / LoFiT shift vectors"""
    iti_alphas: list[float] = field(default_factory=lambda: [1.0, 5.0, 10.0, DEFAULT_ALPHA, 20.0])
    """ITI strengths swept on the validation split (honest_llama's default: 15)"""
    iti_ks: list[int] = field(default_factory=lambda: [8, 16, 32, DEFAULT_K])
    """ITI head counts swept on the validation split (honest_llama's default: 48; capped at all heads)"""
    iti_questions: int = 256
    """train questions whose answers the ITI probes read"""
    val_batches: int = 0
    """validation batches that every choice reads: the ITI sweep and each trained method's selection (0: all)"""
    val_every: int = 13
    """trained methods validate every N optimizer steps (and before the first); the best pass is kept if it beats
    the frozen model on validation (vseam_pl.selection), else the identity"""
    lofit_l1: float = 5e-3
    """LoFiT selection step: weight of sum |A| (lo-fit's train_script_clutrr.sh: 5e-3)"""
    num_workers: int = 1
    threads: int = 0
    """torch threads (0: leave torch's default)"""


def parse_config(argv: list[str] | None) -> CompareConfig:
    """`vseam compare`'s command line: the `CompareConfig` fields as flags."""
    return parse_config_of(CompareConfig, argv, "python -m vseam_pl.studies.compare", __doc__)


# ---------------------------------------------------------------- discovery


def discovery_scores(model: str, cfg: CompareConfig, run_dir: Path) -> HeadScores:
    """Head scores on the train split's pairs (loaded from `run_dir` when a previous run finished them)."""
    folder = run_dir / "discovery"
    if (folder / "head_scores.safetensors").exists():
        scores = HeadScores.load(folder)
        found = (scores.method, scores.meta.get("num_pairs"))
        if found != (cfg.discovery_method, cfg.discovery_pairs):
            raise ValueError(
                f"{folder}: cached discovery is {found[0]!r} on {found[1]} pairs, not "
                f"{cfg.discovery_method!r} on {cfg.discovery_pairs}; delete it or pass another --runs_dir"
            )
        return scores
    manifest = Path(cfg.data_root) / "train" / "pairs" / "pairs.jsonl"
    pairs = load_pairs(manifest, limit=cfg.discovery_pairs)
    config = DiscoveryConfig(method=cfg.discovery_method, top_k=cfg.top_k)
    vlm = load_vlm(model)
    return run_discovery(vlm, pairs, config, out_dir=folder, resume=True, plots=False).scores


# ---------------------------------------------------------------- one method


RESULT_SETTINGS = (
    "data_root",
    "steps",
    "batch_size",
    "fraction",
    "data_seed",
    "test_batches",
    "top_k",
    "discovery_method",
    "discovery_pairs",
    "lr",
    "lora_lr",
    "lora_r",
    "shift_lr",
    "iti_alphas",
    "iti_ks",
    "iti_questions",
    "val_batches",
    "val_every",
    "lofit_l1",
)


def result_settings(cfg: CompareConfig) -> dict[str, Any]:
    """What a cached method result depends on: a rerun with other values must not reuse it."""
    return {k: getattr(cfg, k) for k in RESULT_SETTINGS}


def run_name(method: str, seed: int | None) -> str:
    return method if seed is None else f"{method}_seed{seed}"


def datamodule(cfg: CompareConfig) -> GQADataModule:
    return GQADataModule(
        root=cfg.data_root,
        fraction=cfg.fraction,
        seed=cfg.data_seed,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
    )


TRAINER_KWARGS: dict[str, Any] = dict(
    accelerator="cpu",
    devices=1,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)


def fit_steps(module: Any, cfg: CompareConfig, steps: int, select: bool = True) -> int:
    """Train `module` for `steps` optimizer steps on the shared data; returns the steps taken.

    With `select`, the module validates before training and every `--val_every` steps, and at the end of fit holds
    the best validation pass if it beats the frozen model there, else the identity (`module.decision` says which),
    as `train.py` does. Without it (LoFiT's head-selection half, whose output is the vectors' norms, not a model),
    the last step is what comes out."""
    validation: dict[str, Any] = (
        dict(
            val_check_interval=cfg.val_every,
            check_val_every_n_epoch=None,
            limit_val_batches=cfg.val_batches or 1.0,
            num_sanity_val_steps=-1,  # the whole (limited) validation set: the initial values are a candidate
        )
        if select
        else dict(limit_val_batches=0, num_sanity_val_steps=0)
    )
    trainer = Trainer(max_steps=steps, max_epochs=-1, **validation, **TRAINER_KWARGS)
    trainer.fit(module, datamodule=datamodule(cfg))
    return trainer.global_step


def iti_selection(model: str, cfg: CompareConfig) -> ITISelection:
    """honest_llama's probes on the train split: every candidate answer of `--iti_questions` train questions, read
    at its last token and labelled by its truth; heads ranked by probe accuracy on held-out questions."""
    vlm = load_vlm(model)
    data = datamodule(cfg)
    data.setup("fit")
    questions, images, candidates, answers = [], [], [], []
    for batch in data.train_dataloader():
        for ex in batch.examples:
            if ex.record.candidates and len(questions) < cfg.iti_questions:
                questions.append(ex.record.question)
                images.append(ex.image)
                candidates.append(list(ex.record.candidates))
                answers.append(ex.record.answer)
        if len(questions) >= cfg.iti_questions:
            break
    if len(questions) < 2:
        raise ValueError(
            f"{cfg.data_root}: ITI needs closed (candidate) train questions; found {len(questions)}"
        )
    acts = answer_activations(vlm, questions, images, candidates, answers, batch_size=cfg.batch_size)
    return select_iti(acts, seed=cfg.data_seed)


def val_accuracy(module: Any, cfg: CompareConfig) -> float:
    """Accuracy of `module` (its intervention attached) on the first `--val_batches` validation batches."""
    data = datamodule(cfg)
    data.setup("validate")
    correct = []
    for i, batch in enumerate(data.val_dataloader()):
        if cfg.val_batches and i >= cfg.val_batches:
            break
        if batch.examples:
            records, preds = module.answer(batch)
            correct += [is_correct(r, p, module.answer_parser) for r, p in zip(records, preds, strict=True)]
    if not correct:
        raise ValueError(f"{cfg.data_root}: no validation examples to choose ITI's alpha and K on")
    return float(np.mean(correct))


def iti_sweep(
    model: str, selection: ITISelection, cfg: CompareConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose ITI's K and alpha on the validation split, as honest_llama sweeps them: every (K, alpha) of the
    grid shifts the last token of the frozen model; the best validation accuracy wins (ties: the earlier setting,
    K then alpha in the order given)."""
    heads, vecs = selection.shifts(1, 1.0)
    module = HeadShiftModule(
        shift_heads=heads, shift_init=vecs, learn_shifts=False, shift_positions="last", model=model
    )
    grid = []
    for k in dict.fromkeys(min(k, len(selection.ranked)) for k in cfg.iti_ks):
        for alpha in cfg.iti_alphas:
            heads, vecs = selection.shifts(k, alpha)
            module.shift.detach()
            module.shift = HeadShift(heads, module.vlm.head_dim, vecs, positions="last").attach(module.vlm)
            grid.append({"k": k, "alpha": alpha, "val_accuracy": val_accuracy(module, cfg)})
            print(
                f"[compare] ITI K={k} alpha={alpha}: val accuracy {grid[-1]['val_accuracy']:.4f}", flush=True
            )
    best = max(grid, key=lambda g: g["val_accuracy"])  # max keeps the first of equal accuracies
    heads, vecs = selection.shifts(best["k"], best["alpha"])
    return {"shift_heads": heads, "shift_init": vecs}, {"chosen": best, "sweep": grid}


def shift_setup(
    model: str, method: str, k: int, cfg: CompareConfig
) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """`shift_kwargs` of an ITI / LoFiT method, the optimizer steps its selection took (LoFiT's first half) and
    what the selection chose (recorded with the result)."""
    how = BASELINES[method].head_selection
    if how in ("iti_probe", "iti_sweep"):
        selection = iti_selection(model, cfg)
        probe = {"probe_val_accuracy_top": float(selection.accuracy.max())}
        if how == "iti_probe":  # vectors learned from 0 on as many probe-selected heads as discovery selects
            return {"shift_heads": selection.ranked[:k]}, 0, probe
        kwargs, chosen = iti_sweep(model, selection, cfg)
        return kwargs, 0, {**probe, **chosen}
    seed_everything(cfg.data_seed, verbose=False)
    selector = LoFiTScalingModule(
        lofit_l1=cfg.lofit_l1,
        vector_seed=cfg.data_seed,
        model=model,
        lr=cfg.shift_lr,
        select_on_val=False,  # its output is the vectors' norms, not a model to report
    )
    taken = fit_steps(selector, cfg, max(1, cfg.steps // 2), select=False)
    vectors = selector.scaling.vectors.detach()
    heads = lofit_heads(vectors, k)
    kwargs = {
        "shift_heads": heads,
        "shift_init": lofit_bias_init(len(heads), vectors.shape[-1], cfg.data_seed),
        "extra_trained": vectors.numel(),
    }
    return kwargs, taken, {"vector_norms_top": [float(vectors[lay, h].norm()) for lay, h in heads]}


def run_method(model: str, method: str, seed: int | None, scores: HeadScores, cfg: CompareConfig) -> dict:
    """Build, train (when the method trains) and test one method; return its per-example correctness."""
    start = time.perf_counter()
    k = discovery_head_count(scores, cfg.top_k)
    spec = BASELINES[method]
    shift_kwargs, steps, selection = (None, 0, None)
    if spec.head_selection is not None:
        shift_kwargs, steps, selection = shift_setup(model, method, k, cfg)
    seed_everything(cfg.data_seed, verbose=False)  # identical data order and initial state for every method
    kwargs: dict[str, Any] = {"model": model, "lr": getattr(cfg, spec.lr_setting)}
    module = build_method(
        method,
        discovery_scales=init_scales_from_scores(scores, rule="closed_form"),
        num_random_heads=k,
        head_seed=seed or 0,
        selected_heads=discovery_heads(scores, cfg.top_k),
        adapter_kwargs={"lora_r": cfg.lora_r, "lora_alpha": 2 * cfg.lora_r} if spec.lora_rank else None,
        shift_kwargs=shift_kwargs,
        **kwargs,
    )
    trainer_kwargs = TRAINER_KWARGS
    data = datamodule(cfg)
    decision = None
    if spec.trained:
        steps += fit_steps(module, cfg, cfg.steps - steps)
        decision = module.decision.to_dict()
    test = Trainer(limit_test_batches=cfg.test_batches or 1.0, **trainer_kwargs)
    test.test(module, datamodule=data, verbose=False)
    outcomes = [
        {
            "key": o.key,
            "question_id": o.question_id,
            "image_id": o.image_id,
            "level": o.level,
            "group": o.group,
            "zero_shot": o.baseline_correct,
            "correct": o.baseline_correct if o.modulated is None else o.modulated_correct,
        }
        for o in module.test_outcomes
    ]
    return {
        "model": model,
        "method": method,
        "seed": seed,
        "trainable_params": trainable_count(module),
        "train_steps": steps,
        "seconds": round(time.perf_counter() - start, 1),
        **({"selection": selection} if selection is not None else {}),
        **({"decision": decision} if decision is not None else {}),
        "outcomes": outcomes,
    }


def planned_runs(cfg: CompareConfig) -> list[tuple[str, int | None]]:
    runs: list[tuple[str, int | None]] = []
    for method in [REFERENCE, *[m for m in cfg.methods if m != REFERENCE]]:
        runs += [(method, s) for s in cfg.random_seeds] if BASELINES[method].per_seed else [(method, None)]
    return runs


def collect(model: str, cfg: CompareConfig) -> tuple[dict[str, Any], list[dict]]:
    """Run (or load) discovery and every planned method of one model."""
    run_dir = Path(cfg.runs_dir) / model_display_name(model)
    claim_run_dir(run_dir, model)
    scores = discovery_scores(model, cfg, run_dir)
    results = []
    for method, seed in planned_runs(cfg):
        path = run_dir / f"{run_name(method, seed)}.json"
        if path.exists():
            print(
                f"[compare] {model_display_name(model)} {run_name(method, seed)}: done already ({path})",
                flush=True,
            )
            results.append(
                read_cached(
                    path,
                    result_settings(cfg),
                    "cached method result",
                    "delete it or pass another --runs_dir",
                )
            )
            continue
        print(f"[compare] {model_display_name(model)} {run_name(method, seed)} ...", flush=True)
        result = {**run_method(model, method, seed, scores, cfg), "settings": result_settings(cfg)}
        write_json(path, result)
        results.append(result)
    info = {
        "method": scores.method,
        "pairs": int(scores.counts.get("all", {}).get("signed", {}).get("n", 0)),
        "top_k": cfg.top_k,
        "heads_selected": discovery_head_count(scores, cfg.top_k),
        "positive": scores.positive_heads("all", cfg.top_k),
        "negative": scores.negative_heads("all", cfg.top_k),
    }
    return info, results


# ---------------------------------------------------------------- the table


def method_row(result: dict, reference: dict[int, bool]) -> dict[str, Any]:
    """Accuracy (overall, per level), McNemar p against the zero-shot model on the same examples and, when the
    outcomes name their images, the image-clustered permutation p (`vseam_pl.stats.cluster_permutation_test`)."""
    outs = result["outcomes"]
    images = [o.get("image_id") for o in outs]
    known = all(images)
    keys = [o["key"] for o in outs]
    correct = np.array([o["correct"] for o in outs], dtype=bool)
    zero = np.array([reference[k] for k in keys], dtype=bool)
    levels = {
        lv: float(correct[[o["level"] == lv for o in outs]].mean())
        for lv in LEVELS
        if any(o["level"] == lv for o in outs)
    }
    return {
        "method": result["method"],
        "seed": result["seed"],
        "trainable_params": result["trainable_params"],
        "n": int(correct.size),
        "accuracy": float(correct.mean()),
        "levels": levels,
        "n_images": cluster_count(images) if known else None,
        "delta": float(correct.mean() - zero.mean()),
        "p_value": mcnemar_exact(correct, zero),
        "p_value_images": cluster_permutation_test(correct, zero, images) if known else None,
        "method_only": int((correct & ~zero).sum()),
        "zero_shot_only": int((~correct & zero).sum()),
        "train_steps": result["train_steps"],
        "seconds": result["seconds"],
        "selection": result.get("selection"),  # what ITI / LoFiT selected; None for the other methods
        "decision": result.get(
            "decision"
        ),  # which trained values were tested and why; None when nothing trains
    }


def model_rows(results: list[dict]) -> list[dict[str, Any]]:
    zero = next((r for r in results if r["method"] == REFERENCE), None)
    if zero is None:
        raise ValueError("the comparison needs the zero_shot run (the reference of every p-value)")
    reference = {o["key"]: o["correct"] for o in zero["outcomes"]}
    for r in results:  # every run re-evaluates the frozen model: same examples, same answers as the reference
        if sorted(o["key"] for o in r["outcomes"]) != sorted(reference):
            raise ValueError(
                f"{r['method']}: evaluated on different examples than the zero-shot run "
                f"({len(r['outcomes'])} vs {len(reference)})"
            )
        drift = sum(o["zero_shot"] != reference.get(o["key"]) for o in r["outcomes"])
        if drift:
            raise ValueError(
                f"{r['method']}: its frozen-model answers differ from the zero-shot run on {drift} examples"
            )
    return [method_row(r, reference) for r in results]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


def used_cell(decision: dict[str, Any] | None) -> str:
    """Which trained values were tested: the selected validation pass, the identity (no gain on validation) or the
    last step (nothing validated); `-` for a method that does not train."""
    if decision is None:
        return "-"
    if decision["used"] == "selected":
        return f"step {decision['selected_step']}"
    return decision["used"]


def markdown_table(models: list[dict[str, Any]]) -> str:
    head = [
        "model",
        "method",
        "trainable params",
        "tested values",
        "n",
        "accuracy %",
        *[f"{lv} %" for lv in LEVELS],
        "Δ vs zero-shot (pts)",
        "McNemar p vs zero-shot",
        "image-clustered p",
    ]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 2 + ["---:", "---"] + ["---:"] * (len(head) - 4)) + "|",
    ]
    for m in models:
        name = model_display_name(m["model"])
        for r in m["rows"]:
            method = r["method"] if r["seed"] is None else f"{r['method']} (seed {r['seed']})"
            cells = [
                name,
                method,
                str(r["trainable_params"]),
                used_cell(r.get("decision")),
                str(r["n"]),
                _pct(r["accuracy"]),
                *[_pct(r["levels"][lv]) if lv in r["levels"] else "-" for lv in LEVELS],
                f"{100 * r['delta']:+.2f}",
                "-" if r["method"] == REFERENCE else _p(r["p_value"]),
                "-" if r["method"] == REFERENCE else _p(r.get("p_value_images")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        for method in dict.fromkeys(r["method"] for r in m["rows"] if BASELINES[r["method"]].per_seed):
            seeded = [r for r in m["rows"] if r["method"] == method]
            if len(seeded) < 2:
                continue
            acc = np.array([r["accuracy"] for r in seeded])
            lines.append(
                f"| {name} | {method} (mean ± std, {len(seeded)} seeds) | {seeded[0]['trainable_params']} | - | "
                f"{seeded[0]['n']} | {_pct(acc.mean())} ± {_pct(acc.std(ddof=1))} | "
                + " | ".join(["-"] * len(LEVELS))
                + f" | {100 * np.mean([r['delta'] for r in seeded]):+.2f} | - | - |"
            )
    return "\n".join(lines)


def selection_lines(models: list[dict[str, Any]]) -> list[str]:
    """What ITI chose on the validation split (K, alpha) and how well its best head's probe reads the answer's
    truth; LoFiT's selected heads' vector norms."""
    out = []
    for m in models:
        for r in m["rows"]:
            sel = r.get("selection") or {}
            if "chosen" in sel:
                c = sel["chosen"]
                out.append(
                    f"- {model_display_name(m['model'])} `{r['method']}`: K={c['k']}, alpha={c['alpha']:g} "
                    f"(validation accuracy {_pct(c['val_accuracy'])}% of {len(sel['sweep'])} settings swept; best "
                    f"head probe validation accuracy {_pct(sel['probe_val_accuracy_top'])}%)"
                )
            elif "probe_val_accuracy_top" in sel:
                out.append(
                    f"- {model_display_name(m['model'])} `{r['method']}`: probe-selected heads, best head probe "
                    f"validation accuracy {_pct(sel['probe_val_accuracy_top'])}%"
                )
            elif "vector_norms_top" in sel:
                norms = sel["vector_norms_top"]
                out.append(
                    f"- {model_display_name(m['model'])} `{r['method']}`: {len(norms)} heads by scaling-vector norm "
                    f"(|A| {max(norms):.3g} to {min(norms):.3g})"
                )
    return out


def summary_lines(models: list[dict[str, Any]]) -> list[str]:
    """Plain statements of the result per model (best method, V-SEAM vs the adapters), computed, not written."""
    out = []
    for m in models:
        rows = {(r["method"], r["seed"]): r for r in m["rows"]}
        zero = rows[(REFERENCE, None)]
        best = max(m["rows"], key=lambda r: r["accuracy"])
        line = (
            f"- **{model_display_name(m['model'])}**: zero-shot {_pct(zero['accuracy'])}%; best "
            f"`{best['method']}` {_pct(best['accuracy'])}% ({100 * best['delta']:+.2f} pts, p={_p(best['p_value'])})"
        )
        sig = [
            f"`{r['method']}`" + (f" s{r['seed']}" if r["seed"] is not None else "")
            for r in m["rows"]
            if r["method"] != REFERENCE and r["p_value"] < 0.05
        ]
        line += (
            "; significantly different from zero-shot (p<0.05): " + (", ".join(sig) if sig else "none") + "."
        )
        trained = [r for r in m["rows"] if r.get("decision")]
        if trained:
            kept = sum(r["decision"]["used"] == "identity" for r in trained)
            line += f" {kept} of {len(trained)} trained runs did not beat the frozen model on validation and kept the identity."
        out.append(line)
    return out


def write_report(models: list[dict[str, Any]], cfg: CompareConfig, command: str) -> tuple[Path, Path]:
    settings = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("out", "runs_dir", "threads", "num_workers")
    }
    obj = {"command": command, "settings": settings, "row_keys": list(ROW_KEYS), "models": models}
    out = Path(cfg.out)
    js = write_json(out / "comparison.json", obj)
    n_test = models[0]["rows"][0]["n"] if models and models[0]["rows"] else 0
    text = "\n".join(
        [
            "# V-SEAM vs baselines on the synthetic GQA test split",
            "",
            "Generated by `vseam compare` (do not edit by hand; re-run the command). Exact command:",
            "",
            "```bash",
            command,
            "```",
            "",
            f"Every method answers the same {n_test} GQA test questions (`{cfg.data_root}/test`). Trained methods share "
            f"the data (training fraction {cfg.fraction}, data seed {cfg.data_seed}), batch size {cfg.batch_size} "
            f"and {cfg.steps} optimizer steps; scales and IA3 use lr {cfg.lr}, LoRA (rank {cfg.lora_r}) lr "
            f"{cfg.lora_lr}. Every trained method is selected on the validation split as `train.py` selects "
            f"(`vseam_pl.selection`): it is validated before training and every {cfg.val_every} steps on "
            f"{cfg.val_batches or 'all'} validation batches, the best pass is tested if it beats the frozen model "
            "there (image-clustered permutation p < 0.05), else the identity (the frozen model); the `tested values` "
            f"column says which. Discovery: `{cfg.discovery_method}` on {cfg.discovery_pairs} train pairs; the "
            f'closed-form scales are `init_scales_from_scores(scores, rule="closed_form")`; random heads learn as many '
            f"heads as the top-{cfg.top_k} positive + negative discovery heads, and so many heads get learned ITI / "
            "LoFiT vectors. ITI follows honest_llama (`vseam_pl.iti`): a logistic probe per head on whether each "
            f"candidate answer of {cfg.iti_questions} train questions is true (activations at the answer's last "
            "token), heads ranked by probe accuracy on held-out questions, shifts alpha * std * unit(true mean - "
            "false mean) added at the last token of every forward; `iti_mass_mean` takes K and alpha from a sweep "
            f"on the validation split (K in {cfg.iti_ks}, alpha in {cfg.iti_alphas}, the same validation batches), `iti_learned` learns vectors from 0 on as many probe-selected heads, at every position. LoFiT follows lo-fit: scaling vectors "
            f"z * (1 + A) for every head with L1 weight {cfg.lofit_l1} on sum |A| for half the steps, the heads of "
            f"largest |A| then get bias vectors for the other half (vectors lr {cfg.shift_lr}). "
            "p: exact McNemar test of each method against the zero-shot model on the same examples "
            "(`vseam_pl.stats.mcnemar_exact`); image-clustered p: the paired permutation test that swaps the two "
            "systems' answers per image (`vseam_pl.stats.cluster_permutation_test`; exact up to 30 images with a "
            "non-zero difference, 10,000 random sign patterns beyond), since one image has several questions. Trainable params: the scalars the optimizer changes (random heads: the "
            "K heads' scales; LoFiT: all scaling vectors of its selection step plus the K bias vectors; ITI mass-mean: "
            "none).",
            "",
            "Runs are resumable and cached per run under `--runs_dir`: running the same command once per model (e.g. in "
            "parallel processes) and then once with every model only aggregates, and gives the same files.",
            "",
            markdown_table(models),
            "",
            *(
                ["What ITI and LoFiT selected:", "", *selection_lines(models), ""]
                if selection_lines(models)
                else []
            ),
            "## Summary",
            "",
            *summary_lines(models),
            "",
            "Raw rows (and per-run seconds, training steps, discordant counts): `comparison.json`.",
            "",
        ]
    )
    md = write_text(out / "comparison.md", text)
    return js, md


def compare(config: CompareConfig | None = None, command: str = "vseam compare") -> dict[str, Any]:
    """Run (or resume) the comparison `config` describes and write its report; `command` is recorded in it."""
    cfg = config if config is not None else CompareConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    models = []
    for model in cfg.models:
        info, results = collect(model, cfg)
        models.append({"model": model, "discovery": info, "rows": model_rows(results)})
    js, md = write_report(models, cfg, command)
    print(md.read_text())
    print(f"json: {js}\n  md: {md}")
    return {"command": command, "models": models}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = parse_config(argv)
    return compare(cfg, "vseam compare " + shlex.join(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
