"""The one image loader of the package: a record's or a pair's image as 8-bit RGB, from a file or an embedded payload.

Every path that reads an image (benchmark loaders, discovery/tracing pairs, the editing pipeline) goes through
`load_rgb`, so all of them agree on three things PIL leaves to the caller:

* EXIF orientation is applied (a phone photo stored sideways is seen upright, as a viewer shows it);
* 16-bit and 32-bit modes (``I;16``, ``I;16B``, ``I``, ``F``) are scaled to 8 bits, not clipped to white by
  ``convert("RGB")``;
* transparency (an alpha band, or a palette / grey image's transparent colour) is composited onto white, as
  Transformers' processors do (`transformers.image_transforms.convert_to_rgb`); ``convert("RGB")`` would drop
  alpha and show whatever colour the transparent pixels happen to hold;
* images above a pixel limit (decompression bombs) are refused with an error naming the file, before decoding.
  The limit is ``max_pixels``, else the ``VSEAM_MAX_IMAGE_PIXELS`` environment variable (reaches DataLoader workers
  and DDP ranks), else `DEFAULT_MAX_PIXELS` (PIL's own error threshold); ``0`` turns it off.

`decode_image` runs inside DataLoader workers and turns failures into `BadRecordError`s naming the record and the
file, so the stream can raise or count a skip instead of crashing a worker with a bare PIL traceback.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..records import QARecord
from .readers import BadRecordError

_OTHER_EXT = {".jpg": ".png", ".jpeg": ".png", ".png": ".jpg"}

#: PIL's own hard limit (it raises above twice ``Image.MAX_IMAGE_PIXELS``, about 179 MP).
DEFAULT_MAX_PIXELS: int = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
ENV_MAX_PIXELS = "VSEAM_MAX_IMAGE_PIXELS"
_PIL_LIMIT = threading.Lock()  # PIL's check reads a module global; we swap it only under this lock


class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the file (or where the bytes came from) and why."""


def max_pixels_setting(max_pixels: int | None = None) -> int | None:
    """The pixel limit in force: the argument, else ``$VSEAM_MAX_IMAGE_PIXELS``, else `DEFAULT_MAX_PIXELS`;
    ``None`` when the limit is off (``0``)."""
    if max_pixels is None:
        raw = os.environ.get(ENV_MAX_PIXELS, "").strip()
        try:
            max_pixels = int(raw) if raw else DEFAULT_MAX_PIXELS
        except ValueError as e:
            raise ValueError(
                f"{ENV_MAX_PIXELS} must be a whole number of pixels (0: no limit), got {raw!r}"
            ) from e
    if max_pixels < 0:
        raise ValueError(f"max_pixels must be >= 0 (0: no limit), got {max_pixels}")
    return max_pixels or None


def _to_8bit(im: Image.Image, what: str) -> Image.Image:
    """Scale a 16/32-bit integer or float single-channel image to mode ``L``.

    ``I;16*`` holds 0..65535; PIL opens 16-bit PNG/TIFF data as ``I`` too, so ``I`` in 0..65535 is read the same way.
    ``F`` in 0..1 is scaled by 255. Anything else has no known white level and is refused rather than guessed."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        lo, hi = 0, 65535
    else:
        lo_v, hi_v = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if im.mode == "I" and lo_v >= 0 and hi_v <= 65535:
            lo, hi = 0, 65535
        elif im.mode == "F" and np.isfinite(a).all() and lo_v >= 0 and hi_v <= 1:
            lo, hi = 0, 1
        else:
            raise ImageLoadError(
                f"{what}: mode {im.mode} image with values in [{lo_v:g}, {hi_v:g}] has no known "
                f"8-bit scaling (expected 0..65535 for integers, 0..1 for floats); convert it first"
            )
    scaled = np.rint((a.astype(np.float64) - lo) * (255.0 / (hi - lo)))
    return Image.fromarray(scaled.clip(0, 255).astype(np.uint8), mode="L")


def _open_limited(fp: str | Path | IO[bytes], limit: int | None) -> Image.Image:
    """`Image.open` with PIL's own bomb check replaced by ours (which may be higher, lower or off)."""
    with _PIL_LIMIT, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def load_rgb(
    fp: str | Path | IO[bytes], what: str | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Decode ``fp`` (a path or a binary file) to an upright 8-bit RGB image; `ImageLoadError` naming ``what``
    (default: the path) when it is missing, unreadable, truncated, too large or of an unscalable mode."""
    what = what or str(fp)
    limit = max_pixels_setting(max_pixels)
    try:
        with _open_limited(fp, limit) as im:
            pixels = im.width * im.height
            if limit is not None and pixels > limit:
                raise ImageLoadError(
                    f"{what}: image of {im.width}x{im.height} = {pixels:,} pixels exceeds the limit "
                    f"of {limit:,} (possible decompression bomb); raise it with max_pixels / "
                    f"${ENV_MAX_PIXELS} if the image is genuine"
                )
            im.load()  # decode now so truncated files fail here, not in the model
            return _rgb(ImageOps.exif_transpose(im), what)
    except ImageLoadError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageLoadError(f"could not decode image {what}: {e}") from e


def _rgb(im: Image.Image, what: str) -> Image.Image:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _to_8bit(im, what)
    if "A" in im.getbands() or "a" in im.getbands() or im.info.get("transparency") is not None:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def resolve_image(path: str | Path, source: str) -> Path:
    """The image file, trying the same stem with the other extension (.jpg <-> .png) before giving up."""
    path = Path(path)
    if path.is_file():
        return path
    other = path.with_suffix(_OTHER_EXT.get(path.suffix.lower(), ".jpg"))
    if other.is_file():
        return other
    raise BadRecordError(source, f"image file not found: {path} (also tried {other.name})")


def _load(fp: Any, what: str, source: str, max_pixels: int | None) -> Image.Image:
    try:
        return load_rgb(fp, what, max_pixels)
    except ImageLoadError as e:
        raise BadRecordError(source, str(e)) from e


def decode_image(record: QARecord, payload: Any = None, max_pixels: int | None = None) -> Image.Image:
    """RGB image for `record`: ``payload`` (HF ``{"bytes", "path"}`` dict or PIL image) when given, else its file."""
    if payload is None:
        if record.image_path is None:
            raise BadRecordError(record.source, "record has neither an image file nor an embedded image")
        path = resolve_image(record.image_path, record.source)
        return _load(path, str(path), record.source, max_pixels)
    if isinstance(payload, Image.Image):
        try:
            return _rgb(ImageOps.exif_transpose(payload), f"image of {record.source}")
        except ImageLoadError as e:
            raise BadRecordError(record.source, str(e)) from e
    if isinstance(payload, dict):
        if payload.get("bytes"):
            return _load(
                io.BytesIO(payload["bytes"]),
                f"embedded in the dataset (image_id {record.image_id})",
                record.source,
                max_pixels,
            )
        if payload.get("path"):
            path = resolve_image(payload["path"], record.source)
            return _load(path, str(path), record.source, max_pixels)
    raise BadRecordError(
        record.source, f"field 'image' is empty or not an image (got {type(payload).__name__})"
    )
