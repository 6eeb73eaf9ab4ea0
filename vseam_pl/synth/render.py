"""Pixel rendering of scenes with PIL: a textured background per place, one glyph per object class.

Everything is drawn without antialiasing and each object stays inside its own box (glyph inset by one pixel, a
one-pixel dark outline around it), so an edit changes pixels only inside the boxes of the objects it touches.
Glyphs are distinct silhouettes in a unit square; materials are textures in the object's own coordinates, so a
moved object looks the same at its new place.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scene import COLORS, Scene, SceneObject

OUTLINE = (25, 25, 25)

# A primitive: (kind, unit coordinates, fill) with kind in ellipse/rect/poly; fill 255 adds, 0 cuts a hole.
Prim = tuple[str, tuple[float, ...], int]

GLYPHS: dict[str, tuple[Prim, ...]] = {
    # animals
    "cat": (  # a face with two pointed ears
        ("ellipse", (0.08, 0.3, 0.92, 1.0), 255),
        ("poly", (0.1, 0.5, 0.18, 0.0, 0.48, 0.35), 255),
        ("poly", (0.52, 0.35, 0.82, 0.0, 0.9, 0.5), 255),
        ("ellipse", (0.28, 0.52, 0.42, 0.66), 0),
        ("ellipse", (0.58, 0.52, 0.72, 0.66), 0),
    ),
    "dog": (  # side view: long body, short legs, head up front with a drooping ear, tail up
        ("rect", (0.1, 0.42, 0.78, 0.72), 255),
        ("rect", (0.12, 0.72, 0.28, 1.0), 255),
        ("rect", (0.6, 0.72, 0.76, 1.0), 255),
        ("rect", (0.6, 0.12, 1.0, 0.45), 255),
        ("poly", (0.58, 0.12, 0.7, 0.12, 0.62, 0.55), 255),
        ("poly", (0.1, 0.45, 0.0, 0.1, 0.12, 0.1, 0.2, 0.42), 255),
    ),
    "bird": (  # a gliding chevron with a round body
        ("poly", (0.0, 0.15, 0.5, 0.5, 1.0, 0.15, 1.0, 0.45, 0.5, 0.8, 0.0, 0.45), 255),
        ("ellipse", (0.35, 0.45, 0.65, 0.95), 255),
    ),
    "fish": (  # an oval body and a forked tail
        ("ellipse", (0.0, 0.2, 0.7, 0.8), 255),
        ("poly", (0.6, 0.5, 1.0, 0.1, 1.0, 0.9), 255),
        ("poly", (0.88, 0.4, 1.0, 0.4, 1.0, 0.6, 0.88, 0.6), 0),
        ("ellipse", (0.12, 0.38, 0.24, 0.5), 0),
    ),
    "horse": (  # tall: body on long legs, long neck up to the head
        ("rect", (0.05, 0.35, 0.72, 0.6), 255),
        ("rect", (0.05, 0.6, 0.18, 1.0), 255),
        ("rect", (0.58, 0.6, 0.71, 1.0), 255),
        ("poly", (0.55, 0.35, 0.72, 0.0, 0.86, 0.0, 0.72, 0.42), 255),
        ("rect", (0.72, 0.0, 1.0, 0.2), 255),
        ("poly", (0.05, 0.35, 0.0, 0.75, 0.08, 0.75, 0.12, 0.35), 255),
    ),
    # vehicles
    "car": (  # low body, cabin on top, two wheels
        ("rect", (0.0, 0.42, 1.0, 0.72), 255),
        ("poly", (0.2, 0.42, 0.32, 0.1, 0.68, 0.1, 0.8, 0.42), 255),
        ("ellipse", (0.06, 0.58, 0.38, 1.0), 255),
        ("ellipse", (0.62, 0.58, 0.94, 1.0), 255),
        ("ellipse", (0.17, 0.72, 0.27, 0.86), 0),
        ("ellipse", (0.73, 0.72, 0.83, 0.86), 0),
    ),
    "bus": (  # a tall box with a row of windows
        ("rect", (0.0, 0.08, 1.0, 0.85), 255),
        ("ellipse", (0.1, 0.7, 0.34, 1.0), 255),
        ("ellipse", (0.66, 0.7, 0.9, 1.0), 255),
        ("rect", (0.1, 0.2, 0.3, 0.45), 0),
        ("rect", (0.4, 0.2, 0.6, 0.45), 0),
        ("rect", (0.7, 0.2, 0.9, 0.45), 0),
    ),
    "bike": (  # two ring wheels joined by a frame
        ("ellipse", (0.0, 0.45, 0.44, 1.0), 255),
        ("ellipse", (0.56, 0.45, 1.0, 1.0), 255),
        ("poly", (0.2, 0.7, 0.45, 0.3, 0.8, 0.7, 0.7, 0.7, 0.47, 0.45, 0.3, 0.7), 255),
        ("rect", (0.36, 0.15, 0.62, 0.3), 255),
        ("ellipse", (0.14, 0.62, 0.3, 0.83), 0),
        ("ellipse", (0.7, 0.62, 0.86, 0.83), 0),
    ),
    "boat": (  # a hull with a triangular sail
        ("poly", (0.0, 0.66, 1.0, 0.66, 0.78, 1.0, 0.22, 1.0), 255),
        ("rect", (0.44, 0.0, 0.54, 0.66), 255),
        ("poly", (0.54, 0.0, 0.98, 0.5, 0.54, 0.5), 255),
    ),
    "plane": (  # top view: fuselage, swept wings, tail fins
        ("ellipse", (0.0, 0.38, 1.0, 0.62), 255),
        ("poly", (0.42, 0.5, 0.52, 0.0, 0.64, 0.0, 0.72, 0.5, 0.64, 1.0, 0.52, 1.0), 255),
        ("poly", (0.04, 0.5, 0.02, 0.15, 0.12, 0.15, 0.2, 0.5, 0.12, 0.85, 0.02, 0.85), 255),
    ),
}


def _scale(coords: tuple[float, ...], w: int, h: int) -> list[float]:
    """Unit coordinates -> pixels inside the box, leaving one pixel all round for the outline."""
    return [1 + round(c * ((w if k % 2 == 0 else h) - 3)) for k, c in enumerate(coords)]


@lru_cache(maxsize=256)
def glyph_mask(name: str, w: int, h: int) -> Image.Image:
    """The class silhouette as an "L" mask of size (w, h) (255 inside)."""
    if name not in GLYPHS:
        raise KeyError(f"no glyph for object class {name!r}; known: {sorted(GLYPHS)}")
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    for kind, coords, fill in GLYPHS[name]:
        xy = _scale(coords, w, h)
        if kind == "ellipse":
            draw.ellipse(xy, fill=fill)
        elif kind == "rect":
            draw.rectangle(xy, fill=fill)
        else:
            draw.polygon(xy, fill=fill)
    return mask


@lru_cache(maxsize=256)
def outline_mask(name: str, w: int, h: int) -> Image.Image:
    """The one-pixel ring just outside the silhouette (stays inside the box thanks to the inset)."""
    mask = glyph_mask(name, w, h)
    grown = np.asarray(mask.filter(ImageFilter.MaxFilter(3)))
    return Image.fromarray(np.where(np.asarray(mask) > 0, 0, grown).astype(np.uint8), "L")


def _shade(rgb: tuple[int, int, int], f: float) -> np.ndarray:
    return (np.asarray(rgb, dtype=np.float32) * f).round().astype(np.uint8)


@lru_cache(maxsize=512)
def material_fill(color: str, material: str, w: int, h: int) -> Image.Image:
    """The object's colour with its material texture, in the object's own coordinates."""
    rgb = COLORS[color]
    yy, xx = np.mgrid[0:h, 0:w]
    if material == "plastic":
        pattern = np.zeros((h, w), bool)
    elif material == "metal":
        pattern = yy % 3 == 0
    elif material == "wood":
        pattern = xx % 3 == 0
    elif material == "glass":
        pattern = (xx % 3 == 1) & (yy % 3 == 1)
    else:
        raise KeyError(f"unknown material {material!r}")
    out = np.empty((h, w, 3), np.uint8)
    out[:] = np.asarray(rgb, np.uint8)
    out[pattern] = _shade(rgb, 0.5)
    return Image.fromarray(out, "RGB")


@lru_cache(maxsize=32)
def background(place: str, size: int) -> Image.Image:
    """A low-contrast texture per place, recognisable from any 8x8 patch and free of object colours' outline."""
    yy, xx = np.mgrid[0:size, 0:size]
    specs = {
        "grass": ((95, 150, 75), (70, 120, 55), (xx * 7 + yy * 3) % 11 == 0),
        "road": ((115, 115, 120), (140, 140, 145), (xx + 2 * yy) % 9 == 0),
        "water": ((70, 120, 190), (120, 165, 225), (yy % 6 == 0) & ((xx // 3) % 2 == 0)),
        "sand": ((220, 200, 145), (190, 165, 110), (xx * 5 + yy * 11) % 13 == 0),
        "snow": ((232, 238, 248), (195, 210, 235), (xx * 3 + yy * 7) % 10 == 0),
    }
    if place not in specs:
        raise KeyError(f"unknown place {place!r}; known: {sorted(specs)}")
    base, accent, pattern = specs[place]
    out = np.empty((size, size, 3), np.uint8)
    out[:] = base
    out[pattern] = accent
    return Image.fromarray(out, "RGB")


def draw_object(img: Image.Image, obj: SceneObject) -> None:
    """Paint one object into `img` in place, touching only pixels inside its box."""
    img.paste(
        material_fill(obj.color, obj.material, obj.w, obj.h),
        (obj.x, obj.y),
        glyph_mask(obj.name, obj.w, obj.h),
    )
    img.paste(OUTLINE, (obj.x, obj.y, obj.x + obj.w, obj.y + obj.h), outline_mask(obj.name, obj.w, obj.h))


def render_scene(scene: Scene) -> Image.Image:
    """The RGB image of `scene`; a pure function of the scene (no randomness)."""
    img = background(scene.place, scene.image_size).copy()
    for obj in scene.objects:
        draw_object(img, obj)
    return img
