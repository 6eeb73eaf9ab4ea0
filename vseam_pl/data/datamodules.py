"""LightningDataModules for GQA, POPE and COCO-QA (local files or HF datasets), and several at once.

Data root layout (the V-SEAM release, or one split of the synthetic world)::

    ROOT/GQA/*.json  ROOT/POPE/*.json  ROOT/COCOQA/*.csv  ROOT/images/...

If ROOT has ``train/ val/ test/`` subfolders each shaped like that (``python -m vseam_pl.synth --out ROOT``), they
are the splits (``splitting="folders"``, chosen by ``"auto"``). Otherwise one set of files is split by image
(``"hash"``, see `vseam_pl.data.splits` for the rule), or taken whole for every stage (``"all"``, evaluation only).

`setup` makes one cheap pass over the questions (no images): it reports bad records once, counts each split (an
empty split is an error here, not a 0% accuracy later), draws the stratified ``fraction`` of the training split, and
fixes the train count used to give every DDP rank the same number of batches. Loaders then stream the files again
and decode images in worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from jsonargparse.typing import PositiveInt
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader, rank_zero_warn

from ..distributed import dist_info
from ..levels import CATEGORY_LEVEL
from ..records import Example, QARecord
from .hf import HFGQASource, HFPopeSource
from .readers import DEFAULT_COCOQA_PATTERN, BadRecordError, cocoqa_type_of, pope_split_of
from .sources import FileSource, RecordSource
from .splits import SPLITS, check_ratios, stratified_sample
from .stream import (
    Collate,
    InterleavedStream,
    QAStream,
    RecordFilter,
    SkipLog,
    SplitPlan,
    StreamLoader,
    init_worker,
    trainer_pass_progress,
)

Splitting = Literal["auto", "folders", "hash", "all"]
OnBadRecord = Literal["error", "skip"]
_STAGE_SPLITS: dict[str | None, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
    None: SPLITS,
}


class QADataModule(LightningDataModule):
    """Common machinery; use `GQADataModule`, `POPEDataModule` or `COCOQADataModule`.

    Args:
        root: data root (see module docstring); not needed with ``hf_dataset``.
        image_dir: image folder; relative paths are taken inside each split root (default ``images``).
        hf_dataset: HF dataset id or local folder in the lmms-eval schema, read instead of ``root``.
        hf_config: its config; hf_split: its split (defaults per benchmark).
        batch_size, num_workers: DataLoader settings (images are decoded in the workers).
        fraction: stratified (category x answer) subsample of the training split; val/test are never subsampled.
        seed: seeds the subsample and the training shuffle buffer.
        split_ratios, split_salt: the by-image hash split (``splitting="hash"``).
        splitting: "auto" | "folders" | "hash" | "all" (whole source for every stage).
        on_bad_record: "error" raises naming file, record and field; "skip" leaves the record out, counts it in
            ``skipped`` and warns.
        limit: at most this many records per split (quick runs), or per split name (``{train: 9600, test: 2048}``;
            a split left out is whole). A limit that cuts the test split warns: the report is then not the split.
        shuffle_buffer: size of the training shuffle buffer (0: file order, round-robin over files).
        rank, world_size: DDP shard of this process; default from ``torch.distributed`` when initialised.
        collate_fn: replaces the default `Batch` collate; receives ``list[Example]``.
        max_image_pixels: refuse images larger than this (decompression bombs; a bad record, skippable); default
            ``$VSEAM_MAX_IMAGE_PIXELS`` or PIL's ~179 MP; 0: no limit.
    """

    benchmark: ClassVar[str] = ""
    folder: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()
    default_hf_split: ClassVar[str] = "test"

    def __init__(
        self,
        root: str | None = None,
        image_dir: str | None = None,
        hf_dataset: str | None = None,
        hf_config: str | None = None,
        hf_split: str | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        fraction: float = 1.0,
        seed: int = 0,
        split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
        split_salt: str = "vseam",
        splitting: Splitting = "auto",
        on_bad_record: OnBadRecord = "error",
        limit: PositiveInt | dict[str, PositiveInt] | None = None,
        shuffle_buffer: int = 1000,
        rank: int | None = None,
        world_size: int | None = None,
        collate_fn: Callable[[list[Example]], Any] | None = None,
        max_image_pixels: int | None = None,
    ) -> None:
        super().__init__()
        if root is None and hf_dataset is None:
            raise ValueError(f"{type(self).__name__}: give a data root or hf_dataset")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        for split, n in limit.items() if isinstance(limit, dict) else [(None, limit)]:
            if split is not None and split not in SPLITS:
                raise ValueError(f"limit: unknown split {split!r}; expected some of {list(SPLITS)}")
            if n is not None and n < 1:
                where = f" for {split}" if split else ""
                raise ValueError(
                    f"limit must be a positive number of records (or None for all), got {n}{where}"
                )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of questions, got {batch_size!r}")
        if max_image_pixels is not None and max_image_pixels < 0:
            raise ValueError(f"max_image_pixels must be >= 0 (0: no limit), got {max_image_pixels}")
        if on_bad_record not in ("error", "skip"):
            raise ValueError(f"on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
        if splitting not in ("auto", "folders", "hash", "all"):
            raise ValueError(f"splitting must be auto/folders/hash/all, got {splitting!r}")
        self.root = Path(root) if root is not None else None
        self.image_dir = image_dir
        self.hf_dataset, self.hf_config, self.hf_split = (
            hf_dataset,
            hf_config,
            hf_split or self.default_hf_split,
        )
        self.batch_size, self.num_workers = batch_size, num_workers
        self.fraction, self.seed = fraction, seed
        self.split_ratios, self.split_salt = check_ratios(split_ratios), split_salt
        self.splitting: Splitting = splitting
        self.on_bad_record: OnBadRecord = on_bad_record
        self.limit, self.shuffle_buffer = limit, shuffle_buffer
        self.rank, self.world_size = rank, world_size
        self.collate_fn = collate_fn
        self.max_image_pixels = max_image_pixels
        self.counts: dict[str, int] = {}
        self._plans: dict[str, SplitPlan] = {}
        self._skips = SkipLog(self.benchmark)

    # ---- what subclasses define -------------------------------------------------------------------------------
    def record_filter(self) -> RecordFilter:
        return RecordFilter()

    def file_wanted(self, path: Path) -> bool:
        return True

    def hf_source(self) -> RecordSource:
        raise ValueError(f"{type(self).__name__} has no Hugging Face dataset schema")

    def file_source(self, files: tuple[str, ...], image_dir: str) -> RecordSource:
        return FileSource(self.benchmark, files, image_dir)

    # ---- sources and splits -----------------------------------------------------------------------------------
    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Every (source, reason) skipped so far: bad records found by `setup`, bad images seen by the loaders."""
        return self._skips.entries

    def mode(self) -> Splitting:
        if self.splitting == "all" or self.hf_dataset is not None:
            return "all" if self.splitting == "all" else "hash"
        has_folders = all((self.root / s).is_dir() for s in SPLITS)
        if self.splitting == "folders" and not has_folders:
            raise FileNotFoundError(f"splitting='folders' needs {self.root}/train, /val and /test")
        return (
            "folders"
            if (self.splitting == "folders" or (self.splitting == "auto" and has_folders))
            else "hash"
        )

    def _source_at(self, split_root: Path) -> RecordSource:
        folder = split_root / self.folder
        files = tuple(
            str(p)
            for p in sorted(folder.glob("*"))
            if p.suffix.lower() in self.suffixes and p.is_file() and self.file_wanted(p)
        )
        if not files:
            raise FileNotFoundError(
                f"{self.benchmark}: no question files ({'/'.join(self.suffixes)}) matching the "
                f"selection in {folder}"
            )
        image_dir = Path(self.image_dir) if self.image_dir is not None else Path("images")
        return self.file_source(files, str(image_dir if image_dir.is_absolute() else split_root / image_dir))

    def split_limit(self, split: str) -> int | None:
        """The record limit of one split (None: the whole split)."""
        return self.limit.get(split) if isinstance(self.limit, dict) else self.limit

    def base_plan(self, split: str) -> SplitPlan:
        """The split before subsampling and limit."""
        mode = self.mode()
        if self.hf_dataset is not None:
            source = self.hf_source()
        else:
            source = self._source_at(self.root / split if mode == "folders" else self.root)
        ratios = self.split_ratios if mode == "hash" else None
        return SplitPlan(source, split, ratios, self.split_salt, self.record_filter())

    def setup(self, stage: str | None = None) -> None:
        todo = [s for s in _STAGE_SPLITS.get(stage, SPLITS) if s not in self._plans]
        if not todo:
            return
        plans = {s: self.base_plan(s) for s in todo}
        counts: dict[str, int] = dict.fromkeys(todo, 0)
        strata: list[tuple[str, tuple[str | None, str]]] = []
        bad: dict[str, BadRecordError] = {}
        on_bad = None if self.on_bad_record == "error" else (lambda e: bad.setdefault(e.source, e))
        groups: dict[RecordSource, list[SplitPlan]] = {}
        for plan in plans.values():  # one pass per distinct source (hash mode: train/val/test share one)
            groups.setdefault(plan.source, []).append(plan)
        for source, group in groups.items():
            for record, _ in source.records(on_bad, images=False):
                for plan in group:
                    if plan.in_split(record):
                        counts[plan.split] += 1
                        if plan.split == "train" and self.fraction < 1:
                            strata.append((record.source, (record.category, record.answer)))
        self._skips.add([(e.source, e.reason) for e in bad.values()], "while reading questions")
        for split, plan in plans.items():
            selected = None
            if split == "train" and self.fraction < 1:
                selected = stratified_sample(strata, self.fraction, self.seed)
                counts[split] = len(selected)
            limit = self.split_limit(split)
            if limit is not None and counts[split] > limit:
                if split == "test":
                    rank_zero_warn(
                        f"{self.benchmark}: data limit {limit} keeps {limit} of the test split's {counts[split]} "
                        "questions; set the limit to null (or leave `test` out of it) to test every question"
                    )
                counts[split] = limit
            if counts[split] == 0:
                raise ValueError(
                    f"{self.benchmark}: the {split} split is empty after filtering ({plan.source.name}, "
                    f"splitting={self.mode()!r}, filter={plan.keep}, fraction={self.fraction}, limit={limit})"
                )
            self._plans[split] = replace(plan, selected=selected, limit=limit)
            self.counts[split] = counts[split]

    def plan(self, split: str) -> SplitPlan:
        if split not in self._plans:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
            if split not in self._plans:  # "fit" prepared train+val; make sure the asked one exists
                self.setup(None)
        return self._plans[split]

    def iter_records(self, split: str = "test") -> Iterator[QARecord]:
        """This split's records, without images (for counting and reports)."""
        on_bad = (lambda e: None) if self.on_bad_record == "skip" else None
        for record, _ in self.plan(split).rows(on_bad, images=False):
            yield record

    # ---- loaders ----------------------------------------------------------------------------------------------
    def dist(self) -> tuple[int, int]:
        """(rank, world_size): explicit arguments, else the initialised process group, else single process."""
        if self.world_size is not None:
            return self.rank or 0, self.world_size
        return dist_info()

    def stream(self, split: str) -> QAStream:
        rank, world = self.dist()
        return QAStream(
            self.plan(split),
            rank,
            world,
            total=self.counts[split] if split == "train" else None,
            on_bad_record=self.on_bad_record,
            shuffle_buffer=self.shuffle_buffer if split == "train" else 0,
            seed=self.seed,
            max_pixels=self.max_image_pixels,
        )

    def loader(self, dataset: Any, train: bool = False, rows: int | None = None) -> StreamLoader:
        """A loader of `dataset`; its batch size is capped at the split's `rows` (the DataLoader allocates a list of
        `batch_size` indices per batch: `--data.batch_size 1000000000` grew past 13 GB for 8 questions)."""
        progress = (lambda: trainer_pass_progress(self.trainer)) if train else None
        return StreamLoader(
            dataset,
            batch_size=capped_batch_size(self.batch_size, rows),
            num_workers=self.num_workers,
            collate_fn=Collate(self.collate_fn),
            worker_init_fn=init_worker,
            skip_log=self._skips,
            progress=progress,
        )

    def train_dataloader(self) -> StreamLoader:
        return self.loader(self.stream("train"), train=True, rows=self.counts.get("train"))

    def val_dataloader(self) -> StreamLoader:
        return self.loader(self.stream("val"), rows=self.counts.get("val"))

    def test_dataloader(self) -> StreamLoader:
        return self.loader(self.stream("test"), rows=self.counts.get("test"))

    def predict_dataloader(self) -> StreamLoader:
        return self.loader(self.stream("test"), rows=self.counts.get("test"))


def capped_batch_size(batch_size: int, rows: int | None) -> int:
    """`batch_size`, at most `rows` (the number of questions in the split, when known)."""
    return max(1, min(batch_size, rows)) if rows else batch_size


class GQADataModule(QADataModule):
    """GQA questions (V-SEAM category files or official GQA files; or lmms-lab/GQA).

    Args:
        categories: keep these categories (file stems, e.g. ``["Animal", "Spatial"]``; case-insensitive).
        levels: keep these levels (object/attribute/relation).
        hf_images_config: the lmms-eval ``*_images`` config (default: ``hf_config`` with ``_instructions`` ->
            ``_images``).
        **kwargs: see `QADataModule`.
    """

    benchmark = "gqa"
    folder = "GQA"
    suffixes = (".json",)
    default_hf_split = "testdev"

    def __init__(
        self,
        categories: list[str] | None = None,
        levels: list[str] | None = None,
        hf_images_config: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.categories, self.levels, self.hf_images_config = categories, levels, hf_images_config

    def record_filter(self) -> RecordFilter:
        return RecordFilter.of(self.levels, self.categories)

    def file_wanted(self, path: Path) -> bool:
        stem = path.stem
        if "scenegraph" in stem.lower().replace("_", ""):
            return False  # GQA scene graphs live beside the questions but are not questions
        if self.categories and stem.lower() not in {c.lower() for c in self.categories}:
            return False
        level = next((lv for c, lv in CATEGORY_LEVEL.items() if c.lower() == stem.lower()), None)
        return not (self.levels and level is not None and level not in self.levels)

    def hf_source(self) -> RecordSource:
        return HFGQASource(
            self.hf_dataset,
            self.hf_config or "testdev_balanced_instructions",
            self.hf_images_config,
            self.hf_split,
        )


class POPEDataModule(QADataModule):
    """POPE (JSON Lines files with COCO images; or lmms-lab/POPE).

    Args:
        splits: keep these POPE splits (random/popular/adversarial).
        **kwargs: see `QADataModule`.
    """

    benchmark = "pope"
    folder = "POPE"
    suffixes = (".json", ".jsonl")

    def __init__(self, splits: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.splits = splits

    def record_filter(self) -> RecordFilter:
        return RecordFilter.of(categories=self.splits)

    def file_wanted(self, path: Path) -> bool:
        return not self.splits or pope_split_of(path) in {s.lower() for s in self.splits}

    def hf_source(self) -> RecordSource:
        return HFPopeSource(self.hf_dataset, self.hf_config, self.hf_split)


class COCOQADataModule(QADataModule):
    """COCO-QA (CSV files with COCO train2014 images).

    Args:
        types: keep these question types (color/count/location).
        image_pattern: image file name from the COCO id, e.g. ``"COCO_train2014_{id:012d}.jpg"`` or ``"{id}.png"``.
        **kwargs: see `QADataModule`.
    """

    benchmark = "cocoqa"
    folder = "COCOQA"
    suffixes = (".csv",)

    def __init__(
        self, types: list[str] | None = None, image_pattern: str = DEFAULT_COCOQA_PATTERN, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.types, self.image_pattern = types, image_pattern

    def record_filter(self) -> RecordFilter:
        return RecordFilter.of(categories=self.types)

    def file_wanted(self, path: Path) -> bool:
        return not self.types or cocoqa_type_of(path) in {t.lower() for t in self.types}

    def file_source(self, files: tuple[str, ...], image_dir: str) -> RecordSource:
        return FileSource(self.benchmark, files, image_dir, self.image_pattern)


DATAMODULES: dict[str, type[QADataModule]] = {
    "gqa": GQADataModule,
    "pope": POPEDataModule,
    "cocoqa": COCOQADataModule,
}


class MultiBenchmarkDataModule(LightningDataModule):
    """Several benchmarks in one run.

    Training: ``train_mode="interleave"`` alternates the benchmarks example by example inside one loader (each batch
    is an ordinary `Batch`; records say their benchmark); the other modes return a Lightning `CombinedLoader` of
    ``{name: loader}`` (batches are dicts). Validation/test/predict: one loader per benchmark, in `names` order, so
    Lightning reports ``dataloader_idx``.

    Args:
        datamodules: the benchmarks, as a list or ``{name: datamodule}``.
        train_mode: "interleave" | "max_size_cycle" | "min_size" | "max_size".
        batch_size, num_workers, collate_fn: for the interleaved train loader (default: the first datamodule's).
    """

    def __init__(
        self,
        datamodules: list[QADataModule] | dict[str, QADataModule],
        train_mode: Literal["interleave", "max_size_cycle", "min_size", "max_size"] = "interleave",
        batch_size: int | None = None,
        num_workers: int | None = None,
        collate_fn: Callable[[list[Example]], Any] | None = None,
    ) -> None:
        super().__init__()
        if not datamodules:
            raise ValueError("MultiBenchmarkDataModule needs at least one datamodule")
        if isinstance(datamodules, dict):
            self.names, self.datamodules = list(datamodules), list(datamodules.values())
        else:
            self.datamodules = list(datamodules)
            self.names = [dm.benchmark for dm in self.datamodules]
            for i, name in enumerate(self.names):
                if self.names.count(name) > 1:
                    self.names[i] = f"{name}_{self.names[:i].count(name)}"
        self.train_mode = train_mode
        first = self.datamodules[0]
        self.batch_size = batch_size or first.batch_size
        self.num_workers = first.num_workers if num_workers is None else num_workers
        self.collate_fn = collate_fn or first.collate_fn

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [s for dm in self.datamodules for s in dm.skipped]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(dm.counts) for name, dm in zip(self.names, self.datamodules, strict=True)}

    def setup(self, stage: str | None = None) -> None:
        for dm in self.datamodules:
            dm.trainer = self.trainer
            dm.setup(stage)

    def train_dataloader(self) -> Any:
        if self.train_mode == "interleave":
            streams = InterleavedStream([dm.stream("train") for dm in self.datamodules])
            return StreamLoader(
                streams,
                batch_size=capped_batch_size(
                    self.batch_size, sum(dm.counts.get("train", 0) for dm in self.datamodules) or None
                ),
                num_workers=self.num_workers,
                collate_fn=Collate(self.collate_fn),
                worker_init_fn=init_worker,
                skip_log=self.datamodules[0]._skips,
                progress=lambda: trainer_pass_progress(self.trainer),
            )
        loaders = {n: dm.train_dataloader() for n, dm in zip(self.names, self.datamodules, strict=True)}
        return CombinedLoader(loaders, mode=self.train_mode)

    def val_dataloader(self) -> list[StreamLoader]:
        return [dm.val_dataloader() for dm in self.datamodules]

    def test_dataloader(self) -> list[StreamLoader]:
        return [dm.test_dataloader() for dm in self.datamodules]

    def predict_dataloader(self) -> list[StreamLoader]:
        return [dm.predict_dataloader() for dm in self.datamodules]


def build_datamodule(
    benchmarks: str | Sequence[str], per_benchmark: dict[str, dict[str, Any]] | None = None, **common: Any
) -> QADataModule | MultiBenchmarkDataModule:
    """One DataModule per benchmark name ("gqa", "pope", "cocoqa") from shared and per-benchmark arguments;
    several names give a `MultiBenchmarkDataModule`."""
    names = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    unknown = [n for n in names if n.lower() not in DATAMODULES]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; expected some of {sorted(DATAMODULES)}")
    per = per_benchmark or {}
    dms = {n.lower(): DATAMODULES[n.lower()](**{**common, **per.get(n.lower(), {})}) for n in names}
    return next(iter(dms.values())) if len(dms) == 1 else MultiBenchmarkDataModule(dms)


def iter_records(
    benchmark: str, root: str | None = None, split: str = "all", **kwargs: Any
) -> Iterator[QARecord]:
    """Stream a benchmark's `QARecord`s without images. ``split="all"`` reads every record of the files."""
    if split == "all":
        kwargs["splitting"] = "all"
        split = "test"
    dm = build_datamodule(benchmark, root=root, **kwargs)
    assert isinstance(dm, QADataModule)
    yield from dm.iter_records(split)
