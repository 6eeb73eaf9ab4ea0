"""`SceneWorld`: the Python entry point of the synthetic world (sample, render, describe, ask).

Class frequencies depend on the place (boats and fish on water, cars and buses on the road, ...) so the world has
popular classes and co-occurring classes: that is what makes POPE's "popular" and "adversarial" negatives differ
from "random" ones, and what tempts a model to hallucinate.
"""

from __future__ import annotations

import random

from PIL import Image

from . import questions
from .render import render_scene
from .scene import CLASSES, COLORS, MATERIALS, PLACES, SIZES, Scene, SceneObject, separated

#: Relative class weights per place (every class can appear everywhere, just not equally often).
PLACE_PRIORS: dict[str, dict[str, float]] = {
    "grass": {
        "horse": 4,
        "dog": 3,
        "cat": 2,
        "bird": 2,
        "bike": 2,
        "car": 1,
        "bus": 1,
        "plane": 0.5,
        "fish": 0.2,
        "boat": 0.2,
    },
    "road": {
        "car": 4,
        "bus": 3,
        "bike": 3,
        "dog": 2,
        "cat": 1,
        "horse": 1,
        "bird": 1,
        "plane": 0.3,
        "boat": 0.2,
        "fish": 0.1,
    },
    "water": {
        "boat": 4,
        "fish": 4,
        "bird": 3,
        "plane": 1,
        "dog": 0.5,
        "cat": 0.2,
        "horse": 0.2,
        "car": 0.2,
        "bus": 0.2,
        "bike": 0.2,
    },
    "sand": {
        "dog": 2,
        "bird": 2,
        "horse": 2,
        "boat": 2,
        "cat": 1,
        "bike": 1,
        "car": 1,
        "fish": 0.5,
        "plane": 0.5,
        "bus": 0.3,
    },
    "snow": {
        "dog": 2,
        "horse": 2,
        "plane": 2,
        "car": 2,
        "bird": 1,
        "bus": 1,
        "cat": 1,
        "bike": 0.5,
        "boat": 0.2,
        "fish": 0.1,
    },
}
OBJECT_COUNTS: tuple[int, ...] = (1, 2, 3, 4)
OBJECT_COUNT_WEIGHTS: tuple[float, ...] = (1, 3, 3, 2)
#: Chance that a further object repeats a class already in the scene (gives "how many" answers above one).
REPEAT_PROB = 0.25
#: Clear pixels kept from the image border, so moved/mirrored objects still fit.
BORDER = 2
PLACEMENT_TRIES = 100


class SceneWorld:
    """Static vocabularies plus scene sampling, rendering, captions and questions at one image size."""

    def __init__(self, image_size: int = 64) -> None:
        if image_size < 32:
            raise ValueError(
                f"image_size must be at least 32 pixels (objects are 16-24 px at 64), got {image_size}"
            )
        self.image_size = image_size
        self.object_px = {"small": round(16 * image_size / 64), "large": round(24 * image_size / 64)}

    def sample_scene(self, rng: random.Random, theme: float = 1.0) -> Scene:
        """Draw a place and 1-4 non-overlapping objects; the result depends only on `rng`'s state.

        `theme` > 1 sharpens the per-place class priors (weights raised to that power), as the pretraining stream's
        themed scenes do (:mod:`vseam_pl.synth.shift`); the benchmarks always use 1.
        """
        place = rng.choice(PLACES)
        prior = PLACE_PRIORS[place] if theme == 1.0 else {c: w**theme for c, w in PLACE_PRIORS[place].items()}
        n = rng.choices(OBJECT_COUNTS, weights=OBJECT_COUNT_WEIGHTS)[0]
        objects: list[SceneObject] = []
        for _ in range(n):
            if objects and rng.random() < REPEAT_PROB:
                name = rng.choice(objects).name
            else:
                name = rng.choices(CLASSES, weights=[prior[c] for c in CLASSES])[0]
            size = rng.choice(SIZES)
            px = self.object_px[size]
            box = self._place_box(rng, px, [o.box for o in objects])
            if box is None:
                continue
            color, material = rng.choice(list(COLORS)), rng.choice(MATERIALS)
            objects.append(SceneObject(name, color, material, size, *box))
        return Scene(place=place, objects=tuple(objects), image_size=self.image_size)

    def _place_box(self, rng: random.Random, px: int, taken: list[tuple[int, int, int, int]]):
        hi = self.image_size - BORDER - px
        for _ in range(PLACEMENT_TRIES):
            box = (rng.randint(BORDER, hi), rng.randint(BORDER, hi), px, px)
            if all(separated(box, t, 2) for t in taken):
                return box
        return None

    def render(self, scene: Scene) -> Image.Image:
        """RGB image of `scene` (deterministic)."""
        if scene.image_size != self.image_size:
            raise ValueError(f"scene is {scene.image_size}px but this world renders {self.image_size}px")
        return render_scene(scene)

    def caption(self, scene: Scene, rng: random.Random) -> str:
        """One sentence naming every object with its attributes, a relation when clear, and the place."""
        return questions.caption(scene, rng)

    def qa_pairs(self, scene: Scene, rng: random.Random) -> list[questions.SynthQA]:
        """Mixed pretraining questions: GQA-, POPE-, COCO-QA-style and open what/where questions."""
        return questions.qa_pairs(scene, rng)

    def vocabulary(self) -> list[str]:
        """Every lowercase word (plus "?", ".", ",") any caption, question or answer can contain."""
        return questions.vocabulary()
