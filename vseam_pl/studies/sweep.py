"""Low-data ablation: learn head scales on fractions of the training split, several seeds each, with `train.py`.

    vseam sweep --models checkpoints/tiny-llava checkpoints/tiny-instructblip    # runs/ablation/ablation.*
    vseam sweep ... --out docs                                                    # the shipped docs/ablation.*

Every (model, fraction, seed) run is one `train.main([...])` call with `--data.fraction F --data.seed S
--seed_everything S` (the stratified subsample and the shuffle both follow the seed) and the same number of epochs,
writing its own `metrics.json` under `--runs_dir`. A finished run (same model files, same settings) is not redone,
so an interrupted ablation resumes where it stopped; cached runs of other settings or model files are an error.
Writes `<out>/ablation.json` (every run + mean ± std per fraction), `<out>/ablation.md` (the table and the exact
command) and `<out>/ablation.png` (accuracy vs fraction).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .. import train  # the same CLI and outputs as a manual `vseam train` run
from ..argparsing import default_of, underscore_flags
from ..argparsing import parse_config as parse_config_of
from ..baselines import claim_run_dir
from ..data import GQADataModule
from ..io import read_cached, write_atomic, write_json, write_text
from ..levels import LEVELS
from ..lit_module import HeadModulationModule
from ..report import read_metrics_json
from ..vlm import model_display_name

FRACTIONS = (0.01, 0.1, 0.25, 1.0)
#: Replaces the default config's callbacks: no head discovery at every run's fit start (the ablation learns scales
#: from ones; discovery belongs to the comparison), only the checkpoint that records the steps made.
CALLBACKS = [
    {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"save_last": True, "save_top_k": 1},
    }
]


@dataclass
class SweepConfig:
    """`vseam sweep`'s settings: every field is a flag (`--fractions 0.1 1`), declared here once."""

    models: list[str] = field(
        default_factory=lambda: ["checkpoints/tiny-llava", "checkpoints/tiny-instructblip"]
    )
    fractions: list[float] = field(default_factory=lambda: list(FRACTIONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    data_root: str = "data/synth"
    epochs: int = 1
    """epochs over each run's subsample (the same for all)"""
    batch_size: int = 32
    lr: float = default_of(HeadModulationModule, "lr")
    test_batches: int = 32
    """test batches (of --batch_size questions); 0: all"""
    num_workers: int = 1
    runs_dir: str = "runs/ablation"
    """one folder per run (the resume state)"""
    out: str = "runs/ablation"
    """where ablation.json, ablation.md and ablation.png go (docs/ ships the reference)"""
    train_args: list[str] = field(default_factory=list, metadata={"nargs": argparse.REMAINDER})
    """extra train.py arguments, passed through last (e.g. --trainer.precision bf16-mixed)"""


def parse_config(argv: list[str] | None) -> SweepConfig:
    """`vseam sweep`'s command line: the `SweepConfig` fields as flags."""
    return parse_config_of(SweepConfig, argv, "python -m vseam_pl.studies.sweep", __doc__)


def run_folder(runs_dir: str | Path, model: str, fraction: float, seed: int) -> Path:
    return Path(runs_dir) / model_display_name(model) / f"fraction{fraction:g}_seed{seed}"


def train_config(cfg: SweepConfig, model: str, fraction: float, seed: int, folder: Path) -> dict[str, Any]:
    """The train.py configuration of one run (its `--model.*`, `--data.*`, `--trainer.*` tree; the default recipe
    supplies the rest), with `--train_args` merged over it."""
    run = {
        "model": {"model": model, "lr": cfg.lr},
        "seed_everything": seed,
        "data": {
            "class_path": "vseam_pl.data.GQADataModule",  # explicit: the default recipe trains on another benchmark
            "init_args": {
                "root": cfg.data_root,
                "limit": None,  # the whole split: the default recipe's per-split caps are its own
                "fraction": fraction,
                "seed": seed,
                "batch_size": cfg.batch_size,
                "num_workers": cfg.num_workers,
            },
        },
        "synth_root": None,
        "output_dir": str(folder),
        "trainer": {
            "default_root_dir": str(folder),
            "max_epochs": cfg.epochs,
            "max_steps": -1,
            "limit_train_batches": 1.0,
            "accumulate_grad_batches": 1,
            # the whole validation split, before training and after every epoch: the run keeps the best pass if it
            # beats the frozen model on validation, else the identity (`vseam_pl.selection`)
            "limit_val_batches": 1.0,
            "num_sanity_val_steps": -1,
            "val_check_interval": 1.0,
            "check_val_every_n_epoch": 1,
            "limit_test_batches": cfg.test_batches or 1.0,
            "enable_progress_bar": False,
            "callbacks": copy.deepcopy(CALLBACKS),
        },
    }
    return merge_config(run, train_overrides(cfg.train_args))


def train_overrides(argv: list[str]) -> dict[str, Any]:
    """`--train_args` (train.py flags: `--trainer.precision bf16-mixed`, `--model.scale_l2=0.5`) as a nested
    mapping; values are read as YAML, as train.py reads them."""
    out: dict[str, Any] = {}
    args, i = underscore_flags(argv), 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if not flag.startswith("--") or len(flag) < 3:
            raise ValueError(f"--train_args: expected train.py flags (--key value), got {args[i]!r}")
        if not eq:
            if i + 1 >= len(args):
                raise ValueError(f"--train_args: {flag} needs a value")
            value, i = args[i + 1], i + 1
        i += 1
        node = out
        *parents, leaf = flag[2:].split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(value)
    return out


def merge_config(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base` (neither changed): mappings key by key; a subclass's (`class_path`) own keys go
    into its `init_args`, as `--data.root` does on the command line."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            if "class_path" in old and "class_path" not in value:
                value = {"init_args": value} if "init_args" not in value else value
            out[key] = merge_config(old, value)
        else:
            out[key] = value
    return out


def train_records(cfg: SweepConfig, fraction: float, seed: int) -> int:
    """How many training questions a run draws (train.py's DataModule with the same arguments; no images read)."""
    data = GQADataModule(root=cfg.data_root, fraction=fraction, seed=seed)
    data.setup("fit")
    return data.counts["train"]


def last_step(folder: Path) -> int | None:
    """The optimizer steps the run made, from its newest Lightning checkpoint (None without one)."""
    import torch

    ckpts = sorted(folder.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    return int(torch.load(ckpts[-1], map_location="cpu", weights_only=True)["global_step"]) if ckpts else None


def gqa_overall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The GQA test accuracy row and the per-level accuracies of a metrics.json."""
    by_split = {r["split"]: r for r in rows if r["benchmark"] == "gqa" and r["metric"] == "accuracy"}
    if "test" not in by_split:
        raise ValueError(f"no GQA test accuracy row; splits present: {sorted(by_split)}")
    top = by_split["test"]
    levels = {
        lv: by_split[f"test/level={lv}"]["modulated"] for lv in LEVELS if f"test/level={lv}" in by_split
    }
    return {
        "n": top["n"],
        "accuracy": top["modulated"],
        "zero_shot": top["baseline"],
        "p_value": top["p_value"],
        "p_test": top.get("p_test"),  # image_permutation (clustered by image) or mcnemar_exact
        "levels": levels,
    }


RUN_SETTINGS = ("data_root", "epochs", "batch_size", "lr", "test_batches", "train_args")


def run_one(cfg: SweepConfig, model: str, fraction: float, seed: int) -> dict[str, Any]:
    """Train and test one (model, fraction, seed) unless it finished before with the same settings; its record.

    `ablation_run.json` (written after train.py's metrics.json) marks a finished run and holds its settings.
    """
    folder = run_folder(cfg.runs_dir, model, fraction, seed)
    metrics, marker = folder / "metrics.json", folder / "ablation_run.json"
    settings = {k: getattr(cfg, k) for k in RUN_SETTINGS}
    name = f"{model_display_name(model)} fraction={fraction:g} seed={seed}"
    if marker.exists():
        print(f"[ablation] {name}: done already ({metrics})", flush=True)
        done = read_cached(
            marker, settings, "finished-run marker", f"delete {folder} or pass another --runs_dir"
        )
    else:
        print(f"[ablation] {name} ...", flush=True)
        start = time.perf_counter()
        train.main(train_config(cfg, model, fraction, seed, folder))
        done = {"seconds": round(time.perf_counter() - start, 1), "settings": settings}
        write_json(marker, done)
    records, steps = train_records(cfg, fraction, seed), last_step(folder)
    expected = math.ceil(records / cfg.batch_size) * cfg.epochs
    if steps is not None and steps != expected:  # e.g. a config that caps the batches per epoch
        raise ValueError(
            f"{folder}: the run made {steps} optimizer steps, not {expected} ({records} questions, batch "
            f"{cfg.batch_size}, {cfg.epochs} epoch(s)); check its config.yaml, delete it and rerun"
        )
    report = read_metrics_json(metrics)
    return {
        "model": model,
        "fraction": fraction,
        "seed": seed,
        "train_records": records,
        "steps": steps,
        "seconds": done["seconds"],
        "metrics": str(metrics),
        "scales_used": report.get("scales_used"),  # selected / identity (vseam_pl.selection)
        "selected_step": (report.get("selection") or {}).get("selected_step"),
        **gqa_overall(report["rows"]),
    }


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std (ddof=1; None for one seed, which has no spread to show) of the test accuracy per
    (model, fraction)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in runs):
        for fraction in sorted({r["fraction"] for r in runs if r["model"] == model}):
            group = [r for r in runs if r["model"] == model and r["fraction"] == fraction]
            acc = np.array([r["accuracy"] for r in group])
            levels = {
                lv: float(np.mean([r["levels"][lv] for r in group]))
                for lv in LEVELS
                if all(lv in r["levels"] for r in group)
            }
            out.append(
                {
                    "model": model,
                    "fraction": fraction,
                    "seeds": [r["seed"] for r in group],
                    "train_records": group[0]["train_records"],
                    "n_test": group[0]["n"],
                    "mean": float(acc.mean()),
                    "std": float(acc.std(ddof=1)) if acc.size > 1 else None,
                    "zero_shot": group[0]["zero_shot"],
                    "levels_mean": levels,
                    "identity_runs": sum(r.get("scales_used") == "identity" for r in group),
                }
            )
    return out


def plot(summary: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, model in enumerate(dict.fromkeys(s["model"] for s in summary)):
        rows = [s for s in summary if s["model"] == model]
        color = f"C{i}"
        ax.errorbar(
            [s["fraction"] for s in rows],
            [100 * s["mean"] for s in rows],
            yerr=[100 * (s["std"] or 0.0) for s in rows],
            marker="o",
            capsize=4,
            color=color,
            label=f"{model_display_name(model)} (learned scales)",
        )
        ax.axhline(
            100 * rows[0]["zero_shot"],
            color=color,
            linestyle="--",
            linewidth=1,
            label=f"{model_display_name(model)} zero-shot",
        )
    ax.set_xscale("log")
    fractions = sorted({s["fraction"] for s in summary})
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.set_xlabel("fraction of the training split")
    ax.set_ylabel("GQA test accuracy (%)")
    ax.set_title("Low-data ablation (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


#: What metrics.json's `p_test` names, in words.
P_TESTS = {"image_permutation": "image-clustered permutation", "mcnemar_exact": "exact McNemar"}


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def mean_std(s: dict[str, Any]) -> str:
    """`61.20 ± 0.35`, or `61.20 (1 seed)`: one seed has no spread, and `± 0.00` would claim one."""
    return f"{_pct(s['mean'])} ± {_pct(s['std'])}" if s["std"] is not None else f"{_pct(s['mean'])} (1 seed)"


def markdown(
    summary: list[dict[str, Any]], runs: list[dict[str, Any]], cfg: SweepConfig, command: str
) -> str:
    head = [
        "model",
        "fraction",
        "train questions",
        "seeds",
        "test n",
        "accuracy % (mean ± std)",
        *[f"{lv} %" for lv in LEVELS],
        "zero-shot %",
        "runs that kept the identity",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for s in summary:
        cells = [
            model_display_name(s["model"]),
            f"{s['fraction']:g}",
            str(s["train_records"]),
            str(len(s["seeds"])),
            str(s["n_test"]),
            mean_std(s),
            *[_pct(s["levels_mean"][lv]) if lv in s["levels_mean"] else "-" for lv in LEVELS],
            _pct(s["zero_shot"]),
            f"{s['identity_runs']} of {len(s['seeds'])}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    findings = []
    for model in dict.fromkeys(s["model"] for s in summary):
        by_f = {s["fraction"]: s for s in summary if s["model"] == model}
        full, tenth = by_f.get(1.0), by_f.get(0.1)
        min_p = min(r["p_value"] for r in runs if r["model"] == model)
        tests = {P_TESTS.get(r.get("p_test"), "paired") for r in runs if r["model"] == model}
        if full and tenth:
            zero = full["zero_shot"]
            gain_full, gain_tenth = full["mean"] - zero, tenth["mean"] - zero
            if gain_full <= 0:
                verdict = "full data does not improve on zero-shot, so there is no gain for 10% to approach"
            elif gain_tenth <= 0:
                verdict = "10% of the data does not improve on zero-shot"
            else:
                verdict = (
                    f"10% of the data recovers {100 * gain_tenth / gain_full:.0f}% of the full-data gain"
                )
            findings.append(
                f"- **{model_display_name(model)}**: 10% of the data {mean_std(tenth)}% vs full data "
                f"{mean_std(full)}% "
                f"(zero-shot {_pct(zero)}%): {verdict}. Smallest p of any run against "
                f"zero-shot ({' / '.join(sorted(tests))} test): {_p(min_p)}."
            )
    return "\n".join(
        [
            "# Low-data ablation: learned head scales vs training-data fraction",
            "",
            "Generated by `vseam sweep` (do not edit by hand; re-run the command). Exact command:",
            "",
            "```bash",
            command,
            "```",
            "",
            f"Each run is `train.py` with `--data.fraction F --data.seed S --seed_everything S` on `{cfg.data_root}`: a "
            f"stratified (category x answer) subsample of the training split, {cfg.epochs} epoch(s) at batch size "
            f"{cfg.batch_size}, lr {cfg.lr}, so smaller fractions also make fewer optimizer steps. Each run validates on "
            "the whole validation split before training and after every epoch and tests the best pass if it beats "
            "the frozen model there (image-clustered permutation p < 0.05), else the identity (the frozen model, "
            "`vseam_pl.selection`); the last column counts the runs that kept the identity. Tested on the same "
            "GQA test questions every run (the frozen model's accuracy is the zero-shot column). Std: sample std over "
            "seeds (ddof=1).",
            "",
            "Runs are resumable and cached per run under `--runs_dir`: running the same command once per model (e.g. in "
            "parallel processes) and then once with every model only aggregates, and gives the same files.",
            "",
            "![accuracy vs fraction](ablation.png)",
            "",
            *lines,
            "",
            "## Summary",
            "",
            *findings,
            "",
            f"Every run ({len(runs)}): `ablation.json` (accuracy, per-level accuracy, p vs zero-shot and its test, steps, "
            "seconds, metrics.json path).",
            "",
        ]
    )


def sweep(config: SweepConfig | None = None, command: str = "vseam sweep") -> dict[str, Any]:
    """Run (or resume) every (model, fraction, seed) of `config` and write the report; `command` is recorded."""
    cfg = config if config is not None else SweepConfig()
    for model in cfg.models:  # finished runs are only reused for the very same model files
        claim_run_dir(Path(cfg.runs_dir) / model_display_name(model), model)
    runs = [
        run_one(cfg, model, fraction, seed)
        for model in cfg.models
        for fraction in cfg.fractions
        for seed in cfg.seeds
    ]
    summary = aggregate(runs)
    out = Path(cfg.out)
    settings = {
        k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "runs_dir", "num_workers")
    }
    result = {"command": command, "settings": settings, "summary": summary, "runs": runs}
    paths = {
        "json": write_json(out / "ablation.json", result),
        "png": plot(summary, out / "ablation.png"),
        "md": write_text(out / "ablation.md", markdown(summary, runs, cfg, command)),
    }
    print(paths["md"].read_text())
    for name, path in paths.items():
        print(f"{name:>5}: {path}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = parse_config(argv)
    return sweep(cfg, "vseam sweep " + shlex.join(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
