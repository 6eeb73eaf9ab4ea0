"""Dense per-patch labels of a rendered scene: what a vision tower should see in each patch.

The embedded tiny VLMs get a vision-pretraining stage before the language stage, as LLaVA and InstructBLIP start from
a pretrained CLIP/EVA tower: each patch is taught the share of its pixels that belong to each object class, colour,
material and size (or to the background) and which place the background is. Shares come from the exact glyph
silhouettes the renderer paints, so the labels match the pixels.
"""

from __future__ import annotations

import numpy as np

from .render import glyph_mask
from .scene import CLASSES, COLORS, MATERIALS, PLACES, SIZES, Scene

#: Label vocabularies per attribute; index 0 is "background" (no object pixel) for the object attributes.
PATCH_LABELS: dict[str, tuple[str, ...]] = {
    "name": ("background", *CLASSES),
    "color": ("background", *COLORS),
    "material": ("background", *MATERIALS),
    "size": ("background", *SIZES),
}


def object_index_map(scene: Scene) -> np.ndarray:
    """[H, W] int map: the index of the object whose silhouette covers each pixel, -1 for background."""
    s = scene.image_size
    out = np.full((s, s), -1, dtype=np.int64)
    for k, o in enumerate(scene.objects):
        inside = np.asarray(glyph_mask(o.name, o.w, o.h)) > 0
        out[o.y : o.y + o.h, o.x : o.x + o.w][inside] = k
    return out


def patch_label_shares(scene: Scene, patch_size: int) -> dict[str, np.ndarray]:
    """Per attribute, a [patches, labels] array of pixel shares (rows sum to 1), patches in row-major order."""
    s = scene.image_size
    if s % patch_size:
        raise ValueError(f"image size {s} is not a multiple of patch size {patch_size}")
    grid = s // patch_size
    index = object_index_map(scene)
    # [grid*grid, patch*patch] pixel object indices per patch, row-major like a ViT's patch sequence
    per_patch = (
        index.reshape(grid, patch_size, grid, patch_size).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    )
    out: dict[str, np.ndarray] = {}
    for attr, labels in PATCH_LABELS.items():
        # label id of every object (+1 so background -1 -> 0)
        ids = np.array([0] + [labels.index(getattr(o, attr)) for o in scene.objects])
        pixel_labels = ids[per_patch + 1]
        counts = np.stack([(pixel_labels == j).sum(axis=1) for j in range(len(labels))], axis=1)
        out[attr] = counts / counts.sum(axis=1, keepdims=True)
    return out


def place_index(scene: Scene) -> int:
    return PLACES.index(scene.place)
