"""CLI: ``python -m vseam_pl.trace --model PATH_OR_ID --pairs MANIFEST --out DIR [--analyses layers,tokens,lens]
[--levels object,attribute,relation] [--limit N] [--batch-size B] [--resume | --overwrite]``.

Causal tracing of a frozen VLM on clean/edited image pairs: layer patching by token group (image vs text), token-wise
attention/MLP patching, and the logit lens. Results land under --out as safetensors + JSON, aggregated per level with
95% bands, and as PNG figures; an interrupted run continues with --resume.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from .argparsing import ArgumentParser
from .pairs import ManifestError, PairError, read_pairs, select_pairs
from .prompts import DEFAULT_INSTRUCTION
from .tracing.aggregate import CI_METHODS
from .tracing.runner import ANALYSES, parse_analyses, run_tracing


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m vseam_pl.trace", description=__doc__)
    p.add_argument("--model", required=True, help="hub id or local folder of the VLM")
    p.add_argument("--pairs", required=True, help="pairs.jsonl manifest (or its folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--analyses", default=",".join(ANALYSES), help=f"comma-separated subset of {','.join(ANALYSES)}"
    )
    p.add_argument(
        "--levels", default=None, help="comma-separated levels to keep (object,attribute,relation)"
    )
    p.add_argument(
        "--limit", type=int, default=None, help="trace at most N pairs (manifest order, after --levels)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="patched runs per forward")
    p.add_argument(
        "--min-gap",
        type=float,
        default=0.5,
        help="aggregate recovery only over pairs with LD_clean - LD_edited >= this (nats)",
    )
    p.add_argument("--ci", choices=CI_METHODS, default="t", help="confidence band: Student t or bootstrap")
    p.add_argument("--pair-plots", type=int, default=2, help="per-pair token heatmaps to draw")
    p.add_argument(
        "--instruction",
        default=DEFAULT_INSTRUCTION,
        help="instruction appended to each question ('' for none)",
    )
    p.add_argument("--dtype", default="float32", help="float32, bf16, fp16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--attn-implementation", default="eager")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="continue a run in --out, skipping finished pairs"
    )
    mode.add_argument("--overwrite", action="store_true", help="discard results already in --out")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        analyses = parse_analyses(args.analyses)
        levels = [s.strip() for s in args.levels.split(",") if s.strip()] if args.levels else None
        if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
            raise ValueError("--batch-size and --limit must be positive")
        pairs = select_pairs(read_pairs(args.pairs), levels, limit=args.limit)
        if not pairs:
            raise ValueError(f"{args.pairs}: no pairs selected (levels={levels}, limit={args.limit})")
        from .vlm import load_vlm  # heavy import only once the arguments are known to be valid

        if args.threads:
            torch.set_num_threads(args.threads)
        vlm = load_vlm(
            args.model, dtype=args.dtype, device=args.device, attn_implementation=args.attn_implementation
        )
        result = run_tracing(
            vlm,
            pairs,
            args.out,
            analyses,
            batch_size=args.batch_size,
            resume=args.resume,
            overwrite=args.overwrite,
            instruction=args.instruction or None,
            min_gap=args.min_gap,
            ci=args.ci,
            pair_plots=args.pair_plots,
        )
    except (FileExistsError, FileNotFoundError, ManifestError, PairError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = json.loads((result.out_dir / "summary.json").read_text())
    print(json.dumps(summary, indent=1))
    print(
        f"traced {result.traced}, reused {result.reused}, skipped {len(result.skipped)} pairs "
        f"in {time.perf_counter() - start:.1f}s -> {result.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
