"""Which learned parameters a run reports: the best on validation, and only if they beat doing nothing.

Learning can make a frozen model worse; a run must not report that harm as its result. Two rules:

1. **Select on validation.** Every full validation pass is a candidate (the initial scales too, when the sanity
   pass covers the whole validation set); the one with the highest validation accuracy is kept, never blindly the
   last. Ties keep the earlier candidate (fewer steps away from the start).
2. **Do no harm.** The selected candidate is compared with the identity (the frozen model: every scale 1) on the same
   validation questions with the image-clustered paired permutation test (`vseam_pl.stats`). It is kept only when its
   accuracy is higher by more than `min_gain` and the two-sided p-value is below `alpha`; otherwise the identity
   is the result and the learned values are kept under another name for inspection.

Selection and the check read the same validation questions, so the check guards against harm; it is not an unbiased
estimate of the gain (the held-out test split is). Nothing here ever reads the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .evaluation import Outcome
from .stats import cluster_permutation_test


@dataclass
class Candidate:
    """One validated state: the step it was taken at, its accuracy and the per-question correctness (by key)."""

    step: int
    accuracy: float
    keys: torch.Tensor  # int64 [N], sorted
    correct: torch.Tensor  # bool [N]
    state: list[torch.Tensor]  # the trainable parameters' values

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "accuracy": self.accuracy,
            "keys": self.keys,
            "correct": self.correct,
            "state": self.state,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(int(d["step"]), float(d["accuracy"]), d["keys"], d["correct"], list(d["state"]))


@dataclass
class Decision:
    """What a run reports and why (written to metrics.json as `scales_used` and `selection`)."""

    used: str  # "selected", "identity" or "last" (no validation ran)
    reason: str
    selected_step: int | None
    val_identity: float | None
    val_selected: float | None
    delta: float | None
    p_value: float | None
    n: int
    alpha: float | None
    min_gain: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _correctness(outcomes: list[Outcome], system: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, correct) of one system's answers, sorted by key; outcomes without that system are left out."""
    pairs = sorted(
        (o.key, bool(getattr(o, f"{system}_correct")))
        for o in outcomes
        if getattr(o, f"{system}_correct") is not None
    )
    keys = torch.tensor([k for k, _ in pairs], dtype=torch.int64)
    return keys, torch.tensor([c for _, c in pairs], dtype=torch.bool)


class ValidationSelection:
    """Keeps the identity's and the best candidate's validation correctness; decides at the end of fit.

    `alpha=None` turns the do-no-harm check off (the best candidate is always used, with a warning in the reason).
    """

    def __init__(self, alpha: float | None = 0.05, min_gain: float = 0.0) -> None:
        if alpha is not None and not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1] or None, got {alpha}")
        if min_gain < 0:
            raise ValueError(f"min_gain must be >= 0, got {min_gain}")
        self.alpha, self.min_gain = alpha, min_gain
        self.identity: tuple[torch.Tensor, torch.Tensor] | None = None
        self.images: dict[int, str] = {}
        self.best: Candidate | None = None
        self.history: list[tuple[int, float]] = []

    def observe(self, step: int, outcomes: list[Outcome], state: list[torch.Tensor]) -> bool:
        """Record a full validation pass (`outcomes` of the modulated model, and of the baseline when it was run);
        returns whether it is the new best."""
        self.images.update({o.key: o.image_id or str(o.key) for o in outcomes})
        base_keys, base_correct = _correctness(outcomes, "baseline")
        if base_keys.numel():
            self.identity = (base_keys, base_correct)
        keys, correct = _correctness(outcomes, "modulated")
        if not keys.numel():
            return False
        acc = int(correct.sum()) / correct.numel()
        self.history.append((step, acc))
        if self.best is not None and acc <= self.best.accuracy:
            return False
        self.best = Candidate(step, acc, keys, correct, [t.detach().clone().cpu() for t in state])
        return True

    def decide(self) -> Decision:
        """Keep the best candidate only if it beats the identity on validation (see the module docstring)."""
        if self.best is None:
            return Decision(
                "last", "no full validation pass ran: the last step's values are used, unselected and unchecked",
                None, None, None, None, None, 0, self.alpha, self.min_gain,
            )  # fmt: skip
        best = self.best
        if self.identity is None:
            return Decision(
                "selected", "the frozen model was not validated (eval_baseline off): the best validation "
                "candidate is used without the do-no-harm check", best.step, None, best.accuracy, None, None,
                int(best.keys.numel()), self.alpha, self.min_gain,
            )  # fmt: skip
        keys, identity = self.identity
        if not torch.equal(keys, best.keys):
            raise RuntimeError(
                "the identity and the selected scales were validated on different questions "
                f"({keys.numel()} vs {best.keys.numel()}); validation must be the same set every time"
            )
        a, b = best.correct.numpy().astype(float), identity.numpy().astype(float)
        clusters = np.array([self.images[int(k)] for k in keys.tolist()], dtype=object)
        delta = float(a.sum() - b.sum()) / a.size
        p = cluster_permutation_test(a, b, clusters)
        out = Decision(
            "selected", "", best.step, float(b.sum()) / b.size, best.accuracy, delta, p, int(a.size),
            self.alpha, self.min_gain,
        )  # fmt: skip
        if self.alpha is None:
            out.reason = "do-no-harm check off: the best validation candidate is used whatever its gain"
        elif delta > self.min_gain and p < self.alpha:
            out.reason = (
                f"beats the identity on validation by {delta * 100:+.2f} points "
                f"(image-clustered permutation p = {p:.2g} < {self.alpha})"
            )
        else:
            out.used = "identity"
            out.reason = (
                f"does not beat the identity on validation: {delta * 100:+.2f} points, image-clustered "
                f"permutation p = {p:.2g} (needs > {self.min_gain * 100:+.2f} points and p < {self.alpha})"
            )
        return out

    # -- checkpoints: a resumed fit keeps its candidates ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "identity": None if self.identity is None else list(self.identity),
            "images": self.images,
            "best": None if self.best is None else self.best.to_dict(),
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.identity = None if state["identity"] is None else tuple(state["identity"])  # type: ignore[assignment]
        self.images = dict(state["images"])
        self.best = None if state["best"] is None else Candidate.from_dict(state["best"])
        self.history = [tuple(h) for h in state["history"]]  # type: ignore[misc]
