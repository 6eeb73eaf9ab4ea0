"""Decode a record's image to RGB, from a file or from an embedded HF `Image` payload.

Runs inside DataLoader workers. Failures become `BadRecordError`s naming the record and the file, so the stream can
raise or count a skip instead of crashing a worker with a bare PIL traceback.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..records import QARecord
from .readers import BadRecordError

_OTHER_EXT = {".jpg": ".png", ".jpeg": ".png", ".png": ".jpg"}


def resolve_image(path: str | Path, source: str) -> Path:
    """The image file, trying the same stem with the other extension (.jpg <-> .png) before giving up."""
    path = Path(path)
    if path.is_file():
        return path
    other = path.with_suffix(_OTHER_EXT.get(path.suffix.lower(), ".jpg"))
    if other.is_file():
        return other
    raise BadRecordError(source, f"image file not found: {path} (also tried {other.name})")


def _open_rgb(fp: Any, what: str, source: str) -> Image.Image:
    try:
        with Image.open(fp) as im:
            im.load()  # decode now so truncated files fail here, not in the model
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise BadRecordError(source, f"could not decode image {what}: {e}") from e


def decode_image(record: QARecord, payload: Any = None) -> Image.Image:
    """RGB image for `record`: ``payload`` (HF ``{"bytes", "path"}`` dict or PIL image) when given, else its file."""
    if payload is None:
        if record.image_path is None:
            raise BadRecordError(record.source, "record has neither an image file nor an embedded image")
        path = resolve_image(record.image_path, record.source)
        return _open_rgb(path, str(path), record.source)
    if isinstance(payload, Image.Image):
        return payload.convert("RGB")
    if isinstance(payload, dict):
        if payload.get("bytes"):
            return _open_rgb(io.BytesIO(payload["bytes"]), f"embedded in the dataset (image_id {record.image_id})",
                             record.source)
        if payload.get("path"):
            path = resolve_image(payload["path"], record.source)
            return _open_rgb(path, str(path), record.source)
    raise BadRecordError(record.source, f"field 'image' is empty or not an image (got {type(payload).__name__})")
