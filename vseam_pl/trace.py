"""CLI: ``python -m vseam_pl.trace --model PATH_OR_ID --pairs MANIFEST --out DIR [--analyses layers,tokens,lens]
[--levels object,attribute,relation] [--limit N] [--batch-size B] [--resume | --overwrite]``.

Causal tracing of a frozen VLM on clean/edited image pairs: layer patching by token group (image vs text), token-wise
attention/MLP patching, and the logit lens. Results land under --out as safetensors + JSON, aggregated per level with
95% bands, and as PNG figures; an interrupted run continues with --resume.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Annotated

import torch

from .argparsing import ArgumentParser, Flat, command_kwargs, command_parser
from .pairs import ManifestError, PairError, read_pairs, select_pairs
from .tracing.runner import TraceConfig, parse_analyses, run_tracing


def trace(
    model: str,
    pairs: str,
    out: str,
    config: Annotated[TraceConfig | None, Flat()] = None,
    levels: str | None = None,
    limit: int | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str = "eager",
    threads: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> int:
    """`vseam trace`: trace the `pairs` through `model` into `out`, print the summary.

    Args:
        model: hub id or local folder of the VLM
        pairs: pairs.jsonl manifest (or its folder)
        out: output folder
        config: how pairs are traced (every field a flag of its own)
        levels: comma-separated levels to keep (object,attribute,relation)
        limit: trace at most N pairs (manifest order, after --levels)
        dtype: float32, bf16, fp16
        device: where the model runs
        attn_implementation: the model's attention implementation
        threads: CPU threads for torch (default: torch's choice)
        resume: continue a run in --out, skipping finished pairs
        overwrite: discard results already in --out
    """
    cfg = config if config is not None else TraceConfig()
    start = time.perf_counter()
    try:
        if resume and overwrite:
            raise ValueError("--resume and --overwrite: give one of them, not both")
        parse_analyses(cfg.analyses)
        selected = [s.strip() for s in levels.split(",") if s.strip()] if levels else None
        if cfg.batch_size < 1 or (limit is not None and limit < 1):
            raise ValueError("--batch-size and --limit must be positive")
        items = select_pairs(read_pairs(pairs), selected, limit=limit)
        if not items:
            raise ValueError(f"{pairs}: no pairs selected (levels={selected}, limit={limit})")
        from .vlm import load_vlm  # heavy import only once the arguments are known to be valid

        if threads:
            torch.set_num_threads(threads)
        vlm = load_vlm(model, dtype=dtype, device=device, attn_implementation=attn_implementation)
        result = run_tracing(
            vlm,
            items,
            out,
            dataclasses.replace(cfg, instruction=cfg.instruction or None),
            resume=resume,
            overwrite=overwrite,
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


def build_parser() -> ArgumentParser:
    """`trace`'s signature as flags (`vseam trace --help`)."""
    return command_parser(trace, "python -m vseam_pl.trace", __doc__)


def main(argv: list[str] | None = None) -> int:
    return trace(**command_kwargs(trace, build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
