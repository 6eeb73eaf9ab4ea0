"""A small direct reader of GQA question files and scene graphs for the editing job.

The editing job needs the raw GQA fields (`semantic` program, `annotations`, `object_positions`, …), which it keeps
in `QARecord.extra`; it reads whole files because planning edits is cheap and needs no images.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..levels import CATEGORY_LEVEL, level_of
from ..records import YES_NO, QARecord

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")
REQUIRED_FIELDS = ("question", "answer", "imageId")
Box = tuple[int, int, int, int]  # x, y, w, h in image pixels

_PROGRAM_OBJECT = re.compile(r"^(?P<desc>.*?)\s*\((?P<id>-|\d+)\)\s*$")


class GQAFormatError(ValueError):
    """A malformed GQA question or scene-graph file; the message names the file and record."""


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GQAFormatError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None


def category_of(path: Path) -> str | None:
    """The V-SEAM category a file stem names (``Animal.json`` → ``Animal``), else None."""
    for name in CATEGORY_LEVEL:
        if name.lower() == path.stem.lower():
            return name
    return None


def read_gqa_questions(path: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> list[QARecord]:
    """Read a GQA question file (a JSON list, or an object keyed by question id) into `QARecord`s.

    Answers are lowercased and yes/no questions get ``candidates=("yes", "no")``, as in `vseam_pl.data`; the raw GQA
    dict is kept in `extra`.
    """
    path = Path(path)
    data = _load_json(path)
    if isinstance(data, dict):
        items = [(str(k), v, str(k)) for k, v in data.items()]
    elif isinstance(data, list):
        items = [(str(i), v, None) for i, v in enumerate(data)]
    else:
        raise GQAFormatError(f"{path}: expected a JSON list of questions or an object keyed by question id")
    category = category_of(path)
    records = []
    for where, raw, key in items:
        source = f"{path}:{where}"
        if not isinstance(raw, dict):
            raise GQAFormatError(f"{source}: expected a question object, got {type(raw).__name__}")
        missing = [f for f in REQUIRED_FIELDS if f not in raw]
        if missing:
            raise GQAFormatError(
                f"{source}: missing field(s) {missing}; a GQA question needs {list(REQUIRED_FIELDS)}"
            )
        qid = str(raw.get("question_id") or key or where)
        answer = str(raw["answer"]).strip().lower()
        image_id = str(raw["imageId"])
        image = find_image(image_dir, image_id) if image_dir is not None else None
        records.append(
            QARecord(
                benchmark="gqa",
                question_id=qid,
                question=str(raw["question"]),
                answer=answer,
                image_id=image_id,
                image_path=str(image) if image else None,
                level=level_of(category, (raw.get("types") or {}).get("semantic")),
                category=category,
                candidates=YES_NO if answer in YES_NO else None,
                source=source,
                extra=raw,
            )
        )
    return records


def find_image(image_dir: str | os.PathLike, image_id: str) -> Path | None:
    """``{image_dir}/{imageId}.jpg`` or ``.png`` (whichever exists), else None."""
    for suffix in IMAGE_SUFFIXES:
        candidate = Path(image_dir) / f"{image_id}{suffix}"
        if candidate.exists():
            return candidate
    return None


def read_scene_graphs(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """GQA scene graphs ``{imageId: {width, height, objects: {id: {name, x, y, w, h, attributes, relations}}}}``."""
    path = Path(path)
    data = _load_json(path)
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
