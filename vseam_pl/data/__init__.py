"""Streaming benchmark data: GQA, POPE and COCO-QA as LightningDataModules yielding `Example`s in `Batch`es."""

from .datamodules import (
    COCOQADataModule,
    GQADataModule,
    MultiBenchmarkDataModule,
    POPEDataModule,
    QADataModule,
    build_datamodule,
    iter_records,
)
from .readers import BadRecordError
from .sources import Skipped
from .splits import split_of, stratified_sample
from .stream import Batch, Collate, QAStream, StreamLoader

__all__ = [
    "BadRecordError",
    "Batch",
    "COCOQADataModule",
    "Collate",
    "GQADataModule",
    "MultiBenchmarkDataModule",
    "POPEDataModule",
    "QADataModule",
    "QAStream",
    "Skipped",
    "StreamLoader",
    "build_datamodule",
    "iter_records",
    "split_of",
    "stratified_sample",
]
