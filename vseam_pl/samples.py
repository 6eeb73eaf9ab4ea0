"""Per-question outcomes of an evaluation as JSON Lines, beside `metrics.json` (lmms-eval's `--log_samples`).

One line per test question, for baseline and modulated: ``{"benchmark", "split", "group", "level",
"question_id", "image_id", "source", "gold", "baseline_reply", "baseline_parsed", "baseline_correct",
"modulated_reply", "modulated_parsed", "modulated_correct", "answer_parser"}``. ``group`` is the POPE split
(random/popular/adversarial) or the GQA/COCO-QA category, the report rows' per-group split; the ``modulated_*``
fields are null for a baseline-only run. Every accuracy and paired p-value of `metrics.json` can be recomputed
from this file alone (`vseam_pl.report.outcome_rows` on `read_samples`' outcomes; tests/evaluation/test_samples.py
does it by hand).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .evaluation import SYSTEMS, Outcome
from .io import write_atomic
from .text import parsed_answer

SAMPLE_KEYS: tuple[str, ...] = (
    "benchmark",
    "split",
    "group",
    "level",
    "question_id",
    "image_id",
    "source",
    "gold",
    *(f"{s}_{k}" for s in SYSTEMS for k in ("reply", "parsed", "correct")),
    "answer_parser",
)


def sample_line(o: Outcome, parser: str, split: str = "test") -> dict[str, Any]:
    """One question's line (keys in `SAMPLE_KEYS` order)."""
    line: dict[str, Any] = {
        "benchmark": o.benchmark,
        "split": split,
        "group": o.group,
        "level": o.level,
        "question_id": o.question_id,
        "image_id": o.image_id,
        "source": o.source,
        "gold": o.answer,
    }
    for system, reply, correct in zip(
        SYSTEMS, (o.baseline, o.modulated), (o.baseline_correct, o.modulated_correct), strict=True
    ):
        line[f"{system}_reply"] = reply
        line[f"{system}_parsed"] = None if reply is None else parsed_answer(reply, o.benchmark, parser)
        line[f"{system}_correct"] = correct
    line["answer_parser"] = parser
    return line


def write_samples(
    path: str | os.PathLike, outcomes: Sequence[Outcome], parser: str, split: str = "test"
) -> Path:
    """Write one JSON line per outcome, atomically, in a stable order (benchmark, source, question id)."""
    ordered = sorted(outcomes, key=lambda o: (o.benchmark, o.source, o.question_id, o.key))
    text = "".join(json.dumps(sample_line(o, parser, split)) + "\n" for o in ordered)
    return write_atomic(path, lambda p: p.write_text(text))


def read_samples(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a samples file; a line that is not a JSON object with every key is an error naming
    `file:line` and the missing keys."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: samples file not found")
    lines = []
    for i, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        missing = [k for k in SAMPLE_KEYS if not isinstance(obj, dict) or k not in obj]
        if missing:
            raise ValueError(f"{path}:{i}: missing field(s) {missing}; a sample has {list(SAMPLE_KEYS)}")
        lines.append(obj)
    return lines


def outcomes_from_samples(lines: Sequence[dict[str, Any]]) -> list[Outcome]:
    """`Outcome`s back from sample lines (what `vseam_pl.report.outcome_rows` takes)."""
    return [
        Outcome(
            key=i,
            benchmark=s["benchmark"],
            question_id=s["question_id"],
            level=s["level"],
            group=s["group"],
            answer=s["gold"],
            baseline=s["baseline_reply"],
            modulated=s["modulated_reply"],
            baseline_correct=s["baseline_correct"],
            modulated_correct=s["modulated_correct"],
            image_id=s["image_id"],
            source=s["source"],
        )
        for i, s in enumerate(lines)
    ]
