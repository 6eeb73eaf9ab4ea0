"""GQA inputs of the editing job: question records (through `vseam_pl.data`), scene graphs, and the parts of a
record's raw fields (`semantic` program, object names, `object_positions`) that say what to edit and where.
"""

from __future__ import annotations

import os
import re
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


def program_objects(raw: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(name, object id) for each object the `semantic` program selects or relates to, in program order.

    ``select: cow (313791)`` → ("cow", "313791"); ``relate: _,in front of,o (521700)`` → (None, "521700");
    distractors written ``(-)`` have no id.
    """
    out: list[tuple[str | None, str | None]] = []
    for step in raw.get("semantic") or []:
        op = step.get("operation", "")
        if op != "select" and not op.startswith("relate"):
            continue
        m = _PROGRAM_OBJECT.match(str(step.get("argument", "")))
        if not m:
            continue
        desc = m.group("desc")
        name = desc.split(",")[0].strip() if op.startswith("relate") else desc.strip()
        out.append((None if name in ("", "_") else name, None if m.group("id") == "-" else m.group("id")))
    return out


def program_relations(raw: dict[str, Any]) -> list[str]:
    """The relation names of ``relate``/``verify rel``/``choose rel`` steps (``a|b`` choices split)."""
    rels: list[str] = []
    for step in raw.get("semantic") or []:
        op = step.get("operation", "")
        if op.startswith("relate") or op in ("verify rel", "choose rel"):
            parts = str(step.get("argument", "")).split(",")
            if len(parts) >= 3:
                rels += [r.strip() for r in parts[1].split("|") if r.strip()]
    return rels


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
    """The record's object names (`relevant_objects` or `involved_objects`), aligned with `object_positions`."""
    return [str(n) for n in raw.get("relevant_objects") or raw.get("involved_objects") or []]


def as_box(d: dict[str, Any], where: str) -> Box:
    try:
        box = tuple(int(round(float(d[k]))) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        raise GQAFormatError(f"{where}: a box needs numeric x, y, w, h; got {d!r}") from None
    return box  # type: ignore[return-value]
