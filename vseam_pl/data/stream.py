"""The streaming dataset: one split of one source, sharded over DDP ranks and DataLoader workers.

Order of operations for each pass (identical on every rank and worker, so shards line up):
``source.records`` -> split (by image hash, or the whole source) -> selection filter (levels, categories, ...) ->
stratified subsample (train only) -> ``limit`` -> global index ``i``. Rank ``r`` of ``R`` keeps ``i % R == r``; its
``j``-th row (``j = i // R``) goes to worker ``j % W``. For the train split the stream stops at
``(total // R) * R`` rows, so every rank yields the same number of items (DistributedSampler's drop_last) and DDP
steps cannot hang. Only then are images decoded, in the worker. A record that fails in skip mode is yielded as a
`Skipped` item in its slot, which keeps the per-rank item counts equal too.
"""

from __future__ import annotations

import itertools
import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..records import Example, QARecord
from .readers import BadRecordError, OnBad
from .sources import RecordSource, Row, Skipped, round_robin
from .splits import split_of


@dataclass(frozen=True)
class RecordFilter:
    """Selection by level / category (case-insensitive); ``None`` keeps everything."""

    levels: frozenset[str] | None = None
    categories: frozenset[str] | None = None

    @classmethod
    def of(cls, levels: list[str] | None = None, categories: list[str] | None = None) -> RecordFilter:
        low = lambda xs: frozenset(x.lower() for x in xs) if xs else None  # noqa: E731
        return cls(low(levels), low(categories))

    def __call__(self, record: QARecord) -> bool:
        if self.levels is not None and (record.level or "").lower() not in self.levels:
            return False
        return self.categories is None or (record.category or "").lower() in self.categories


@dataclass(frozen=True)
class SplitPlan:
    """Which rows of `source` form one split (see module docstring); picklable for workers."""

    source: RecordSource
    split: str  # "train" | "val" | "test"
    ratios: tuple[float, float, float] | None = (
        None  # hash split by image; None: the whole source is this split
    )
    salt: str = "vseam"
    keep: RecordFilter = field(default_factory=RecordFilter)
    selected: frozenset[str] | None = None  # record sources kept by the stratified subsample
    limit: int | None = None

    def in_split(self, record: QARecord) -> bool:
        return (
            self.ratios is None or split_of(record.image_id, self.ratios, self.salt) == self.split
        ) and self.keep(record)

    def rows(self, on_bad: OnBad = None, images: bool = True) -> Iterator[Row]:
        n = 0
        if self.limit is not None and self.limit <= 0:
            return
        for record, payload in self.source.records(on_bad, images=images):
            if not self.in_split(record) or (
                self.selected is not None and record.source not in self.selected
            ):
                continue
            yield record, payload
            n += 1
            if self.limit is not None and n >= self.limit:
                return


def worker_slot() -> tuple[int, int]:
    """(this DataLoader worker's id, the number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def _ignore(_: BadRecordError) -> None:
    """Record-level problems were already reported once by the DataModule's setup scan."""


class QAStream(IterableDataset):
    """`Example`s of one split, sharded by rank and worker (see module docstring)."""

    def __init__(
        self,
        plan: SplitPlan,
        rank: int = 0,
        world_size: int = 1,
        total: int | None = None,
        on_bad_record: str = "error",
        shuffle_buffer: int = 0,
        seed: int = 0,
        max_pixels: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.plan, self.rank, self.world_size = plan, rank, world_size
        self.total = total  # train: the split's row count, enabling drop_last across ranks
        self.on_bad_record = on_bad_record
        self.max_pixels = max_pixels  # image pixel limit (None: `images.max_pixels_setting`'s default)
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0
        self.skip = (0, 0)  # (batches, batch_size) dropped as rows at the start of the next pass

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_batches(self, batches: int, batch_size: int) -> None:
        """Drop the first `batches` batches of the next pass as rows, before any image is decoded (a resumed pass).

        A DataLoader hands batch ``j`` to worker ``j % W`` while every worker still has rows, so worker ``w`` drops
        its ``len(range(w, batches, W))`` first batches; callers keep `batches` to that round-robin stretch."""
        self.skip = (batches, batch_size)

    def shard_rows(self) -> Iterator[Row]:
        worker, workers = worker_slot()
        stop = None if self.total is None else (self.total // self.world_size) * self.world_size
        skip = _ignore if self.on_bad_record == "skip" else None
        for i, row in enumerate(self.plan.rows(skip)):
            if stop is not None and i >= stop:
                return
            if i % self.world_size == self.rank and (i // self.world_size) % workers == worker:
                yield row

    def _shuffled(self, rows: Iterator[Row]) -> Iterator[Row]:
        if self.shuffle_buffer <= 1:
            yield from rows
            return
        rng = random.Random(f"{self.seed}:{self.epoch}:{self.rank}:{worker_slot()[0]}")
        buf: list[Row] = []
        for row in rows:
            if len(buf) < self.shuffle_buffer:
                buf.append(row)
                continue
            k = rng.randrange(len(buf))
            yield buf[k]
            buf[k] = row
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[Example | Skipped]:
        on_bad = _ignore if self.on_bad_record == "skip" else None
        rows = self._shuffled(self.shard_rows())
        batches, size = self.skip
        if batches:
            worker, workers = worker_slot()
            rows = itertools.islice(rows, len(range(worker, batches, workers)) * size, None)
        yield from self.plan.source.attach(rows, on_bad, self.max_pixels)


@dataclass
class Batch:
    """What the default collate returns: the examples, and the records skipped while building them (source,
    reason), so skips counted in worker processes reach the main process."""

    examples: list[Example]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def records(self) -> list[QARecord]:
        return [e.record for e in self.examples]

    def to(self, *args: Any, **kwargs: Any) -> Batch:
        """No-op device move. Lightning moves batches with `apply_to_collection`, which would otherwise recurse
        into the (frozen) `QARecord` dataclasses and fail; PIL images stay on the CPU for the model's processor."""
        return self


@dataclass(frozen=True)
class Collate:
    """Split stream items into examples and skips; ``fn`` (optional) replaces the `Batch` with its own output.

    With ``fn``, skips are attached as ``out["skipped"]`` (dict) or ``out.skipped`` when possible, else warned about
    from the worker (never silent).
    """

    fn: Callable[[list[Example]], Any] | None = None

    def __call__(self, items: list[Example | Skipped]) -> Any:
        examples = [x for x in items if isinstance(x, Example)]
        skipped = [(x.source, x.reason) for x in items if isinstance(x, Skipped)]
        if self.fn is None:
            return Batch(examples, skipped)
        out = self.fn(examples)
        if skipped:
            if isinstance(out, dict):
                out["skipped"] = skipped
            else:
                try:
                    out.skipped = skipped
                except AttributeError:
                    warnings.warn(f"skipped {len(skipped)} bad records: {skipped[:3]}", stacklevel=2)
        return out


def skips_of(batch: Any) -> list[tuple[str, str]]:
    if isinstance(batch, dict):
        return list(batch.get("skipped") or [])
    return list(getattr(batch, "skipped", None) or [])


class SkipLog:
    """Main-process record of skipped records: each record once (by source), however many passes met it, in order;
    warned about once per pass with the first sources."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[tuple[str, str]] = []
        self._sources: set[str] = set()

    def add(self, skips: list[tuple[str, str]], where: str) -> None:
        if not skips:
            return
        for source, reason in skips:
            if source not in self._sources:
                self._sources.add(source)
                self.entries.append((source, reason))
        first = "; ".join(f"{s}: {r}" for s, r in skips[:3])
        warnings.warn(
            f"{self.name}: skipped {len(skips)} bad record(s) {where} (on_bad_record='skip'); first: {first}",
            stacklevel=3,
        )


#: Where a training pass stands: (epoch, batches trained on in it, whether the pass ended).
PassProgress = tuple[int, int, bool]


def trainer_pass_progress(trainer: Any) -> PassProgress | None:
    """The exact resume point from a Lightning trainer's own loop counters (None outside `fit`).

    The loader cannot count this itself: Lightning's fetcher draws one batch ahead of the one being trained on, and
    `limit_train_batches` ends an epoch before the stream does."""
    if trainer is None or getattr(trainer.state, "fn", None) != "fit":
        return None
    loop = trainer.fit_loop.epoch_loop
    ended = loop.batch_progress.is_last_batch or loop._num_ready_batches_reached()
    return trainer.current_epoch, loop.batch_progress.current.processed, bool(ended)


class StreamLoader(DataLoader):
    """A DataLoader that advances the stream's epoch (shuffle seed), reports skips at the end of each pass, and can
    resume in the middle of a pass.

    `state_dict()` / `load_state_dict()` (the interface Lightning saves in checkpoints) hold the pass's epoch, the
    batches already trained on and whether the pass ended; a loaded mid-pass state replays that pass with the same
    shuffle seed and drops the batches already trained on. A `QAStream` drops them as rows, before images are
    decoded, except the last `num_workers` batches (near a pass's end a worker may run dry and the round-robin order
    shifts), which are loaded and dropped like those of any other dataset. `progress` gives the exact counts from
    the trainer (:func:`trainer_pass_progress`); without it the loader's own count of batches handed out is used.
    With it, each pass also takes its epoch (the shuffle seed) from the trainer, because Lightning does not call
    `load_state_dict` when resuming from a checkpoint written after its epoch ended.
    """

    def __init__(
        self,
        dataset: IterableDataset,
        *args: Any,
        skip_log: SkipLog | None = None,
        progress: Callable[[], PassProgress | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, *args, **kwargs)
        self.skip_log = skip_log
        self.progress = progress
        self._epoch = 0  # epoch of the next pass
        self._skip = 0  # batches to drop at the start of the next pass (after a mid-pass resume)
        self._pass: PassProgress = (0, 0, True)  # the latest pass: epoch, batches handed out, ended

    def state_dict(self) -> dict[str, Any]:
        epoch, batches, ended = (self.progress() if self.progress else None) or self._pass
        return {"epoch": epoch, "batches": batches, "ended": ended}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            epoch, batches, ended = int(state["epoch"]), int(state["batches"]), bool(state["ended"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"StreamLoader state must hold epoch, batches and ended; got {state!r}") from e
        self._epoch, self._skip = (epoch + 1, 0) if ended else (epoch, batches)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        epoch, skip = self._epoch, self._skip
        now = self.progress() if self.progress else None
        if now is not None and now[0] + now[2] != epoch:
            # Lightning does not call load_state_dict when the checkpoint's epoch had ended (an epoch-end
            # checkpoint): the trainer's pass to start (the next one once its loop counters say the current one
            # ended) is then the truth, from its first batch.
            epoch, skip = now[0] + now[2], 0
        self._epoch, self._skip = epoch + 1, 0
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        as_rows = 0
        if hasattr(self.dataset, "skip_batches") and self.batch_size:
            workers = self.num_workers
            as_rows = max(0, skip - workers) // workers * workers if workers else skip
            self.dataset.skip_batches(as_rows, self.batch_size)
        self._pass = (epoch, skip, False)
        seen: list[tuple[str, str]] = []
        try:
            for i, batch in enumerate(super().__iter__(), start=as_rows):
                seen.extend(skips_of(batch))
                if i < skip:
                    continue
                self._pass = (epoch, i + 1, False)
                yield batch
            self._pass = (epoch, self._pass[1], True)
        finally:
            if self.skip_log is not None:
                self.skip_log.add(seen, "while loading images this pass")


def init_worker(_: int) -> None:
    """Keep PIL/torch from oversubscribing the shared CPU cores inside workers."""
    torch.set_num_threads(1)


class InterleavedStream(IterableDataset):
    """Several streams alternated item by item (mixed-benchmark training batches); each keeps its own sharding,
    so per-rank counts stay equal."""

    def __init__(self, streams: list[QAStream]) -> None:
        super().__init__()
        self.streams = streams

    def set_epoch(self, epoch: int) -> None:
        for s in self.streams:
            s.set_epoch(epoch)

    def __iter__(self) -> Iterator[Example | Skipped]:
        yield from round_robin([iter(s) for s in self.streams])
