"""CLI: causal head discovery without training.

``python -m vseam_pl.discover --model PATH_OR_ID --pairs MANIFEST
--method ablation|patching|attribution|atp_star|set_ablation --out DIR [--protocol default|release]
[--levels object attribute relation] [--top-k K] [--batch-size B|auto] [--filter] [--limit N] [--resume]
[--verify-top K]``

Writes `head_scores.safetensors`, `head_scores.json`, `layer_profiles.json`, `overlap.json` and `plots/*.png` to
DIR, and with `--init-scales closed_form|topk` also `init_scales.safetensors` (a HeadModulation scales file).
`--protocol release` scores heads exactly as the V-SEAM release does (docs/fidelity.md). `--method set_ablation`
ablates the top-K positive, top-K negative and R random K-sets of heads together (scores from `--scores DIR`, else
computed first by `--method ablation` into DIR) and writes `set_ablation.json` and `plots/set_ablation.png`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

from .argparsing import ArgumentParser, Flag, Flat, command_kwargs, command_parser
from .batch_size import BatchSizeError, discovery_batch_size, resolve
from .discovery.atp import format_verify
from .discovery.atp import verify_top as verify_top_heads
from .discovery.methods import METHODS
from .discovery.runner import DiscoveryConfig, run_discovery
from .discovery.scores import HeadScores, apply_init_scales, init_scales_from_scores
from .discovery.set_ablation import (
    FROM_DISCOVERY,
    SetAblationConfig,
    run_set_ablation,
    set_ablation_config,
)
from .io import write_json
from .levels import LEVELS
from .pairs import ManifestError, PairError, load_pairs


def discover(
    model: str,
    pairs: str,
    out: str,
    method: Annotated[str, Flag(choices=(*METHODS, "set_ablation"))] = DiscoveryConfig.method,
    config: Annotated[DiscoveryConfig | None, Flat(skip=("method", "batch_size"))] = None,
    batch_size: int | str = DiscoveryConfig.batch_size,
    levels: Annotated[list[str] | None, Flag(choices=LEVELS)] = None,
    categories: list[str] | None = None,
    limit: int | None = None,
    resume: bool = False,
    verify_top: Annotated[int, Flag(metavar="K")] = 0,
    init_scales: Annotated[str | None, Flag(choices=("closed_form", "topk"))] = None,
    init_lambda: float | None = None,
    init_clip: Annotated[tuple[float, float] | None, Flag(metavar=("LO", "HI"))] = None,
    init_eps: float | None = None,
    init_normalize: bool | None = None,
    scores: str | None = None,
    set_k: int | None = None,
    sets: Annotated[
        SetAblationConfig | None,
        Flat(rename={"mode": "set_mode", "group": "set_group"}, skip=(*FROM_DISCOVERY, "n_resamples")),
    ] = None,
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str = "eager",
) -> int:
    """`vseam discover`: score every head of `model` on the `pairs`, write the outputs to `out`, print a summary.

    Args:
        model: hub id or local folder (e.g. checkpoints/tiny-llava)
        pairs: pairs.jsonl manifest (or its folder)
        out: run folder for scores, plots and partial results
        method: a discovery method, or set_ablation (ablation scores, then the sets)
        config: the scoring settings (every field a flag of its own)
        batch_size: intervened rows per forward, or 'auto': the largest that fits on the GPU (64 on CPU)
        levels: keep only these semantic levels
        categories: keep only these categories
        limit: use at most N pairs
        resume: continue from OUT/partial instead of starting over
        verify_top: attribution/atp_star: exact patching of the top-K heads, side by side (verify_top.json)
        init_scales: also write init_scales.safetensors
        init_lambda: closed_form constant (default: the protocol's; release: lambda 1, clip 0 2, eps 0, no
            normalisation)
        init_clip: closed_form constant (default: the protocol's; release: lambda 1, clip 0 2, eps 0, no
            normalisation)
        init_eps: heads with |score| < eps keep scale 1; closed_form constant (default: the protocol's; release:
            lambda 1, clip 0 2, eps 0, no normalisation)
        init_normalize: divide by max|score|; closed_form constant (default: the protocol's; release: lambda 1,
            clip 0 2, eps 0, no normalisation)
        scores: set_ablation: head_scores.safetensors (or its folder) choosing the sets
        set_k: set_ablation: heads per set (default: --top-k)
        sets: the set ablation settings (fields a flag of their own; the rest follow `config`)
        dtype: how the model is loaded
        device: where the model runs
        attn_implementation: the model's attention implementation
    """
    from .interventions.modulation import HeadModulation
    from .vlm import load_vlm

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        size = resolve(batch_size)
        base = "ablation" if method == "set_ablation" else method
        cfg = dataclasses.replace(config or DiscoveryConfig(), method=base, batch_size=size or 64)
        chosen = {
            k: v
            for k, v in dataclasses.asdict(sets or SetAblationConfig()).items()
            if k not in FROM_DISCOVERY
        }
        set_cfg = set_ablation_config(cfg, **chosen, **({"k": set_k} if set_k else {}))
        cfg.validate()
        if verify_top and not (method in METHODS and METHODS[method].gradient):
            raise ValueError(f"--verify-top checks attribution estimates; --method is {method!r}")
        items = load_pairs(pairs, levels=levels, categories=categories, limit=limit)
        vlm = load_vlm(model, dtype=dtype, device=device, attn_implementation=attn_implementation)
        if size is None:
            cfg.batch_size = discovery_batch_size(vlm, items) if vlm.device.type == "cuda" else 64
            say(
                f"--batch-size auto: {cfg.batch_size} rows per forward"
                + ("" if vlm.device.type == "cuda" else " (CPU: no memory probe, the default)")
            )
        result = None
        if method == "set_ablation" and scores:
            head_scores = HeadScores.load(scores)
        else:
            result = run_discovery(vlm, items, cfg, out_dir=out, resume=resume, progress=say)
            head_scores = result.scores
        if method == "set_ablation":
            ablated = run_set_ablation(vlm, items, head_scores, set_cfg, out_dir=out).summary
        scales = None
        if init_scales:
            scales = init_scales_from_scores(
                head_scores,
                init_scales,
                lam=init_lambda,
                clip=init_clip,
                eps=init_eps,
                normalize=init_normalize,
                k=cfg.top_k,
            )
    except (
        OSError,
        ManifestError,
        PairError,
        ValueError,
        BatchSizeError,
    ) as e:  # OSError: no such model / hub id offline
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result is not None and result.filter_report is not None:
        r = result.filter_report
        print(
            f"V-SEAM filter: kept {r['kept']}/{r['total']} pairs (right on clean {r['right_on_clean']}, "
            f"wrong on edited {r['wrong_on_edited']})"
        )
    if scales is not None:
        mod = HeadModulation.for_vlm(vlm)
        apply_init_scales(mod, scales)
        mod.save(Path(out) / "init_scales.safetensors")
    summary = {
        "method": method,
        "protocol": head_scores.protocol,
        "pairs": int(head_scores.counts["all"]["signed"]["n"]),
        "positive": head_scores.positive_heads("all", cfg.top_k),
        "negative": head_scores.negative_heads("all", cfg.top_k),
        "seconds": head_scores.meta.get("seconds"),
        "out": str(out),
    }
    edit = head_scores.counts["all"].get("edit")
    if (
        edit
    ):  # patching/attribution normalise by the summed edit effect: near 0 means the model ignores the edits
        summary["mean_edit_effect"] = edit["sum"] / max(1.0, edit["n"])
    if method == "set_ablation":
        summary["set_ablation"] = {
            "base": ablated["base"],
            "random": ablated.get("random"),
            "vs_random": ablated.get("vs_random"),
            **{
                k: {m: ablated["sets"][k][m] for m in ("accuracy", "mean_drop", "p_mcnemar_vs_base")}
                for k in ("positive", "negative")
            },
        }
    if verify_top:
        rows = verify_top_heads(
            vlm,
            items,
            head_scores,
            verify_top,
            cfg.direction,
            cfg.batch_size,
            cfg.pair_batch,
            filter_=cfg.filter,
        )
        summary["verify_top"] = str(write_json(Path(out) / "verify_top.json", rows))
        print(format_verify(rows), file=sys.stderr)
    print(summary_legend(method, head_scores.protocol, ranks_by_gain(head_scores)), file=sys.stderr)
    print(json.dumps(summary))
    return 0


def parser() -> ArgumentParser:
    """`discover`'s signature as flags (`vseam discover --help`)."""
    return command_parser(discover, "python -m vseam_pl.discover", __doc__)


def main(argv: list[str] | None = None) -> int:
    return discover(**command_kwargs(discover, parser().parse_args(argv)))


def ranks_by_gain(scores: Any) -> bool:
    """Whether `negative_heads` ranks by the release's non-negative gain: release ablation, and at least one pair
    answered wrongly (otherwise the gain is undefined and the ranking falls back to the signed scores)."""
    if not scores.negative_is_gain:
        return False
    try:
        return not bool(scores.get("all", "negative").isnan().all())
    except KeyError:
        return False


def summary_legend(method: str, protocol: str, negative_is_gain: bool) -> str:
    """What the summary's `positive` / `negative` lists of `[layer, head, score]` measure, for this method and
    protocol (printed above the JSON line)."""
    if method == "set_ablation" or (method in METHODS and METHODS[method].ablates):
        positive = (
            "positive: heads whose ablation lowers the answer's probability most (score: mean p_base - p_ablated "
            "over pairs answered correctly; larger = the head helps the answer more)"
        )
        if negative_is_gain:
            negative = (
                "negative (--protocol release): the release's gain, mean max(0, p_ablated - p_base) over pairs "
                "answered wrongly, so it is >= 0 by construction and drawn red like the positive scores; larger = "
                "ablating the head helps more, i.e. the head works against the answer more"
            )
        elif protocol == "release":
            negative = (
                "negative (--protocol release): no pair was answered wrongly, so the release's gain is undefined; "
                "listed instead: the most negative signed scores (mean p_base - p_ablated over all pairs, < 0 = "
                "ablating the head raises the answer's probability)"
            )
        else:
            negative = (
                "negative: heads whose ablation raises the answer's probability most (mean p_base - p_ablated "
                "over pairs answered wrongly, < 0; more negative = the head works against the answer more)"
            )
    else:
        positive = (
            "positive: heads whose clean activation, patched into the edited run, moves the answer back toward the "
            f"clean one most ({method} score, normalised by the pair's edit effect; larger = more causal)"
        )
        negative = "negative: heads whose clean activation moves the answer further away (score < 0)"
    return f"{positive}\n{negative}\n(protocol {protocol}; docs/guides/discovery.md, docs/fidelity.md)"


if __name__ == "__main__":
    sys.exit(main())
