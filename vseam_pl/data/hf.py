"""Hugging Face datasets in the lmms-eval schemas, streamed (``load_dataset(..., streaming=True)``).

* ``lmms-lab/POPE``: columns ``question_id, question, answer, image_source, image, category`` (one row per question,
  image embedded; ``category`` is the POPE split).
* ``lmms-lab/GQA``: a ``*_instructions`` config (``id, imageId, question, answer, fullAnswer, types, ...``) and a
  ``*_images`` config (``id, image``) joined on ``imageId``. The join happens per worker after sharding: the worker
  keeps its own records (text only) keyed by image id, then streams the images config once and emits each record
  when its image passes by. Records therefore come out in image order, and a worker holds its share of question
  records (not images) in memory.

Images are read with ``Image(decode=False)`` so decoding happens in `images.decode_image`, inside DataLoader
workers, with errors that name the record. Both work offline on a local copy (a folder with parquet files and a
README ``configs:`` block, as on the Hub); `dataset` is then the folder path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..records import YES_NO, Example, QARecord
from .images import decode_image
from .readers import ID, BadRecordError, OnBad, gqa_record, handle_bad, require
from .sources import RecordSource, Row, Skipped


def load_streaming(dataset: str, config: str | None, split: str, drop: Iterable[str] = ()) -> Any:
    """A streaming `datasets.IterableDataset`, images left undecoded (and columns in `drop` removed)."""
    import datasets

    ds = datasets.load_dataset(dataset, config, split=split, streaming=True)
    if "image" in (ds.column_names or []):
        ds = ds.cast_column("image", datasets.Image(decode=False))  # first, or removing columns decodes them
    drop = [c for c in drop if c in (ds.column_names or [])]
    return ds.remove_columns(drop) if drop else ds


def iter_rows(ds: Any, batch_size: int = 256) -> Iterator[dict[str, Any]]:
    """Every row of a streaming dataset, in order, in any process.

    Plain ``iter(ds)`` inside a DataLoader worker silently yields only that worker's share of the parquet shards;
    our `QAStream` shards rows itself (so filtering, subsampling and DDP drop_last see one global order), hence the
    batched ``ds.iter`` which does not look at the worker."""
    for batch in ds.iter(batch_size=batch_size):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns), strict=True):
            yield dict(zip(columns, values, strict=True))


def pope_row_record(row: dict[str, Any], source: str) -> QARecord:
    """One lmms-eval POPE row as a `QARecord` (same ids and fields as the JSON Lines reader produces)."""
    category = str(require(row, "category", source)).strip().lower()
    raw_qid = require(row, "question_id", source, ID)
    answer = str(require(row, "answer", source)).strip().lower()
    if answer not in YES_NO:
        raise BadRecordError(source, f"field 'answer' must be 'yes' or 'no', got {answer!r}")
    image_id = str(require(row, "image_source", source, ID))
    extra = {
        k: v
        for k, v in row.items()
        if k not in ("question_id", "question", "answer", "image_source", "image", "category")
    }
    extra["raw_question_id"] = raw_qid
    return QARecord(
        benchmark="pope",
        question_id=f"{category}-{raw_qid}",
        question=str(require(row, "question", source)),
        answer=answer,
        image_id=image_id,
        category=category,
        candidates=YES_NO,
        source=source,
        extra=extra,
    )


@dataclass(frozen=True)
class HFPopeSource(RecordSource):
    dataset: str = "lmms-lab/POPE"
    config: str | None = None
    split: str = "test"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.dataset}[{self.config or 'default'}/{self.split}]"

    def records(self, on_bad: OnBad = None, images: bool = True) -> Iterator[Row]:
        ds = load_streaming(self.dataset, self.config, self.split, drop=() if images else ("image",))
        for i, row in enumerate(iter_rows(ds)):
            source = f"{self.name}:{i}"
            try:
                record = pope_row_record(row, source)
            except BadRecordError as e:
                handle_bad(e, on_bad)
                continue
            yield record, row.get("image") if images else None


@dataclass(frozen=True)
class HFGQASource(RecordSource):
    dataset: str = "lmms-lab/GQA"
    config: str = "testdev_balanced_instructions"
    images_config: str | None = None  # default: `config` with "_instructions" -> "_images"
    split: str = "testdev"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.dataset}[{self.config}/{self.split}]"

    @property
    def image_config(self) -> str:
        return self.images_config or self.config.replace("_instructions", "_images")

    def records(self, on_bad: OnBad = None, images: bool = True) -> Iterator[Row]:
        for i, row in enumerate(iter_rows(load_streaming(self.dataset, self.config, self.split))):
            source = f"{self.name}:{i}"
            try:
                yield gqa_record(row, source, category=None, image_dir=None), None
            except BadRecordError as e:
                handle_bad(e, on_bad)

    def attach(
        self, rows: Iterable[Row], on_bad: OnBad = None, max_pixels: int | None = None
    ) -> Iterator[Example | Skipped]:
        """Join this worker's records with the images config on ``imageId`` (see module docstring)."""
        pending: dict[str, list[QARecord]] = {}
        for record, _ in rows:
            pending.setdefault(record.image_id, []).append(record)
        if not pending:
            return
        images = load_streaming(self.dataset, self.image_config, self.split)
        for row in iter_rows(images):
            records = pending.pop(str(row.get("id")), None)
            for record in records or ():
                try:
                    yield Example(record, decode_image(record, row.get("image"), max_pixels))
                except BadRecordError as e:
                    handle_bad(e, on_bad)
                    yield Skipped(e.source, e.reason)
            if not pending:
                return
        for records in pending.values():
            for record in records:
                e = BadRecordError(
                    record.source,
                    f"image {record.image_id!r} not found in "
                    f"{self.dataset}[{self.image_config}/{self.split}]",
                )
                handle_bad(e, on_bad)
                yield Skipped(e.source, e.reason)
