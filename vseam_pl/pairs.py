"""Clean/edited image pairs, the one API head discovery and causal tracing share: read, write, select, prepare.

- **read / write**: the `pairs.jsonl` manifest (written by the synthetic world and by `vseam_pl.edit`), one JSON
  object per line with the fields of :class:`~vseam_pl.records.ImagePair`; `clean_image` and `edited_image` are
  paths relative to the manifest's folder (absolute paths are kept as they are): :func:`read_pairs`,
  :func:`write_pairs`, :func:`append_pair`;
- **select**: pairs of some levels / categories, at most `limit`, with unique ids: :func:`select_pairs`, and
  :func:`load_pairs` (read + select, refusing an empty selection);
- **prepare**: prompts, candidate first tokens and answer indices for scoring at the last prompt position
  (:func:`prepare_pairs` -> :class:`PairItem`), and the images (:func:`images_of`).

The answer on the edited image is `edited_answer`, else the other of exactly two candidates (:func:`edited_index`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .io import write_atomic
from .levels import LEVELS, level_of
from .prompts import DEFAULT_INSTRUCTION, build_prompt
from .records import ImagePair
from .scoring import case_variants, variant_token_ids
from .vlm import VLM

REQUIRED = ("pair_id", "question", "clean_image", "edited_image", "answer")
#: The JSON type of each optional field (None is always allowed); the required ones are non-empty strings.
OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "edited_answer": (str,),
    "level": (str,),
    "category": (str,),
    "candidates": (list,),
    "question_id": (str, int),
    "edit": (dict,),
    "mask_box": (list,),
    "seed": (int,),
    "model_id": (str,),
}


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
    with path.open(encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ManifestError(
                    f"{where}: not UTF-8 text (character {e.start + 1}); re-encode the file"
                ) from None
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not valid JSON ({e.msg})") from None
            kw = _checked_fields(d, where)
            if resolve:
                for key in ("clean_image", "edited_image"):
                    kw[key] = str(root / kw[key]) if not os.path.isabs(kw[key]) else kw[key]
            yield ImagePair(**kw, source=where)


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", int: "an integer", float: "a number"}
    return f"{names.get(type(value), type(value).__name__)} {value!r:.60}"


def _checked_fields(d: object, where: str) -> dict:
    """The `ImagePair` fields of one manifest line, each of the JSON type it must have; a `ManifestError` naming the
    line and the field otherwise (nothing is turned into its string form)."""
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected a JSON object (one pair), got {_kind(d)}")
    missing = [k for k in REQUIRED if d.get(k) is None]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {missing}; a pair needs {list(REQUIRED)}")
    for key in REQUIRED:
        if not isinstance(d[key], str) or not d[key].strip():
            raise ManifestError(f"{where}: field '{key}' must be a non-empty string, got {_kind(d[key])}")
    known = {f for f in ImagePair.__dataclass_fields__ if f != "source"}
    kw = {k: v for k, v in d.items() if k in known and v is not None}
    for key, kinds in OPTIONAL_TYPES.items():
        value = kw.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            expected = " or ".join(_kind_name(k) for k in kinds)
            raise ManifestError(f"{where}: field '{key}' must be {expected} (or null), got {_kind(value)}")
    if "candidates" in kw:
        if not kw["candidates"] or not all(isinstance(c, str) and c.strip() for c in kw["candidates"]):
            got = repr(kw["candidates"])[:80]
            raise ManifestError(f"{where}: field 'candidates' must be a list of non-empty strings, got {got}")
        kw["candidates"] = tuple(kw["candidates"])
    if "mask_box" in kw:
        box = kw["mask_box"]
        whole = all(
            isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer() for v in box
        )
        if len(box) != 4 or not whole or min(box) < 0 or box[2] == 0 or box[3] == 0:
            raise ManifestError(
                f"{where}: field 'mask_box' must be [x, y, width, height]: four whole numbers >= 0, width and "
                f"height > 0; got {box!r:.80}"
            )
        kw["mask_box"] = tuple(int(v) for v in box)
    return kw


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", list: "a list", dict: "an object"}[kind]


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


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes ("missing" when it cannot be read: the run reports that file itself)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return "missing"
    return h.hexdigest()


def pair_digest(pair: ImagePair) -> str:
    """A digest of everything a pair's results depend on: all its fields (question, answers, candidates, image
    paths, ...) and the bytes of both images. Resumed results are reused only when it is unchanged: the same ids with
    swapped images or answers are other inputs."""
    fields = json.dumps(pair.to_json(), sort_keys=True, default=str)
    images = [file_digest(pair.clean_image), file_digest(pair.edited_image)]
    return hashlib.sha256(json.dumps([fields, images]).encode()).hexdigest()


# -- select ---------------------------------------------------------------------------------------------------


def pair_level(pair: ImagePair) -> str:
    """A pair's semantic level: its `level`, else its category's, else `unknown`."""
    return pair.level or level_of(pair.category) or "unknown"


def safe_id(pair_id: str) -> str:
    """The pair id as a file name (results are stored per pair); two ids with the same safe form collide."""
    return re.sub(r"[^\w.-]", "_", pair_id)


def select_pairs(
    pairs: Iterable[ImagePair],
    levels: Sequence[str] | None = None,
    *,
    categories: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[ImagePair]:
    """Pairs of the given levels (see :func:`pair_level`) and categories (case-insensitive), at most `limit`, in
    manifest order. Pair ids must be unique (also as file names, :func:`safe_id`) among the pairs read."""
    unknown = sorted(set(levels or ()) - {*LEVELS, "unknown"})
    if unknown:
        raise ValueError(f"unknown level(s) {unknown}; expected some of {[*LEVELS, 'unknown']}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of pairs, got {limit}")
    wanted_cats = {c.lower() for c in categories} if categories else None
    out: list[ImagePair] = []
    seen: dict[str, str] = {}
    for pair in pairs:
        key = safe_id(pair.pair_id)
        if key in seen:
            raise ValueError(
                f"{pair.source}: pair_id {pair.pair_id!r} repeats (or collides with) {seen[key]}"
            )
        seen[key] = pair.source or pair.pair_id
        if levels and pair_level(pair) not in levels:
            continue
        if wanted_cats is not None and (pair.category or "").lower() not in wanted_cats:
            continue
        out.append(pair)
        if limit is not None and len(out) >= limit:
            break
    return out


def load_pairs(
    manifest: str | os.PathLike,
    levels: Sequence[str] | None = None,
    *,
    categories: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[ImagePair]:
    """Read a `pairs.jsonl` (file or folder) and :func:`select_pairs` from it; an empty selection is an error."""
    out = select_pairs(read_pairs(manifest), levels, categories=categories, limit=limit)
    if not out:
        raise ValueError(f"{manifest}: no pairs left after selecting levels={levels} categories={categories}")
    return out


# -- prepare --------------------------------------------------------------------------------------------------


def candidates_of(pair: ImagePair) -> tuple[str, ...] | None:
    """The pair's closed answer set: `candidates`, else (answer, edited_answer), else None (unknown)."""
    if pair.candidates:
        return tuple(pair.candidates)
    return None if pair.edited_answer is None else (pair.answer, pair.edited_answer)


@dataclass(frozen=True)
class PairItem:
    """One pair ready for scoring. `index` is its position in the full list (stable across shards and resumes)."""

    pair: ImagePair
    index: int
    prompt: str
    level: str | None
    category: str | None
    candidate_tokens: tuple[
        tuple[int, ...], ...
    ]  # per candidate: distinct first-token ids of its case variants
    correct: int  # candidate index of `answer`
    edited: int | None  # candidate index of the answer on the edited image (None when unknown)

    @property
    def groups(self) -> tuple[str, ...]:
        return groups_of(self.level, self.category)

    @property
    def candidates(self) -> tuple[str, ...]:
        """The candidate answers `candidate_tokens` belong to."""
        cands = candidates_of(self.pair)
        assert cands is not None  # prepare_pairs refuses pairs without an answer set
        return cands


def groups_of(level: str | None, category: str | None) -> tuple[str, ...]:
    """Score groups a pair contributes to: everything, its level, its category."""
    keys = ["all"]
    if level:
        keys.append(f"level:{level}")
    if category:
        keys.append(f"category:{category}")
    return tuple(keys)


def _find(candidates: Sequence[str], answer: str) -> int | None:
    a = answer.strip().lower()
    for i, c in enumerate(candidates):
        if c.strip().lower() == a:
            return i
    return None


def prepare_pairs(
    vlm: VLM, pairs: Iterable[ImagePair], instruction: str | None = DEFAULT_INSTRUCTION
) -> list[PairItem]:
    """Validate pairs and tokenize their candidates. Pairs without `candidates` use (answer, edited_answer).

    Answers are scored at the last prompt position from the next-token distribution, so every candidate is
    represented by the *first* token of each of its case variants (`yes`/`Yes`/`YES`, pooled with logsumexp as in
    :func:`vseam_pl.scoring.score_candidates`). For single-token answers this is exact; two candidates that share
    a first token are rejected because one forward cannot tell them apart.
    """
    items = []
    for index, pair in enumerate(pairs):
        where = pair.source or f"pair {pair.pair_id}"
        cands = candidates_of(pair)
        if cands is None:
            raise PairError(
                f"{where}: field 'candidates' is missing and 'edited_answer' is unknown; scoring "
                'a pair needs a closed answer set (e.g. ["yes", "no"])'
            )
        correct = _find(cands, pair.answer)
        if correct is None:
            raise PairError(
                f"{where}: field 'answer' {pair.answer!r} is not one of the candidates {list(cands)}"
            )
        edited = None
        if pair.edited_answer is not None:
            edited = _find(cands, pair.edited_answer)
            if edited is None:
                raise PairError(
                    f"{where}: field 'edited_answer' {pair.edited_answer!r} is not one of the "
                    f"candidates {list(cands)}"
                )
        prompt = build_prompt(vlm, pair.question, instruction)
        tokens: list[tuple[int, ...]] = []
        owner: dict[int, int] = {}
        for ci, cand in enumerate(cands):
            ids = []
            for variant in case_variants(cand):
                t = variant_token_ids(vlm, prompt, variant)
                if not t:
                    continue
                if owner.setdefault(t[0], ci) != ci:
                    raise PairError(
                        f"{where}: candidates {cands[owner[t[0]]]!r} and {cand!r} start with the same "
                        "token; discovery and tracing score the first answer token only"
                    )
                ids.append(t[0])
            if not ids:
                raise PairError(f"{where}: candidate {cand!r} tokenizes to nothing")
            tokens.append(tuple(dict.fromkeys(ids)))
        items.append(
            PairItem(
                pair,
                index,
                prompt,
                pair.level or level_of(pair.category),
                pair.category,
                tuple(tokens),
                correct,
                edited,
            )
        )
    return items


def open_image(path: str, source: str, field: str, max_pixels: int | None = None) -> Image.Image:
    """Decode an RGB image with the package's one loader (`vseam_pl.data.images.load_rgb`), naming the pair and the
    field on failure."""
    # imported here: `vseam_pl.data` imports Lightning, which the manifest writers (synth, edit) do not need
    from .data.images import ImageLoadError, load_rgb

    p = Path(path)
    if not p.is_file():
        raise PairError(f"{source}: field {field!r}: image file not found: {p}")
    try:
        return load_rgb(p, str(p), max_pixels)
    except ImageLoadError as e:
        raise PairError(f"{source}: field {field!r}: {e}") from e


def images_of(items: Sequence[PairItem], which: str) -> list[Image.Image]:
    """The clean or edited images of `items`."""
    if which not in ("clean", "edited"):
        raise ValueError(f"which must be 'clean' or 'edited', got {which!r}")
    field = f"{which}_image"
    return [open_image(getattr(it.pair, field), it.pair.source or it.pair.pair_id, field) for it in items]
