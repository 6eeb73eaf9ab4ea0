"""Quality filters for edited pairs.

(1) The image check is cheap and model-free: pixels outside the mask must be unchanged (and optionally the masked
region must have changed at all). (2) The V-SEAM filter keeps a pair only when the VLM answers the clean image
correctly and the edited image differently — the pairs where the edit changed what the model sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

#: ``answer_fn(questions, images, candidates) -> answers`` — e.g. `vseam_pl.scoring.predict` bound to a loaded VLM.
AnswerFn = Callable[[list[str], list[Image.Image], list[tuple[str, ...] | None]], list[str]]


def _arrays(clean: Image.Image, edited: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(clean.convert("RGB"), dtype=np.int16)
    b = np.asarray(edited.convert("RGB"), dtype=np.int16)
    if a.shape != b.shape:
        raise ValueError(
            f"clean image is {a.shape[1]}x{a.shape[0]} but the edited one is {b.shape[1]}x{b.shape[0]}"
        )
    return a, b


def outside_change(clean: Image.Image, edited: Image.Image, alpha: np.ndarray) -> int:
    """Largest per-channel difference (0-255) among pixels the mask does not cover."""
    a, b = _arrays(clean, edited)
    outside = alpha <= 0
    return int(np.abs(a - b)[outside].max()) if outside.any() else 0


def inside_change(clean: Image.Image, edited: Image.Image, alpha: np.ndarray) -> float:
    """Mean per-channel difference (0-255) inside the mask: ~0 means the edit did nothing visible."""
    a, b = _arrays(clean, edited)
    inside = alpha > 0
    return float(np.abs(a - b)[inside].mean()) if inside.any() else 0.0


def check_region(
    clean: Image.Image, edited: Image.Image, alpha: np.ndarray, max_outside: int = 0, min_inside: float = 0.0
) -> str | None:
    """Why the pair fails the image check, or None when it passes."""
    out = outside_change(clean, edited, alpha)
    if out > max_outside:
        return f"pixels outside the mask changed by up to {out} (allowed {max_outside})"
    if min_inside > 0:
        inside = inside_change(clean, edited, alpha)
        if inside < min_inside:
            return f"masked region barely changed (mean difference {inside:.2f} < {min_inside})"
    return None


def normalize_answer(answer: str) -> str:
    return answer.strip().strip(".").lower()


def vlm_filter(
    answer_fn: AnswerFn,
    questions: Sequence[str],
    clean: Sequence[Image.Image],
    edited: Sequence[Image.Image],
    answers: Sequence[str],
    candidates: Sequence[tuple[str, ...] | None],
) -> list[str | None]:
    """For each pair, why the V-SEAM filter rejects it (or None to keep): one batched `answer_fn` call for all."""
    n = len(questions)
    preds = answer_fn(list(questions) * 2, list(clean) + list(edited), list(candidates) * 2)
    if len(preds) != 2 * n:
        raise ValueError(f"answer_fn returned {len(preds)} answers for {2 * n} questions")
    reasons: list[str | None] = []
    for i in range(n):
        p_clean, p_edit = normalize_answer(preds[i]), normalize_answer(preds[n + i])
        if p_clean != normalize_answer(answers[i]):
            reasons.append(
                f"VLM answers the clean image '{p_clean}', expected '{normalize_answer(answers[i])}'"
            )
        elif p_edit == p_clean:
            reasons.append(f"VLM answers the edited image the same as the clean one ('{p_edit}')")
        else:
            reasons.append(None)
    return reasons
