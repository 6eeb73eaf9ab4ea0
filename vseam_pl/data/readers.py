"""Parse the official benchmark files into `QARecord`s, lazily, one record at a time.

* GQA: a question JSON (a list, or an object keyed by question id); the category is the file stem
  (``Animal.json`` -> "Animal"), the level ``level_of(category, types.semantic)``; images ``{imageId}.jpg``.
* POPE: JSON Lines (even with a ``.json`` extension) ``{"question_id","image","text","label"}``; the category is the
  POPE split (random/popular/adversarial) taken from the file name; images are COCO files named by ``image``.
* COCO-QA: CSV with header ``,train_image_id_count,question_count,answer_count``; the category is the question type
  (the file-name prefix: color/count/location); images ``image_pattern.format(id=...)``.

Every record carries ``source`` = ``"file:line"`` or ``"file:record"`` so any later error can point at it. A bad
record raises `BadRecordError`, or is passed to ``on_bad`` (skip mode) and left out. A record holding bytes that are
not UTF-8 (e.g. a Latin-1 ``é``) is a bad record too, named by file and line. File names may hold any bytes: labels
and sources taken from them show undecodable bytes as ``\\xNN`` (`readable`), image paths keep them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..levels import level_of
from ..records import YES_NO, QARecord
from .jsonstream import JSONStreamError, iter_json_items

POPE_SPLITS: tuple[str, ...] = ("random", "popular", "adversarial")
COCOQA_HEADER: tuple[str, ...] = ("", "train_image_id_count", "question_count", "answer_count")
DEFAULT_COCOQA_PATTERN = "COCO_train2014_{id:012d}.jpg"


class BadRecordError(ValueError):
    """A record that cannot be used; ``str(err)`` is ``"<source>: <reason>"``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


#: Receives each bad record in skip mode; ``None`` means raise.
OnBad = Callable[[BadRecordError], None] | None


def readable(path: str | Path) -> str:
    """`path` as printable text: bytes of a file name that are not UTF-8 (kept by Python as lone surrogates, which
    cannot be printed or written as UTF-8) shown as ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_utf8(text: str, source: str, what: str = "line") -> None:
    """A `BadRecordError` when `text` (read with ``errors="surrogateescape"``) held bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = ord(text[e.start]) - 0xDC00 if "\udc80" <= text[e.start] <= "\udcff" else ord(text[e.start])
        raise BadRecordError(
            source,
            f"the {what} is not UTF-8 text (byte 0x{byte:02x} at character {e.start + 1}); "
            "re-encode the file as UTF-8",
        ) from None


def handle_bad(err: BadRecordError, on_bad: OnBad) -> None:
    if on_bad is None:
        raise err
    on_bad(err)


#: JSON value types a field may hold, by name (an int id is common in question files; a bool is never an id)
TEXT, ID = (str,), (str, int)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def require(obj: Any, field: str, source: str, kinds: tuple[type, ...] = TEXT) -> Any:
    """``obj[field]``, or a `BadRecordError` naming the record and the field when it is missing, empty or of another
    JSON type than `kinds` (a list or an object is never turned into its string form)."""
    if not isinstance(obj, dict):
        raise BadRecordError(source, f"expected a JSON object, got {_type_name(obj)}")
    value = obj.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRecordError(source, f"missing required field '{field}'")
    if not isinstance(value, kinds) or isinstance(value, bool):
        expected = "a string" if kinds == TEXT else "a string or an integer"
        raise BadRecordError(
            source, f"field '{field}' must be {expected}, got {_type_name(value)} {value!r:.60}"
        )
    return value


def closed_yes_no(answer: str) -> tuple[str, ...] | None:
    return YES_NO if answer in YES_NO else None


def gqa_record(
    obj: Any, source: str, category: str | None, image_dir: str | None, key: str | None = None
) -> QARecord:
    """One GQA question (file record or lmms-eval ``*_instructions`` row) as a `QARecord`."""
    question = require(obj, "question", source)
    answer = require(obj, "answer", source).strip().lower()
    image_id = str(require(obj, "imageId", source, ID))
    id_field = next((f for f in ("question_id", "id") if obj.get(f) not in (None, "")), None)
    qid = require(obj, id_field, source, ID) if id_field else key
    if not qid:
        raise BadRecordError(source, "missing required field 'question_id' (or 'id', or a dict key)")
    semantic = (obj.get("types") or {}).get("semantic") if isinstance(obj.get("types"), dict) else None
    extra = {k: v for k, v in obj.items() if k not in ("question", "answer", "imageId", "question_id", "id")}
    return QARecord(
        benchmark="gqa",
        question_id=str(qid),
        question=question,
        answer=answer,
        image_id=image_id,
        image_path=str(Path(image_dir) / f"{image_id}.jpg") if image_dir is not None else None,
        level=level_of(category, semantic),
        category=category,
        candidates=closed_yes_no(answer),
        source=source,
        extra=extra,
    )


def pope_split_of(path: str | Path) -> str:
    """POPE split from a file name (``coco_pope_random.json`` -> "random"); the stem when none matches."""
    stem = Path(path).stem.lower()
    return next((s for s in POPE_SPLITS if s in stem), stem)


def pope_record(obj: Any, source: str, category: str, image_dir: str) -> QARecord:
    raw_qid = require(obj, "question_id", source, ID)
    image = require(obj, "image", source)
    label = require(obj, "label", source).strip().lower()
    if label not in YES_NO:
        raise BadRecordError(source, f"field 'label' must be 'yes' or 'no', got {label!r}")
    extra = {k: v for k, v in obj.items() if k not in ("question_id", "image", "text", "label")}
    extra["raw_question_id"] = raw_qid
    return QARecord(
        benchmark="pope",
        question_id=f"{category}-{raw_qid}",
        question=require(obj, "text", source),
        answer=label,
        image_id=Path(image).stem,
        image_path=str(Path(image_dir) / image),
        category=category,
        candidates=YES_NO,
        source=source,
        extra=extra,
    )


def cocoqa_type_of(path: str | Path) -> str:
    """COCO-QA question type from a file name (``color_coco_qa.csv`` -> "color")."""
    return Path(path).stem.split("_")[0].lower()


def cocoqa_image_name(image_id: str, pattern: str, source: str) -> str:
    try:
        return pattern.format(id=int(image_id) if image_id.isdigit() else image_id)
    except (ValueError, KeyError, IndexError) as e:
        raise BadRecordError(
            source, f"image id {image_id!r} does not fit image_pattern {pattern!r}: {e}"
        ) from e


def read_gqa(path: str | Path, image_dir: str | None, on_bad: OnBad = None) -> Iterator[QARecord]:
    """GQA questions from a JSON list or a JSON object keyed by question id (streamed, see `jsonstream`)."""
    category = readable(Path(path).stem)
    seen: dict[str, bool] = {}
    items = iter_json_items(path, seen=seen)
    while True:
        try:
            key, obj = next(items)
        except StopIteration:
            return
        except JSONStreamError as e:  # the document cannot be resynchronised: always fatal
            raise BadRecordError(str(path), f"{e} (a malformed JSON document cannot be skipped)") from e
        source = f"{readable(path)}:{readable(key)}"
        try:
            if seen.get("undecodable"):  # only then: re-encoding every record would double the reading time
                check_utf8(json.dumps([key, obj], ensure_ascii=False), source, "record")
            yield gqa_record(obj, source, category, image_dir, key=key if isinstance(key, str) else None)
        except BadRecordError as e:
            handle_bad(e, on_bad)


def read_pope(path: str | Path, image_dir: str, on_bad: OnBad = None) -> Iterator[QARecord]:
    """POPE questions from a JSON Lines file."""
    category = readable(pope_split_of(path))
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            source = f"{readable(path)}:{lineno}"
            try:
                check_utf8(line, source)
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadRecordError(source, f"malformed JSON line ({e.msg}, column {e.colno})") from e
                yield pope_record(obj, source, category, image_dir)
            except BadRecordError as e:
                handle_bad(e, on_bad)


def read_cocoqa(
    path: str | Path, image_dir: str, pattern: str = DEFAULT_COCOQA_PATTERN, on_bad: OnBad = None
) -> Iterator[QARecord]:
    """COCO-QA questions from a CSV file (index, COCO image id, question, one-word answer)."""
    qtype = readable(cocoqa_type_of(path))
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COCOQA_HEADER:
            raise BadRecordError(
                f"{readable(path)}:1",
                f"expected the COCO-QA header {','.join(COCOQA_HEADER)!r}, got {header!r}",
            )
        for row in reader:
            source = f"{readable(path)}:{reader.line_num}"
            try:
                check_utf8(",".join(row), source)
                if len(row) != 4:
                    raise BadRecordError(
                        source, f"expected 4 columns (index, image id, question, answer), got {len(row)}"
                    )
                index, image_id, question, answer = (c.strip() for c in row)
                for name, value in (
                    ("train_image_id_count", image_id),
                    ("question_count", question),
                    ("answer_count", answer),
                ):
                    if not value:
                        raise BadRecordError(source, f"missing required field '{name}'")
                yield QARecord(
                    benchmark="cocoqa",
                    question_id=f"{qtype}-{index or reader.line_num}",
                    question=question,
                    answer=answer.lower(),
                    image_id=image_id,
                    image_path=str(Path(image_dir) / cocoqa_image_name(image_id, pattern, source)),
                    category=qtype,
                    source=source,
                )
            except BadRecordError as e:
                handle_bad(e, on_bad)
