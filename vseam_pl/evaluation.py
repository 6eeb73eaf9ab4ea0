"""Per-example outcomes of a paired evaluation: what the baseline and the modulated model answered on the *same*
example and whether each was right. `vseam_pl.metrics.PairedOutcomes` collects them (synchronised over DDP ranks by
torchmetrics) and `vseam_pl.report.outcome_rows` turns them into the `metrics.json` rows."""

from __future__ import annotations

import hashlib
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from .records import QARecord
from .text import answers_match, check_parser, normalize_answer, parse_yes_no

#: The two systems of a paired evaluation, in the order every report names them.
SYSTEMS: tuple[str, ...] = ("baseline", "modulated")


def example_key(record: QARecord) -> int:
    """A stable 63-bit id of an example (benchmark, question id, image, source record) for de-duplicating gathered
    results. The source ("file:line") is part of it, so two records that share a question id are both kept."""
    text = f"{record.benchmark}\0{record.question_id}\0{record.image_id}\0{record.source}"
    # surrogateescape: a file or folder name with bytes that are not UTF-8 reaches here as lone surrogates
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


@dataclass
class Outcome:
    """One evaluated example: what each system answered and whether it was right (None: system not evaluated;
    validation without the baseline has only the modulated model)."""

    key: int
    benchmark: str
    question_id: str
    level: str | None
    group: str
    answer: str
    baseline: str | None
    modulated: str | None
    baseline_correct: bool | None
    modulated_correct: bool | None
    image_id: str = ""  # the cluster of image-level statistics
    source: str = ""


def is_correct(record: QARecord, pred: str, parser: str = "vseam") -> bool:
    """POPE replies are read as yes/no with `parser` (as the POPE metrics read them); other answers exact-match."""
    if record.benchmark == "pope":
        return parse_yes_no(pred, parser) == normalize_answer(record.answer)
    return answers_match(pred, record.answer, parser, record.benchmark)


def make_outcomes(
    records: Sequence[QARecord],
    baseline: Sequence[str] | None,
    modulated: Sequence[str] | None,
    parser: str = "vseam",
) -> list[Outcome]:
    """One `Outcome` per record from each system's replies (None for a system that was not run)."""
    check_parser(parser)
    replies = {"baseline": baseline, "modulated": modulated}
    if baseline is None and modulated is None:
        raise ValueError("make_outcomes needs the replies of at least one system (baseline or modulated)")
    for name, preds in replies.items():
        if preds is not None and len(preds) != len(records):
            raise ValueError(f"got {len(preds)} {name} replies for {len(records)} records")
    out = []
    for i, r in enumerate(records):
        base = None if baseline is None else baseline[i]
        mod = None if modulated is None else modulated[i]
        out.append(
            Outcome(
                key=example_key(r),
                benchmark=r.benchmark,
                question_id=r.question_id,
                level=r.level,
                group=r.group,
                answer=r.answer,
                baseline=base,
                modulated=mod,
                baseline_correct=None if base is None else is_correct(r, base, parser),
                modulated_correct=None if mod is None else is_correct(r, mod, parser),
                image_id=r.image_id,
                source=r.source,
            )
        )
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


def benchmark_accuracy(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float]]:
    """``{benchmark: {system: accuracy}}`` for each system evaluated on that benchmark (validation's numbers)."""
    correct: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {s: [] for s in SYSTEMS})
    for o in outcomes:
        for system, ok in zip(SYSTEMS, (o.baseline_correct, o.modulated_correct), strict=True):
            if ok is not None:
                correct[o.benchmark][system].append(ok)
    return {
        bench: {system: sum(oks) / len(oks) for system, oks in by_system.items() if oks}
        for bench, by_system in sorted(correct.items())
    }
