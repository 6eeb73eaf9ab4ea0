"""CLI: causal head discovery without training.

``python -m vseam_pl.discover --model PATH_OR_ID --pairs MANIFEST --method ablation|patching|attribution --out DIR
[--levels object attribute relation] [--top-k K] [--batch-size B|auto] [--filter] [--limit N] [--resume]
[--verify-top K]``

Writes `head_scores.safetensors`, `head_scores.json`, `layer_profiles.json`, `overlap.json` and `plots/*.png` to
DIR, and with `--init-scales closed_form|topk` also `init_scales.safetensors` (a HeadModulation scales file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .ablation import ABLATION_MODES
from .batch_size import BatchSizeError, discovery_batch_size, resolve
from .discovery.atp import NODES, format_verify, verify_top
from .discovery.data import PairError, load_pairs
from .discovery.patching import DIRECTIONS
from .discovery.runner import METHODS, DiscoveryConfig, run_discovery
from .discovery.scores import apply_init_scales, init_scales_from_scores
from .io import write_json
from .levels import LEVELS
from .pairs import ManifestError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vseam_pl.discover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="hub id or local folder (e.g. checkpoints/tiny-llava)")
    p.add_argument("--pairs", required=True, help="pairs.jsonl manifest (or its folder)")
    p.add_argument("--method", choices=METHODS, default="ablation")
    p.add_argument("--out", required=True, help="run folder for scores, plots and partial results")
    p.add_argument("--levels", nargs="+", choices=LEVELS, help="keep only these semantic levels")
    p.add_argument("--categories", nargs="+", help="keep only these categories")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--batch-size", default="64",
                   help="intervened rows per forward, or 'auto': the largest that fits on the GPU (64 on CPU)")
    p.add_argument("--atp-nodes", choices=NODES, default="head", help="atp_star: head outputs or q/k/v nodes")
    p.add_argument("--verify-top", type=int, default=0, metavar="K",
                   help="attribution/atp_star: exact patching of the top-K heads, side by side (verify_top.json)")
    p.add_argument("--pair-batch", type=int, default=4, help="pairs per chunk (the checkpoint unit)")
    p.add_argument("--filter", action="store_true", help="keep pairs right on clean and wrong on edited (V-SEAM)")
    p.add_argument("--limit", type=int, help="use at most N pairs")
    p.add_argument("--resume", action="store_true", help="continue from OUT/partial instead of starting over")
    p.add_argument("--ablation-mode", choices=ABLATION_MODES, default="mean_others")
    p.add_argument("--ablation-image", choices=("clean", "edited"), default="clean")
    p.add_argument("--direction", choices=DIRECTIONS, default="clean_to_edited", help="patching direction")
    p.add_argument("--init-scales", choices=("closed_form", "topk"), help="also write init_scales.safetensors")
    p.add_argument("--init-lambda", type=float, default=0.5)
    p.add_argument("--init-clip", type=float, nargs=2, default=(0.5, 1.5), metavar=("LO", "HI"))
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--attn-implementation", default="eager")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .modulation import HeadModulation
    from .vlm import load_vlm

    try:
        batch_size = resolve(args.batch_size)
        cfg = DiscoveryConfig(method=args.method, ablation_mode=args.ablation_mode, ablation_image=args.ablation_image,
                              direction=args.direction, batch_size=batch_size or 64, pair_batch=args.pair_batch,
                              top_k=args.top_k, filter=args.filter, atp_nodes=args.atp_nodes)  # fmt: skip
        cfg.validate()
        if args.verify_top and args.method not in ("attribution", "atp_star"):
            raise ValueError(f"--verify-top checks attribution estimates; --method is {args.method!r}")
        pairs = load_pairs(args.pairs, levels=args.levels, categories=args.categories, limit=args.limit)
        vlm = load_vlm(args.model, dtype=args.dtype, device=args.device, attn_implementation=args.attn_implementation)
        if batch_size is None:
            cfg.batch_size = discovery_batch_size(vlm, pairs) if vlm.device.type == "cuda" else 64
            print(f"--batch-size auto: {cfg.batch_size} rows per forward"
                  + ("" if vlm.device.type == "cuda" else " (CPU: no memory probe, the default)"), file=sys.stderr)
        result = run_discovery(vlm, pairs, cfg, out_dir=args.out, resume=args.resume,
                               progress=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
    except (OSError, ManifestError, PairError, ValueError, BatchSizeError) as e:  # OSError: no such model folder / hub id offline
        print(f"error: {e}", file=sys.stderr)
        return 2
    scores = result.scores
    if result.filter_report is not None:
        r = result.filter_report
        print(f"V-SEAM filter: kept {r['kept']}/{r['total']} pairs (right on clean {r['right_on_clean']}, "
              f"wrong on edited {r['wrong_on_edited']})")  # fmt: skip
    if args.init_scales:
        mod = HeadModulation.for_vlm(vlm)
        scales = init_scales_from_scores(scores, args.init_scales, lam=args.init_lambda, clip=tuple(args.init_clip),
                                         k=args.top_k)  # fmt: skip
        apply_init_scales(mod, scales)
        mod.save(Path(args.out) / "init_scales.safetensors")
    summary = {
        "method": scores.method,
        "pairs": int(scores.counts["all"]["signed"]["n"]),
        "positive": scores.positive_heads("all", args.top_k),
        "negative": scores.negative_heads("all", args.top_k),
        "seconds": scores.meta.get("seconds"),
        # patching/attribution normalise by the summed edit effect: near 0 means the model ignores the edits
        **({"mean_edit_effect": scores.counts["all"]["signed"]["den"] / max(1.0, scores.counts["all"]["signed"]["n"])}
           if scores.method != "ablation" else {}),  # fmt: skip
        "out": str(args.out),
    }
    if args.verify_top:
        rows = verify_top(vlm, pairs, scores, args.verify_top, args.direction, cfg.batch_size, cfg.pair_batch,
                          filter_=args.filter)  # fmt: skip
        summary["verify_top"] = str(write_json(Path(args.out) / "verify_top.json", rows))
        print(format_verify(rows), file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
