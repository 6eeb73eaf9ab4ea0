"""Set ablation (the release's `Attention_Head_Ablation.py`): remove a fixed set of heads at once and measure what
the model loses — the experiment behind "ablating the positive heads hurts more than removing random heads".

Sets: `positive` / `negative` (the top-K positive / negative heads of a head-scores run, exactly K whatever the sign
of their scores; how many have the expected sign is reported) and `random_<r>` (R sets of K heads drawn uniformly
without replacement from the whole grid, seeded). Every head of a set is replaced at once (`zero`, the release's, or
`mean_others`) at every position, on the clean image; the probability and correctness of the answer follow the
protocol (:mod:`.ablation`: candidate-normalised under `default`, full-vocabulary first sub-token under `release`).

Per set: accuracy, mean probability, mean drop `mean_i(p_i - p_i^set)`, and paired tests against the unablated
model (exact McNemar on correctness, sign-flip permutation test on p, bootstrap CI of the drop, from
:mod:`vseam_pl.stats`). Positive (negative) vs random: a permutation test of each example's drop against its mean
drop over the random sets, and the rank p-value `(1 + #{random sets whose mean drop >= (<=) the set's}) / (1 + R)`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..distributed import dist_info
from ..encoding import encode
from ..interventions import ablate_heads, capture, run_rows
from ..io import write_json
from ..pairs import images_of
from ..records import ImagePair
from ..stats import bootstrap_ci, mcnemar_exact, paired_permutation_test
from ..vlm import VLM
from .ablation import Item, scorer_for
from .items import prepare_items, replay_prefix_ok
from .scores import TOP_K, HeadScores

SET_MODES: tuple[str, ...] = ("zero", "mean_others")
SET_ABLATION_JSON = "set_ablation.json"


@dataclass
class SetAblationConfig:
    """`k` heads per set, `random_sets` (R) random sets from `seed`, chosen from `scores` of `group`.

    After a discovery run, :func:`set_ablation_config` fills `k`, `pair_batch`, `protocol` and `instruction` from
    its `DiscoveryConfig` (the CLI's `--method set_ablation` and `HeadDiscovery(set_ablation=...)` both do)."""

    k: int = TOP_K
    """set_ablation: heads per set"""
    random_sets: int = 20
    """set_ablation: number of random K-sets (R)"""
    seed: int = 0
    """set_ablation: seed of the random sets and the tests"""
    mode: str = field(default="zero", metadata={"choices": SET_MODES})
    """set_ablation: replacement (release: zero)"""
    group: str = "all"
    """set_ablation: whose scores choose the sets (all, level:...)"""
    protocol: str = "default"
    instruction: str | None = None
    pair_batch: int = 8
    n_resamples: int = 10_000

    def validate(self, num_layers: int, num_heads: int) -> None:
        if not 1 <= self.k <= num_layers * num_heads:
            raise ValueError(f"k must be in [1, {num_layers * num_heads}] (the head grid), got {self.k}")
        if self.random_sets < 0 or self.pair_batch < 1 or self.n_resamples < 1:
            raise ValueError("random_sets must be >= 0, pair_batch and n_resamples >= 1")
        if self.mode not in SET_MODES:
            raise ValueError(f"set ablation mode must be one of {SET_MODES}, got {self.mode!r}")


#: what a set ablation after discovery takes from the discovery run (`set_ablation_config`)
FROM_DISCOVERY: tuple[str, ...] = ("k", "pair_batch", "protocol", "instruction")


def set_ablation_config(discovery: Any, **fields: Any) -> SetAblationConfig:
    """Set ablation of the heads a `DiscoveryConfig` scored: its protocol and instruction, and unless `fields` give
    them, K = its `top_k` and its `pair_batch`."""
    return SetAblationConfig(
        **{"k": discovery.top_k, "pair_batch": discovery.pair_batch, **fields},
        protocol=discovery.protocol,
        instruction=discovery.instruction,
    )


@dataclass
class SetAblationResult:
    summary: dict[str, Any]
    outputs: dict[str, Path] = field(default_factory=dict)


def head_sets(
    scores: HeadScores, cfg: SetAblationConfig
) -> tuple[dict[str, list[tuple[int, int]]], dict[str, int]]:
    """The sets to ablate, and for `positive` / `negative` how many of their K heads have the expected sign."""
    num_layers, num_heads = scores.shape
    cfg.validate(num_layers, num_heads)
    sets: dict[str, list[tuple[int, int]]] = {}
    signed: dict[str, int] = {}
    for kind, expected in (("positive", scores.positive_heads), ("negative", scores.negative_heads)):
        sets[kind] = [(layer, head) for layer, head, _ in scores.ranked_heads(cfg.group, kind, cfg.k)]
        signed[kind] = len(expected(cfg.group, cfg.k))
    g = torch.Generator().manual_seed(cfg.seed)
    for r in range(cfg.random_sets):
        flat = torch.randperm(num_layers * num_heads, generator=g)[: cfg.k].tolist()
        sets[f"random_{r:03d}"] = [(i // num_heads, i % num_heads) for i in flat]
    return sets, signed


@torch.no_grad()
def set_probabilities(
    vlm: VLM,
    items: Sequence[Item],
    sets: dict[str, list[tuple[int, int]]],
    mode: str,
    pair_batch: int,
    prefix: bool = True,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per example `(p [E], correct [E])` unablated (`base`) and with each set ablated, on the clean image."""
    out: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in ["base", *sets]}
    for s in range(0, len(items), pair_batch):
        chunk = list(items[s : s + pair_batch])
        score = scorer_for(chunk)
        run = capture(
            vlm, encode(vlm, [it.prompt for it in chunk], images_of(chunk, "clean")), residuals=prefix
        )
        rows = torch.arange(len(chunk))
        out["base"].append(score(run.logits, rows))
        for name, heads in sets.items():
            with ablate_heads(vlm, heads, mode):  # type: ignore[arg-type]
                logits = run_rows(vlm, run, rows, min(layer for layer, _ in heads) if prefix else 0)
            out[name].append(score(logits, rows))
    return {name: (torch.cat([p for p, _ in v]), torch.cat([c for _, c in v])) for name, v in out.items()}


def summarise(
    results: dict[str, tuple[torch.Tensor, torch.Tensor]],
    sets: dict[str, list[tuple[int, int]]],
    cfg: SetAblationConfig,
) -> dict[str, Any]:
    """Accuracy, mean probability and drop per set, with the paired tests (see the module docstring)."""
    p_base, c_base = (t.double().numpy() for t in results["base"])
    summary: dict[str, Any] = {
        "base": {"accuracy": float(c_base.mean()), "mean_p": float(p_base.mean())},
        "sets": {},
    }
    for name, heads in sets.items():
        p, c = (t.double().numpy() for t in results[name])
        summary["sets"][name] = {
            "heads": [list(h) for h in heads],
            "accuracy": float(c.mean()),
            "mean_p": float(p.mean()),
            "mean_drop": float((p_base - p).mean()),
            "accuracy_drop": float(c_base.mean() - c.mean()),
            "drop_ci95": list(bootstrap_ci(p_base, p, seed=cfg.seed)),
            "p_mcnemar_vs_base": mcnemar_exact(c_base, c),
            "p_permutation_vs_base": paired_permutation_test(p_base, p, cfg.n_resamples, cfg.seed),
        }
    randoms = [n for n in sets if n.startswith("random_")]
    if randoms:
        drops = np.array([summary["sets"][n]["mean_drop"] for n in randoms])
        accs = np.array([summary["sets"][n]["accuracy"] for n in randoms])
        summary["random"] = {
            "n_sets": len(randoms),
            "mean_drop": float(drops.mean()),
            "std_drop": float(drops.std()),
            "mean_accuracy": float(accs.mean()),
            "std_accuracy": float(accs.std()),
        }
        per_example_random = np.mean([p_base - results[n][0].double().numpy() for n in randoms], axis=0)
        summary["vs_random"] = {}
        for kind, sign in (("positive", 1.0), ("negative", -1.0)):
            drop = p_base - results[kind][0].double().numpy()
            own = summary["sets"][kind]["mean_drop"]
            beaten = int(
                np.sum(sign * drops >= sign * own)
            )  # random sets at least as extreme in the set's direction
            summary["vs_random"][kind] = {
                "direction": "drop larger than random" if sign > 0 else "drop smaller than random",
                "mean_drop_minus_random": float((drop - per_example_random).mean()),
                "p_permutation": paired_permutation_test(drop, per_example_random, cfg.n_resamples, cfg.seed),
                "p_rank": (1 + beaten) / (1 + len(randoms)),
            }
    return summary


def run_set_ablation(
    vlm: VLM,
    pairs: Sequence[ImagePair],
    scores: HeadScores,
    config: SetAblationConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    sink: Any = None,
    plots: bool = True,
) -> SetAblationResult:
    """Ablate the positive, negative and random head sets of `scores` on `pairs`; with `out_dir` write
    `set_ablation.json` (summary, settings, per-example probabilities) and `plots/set_ablation.png`.

    Not sharded: under DDP every rank computes every set (cheap next to single-head scoring) and rank 0 writes.
    """
    cfg = config or SetAblationConfig()
    if scores.shape != (vlm.num_layers, vlm.num_heads):
        raise ValueError(
            f"head scores are for a {scores.shape} grid, the model has {vlm.num_layers}x{vlm.num_heads}"
        )
    sets, signed = head_sets(scores, cfg)
    items = prepare_items(vlm, pairs, cfg.protocol, cfg.instruction)
    results = set_probabilities(
        vlm, items, sets, cfg.mode, cfg.pair_batch, replay_prefix_ok(vlm, items, "clean")
    )
    summary = {
        "model": vlm.name,
        "settings": asdict(cfg),
        "scores": {"method": scores.method, "protocol": scores.protocol},
        "num_pairs": len(items),
        "expected_sign": {kind: f"{n} of {cfg.k} heads" for kind, n in signed.items()},
        **summarise(results, sets, cfg),
        "examples": {
            "pair_id": [it.pair.pair_id for it in items],
            **{name: {"p": p.tolist(), "correct": c.tolist()} for name, (p, c) in results.items()},
        },
    }
    outputs: dict[str, Path] = {}
    if out_dir is not None and dist_info()[0] == 0:
        outputs["set_ablation_json"] = write_json(Path(out_dir) / SET_ABLATION_JSON, summary)
        if plots:
            import matplotlib.pyplot as plt

            from ..plotting import save_png
            from .plots import set_ablation_plot

            fig = set_ablation_plot(summary)
            outputs["set_ablation_png"] = save_png(fig, Path(out_dir) / "plots" / "set_ablation.png")
            if sink is not None:
                sink("set_ablation", fig)
            plt.close(fig)
    return SetAblationResult(summary, outputs)
