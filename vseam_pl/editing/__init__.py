"""V-SEAM stage 1: change one concept (object, attribute or relation) in a real image and keep the rest.

`EditPlanner` turns GQA records into `EditPlan`s (target, substitute, prompts, region) from the curated
`EditVocab`; `run_edits` inpaints them with a diffusers pipeline (`Inpainter`), composites the result into the
original, filters and writes the `pairs.jsonl` layout that head discovery reads. CLI: ``python -m vseam_pl.edit``.
"""

from .gqa import read_gqa_questions, read_scene_graphs
from .inpaint import Inpainter, composite, load_inpaint_pipeline
from .masks import box_mask, load_user_mask, soft_mask
from .pipeline import EditReport, EditSettings, run_edits
from .planner import EditPlan, EditPlanner, Refusal, Unresolved
from .quality import AnswerFn, check_region, outside_change, vlm_filter
from .tiny_pipeline import build_tiny_inpaint_pipeline
from .vocab import EditVocab, VocabError

__all__ = [
    "AnswerFn",
    "EditPlan",
    "EditPlanner",
    "EditReport",
    "EditSettings",
    "EditVocab",
    "Inpainter",
    "Refusal",
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
