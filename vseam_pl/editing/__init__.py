"""V-SEAM stage 1: change one concept (object, attribute or relation) in a real image and keep the rest.

`EditPlanner` turns GQA records into `EditPlan`s (target, substitute, prompts, region) from the curated
`EditVocab`; `run_edits` inpaints them with a diffusers pipeline (`Inpainter`), composites the result into the
original, filters and writes the `pairs.jsonl` layout that head discovery reads. CLI: ``python -m vseam_pl.edit``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: where each public name lives; imported on first use, so `vseam_pl.editing.settings` (what `vseam edit --help`
#: reads) does not load diffusers, transformers and Lightning
_SOURCES: dict[str, str] = {
    "read_gqa_questions": "gqa",
    "read_scene_graphs": "gqa",
    "Inpainter": "inpaint",
    "composite": "inpaint",
    "load_inpaint_pipeline": "inpaint",
    "box_mask": "masks",
    "load_user_mask": "masks",
    "soft_mask": "masks",
    "EditReport": "pipeline",
    "run_edits": "pipeline",
    "EditPlan": "planner",
    "EditPlanner": "planner",
    "Refusal": "planner",
    "Unresolved": "planner",
    "AnswerFn": "quality",
    "check_region": "quality",
    "outside_change": "quality",
    "vlm_filter": "quality",
    "EditSettings": "settings",
    "Sampling": "settings",
    "build_tiny_inpaint_pipeline": "tiny_pipeline",
    "EditVocab": "vocab",
    "VocabError": "vocab",
}

__all__ = [
    "AnswerFn",
    "EditPlan",
    "EditPlanner",
    "EditReport",
    "EditSettings",
    "EditVocab",
    "Inpainter",
    "Refusal",
    "Sampling",
    "Unresolved",
    "VocabError",
    "box_mask",
    "build_tiny_inpaint_pipeline",
    "check_region",
    "composite",
    "load_inpaint_pipeline",
    "load_user_mask",
    "outside_change",
    "read_gqa_questions",
    "read_scene_graphs",
    "run_edits",
    "soft_mask",
    "vlm_filter",
]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
