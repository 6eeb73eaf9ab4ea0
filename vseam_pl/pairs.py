"""The `pairs.jsonl` manifest of clean/edited image pairs (written by the synthetic world and by
`vseam_pl.edit`, read by head discovery and causal tracing).

One JSON object per line with the fields of :class:`~vseam_pl.records.ImagePair`; `clean_image` and `edited_image`
are paths relative to the manifest's folder (absolute paths are kept as they are).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .io import write_atomic
from .records import ImagePair

REQUIRED = ("pair_id", "question", "clean_image", "edited_image", "answer")


class ManifestError(ValueError):
    """A malformed pairs manifest; the message names the file and line."""


class PairError(ValueError):
    """A well-formed pair that discovery or tracing cannot use (answers not among the candidates, clean and edited
    encodings that do not line up, ...); the message names the pair and the field."""


def edited_index(correct: int, edited: int | None, n_candidates: int) -> int | None:
    """Candidate index of the answer on the edited image: the known one, else the other of exactly two candidates.

    None when it stays unknown or equals the clean answer's index (no logit difference between two answers then).
    """
    if edited is None and n_candidates == 2:
        edited = 1 - correct
    return None if edited is None or edited == correct else edited


def read_pairs(path: str | os.PathLike, resolve: bool = True) -> Iterator[ImagePair]:
    """Stream the pairs of a manifest, resolving image paths against its folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "pairs.jsonl"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no pairs manifest (expected a pairs.jsonl written by vseam_pl.synth or vseam_pl.edit)"
        )
    root = path.parent
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not valid JSON ({e.msg})") from None
            missing = [k for k in REQUIRED if k not in d]
            if missing:
                raise ManifestError(f"{where}: missing field(s) {missing}; a pair needs {list(REQUIRED)}")
            known = {f for f in ImagePair.__dataclass_fields__ if f != "source"}
            kw = {k: v for k, v in d.items() if k in known}
            if resolve:
                for key in ("clean_image", "edited_image"):
                    kw[key] = str(root / kw[key]) if not os.path.isabs(kw[key]) else kw[key]
            if kw.get("candidates") is not None:
                kw["candidates"] = tuple(kw["candidates"])
            if kw.get("mask_box") is not None:
                kw["mask_box"] = tuple(int(v) for v in kw["mask_box"])
            yield ImagePair(**kw, source=where)


def write_pairs(path: str | os.PathLike, pairs: Iterable[ImagePair]) -> Path:
    """Write a manifest atomically; image paths are stored relative to its folder when they lie below it."""
    path = Path(path)
    root = path.parent.resolve()

    def rel(p: str) -> str:
        try:
            return str(Path(p).resolve().relative_to(root))
        except ValueError:
            return p

    def writer(tmp: Path) -> None:
        with tmp.open("w") as fh:
            for pair in pairs:
                d = pair.to_json()
                d["clean_image"], d["edited_image"] = rel(d["clean_image"]), rel(d["edited_image"])
                fh.write(json.dumps(d) + "\n")

    return write_atomic(path, writer)


def append_pair(path: str | os.PathLike, pair: ImagePair) -> None:
    """Append one pair (flushed and fsynced) — for resumable producers that add pairs as they finish them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    d = pair.to_json()
    for key in ("clean_image", "edited_image"):
        try:
            d[key] = str(Path(d[key]).resolve().relative_to(root))
        except ValueError:
            pass
    with path.open("a") as fh:
        fh.write(json.dumps(d) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
