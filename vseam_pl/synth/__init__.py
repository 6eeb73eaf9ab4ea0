"""A deterministic synthetic scene world: rendered scenes for pretraining tiny VLMs from scratch, and the three
V-SEAM benchmarks (GQA, POPE, COCO-QA) written in their real file formats with exact clean/edited image pairs.

    from vseam_pl.synth import SceneWorld, generate_benchmarks
    world = SceneWorld(image_size=64)
    scene = world.sample_scene(random.Random(0))
    image = world.render(scene)

CLI: ``python -m vseam_pl.synth --out DIR --seed 0 --n-images 4000``.
"""

from .edits import GQA_CATEGORIES, GQAItem, answer_on, ask, ask_and_edit
from .questions import SynthQA, tokenize
from .scene import CLASSES, COLORS, MATERIALS, PLACES, SIZES, SUPERCATEGORIES, Scene, SceneObject
from .world import SceneWorld
from .writers import generate_benchmarks

__all__ = [
    "CLASSES",
    "COLORS",
    "GQA_CATEGORIES",
    "GQAItem",
    "MATERIALS",
    "PLACES",
    "SIZES",
    "SUPERCATEGORIES",
    "Scene",
    "SceneObject",
    "SceneWorld",
    "SynthQA",
    "answer_on",
    "ask",
    "ask_and_edit",
    "generate_benchmarks",
    "tokenize",
]
