"""Edit regions: boxes or user masks → a soft alpha mask (dilated, feathered) in clean-image pixels.

One code path for both sources: a binary mask is grown by `dilate` px (Euclidean distance), then ramps linearly to 0
over `feather` more px. Alpha is exactly 0 beyond ``dilate + feather`` px from the region, which is what lets the
compositing guarantee untouched pixels there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt

from ..data.images import load_rgb
from .gqa import Box


def box_mask(size: tuple[int, int], boxes: Iterable[Box]) -> np.ndarray:
    """Binary (H, W) mask of the union of (x, y, w, h) boxes, clipped to the image of `size` = (W, H)."""
    width, height = size
    mask = np.zeros((height, width), dtype=bool)
    for x, y, w, h in boxes:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = True
    return mask


def load_user_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """A user mask PNG (white/non-zero = edit) as a binary (H, W) mask; it must match the image size."""
    path = Path(path)
    img = load_rgb(
        path, f"mask {path}"
    )  # the package's one loader: EXIF orientation applied, like the image's
    if img.size != tuple(size):
        raise ValueError(f"{path}: mask is {img.size[0]}x{img.size[1]} but the image is {size[0]}x{size[1]}")
    return np.asarray(img.convert("L")) > 127


def soft_mask(binary: np.ndarray, dilate: int = 8, feather: int = 4) -> np.ndarray:
    """Float alpha in [0, 1]: 1 within `dilate` px of the region, a linear ramp over the next `feather` px, else 0."""
    if dilate < 0 or feather < 0:
        raise ValueError(f"dilate and feather must be >= 0 px, got {dilate} and {feather}")
    if not binary.any():
        return np.zeros(binary.shape, dtype=np.float32)
    dist = distance_transform_edt(~binary)  # 0 inside, px distance to the region outside
    alpha = np.clip((dilate + feather - dist) / max(feather, 1e-6), 0.0, 1.0)
    alpha[dist >= dilate + feather] = 0.0
    alpha[dist <= dilate] = 1.0
    return alpha.astype(np.float32)


def bbox(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the non-zero region of a mask, or None when it is empty."""
    ys, xs = np.nonzero(alpha > 0)
    if len(xs) == 0:
        return None
    x0, y0 = int(xs.min()), int(ys.min())
    return x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1


def mask_image(alpha: np.ndarray) -> Image.Image:
    """The alpha as an 8-bit grayscale image (for saving next to the pair, and for viewers)."""
    return Image.fromarray(np.round(alpha * 255).astype(np.uint8))
