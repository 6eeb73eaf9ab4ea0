"""Paired evaluation: baseline and modulated answers on the *same* examples, gathered over DDP ranks into the
`metrics.json` rows (accuracy / POPE metrics with McNemar p-values and bootstrap CIs, per category)."""

from __future__ import annotations

import hashlib
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .distributed import all_gather_object
from .records import QARecord
from .report import compare_rows, pope_rows
from .text import answers_match, check_parser, normalize_answer, parse_yes_no


def example_key(record: QARecord) -> int:
    """A stable 63-bit id of an example (benchmark, question id, image, source record) for de-duplicating gathered
    results. The source ("file:line") is part of it, so two records that share a question id are both kept."""
    text = f"{record.benchmark}\0{record.question_id}\0{record.image_id}\0{record.source}"
    digest = hashlib.blake2b(text.encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


@dataclass
class Outcome:
    """One evaluated example: what each system answered and whether it was right."""

    key: int
    benchmark: str
    question_id: str
    level: str | None
    group: str
    answer: str
    baseline: str
    modulated: str | None
    baseline_correct: bool
    modulated_correct: bool | None
    image_id: str = ""  # the cluster of image-level statistics
    source: str = ""


def is_correct(record: QARecord, pred: str, parser: str = "vseam") -> bool:
    """POPE replies are read as yes/no with `parser` (as the POPE metrics read them); other answers exact-match."""
    if record.benchmark == "pope":
        return parse_yes_no(pred, parser) == normalize_answer(record.answer)
    return answers_match(pred, record.answer, parser)


def make_outcomes(
    records: Sequence[QARecord],
    baseline: Sequence[str],
    modulated: Sequence[str] | None,
    parser: str = "vseam",
) -> list[Outcome]:
    check_parser(parser)
    out = []
    for i, r in enumerate(records):
        mod = None if modulated is None else modulated[i]
        out.append(
            Outcome(
                key=example_key(r),
                benchmark=r.benchmark,
                question_id=r.question_id,
                level=r.level,
                group=r.group,
                answer=r.answer,
                baseline=baseline[i],
                modulated=mod,
                baseline_correct=is_correct(r, baseline[i], parser),
                modulated_correct=None if mod is None else is_correct(r, mod, parser),
                image_id=r.image_id,
                source=r.source,
            )
        )
    return out


def gather_outcomes(local: list[Outcome]) -> list[Outcome]:
    """All ranks' outcomes (every rank gets the union), de-duplicated by key and sorted."""
    parts = all_gather_object([asdict(o) for o in local])
    merged = [Outcome(**d) for part in parts for d in part]
    unique = {o.key: o for o in merged}
    out = [unique[k] for k in sorted(unique)]
    warn_duplicate_ids(out)
    return out


def warn_duplicate_ids(outcomes: Sequence[Outcome]) -> list[tuple[str, str, list[str]]]:
    """Warn about question ids shared by different records (all of them are evaluated and counted); returns
    ``(benchmark, question_id, sources)`` for each."""
    by_id: dict[tuple[str, str], list[str]] = defaultdict(list)
    for o in outcomes:
        by_id[(o.benchmark, o.question_id)].append(o.source or "?")
    dups = [(b, q, sorted(s)) for (b, q), s in by_id.items() if len(s) > 1]
    if dups:
        b, q, sources = dups[0]
        warnings.warn(
            f"{len(dups)} question id(s) appear in more than one record; every record is evaluated and "
            f"counted separately. First: {b} question id {q!r} at {' and '.join(sources)}",
            stacklevel=2,
        )
    return dups


def outcome_rows(
    outcomes: Iterable[Outcome],
    split: str = "test",
    seed: int = 0,
    parser: str = "vseam",
    statistics: str = "image_clustered",
) -> list[dict[str, Any]]:
    """Report rows per benchmark: POPE metrics per POPE split, else accuracy overall + per category (+ per level).

    Rows count the images behind their questions and, by default, use image-clustered statistics (`report`)."""
    by_bench: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_bench[o.benchmark].append(o)
    rows: list[dict[str, Any]] = []
    for bench in sorted(by_bench):
        os_ = by_bench[bench]
        has_mod = os_[0].modulated is not None
        if bench == "pope":
            rows += pope_rows(
                [o.answer for o in os_],
                [o.baseline for o in os_],
                [o.modulated for o in os_] if has_mod else None,
                splits=[o.group for o in os_],
                benchmark=bench,
                seed=seed,
                parser=parser,
                images=[o.image_id for o in os_],
                statistics=statistics,
            )
            continue
        base = [o.baseline_correct for o in os_]
        mod = [o.modulated_correct for o in os_] if has_mod else None
        images = [o.image_id for o in os_]
        rows += compare_rows(
            bench,
            split,
            base,
            mod,
            groups=[o.group for o in os_],
            seed=seed,
            images=images,
            statistics=statistics,
        )
        levels = [o.level for o in os_]
        if all(levels) and len(set(levels)) > 1:
            rows += compare_rows(
                bench,
                split,
                base,
                mod,
                groups=[f"level={lv}" for lv in levels],
                seed=seed,
                images=images,
                statistics=statistics,
            )[1:]
    return rows
