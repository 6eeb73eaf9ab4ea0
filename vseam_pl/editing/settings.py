"""The editing settings, declared once: `vseam edit`'s flags and the Python API (`run_edits`, `Inpainter`) read
them. No heavy imports: `vseam edit --help` builds its flags from these without loading the editing stack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EditSettings:
    """How pairs are rendered and checked (the sampling settings are `Sampling`, the `Inpainter`'s)."""

    dilate: int = 8
    """mask dilation in px"""
    feather: int = 4
    """mask feathering (linear ramp) in px"""
    seed: int = 0
    """seeds substitute choice and sampling (per pair)"""
    masks: str | None = None
    """folder of user masks {question_id}.png (white = edit); they replace boxes"""
    check_outside: bool = False
    """reject pairs whose pixels outside the mask changed"""
    max_outside_diff: int = 0
    min_inside_change: float = 0.0
    """reject pairs whose masked region changed less than this mean difference (0-255)"""
    filter_batch_size: int = 8
    """pairs judged per VLM call (each pair is 2 images)"""
    model_id: str | None = None


@dataclass(frozen=True)
class Sampling:
    """How the inpainting model samples: the `Inpainter`'s settings."""

    steps: int = 30
    guidance: float = 7.5
    resolution: int = 512
    """longer side the model works at"""
