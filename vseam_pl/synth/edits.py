"""GQA-style verification questions and their exact counterfactual edits.

A question is a small `spec` (what is asked) evaluated on a scene by :func:`answer_on`; an edit is a new scene
that changes only the queried concept, so the edited answer is computed, not guessed:

- object level (Animal/Vehicle): one object is swapped for another class of the same super-category (a "yes" dog
  becomes a cat absent from the scene; for a "no" question an existing animal becomes the asked class);
- attribute level (Color/Material): the queried object's colour or material changes;
- relation level (Spatial/Vertical): one object is mirrored about the other (or the two swap places) so the asked
  relation flips while every box stays inside the image and clear of the others.

Only the changed objects' old and new boxes can differ in pixels (see `render`); `mask_box` is their union plus a
margin.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from vseam_pl.levels import level_of

from .scene import (
    COLORS,
    MATERIALS,
    OPPOSITE,
    SUPERCATEGORIES,
    Box,
    Scene,
    relation,
    supercategory,
    union_box,
)

#: GQA categories written by the synthetic world, in file order.
GQA_CATEGORIES: tuple[str, ...] = ("Animal", "Vehicle", "Color", "Material", "Spatial", "Vertical")
AXIS: dict[str, str] = {"Spatial": "x", "Vertical": "y"}
ATTRIBUTE: dict[str, str] = {"Color": "color", "Material": "material"}
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {"color": tuple(COLORS), "material": MATERIALS}
#: Pixels added around the changed boxes in `mask_box` (rendering is exact, this is a safety margin).
MASK_MARGIN = 1


@dataclass(frozen=True)
class GQAItem:
    """One verification question on a scene, with its exact counterfactual.

    `spec` is one of ``{"op": "exist", "name"}``, ``{"op": "attr", "attr", "name", "value"}`` or
    ``{"op": "rel", "a", "rel", "b"}``; `objects` are the clean-scene indices the question is about (for an absent
    class: the object the edit turns into it).
    """

    category: str
    spec: dict[str, Any]
    answer: str  # "yes" | "no" on `scene`
    scene: Scene
    edited: Scene | None = None
    edited_answer: str | None = None
    objects: tuple[int, ...] = ()
    edit: dict[str, Any] = field(default_factory=dict)
    mask_box: Box | None = None

    @property
    def level(self) -> str:
        return level_of(self.category) or ""


def answer_on(scene: Scene, spec: dict[str, Any]) -> str | None:
    """The answer to `spec` on `scene`: "yes", "no", or None when the question is ambiguous there."""
    op = spec["op"]
    if op == "exist":
        return "yes" if scene.count(spec["name"]) else "no"
    if op == "attr":
        i = scene.unique_index(spec["name"])
        if i is None:
            return None
        return "yes" if getattr(scene.objects[i], spec["attr"]) == spec["value"] else "no"
    if op == "rel":
        i, j = scene.unique_index(spec["a"]), scene.unique_index(spec["b"])
        if i is None or j is None or i == j:
            return None
        axis = "x" if spec["rel"] in ("left", "right") else "y"
        rel = relation(scene.objects[i], scene.objects[j], axis)
        return None if rel is None else ("yes" if rel == spec["rel"] else "no")
    raise ValueError(f"unknown question op {op!r}")


def ask(scene: Scene, category: str, want: str, rng: random.Random) -> GQAItem | None:
    """A question of `category` whose answer on `scene` is `want` ("yes"/"no"), without an edit; None if impossible."""
    if want not in ("yes", "no"):
        raise ValueError(f"want must be 'yes' or 'no', got {want!r}")
    if category in SUPERCATEGORIES:
        return _ask_object(scene, category, want, rng)
    if category in ATTRIBUTE:
        return _ask_attribute(scene, category, want, rng)
    if category in AXIS:
        return _ask_relation(scene, category, want, rng)
    raise ValueError(f"unknown GQA category {category!r}; expected one of {GQA_CATEGORIES}")


def ask_and_edit(scene: Scene, category: str, want: str, rng: random.Random) -> GQAItem | None:
    """Like :func:`ask` but also builds the counterfactual scene; None when no valid question+edit exists."""
    tries = 4 if category in AXIS else 1  # a relation question may have no valid move; try other pairs
    for _ in range(tries):
        item = ask(scene, category, want, rng)
        if item is None:
            return None
        edited = _edit(item, rng)
        if edited is not None:
            return edited
    return None


# --- questions -------------------------------------------------------------------------------------------------


def _ask_object(scene: Scene, category: str, want: str, rng: random.Random) -> GQAItem | None:
    classes = SUPERCATEGORIES[category]
    if want == "yes":
        options = [c for c in classes if scene.count(c) == 1]  # exactly one, so a swap makes the answer "no"
        if not options:
            return None
        name = rng.choice(options)
        target = scene.unique_index(name)
    else:
        absent = [c for c in classes if scene.count(c) == 0]
        donors = [i for i, o in enumerate(scene.objects) if supercategory(o.name) == category]
        if not absent or not donors:
            return None
        name, target = rng.choice(absent), rng.choice(donors)
    return GQAItem(category, {"op": "exist", "name": name}, want, scene, objects=(target,))


def _ask_attribute(scene: Scene, category: str, want: str, rng: random.Random) -> GQAItem | None:
    attr = ATTRIBUTE[category]
    options = [i for i, o in enumerate(scene.objects) if scene.count(o.name) == 1]
    if not options:
        return None
    i = rng.choice(options)
    current = getattr(scene.objects[i], attr)
    value = current if want == "yes" else rng.choice([v for v in ATTRIBUTE_VALUES[attr] if v != current])
    spec = {"op": "attr", "attr": attr, "name": scene.objects[i].name, "value": value}
    return GQAItem(category, spec, want, scene, objects=(i,))


def _ask_relation(scene: Scene, category: str, want: str, rng: random.Random) -> GQAItem | None:
    axis = AXIS[category]
    unique = [i for i, o in enumerate(scene.objects) if scene.count(o.name) == 1]
    pairs = [
        (i, j, rel)
        for i in unique
        for j in unique
        if i != j and (rel := relation(scene.objects[i], scene.objects[j], axis)) is not None
    ]
    if not pairs:
        return None
    i, j, rel = rng.choice(pairs)
    asked = rel if want == "yes" else OPPOSITE[rel]
    spec = {"op": "rel", "a": scene.objects[i].name, "rel": asked, "b": scene.objects[j].name}
    return GQAItem(category, spec, want, scene, objects=(i, j))


# --- edits -----------------------------------------------------------------------------------------------------


def _edit(item: GQAItem, rng: random.Random) -> GQAItem | None:
    scene, spec = item.scene, item.spec
    if spec["op"] == "exist":
        (i,) = item.objects
        obj = scene.objects[i]
        if item.answer == "yes":
            absent = [c for c in SUPERCATEGORIES[item.category] if scene.count(c) == 0]
            if not absent:
                return None
            new_name = rng.choice(absent)
        else:
            new_name = spec["name"]
        candidates = [
            ([i], scene.with_object(i, replace(obj, name=new_name)), "swap_class", obj.name, new_name)
        ]
    elif spec["op"] == "attr":
        (i,) = item.objects
        obj, attr = scene.objects[i], spec["attr"]
        if item.answer == "yes":
            new = rng.choice([v for v in ATTRIBUTE_VALUES[attr] if v != spec["value"]])
        else:
            new = spec["value"]
        kind = "recolor" if attr == "color" else "rematerial"
        candidates = [([i], scene.with_object(i, replace(obj, **{attr: new})), kind, getattr(obj, attr), new)]
    else:
        candidates = _moves(item, rng)
    for changed, edited, kind, old, new in candidates:
        edited_answer = answer_on(edited, spec)
        if edited_answer is None or edited_answer == item.answer or not edited.is_valid():
            continue
        boxes = [scene.objects[k].box for k in changed] + [edited.objects[k].box for k in changed]
        edit = {
            "kind": kind,
            "from": old,
            "to": new,
            "objects": list(changed),
            "after": [dict(edited.objects[k].to_json(), index=k) for k in changed],
        }
        mask = union_box(boxes, MASK_MARGIN, scene.image_size)
        return replace(item, edited=edited, edited_answer=edited_answer, edit=edit, mask_box=mask)
    return None


def _moves(item: GQAItem, rng: random.Random) -> list:
    """Candidate relation flips: mirror `a` about `b`, mirror `b` about `a`, or swap their centres."""
    scene = item.scene
    i, j = item.objects
    a, b = scene.objects[i], scene.objects[j]
    axis = "x" if item.spec["rel"] in ("left", "right") else "y"
    old = relation(a, b, axis)

    def centred_at(o, c):
        return replace(o, x=round(c[0] - o.w / 2), y=round(c[1] - o.h / 2))

    options = [
        ([i], scene.with_object(i, _mirrored(a, b, axis))),
        ([j], scene.with_object(j, _mirrored(b, a, axis))),
        ([i, j], scene.with_object(i, centred_at(a, b.center)).with_object(j, centred_at(b, a.center))),
    ]
    rng.shuffle(options)
    return [(changed, edited, "move", old, OPPOSITE[old]) for changed, edited in options]


def _mirrored(o, about, axis: str):
    """`o` reflected through `about`'s centre line along `axis` (distance to it preserved, side flipped)."""
    if axis == "x":
        return replace(o, x=round(2 * about.center[0] - o.center[0] - o.w / 2))
    return replace(o, y=round(2 * about.center[1] - o.center[1] - o.h / 2))
