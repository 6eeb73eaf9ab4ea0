"""The synthetic world's scene model: a closed vocabulary (classes, colours, materials, sizes, places) and scenes
made of non-overlapping objects.

Relations are never stored; they are derived from the boxes with a clear gap, so an edit that moves an object
updates every relation at once and an ambiguous pair (boxes overlapping along the axis) has no relation to ask about.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

ANIMALS: tuple[str, ...] = ("cat", "dog", "bird", "fish", "horse")
VEHICLES: tuple[str, ...] = ("car", "bus", "bike", "boat", "plane")
#: Super-categories, named like the V-SEAM object-level GQA files (`Animal.json`, `Vehicle.json`).
SUPERCATEGORIES: dict[str, tuple[str, ...]] = {"Animal": ANIMALS, "Vehicle": VEHICLES}
CLASSES: tuple[str, ...] = ANIMALS + VEHICLES
PLURALS: dict[str, str] = {
    "cat": "cats",
    "dog": "dogs",
    "bird": "birds",
    "fish": "fish",
    "horse": "horses",
    "car": "cars",
    "bus": "buses",
    "bike": "bikes",
    "boat": "boats",
    "plane": "planes",
}

#: Object colours, chosen far apart in RGB and never the outline's near-black.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (245, 225, 30),
    "green": (30, 170, 50),
    "blue": (30, 80, 230),
    "purple": (150, 50, 200),
    "white": (245, 245, 245),
}
#: Materials are rendered as textures: plastic plain, metal horizontal stripes, wood vertical stripes, glass dots.
MATERIALS: tuple[str, ...] = ("plastic", "metal", "wood", "glass")
SIZES: tuple[str, ...] = ("small", "large")
#: Background "places", the answers of COCO-QA-style location questions.
PLACES: tuple[str, ...] = ("grass", "road", "water", "sand", "snow")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")

#: Relation words by the direction `a` lies from `b`, as phrased in questions ("the cat is {phrase} the car").
RELATION_PHRASES: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "above": "below", "below": "above"}
#: Pixels of clear space required between boxes for a relation to hold (smaller gaps are ambiguous).
RELATION_GAP = 2

Box = tuple[int, int, int, int]  # x, y, w, h


def supercategory(name: str) -> str:
    for sup, names in SUPERCATEGORIES.items():
        if name in names:
            return sup
    raise KeyError(f"unknown object class {name!r}; expected one of {CLASSES}")


@dataclass(frozen=True)
class SceneObject:
    """One object: class, attributes and its box (top-left x, y and width, height in pixels)."""

    name: str
    color: str
    material: str
    size: str
    x: int
    y: int
    w: int
    h: int

    @property
    def box(self) -> Box:
        return (self.x, self.y, self.w, self.h)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scene:
    """A rendered-image description: a background place and up to a few objects whose boxes never overlap."""

    place: str
    objects: tuple[SceneObject, ...]
    image_size: int = 64

    def count(self, name: str) -> int:
        return sum(o.name == name for o in self.objects)

    def present(self) -> list[str]:
        """Distinct classes in order of first appearance."""
        return list(dict.fromkeys(o.name for o in self.objects))

    def unique_index(self, name: str) -> int | None:
        """Index of the only object of class `name`, or None when it is absent or repeated ("the dog" is ambiguous)."""
        hits = [i for i, o in enumerate(self.objects) if o.name == name]
        return hits[0] if len(hits) == 1 else None

    def with_object(self, index: int, obj: SceneObject) -> Scene:
        objs = list(self.objects)
        objs[index] = obj
        return replace(self, objects=tuple(objs))

    def is_valid(self, border: int = 1, gap: int = RELATION_GAP) -> bool:
        """Every box inside the image (with `border`) and every pair separated by at least `gap` pixels."""
        s = self.image_size
        for o in self.objects:
            if o.x < border or o.y < border or o.x + o.w > s - border or o.y + o.h > s - border:
                return False
        return all(
            separated(a.box, b.box, gap) for i, a in enumerate(self.objects) for b in self.objects[i + 1 :]
        )

    def to_scene_graph(self, image_id: str) -> dict[str, Any]:
        """This scene in GQA's scene-graph layout (`{width, height, location, objects: {id: {...}}}`)."""
        ids = [object_id(image_id, i) for i in range(len(self.objects))]
        objects = {}
        for i, o in enumerate(self.objects):
            relations = []
            for j, other in enumerate(self.objects):
                if i == j:
                    continue
                for rel in (horizontal_relation(o, other), vertical_relation(o, other)):
                    if rel:
                        relations.append({"object": ids[j], "name": RELATION_PHRASES[rel]})
            objects[ids[i]] = {
                "name": o.name,
                "x": o.x,
                "y": o.y,
                "w": o.w,
                "h": o.h,
                "attributes": [o.color, o.material, o.size],
                "relations": relations,
            }
        return {
            "width": self.image_size,
            "height": self.image_size,
            "location": self.place,
            "objects": objects,
        }

    @classmethod
    def from_scene_graph(cls, graph: dict[str, Any]) -> Scene:
        """Inverse of :meth:`to_scene_graph` (objects in id order)."""
        objs = []
        for _, o in sorted(graph["objects"].items(), key=lambda kv: int(kv[0])):
            color, material, size = o["attributes"]
            objs.append(SceneObject(o["name"], color, material, size, o["x"], o["y"], o["w"], o["h"]))
        return cls(place=graph["location"], objects=tuple(objs), image_size=int(graph["width"]))


def object_id(image_id: str, index: int) -> str:
    """GQA-style numeric object id, unique across the whole output (image id followed by the object index)."""
    return f"{image_id}{index}"


def separated(a: Box, b: Box, gap: int) -> bool:
    """True when boxes `a` and `b` have at least `gap` clear pixels between them along x or along y."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax + aw + gap <= bx or bx + bw + gap <= ax or ay + ah + gap <= by or by + bh + gap <= ay


def horizontal_relation(a: SceneObject, b: SceneObject, gap: int = RELATION_GAP) -> str | None:
    """ "left" if `a` is clearly to the left of `b`, "right" if clearly to its right, else None (ambiguous)."""
    if a.x + a.w + gap <= b.x:
        return "left"
    if b.x + b.w + gap <= a.x:
        return "right"
    return None


def vertical_relation(a: SceneObject, b: SceneObject, gap: int = RELATION_GAP) -> str | None:
    """ "above" if `a` is clearly above `b`, "below" if clearly below it, else None (ambiguous)."""
    if a.y + a.h + gap <= b.y:
        return "above"
    if b.y + b.h + gap <= a.y:
        return "below"
    return None


def relation(a: SceneObject, b: SceneObject, axis: str) -> str | None:
    """The relation of `a` to `b` along `axis` ("x": left/right, "y": above/below)."""
    if axis == "x":
        return horizontal_relation(a, b)
    if axis == "y":
        return vertical_relation(a, b)
    raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")


def union_box(boxes: list[Box], margin: int, image_size: int) -> Box:
    """Bounding box of `boxes` grown by `margin` pixels and clipped to the image."""
    x0 = max(0, min(b[0] for b in boxes) - margin)
    y0 = max(0, min(b[1] for b in boxes) - margin)
    x1 = min(image_size, max(b[0] + b[2] for b in boxes) + margin)
    y1 = min(image_size, max(b[1] + b[3] for b in boxes) + margin)
    return (x0, y0, x1 - x0, y1 - y0)
