"""GQA inputs of the editing job: question records (through `vseam_pl.data`), scene graphs, and the parts of a
record's raw fields (`semantic` program, object names, `object_positions`) that say what to edit and where.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.readers import read_gqa
from ..io import read_json
from ..records import QARecord

Box = tuple[int, int, int, int]  # x, y, w, h in image pixels

_PROGRAM_OBJECT = re.compile(r"^(?P<desc>.*?)\s*\((?P<id>-|\d+)\)\s*$")


class GQAFormatError(ValueError):
    """A malformed GQA scene graph or box; the message names the file and object."""


def read_gqa_questions(path: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> list[QARecord]:
    """All records of a GQA question file (list or id-keyed object) via `vseam_pl.data`'s reader.

    Answers are lowercased, yes/no questions get ``candidates=("yes", "no")`` and the raw GQA fields the planner
    needs (`semantic`, `object_positions`, …) stay in `extra`; a bad record raises `BadRecordError` naming it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: question file not found")
    return list(read_gqa(path, str(image_dir) if image_dir is not None else None))


def read_scene_graphs(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """GQA scene graphs ``{imageId: {width, height, objects: {id: {name, x, y, w, h, attributes, relations}}}}``."""
    path = Path(path)
    data = read_json(path, "scene-graph file", GQAFormatError)
    if not isinstance(data, dict):
        raise GQAFormatError(f"{path}: expected an object keyed by image id")
    for image_id, graph in data.items():
        if not isinstance(graph, dict) or not isinstance(graph.get("objects"), dict):
            raise GQAFormatError(
                f"{path}: image '{image_id}' needs an 'objects' mapping of object id -> object"
            )
        for oid, obj in graph["objects"].items():
            absent = [k for k in ("name", "x", "y", "w", "h") if k not in obj]
            if absent:
                raise GQAFormatError(f"{path}: image '{image_id}' object '{oid}' lacks {absent}")
    return data


@dataclass(frozen=True)
class ProgramObject:
    """An object a `semantic` step selects or relates to. `name` is the program's word for it, which may be a
    class ("animal", "vehicle") or a pronoun ("he"); `oid` is GQA's object id, None for a ``(-)`` distractor."""

    step: int
    name: str | None
    oid: str | None


@dataclass(frozen=True)
class ProgramRelation:
    """A ``relate`` / ``verify rel`` / ``choose rel`` step, read with GQA's subject/object marker: in
    ``relate: man,wearing,s (7)`` the new object (7, a man) is the *subject* of "wearing" and the step's input object
    the object; with ``,o`` the input object is the subject. `relations` holds the ``a|b`` choices of the step."""

    step: int
    operation: str
    relations: tuple[str, ...]
    subject: ProgramObject
    object: ProgramObject


_RELATION_OPS = ("relate", "verify rel", "choose rel")


def _object_steps(raw: dict[str, Any]) -> dict[int, ProgramObject]:
    """step index -> the object that step yields (select/relate) or names (verify rel/choose rel)."""
    out: dict[int, ProgramObject] = {}
    for i, step in enumerate(raw.get("semantic") or []):
        op = str(step.get("operation", ""))
        if op != "select" and not op.startswith(_RELATION_OPS):
            continue
        m = _PROGRAM_OBJECT.match(str(step.get("argument", "")))
        if not m:
            continue
        desc = m.group("desc")
        name = desc.strip() if op == "select" else desc.split(",")[0].strip()
        out[i] = ProgramObject(
            i, None if name in ("", "_") else name, None if m.group("id") == "-" else m.group("id")
        )
    return out


def program_objects(raw: dict[str, Any]) -> list[ProgramObject]:
    """The objects the `semantic` program selects or relates to, in program order (``(-)`` distractors included)."""
    return list(_object_steps(raw).values())


def _input_object(
    semantic: list[dict[str, Any]], objects: dict[int, ProgramObject], step: int
) -> ProgramObject | None:
    """The object a step works on: follow its first dependency back through filters to a select/relate step."""
    seen = set()
    while step not in seen:
        seen.add(step)
        deps = semantic[step].get("dependencies") or []
        if not deps:
            return None
        step = int(deps[0])
        if step in objects and not str(semantic[step].get("operation", "")).startswith(("verify", "choose")):
            return objects[step]
    return None


def program_relations(raw: dict[str, Any]) -> list[ProgramRelation]:
    """Every relation step of the program, in order, with its subject and object (GQA's ``s``/``o`` marker)."""
    semantic = raw.get("semantic") or []
    objects = _object_steps(raw)
    out = []
    for i, step in enumerate(semantic):
        op = str(step.get("operation", ""))
        if not op.startswith(_RELATION_OPS) or i not in objects:
            continue
        parts = [p.strip() for p in _PROGRAM_OBJECT.match(str(step["argument"])).group("desc").split(",")]
        source = _input_object(semantic, objects, i)
        if len(parts) < 3 or source is None:
            continue
        rels = tuple(r.strip() for r in parts[1].split("|") if r.strip())
        new = objects[i]
        subject, obj = (new, source) if parts[2] == "s" else (source, new)
        out.append(ProgramRelation(i, op, rels, subject, obj))
    return out


def program_boxes(raw: dict[str, Any], where: str) -> dict[str, Box]:
    """GQA object id -> box. The release lists `object_positions` in the order the program first names each object
    with an id (select, relate, verify rel, choose rel; ``(-)`` distractors have none) — *not* in the order of
    `relevant_objects`/`involved_objects`. Raises `GQAFormatError` when the counts disagree, so no box is ever
    guessed."""
    positions = raw.get("object_positions") or []
    oids = list(dict.fromkeys(o.oid for o in program_objects(raw) if o.oid))
    if len(oids) != len(positions):
        raise GQAFormatError(
            f"{where}: {len(positions)} object_positions but the semantic program names {len(oids)} objects "
            f"with ids ({oids}); cannot tell which box is which"
        )
    return {oid: as_box(positions[i], f"{where}: object_positions[{i}]") for i, oid in enumerate(oids)}


def annotated_words(raw: dict[str, Any]) -> dict[str, list[str]]:
    """GQA object id -> the words of `fullAnswer` annotated with it (``annotations.fullAnswer``: token index or
    ``a:b`` range -> id), lowercased without punctuation: GQA's own evidence of what each object is called."""
    tokens = str(raw.get("fullAnswer", "")).split()
    out: dict[str, list[str]] = {}
    for key, oid in ((raw.get("annotations") or {}).get("fullAnswer") or {}).items():
        try:
            a, _, b = str(key).partition(":")
            words = tokens[int(a) : int(b)] if b else tokens[int(a) : int(a) + 1]
        except ValueError:
            continue
        phrase = " ".join(re.sub(r"[^\w\s-]", "", w) for w in words).strip().lower()
        if phrase:
            out.setdefault(str(oid), []).append(phrase)
    return out


def program_attributes(raw: dict[str, Any], kind: str) -> list[str]:
    """Attribute values of ``verify|filter|choose {kind}`` steps (e.g. kind ``material``), choices split."""
    values: list[str] = []
    for step in raw.get("semantic") or []:
        op = step.get("operation", "").split()
        if len(op) == 2 and op[0] in ("verify", "filter", "choose") and op[1] == kind:
            arg = str(step.get("argument", "")).strip()
            arg = arg[4:-1] if arg.startswith("not(") else arg
            values += [v.strip() for v in arg.split("|") if v.strip()]
    return values


def object_names(raw: dict[str, Any]) -> list[str]:
    """The record's object names (`relevant_objects` or `involved_objects`). Their order is *not* the order of
    `object_positions` (it is often alphabetical); `EditPlanner` pairs them with program objects by name."""
    return [str(n) for n in raw.get("relevant_objects") or raw.get("involved_objects") or []]


def as_box(d: dict[str, Any], where: str) -> Box:
    try:
        box = tuple(int(round(float(d[k]))) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        raise GQAFormatError(f"{where}: a box needs numeric x, y, w, h; got {d!r}") from None
    return box  # type: ignore[return-value]
