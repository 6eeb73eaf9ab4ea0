"""Record sources: where a split's questions come from (local files or a HF dataset), as picklable objects.

A source is shipped to every DataLoader worker and re-read there, so it holds only paths and names. It has two
steps: `records` streams ``(QARecord, payload)`` rows without decoding any image (cheap: used for counting,
splitting and stratifying in the main process too), and `attach` turns this worker's rows into `Example`s (the
image decode, the expensive part, so it only happens after sharding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..records import Example, QARecord
from .images import decode_image
from .readers import (
    DEFAULT_COCOQA_PATTERN,
    BadRecordError,
    OnBad,
    handle_bad,
    read_cocoqa,
    read_gqa,
    read_pope,
)

Row = tuple[QARecord, Any]  # (record, embedded image payload or None)


class Skipped(NamedTuple):
    """A record left out in skip mode; yielded in place of its `Example` so every rank sees the same item count."""

    source: str
    reason: str


class RecordSource:
    """Interface of a record source (see module docstring)."""

    name: str = "source"

    def records(self, on_bad: OnBad = None, images: bool = True) -> Iterator[Row]:
        raise NotImplementedError

    def attach(
        self, rows: Iterable[Row], on_bad: OnBad = None, max_pixels: int | None = None
    ) -> Iterator[Example | Skipped]:
        """Decode each row's image; a bad image raises or (skip mode) yields `Skipped`."""
        for record, payload in rows:
            try:
                yield Example(record, decode_image(record, payload, max_pixels))
            except BadRecordError as e:
                handle_bad(e, on_bad)
                yield Skipped(e.source, e.reason)


def round_robin(iterators: list[Iterator[Any]]) -> Iterator[Any]:
    """Interleave iterators one item at a time, so a stream (or a `limit`) mixes categories instead of file order."""
    live = list(iterators)
    while live:
        for it in list(live):
            try:
                yield next(it)
            except StopIteration:
                live.remove(it)


_READERS: dict[str, Callable[..., Iterator[QARecord]]] = {
    "gqa": read_gqa,
    "pope": read_pope,
    "cocoqa": read_cocoqa,
}


@dataclass(frozen=True)
class FileSource(RecordSource):
    """Questions from benchmark files in the official formats (see `readers`), images from ``image_dir``."""

    benchmark: str
    files: tuple[str, ...]
    image_dir: str
    image_pattern: str = DEFAULT_COCOQA_PATTERN

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.benchmark} files under {Path(self.files[0]).parent if self.files else '?'}"

    def records(self, on_bad: OnBad = None, images: bool = True) -> Iterator[Row]:
        read = _READERS[self.benchmark]
        extra = {"pattern": self.image_pattern} if self.benchmark == "cocoqa" else {}
        streams = [read(f, self.image_dir, on_bad=on_bad, **extra) for f in self.files]
        for record in round_robin(streams):
            yield record, None
