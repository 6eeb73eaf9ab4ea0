"""The pretraining/benchmark shift of the synthetic world: a model organism of how real VLM instruction data differs
from the benchmarks V-SEAM evaluates on.

A real VLM's instruction-tuning mixture is not GQA's, POPE's or COCO-QA's distribution. Three differences matter for a
frozen model's errors on them, and each is a knob of :class:`StreamShift`:

- **answer prior** (`yes_share`): yes/no questions in VQA-style training data are answered "yes" far more often than
  "no" (answering "yes" to every yes/no question of VQA v1 scores about 71%, Antol et al. 2015), while GQA's balanced
  splits and POPE are 50/50;
- **co-occurrence** (`theme`): scenes are themed — boats on water, buses on the road — more sharply than in the
  benchmarks, and negative existence questions name random absent classes, so "an object that belongs here" is
  almost always there; POPE's popular and adversarial negatives are exactly the co-occurring absent objects;
- **salience** (`salience`): questions are mostly about large, salient objects, while the benchmarks ask about any.

The shift applies to the *pretraining stream only* (`scripts/pretrain_tiny.py --shift`); the benchmark generator
(:mod:`vseam_pl.synth.writers`) never uses it. :data:`IID` is today's i.i.d. world (the control): with it the stream is
drawn exactly as before the shift existed, bit for bit.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from .questions import SynthQA, tokenize
from .scene import CLASSES, PLURALS, Scene
from .world import PLACE_PRIORS

YES_NO = ("yes", "no")


@dataclass(frozen=True)
class StreamShift:
    """How the pretraining stream departs from the benchmarks (the defaults are no departure)."""

    #: share of "yes" among the yes/no questions drawn (0.5: whatever the question generator gives, about balanced)
    yes_share: float = 0.5
    #: exponent on the per-place class priors when sampling pretraining scenes (1: the benchmarks' priors)
    theme: float = 1.0
    #: weight of questions about large objects among questions about present objects (0.5: no preference)
    salience: float = 0.5

    def __post_init__(self) -> None:
        for name in ("yes_share", "salience"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"StreamShift.{name} must be in (0, 1), got {value}")
        if self.theme <= 0:
            raise ValueError(f"StreamShift.theme must be > 0, got {self.theme}")

    @property
    def is_iid(self) -> bool:
        return self == IID

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


#: Today's world: the pretraining stream drawn like the benchmarks (the control run).
IID = StreamShift()
#: The shift the embedded models are instruction-tuned on (numbers and reasons: docs/embedded-models.md).
REALISTIC = StreamShift(yes_share=0.7, theme=3.0, salience=0.9)
SHIFTS: dict[str, StreamShift] = {"iid": IID, "realistic": REALISTIC}


def salience_of(qa: SynthQA, scene: Scene) -> str | None:
    """ "large" when every present object the question names is large, "small" when one is small, None when it names
    no present object (absent-object questions, the place)."""
    words = set(tokenize(qa.question))
    named = [c for c in CLASSES if (c in words or PLURALS[c] in words) and scene.count(c)]
    if not named:
        return None
    sizes = {o.size for o in scene.objects if o.name in named}
    return "small" if "small" in sizes else "large"


def draw_question(
    pairs: list[SynthQA], scene: Scene, rng: random.Random, shift: StreamShift, verify_weight: float
) -> SynthQA:
    """One question of `scene`'s `pairs`, yes/no ones `verify_weight` times as likely as open ones, shaped by `shift`.

    With :data:`IID` this is exactly the draw the pretraining stream always made (one `rng.choices` call), so the
    control stream reproduces the shipped weights' stream.
    """
    weights = [verify_weight if q.answer in YES_NO else 1.0 for q in pairs]
    if shift.is_iid:
        return rng.choices(pairs, weights=weights)[0]
    size_weight = {"large": 2 * shift.salience, "small": 2 * (1 - shift.salience), None: 1.0}
    weights = [w * size_weight[salience_of(q, scene)] for w, q in zip(weights, pairs, strict=True)]
    verify = [i for i, q in enumerate(pairs) if q.answer in YES_NO]
    share_verify = sum(weights[i] for i in verify) / sum(weights)
    if verify and rng.random() < share_verify:
        want = "yes" if rng.random() < shift.yes_share else "no"
        chosen = [i for i in verify if pairs[i].answer == want] or verify
    else:
        chosen = [i for i in range(len(pairs)) if i not in verify] or verify
    return pairs[rng.choices(chosen, weights=[weights[i] for i in chosen])[0]]


def cooccurring_absent(scene: Scene) -> str | None:
    """The absent class most typical of the scene's place under the benchmarks' priors: POPE's adversarial kind of
    negative, which the shifted stream's themed scenes tempt a model to hallucinate."""
    absent = [c for c in CLASSES if not scene.count(c)]
    prior = PLACE_PRIORS[scene.place]
    return max(absent, key=lambda c: (prior[c], c)) if absent else None


def shift_from(name: str, **overrides: float | None) -> StreamShift:
    """A named shift (`iid`, `realistic`) with any knob overridden (None keeps the named value)."""
    if name not in SHIFTS:
        raise ValueError(f"unknown stream shift {name!r}; expected one of {sorted(SHIFTS)}")
    values = {**SHIFTS[name].to_dict(), **{k: v for k, v in overrides.items() if v is not None}}
    return StreamShift(**values)
