"""Readout headroom: is the answer in the frozen model at all, or only misread?

    vseam headroom --models checkpoints/tiny-llava checkpoints/tiny-instructblip --benchmarks gqa pope --out docs

A per-head rescaling changes how a frozen model reads what it has computed; it cannot add what it never computed.
For every yes/no question this scores the frozen model's margin ``log p(yes) - log p(no)`` (the quantity closed-set
scoring thresholds at 0) and reports, per group (GQA level, POPE split):

- **accuracy** and **yes-rate** at the model's own threshold (0), as evaluation scores them;
- **AUROC** of the margin against the truth (torchmetrics): 0.5 means the margin carries no information about the
  answer, whatever its offset;
- **best-threshold accuracy**: the accuracy of the best single threshold on these same questions, i.e. what undoing
  the model's yes/no prior alone could reach (optimistic: the threshold is chosen on the questions it is scored on).

An AUROC near 0.5 says the answers carry nothing to recalibrate: a rescaling of heads could then only help if the
model computed the answer inside and lost it before the output. A best-threshold accuracy far above the accuracy says
a prior (e.g. a yes-bias) hides information that is there. Writes ``<out>/headroom.json`` and
``<out>/headroom.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional.classification import binary_auroc

from ..argparsing import ArgumentParser
from ..data import build_datamodule
from ..io import write_json, write_text
from ..prompts import DEFAULT_INSTRUCTION, build_prompts
from ..scoring import score_candidates
from ..vlm import load_vlm, model_display_name

#: Benchmarks with yes/no questions (COCO-QA has none).
BENCHMARKS = ("gqa", "pope")


def best_threshold_accuracy(margins: torch.Tensor, is_yes: torch.Tensor) -> float:
    """Max over thresholds t of mean((margin > t) == is_yes): every cut between distinct sorted margins, and below
    all of them."""
    order = torch.argsort(margins)
    m, y = margins[order], is_yes[order].long()
    n, total_yes = len(m), int(y.sum())
    no_below = torch.cumsum(1 - y, 0)  # "no" answers at or below each cut
    yes_above = total_yes - torch.cumsum(y, 0)  # "yes" answers above it
    last_of_value = torch.ones(n, dtype=torch.bool)
    last_of_value[:-1] = m[1:] != m[:-1]  # cut only after the last of equal margins
    correct = (no_below + yes_above)[last_of_value]
    return max(total_yes, int(correct.max())) / n


def readout_stats(margins: torch.Tensor, is_yes: torch.Tensor) -> dict[str, Any]:
    """Accuracy and yes-rate at threshold 0, AUROC and best-threshold accuracy of one group's margins."""
    said_yes, n = margins > 0, len(margins)
    both_answers = bool(is_yes.any() and (~is_yes).any())
    return {
        "n": n,
        "accuracy": int((said_yes == is_yes).sum()) / n,
        "yes_rate": int(said_yes.sum()) / n,
        "truth_yes_rate": int(is_yes.sum()) / n,
        "auroc": float(binary_auroc(margins, is_yes.long())) if both_answers else None,
        "best_threshold_accuracy": best_threshold_accuracy(margins, is_yes),
    }


def yes_no_index(candidates: tuple[str, ...] | None) -> tuple[int, int] | None:
    """Positions of "yes" and "no" in a closed answer set that is exactly yes/no (any case); else None."""
    if not candidates or len(candidates) != 2:
        return None
    lower = [c.strip().lower() for c in candidates]
    if sorted(lower) != ["no", "yes"]:
        return None
    return lower.index("yes"), lower.index("no")


@torch.no_grad()
def margins_of(
    model: str, benchmark: str, args: argparse.Namespace
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per group: (margins, is_yes) of the yes/no questions of one benchmark's split."""
    vlm = load_vlm(model, attn_implementation="eager")
    kwargs: dict[str, Any] = {"root": args.data_root, "batch_size": args.batch_size, "num_workers": 0}
    if args.limit:
        kwargs["limit"] = args.limit
    dm = build_datamodule(benchmark, **kwargs)
    stage = {"val": "validate", "test": "test"}[args.split]
    dm.setup(stage)
    loader = dm.val_dataloader() if args.split == "val" else dm.test_dataloader()
    groups: dict[str, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
    for batch in loader:
        rows = [(ex, yes_no_index(ex.record.candidates)) for ex in batch.examples]
        rows = [(ex, idx) for ex, idx in rows if idx is not None]
        if not rows:
            continue
        records = [ex.record for ex, _ in rows]
        prompts = build_prompts(vlm, [r.question for r in records], DEFAULT_INSTRUCTION)
        scores = score_candidates(vlm, prompts, [ex.image for ex, _ in rows], [r.candidates for r in records])
        for (ex, (yes, no)), s in zip(rows, scores, strict=True):
            key = ex.record.level or ex.record.category or benchmark
            for group in (key, "all"):
                groups[group][0].append(float(s[yes] - s[no]))
                groups[group][1].append(ex.record.answer.strip().lower() == "yes")
    return {g: (torch.tensor(m), torch.tensor(y)) for g, (m, y) in groups.items()}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown(rows: list[dict[str, Any]], command: str, split: str) -> str:
    lines = [
        "# Readout headroom of the frozen models",
        "",
        "Generated by `vseam headroom` (`vseam_pl/studies/headroom.py`; do not edit by hand). Exact command:",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Every yes/no question of the {split} split, scored by the frozen model's margin log p(yes) − log p(no). "
        "AUROC 0.5: the margin says nothing about the answer, so there is nothing to recalibrate (a rescaling of heads "
        "could only help if the answer were computed inside and lost before the output). Best-threshold accuracy: what removing the model's yes/no prior alone would reach (the threshold "
        "is chosen on the same questions, so it is an optimistic bound).",
        "",
        "| model | benchmark | group | n | accuracy % | yes-rate % (truth) | AUROC | best-threshold accuracy % |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        auroc = "–" if r["auroc"] is None else f"{r['auroc']:.3f}"
        lines.append(
            f"| {r['model']} | {r['benchmark']} | {r['group']} | {r['n']} | {_pct(r['accuracy'])} | "
            f"{_pct(r['yes_rate'])} ({_pct(r['truth_yes_rate'])}) | {auroc} | {_pct(r['best_threshold_accuracy'])} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["checkpoints/tiny-llava", "checkpoints/tiny-instructblip"])
    p.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--data_root", default="data/synth")
    p.add_argument("--limit", type=int, default=None, help="at most this many records per benchmark split")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--out", default="docs", help="where headroom.json and headroom.md go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["vseam", "headroom", *argv])
    rows = []
    for model in args.models:
        for bench in args.benchmarks:
            for group, (m, y) in sorted(
                margins_of(model, bench, args).items(), key=lambda kv: kv[0] == "all"
            ):
                row = {"model": model_display_name(model), "benchmark": bench, "group": group}
                rows.append({**row, **readout_stats(m, y)})
                print(
                    f"[headroom] {row['model']} {bench} {group}: n={len(m)} acc={_pct(rows[-1]['accuracy'])} "
                    f"auroc={rows[-1]['auroc']}",
                    flush=True,
                )
    out = Path(args.out)
    write_json(out / "headroom.json", {"command": command, "split": args.split, "rows": rows})
    write_text(out / "headroom.md", markdown(rows, command, args.split))
    return rows


if __name__ == "__main__":
    main()
