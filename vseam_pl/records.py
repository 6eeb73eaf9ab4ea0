"""The record types every part of vseam-pl speaks: one question (`QARecord`), one loaded example, one image pair.

Readers (GQA/POPE/COCO-QA files, HF datasets, the synthetic world, edited-image manifests) all produce these, so
prompting, scoring, metrics and discovery never need to know where a question came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

YES_NO: tuple[str, ...] = ("yes", "no")


@dataclass(frozen=True)
class QARecord:
    """One benchmark question, before its image is decoded.

    `candidates` is the closed answer set (e.g. ``("yes", "no")``) scored by log-probability; ``None`` means an open
    question answered by greedy generation. `source` is ``"file:line"`` (or ``"dataset:index"``) for error messages.
    """

    benchmark: str  # "gqa" | "pope" | "cocoqa"
    question_id: str
    question: str
    answer: str
    image_id: str
    image_path: str | None = None  # resolved file; None when the image is embedded (HF datasets)
    level: str | None = None  # "object" | "attribute" | "relation" (GQA)
    category: str | None = None  # GQA category, POPE split, COCO-QA type
    candidates: tuple[str, ...] | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def group(self) -> str:
        """The breakdown key used in reports: category, else level, else benchmark."""
        return self.category or self.level or self.benchmark


@dataclass
class Example:
    """A record with its decoded RGB image (what a DataLoader yields, one per row)."""

    record: QARecord
    image: Image.Image


@dataclass(frozen=True)
class ImagePair:
    """A clean/edited image pair for one question: the unit of causal head discovery.

    `answer` is the correct answer on the clean image; `edited_answer` the correct answer on the edited image when the
    edit determines it (the synthetic world always knows it; a diffusion edit may not).
    """

    pair_id: str
    question: str
    clean_image: str
    edited_image: str
    answer: str
    edited_answer: str | None = None
    level: str | None = None
    category: str | None = None
    candidates: tuple[str, ...] | None = None
    question_id: str | None = None
    edit: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    mask_box: tuple[int, int, int, int] | None = None  # x, y, w, h in clean-image pixels
    seed: int | None = None
    model_id: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return d
