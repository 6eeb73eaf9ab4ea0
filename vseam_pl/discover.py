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

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .argparsing import ArgumentParser
from .batch_size import BatchSizeError, discovery_batch_size, resolve
from .discovery.atp import NODES, format_verify, verify_top
from .discovery.methods import METHODS
from .discovery.patching import DIRECTIONS, NORMALIZATIONS
from .discovery.release import PROTOCOLS
from .discovery.runner import DiscoveryConfig, run_discovery
from .discovery.scores import HeadScores, apply_init_scales, init_scales_from_scores
from .discovery.set_ablation import SET_MODES, SetAblationConfig, run_set_ablation
from .interventions.ablation import ABLATION_MODES
from .io import write_json
from .levels import LEVELS
from .pairs import ManifestError, PairError, load_pairs


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m vseam_pl.discover", description=__doc__)
    p.add_argument("--model", required=True, help="hub id or local folder (e.g. checkpoints/tiny-llava)")
    p.add_argument("--pairs", required=True, help="pairs.jsonl manifest (or its folder)")
    p.add_argument("--method", choices=(*METHODS, "set_ablation"), default="ablation")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="default",
        help="default: vseam-pl's scoring; release: the V-SEAM release's (ablation, set_ablation)",
    )
    p.add_argument(
        "--instruction", help="appended to each question ('' for none; default: the protocol's own)"
    )
    p.add_argument("--out", required=True, help="run folder for scores, plots and partial results")
    p.add_argument("--levels", nargs="+", choices=LEVELS, help="keep only these semantic levels")
    p.add_argument("--categories", nargs="+", help="keep only these categories")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument(
        "--batch-size",
        default="64",
        help="intervened rows per forward, or 'auto': the largest that fits on the GPU (64 on CPU)",
    )
    p.add_argument("--atp-nodes", choices=NODES, default="head", help="atp_star: head outputs or q/k/v nodes")
    p.add_argument(
        "--verify-top",
        type=int,
        default=0,
        metavar="K",
        help="attribution/atp_star: exact patching of the top-K heads, side by side (verify_top.json)",
    )
    p.add_argument("--pair-batch", type=int, default=4, help="pairs per chunk (the checkpoint unit)")
    p.add_argument(
        "--filter", action="store_true", help="keep pairs right on clean and wrong on edited (V-SEAM)"
    )
    p.add_argument("--limit", type=int, help="use at most N pairs")
    p.add_argument("--resume", action="store_true", help="continue from OUT/partial instead of starting over")
    p.add_argument("--ablation-mode", choices=ABLATION_MODES, default="mean_others")
    p.add_argument("--ablation-image", choices=("clean", "edited"), default="clean")
    p.add_argument("--direction", choices=DIRECTIONS, default="clean_to_edited", help="patching direction")
    p.add_argument(
        "--patching-norm",
        choices=NORMALIZATIONS,
        default="sum",
        help="patching/attribution: sum (divide by the summed edit effect), per_pair, none (unnormalised)",
    )
    p.add_argument(
        "--min-edit-effect",
        type=float,
        default=0.1,
        help="warn when the mean edit effect LD_clean - LD_edited (nats) is below this",
    )
    p.add_argument(
        "--init-scales", choices=("closed_form", "topk"), help="also write init_scales.safetensors"
    )
    closed = (
        "closed_form constant (default: the protocol's; release: lambda 1, clip 0 2, eps 0, no normalisation)"
    )
    p.add_argument("--init-lambda", type=float, help=closed)
    p.add_argument("--init-clip", type=float, nargs=2, metavar=("LO", "HI"), help=closed)
    p.add_argument("--init-eps", type=float, help="heads with |score| < eps keep scale 1; " + closed)
    p.add_argument(
        "--init-normalize", action=argparse.BooleanOptionalAction, help="divide by max|score|; " + closed
    )
    p.add_argument("--scores", help="set_ablation: head_scores.safetensors (or its folder) choosing the sets")
    p.add_argument("--set-k", type=int, help="set_ablation: heads per set (default: --top-k)")
    p.add_argument("--random-sets", type=int, default=20, help="set_ablation: number of random K-sets (R)")
    p.add_argument("--seed", type=int, default=0, help="set_ablation: seed of the random sets and the tests")
    p.add_argument(
        "--set-mode", choices=SET_MODES, default="zero", help="set_ablation: replacement (release: zero)"
    )
    p.add_argument(
        "--set-group", default="all", help="set_ablation: whose scores choose the sets (all, level:...)"
    )
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--attn-implementation", default="eager")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .interventions.modulation import HeadModulation
    from .vlm import load_vlm

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        batch_size = resolve(args.batch_size)
        cfg = DiscoveryConfig(
            method="ablation" if args.method == "set_ablation" else args.method,
            ablation_mode=args.ablation_mode,
            ablation_image=args.ablation_image,
            direction=args.direction,
            batch_size=batch_size or 64,
            pair_batch=args.pair_batch,
            top_k=args.top_k,
            filter=args.filter,
            instruction=args.instruction,
            protocol=args.protocol,
            patching_norm=args.patching_norm,
            min_edit_effect=args.min_edit_effect,
            atp_nodes=args.atp_nodes,
        )
        set_cfg = SetAblationConfig(
            k=args.set_k or args.top_k,
            random_sets=args.random_sets,
            seed=args.seed,
            mode=args.set_mode,
            group=args.set_group,
            protocol=args.protocol,
            instruction=args.instruction,
            pair_batch=args.pair_batch,
        )
        cfg.validate()
        if args.verify_top and not (args.method in METHODS and METHODS[args.method].gradient):
            raise ValueError(f"--verify-top checks attribution estimates; --method is {args.method!r}")
        pairs = load_pairs(args.pairs, levels=args.levels, categories=args.categories, limit=args.limit)
        vlm = load_vlm(
            args.model, dtype=args.dtype, device=args.device, attn_implementation=args.attn_implementation
        )
        if batch_size is None:
            cfg.batch_size = discovery_batch_size(vlm, pairs) if vlm.device.type == "cuda" else 64
            say(
                f"--batch-size auto: {cfg.batch_size} rows per forward"
                + ("" if vlm.device.type == "cuda" else " (CPU: no memory probe, the default)")
            )
        result = None
        if args.method == "set_ablation" and args.scores:
            scores = HeadScores.load(args.scores)
        else:
            result = run_discovery(vlm, pairs, cfg, out_dir=args.out, resume=args.resume, progress=say)
            scores = result.scores
        if args.method == "set_ablation":
            sets = run_set_ablation(vlm, pairs, scores, set_cfg, out_dir=args.out).summary
        scales = None
        if args.init_scales:
            scales = init_scales_from_scores(
                scores,
                args.init_scales,
                lam=args.init_lambda,
                clip=args.init_clip,
                eps=args.init_eps,
                normalize=args.init_normalize,
                k=args.top_k,
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
        mod.save(Path(args.out) / "init_scales.safetensors")
    summary = {
        "method": args.method,
        "protocol": scores.protocol,
        "pairs": int(scores.counts["all"]["signed"]["n"]),
        "positive": scores.positive_heads("all", args.top_k),
        "negative": scores.negative_heads("all", args.top_k),
        "seconds": scores.meta.get("seconds"),
        "out": str(args.out),
    }
    edit = scores.counts["all"].get("edit")
    if (
        edit
    ):  # patching/attribution normalise by the summed edit effect: near 0 means the model ignores the edits
        summary["mean_edit_effect"] = edit["sum"] / max(1.0, edit["n"])
    if args.method == "set_ablation":
        summary["set_ablation"] = {
            "base": sets["base"],
            "random": sets.get("random"),
            "vs_random": sets.get("vs_random"),
            **{
                k: {m: sets["sets"][k][m] for m in ("accuracy", "mean_drop", "p_mcnemar_vs_base")}
                for k in ("positive", "negative")
            },
        }
    if args.verify_top:
        rows = verify_top(
            vlm,
            pairs,
            scores,
            args.verify_top,
            args.direction,
            cfg.batch_size,
            cfg.pair_batch,
            filter_=args.filter,
        )
        summary["verify_top"] = str(write_json(Path(args.out) / "verify_top.json", rows))
        print(format_verify(rows), file=sys.stderr)
    print(summary_legend(args.method, scores.protocol, ranks_by_gain(scores)), file=sys.stderr)
    print(json.dumps(summary))
    return 0


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
