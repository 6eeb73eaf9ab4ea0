"""Clean/edited pairs prepared for head discovery: prompts, candidate tokens, answer indices, group keys.

Discovery scores the answer at the last prompt position from the next-token distribution restricted to the
candidate set (yes/no for the synthetic world), so every candidate is represented by the *first* token of each of
its case variants (`yes`/`Yes`/`YES`, pooled with logsumexp as in :func:`vseam_pl.scoring.score_candidates`). For
single-token answers this is exact; two candidates that share a first token are rejected because one forward cannot
tell them apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..data.images import ImageLoadError, load_rgb
from ..levels import LEVELS, level_of
from ..pairs import PairError, read_pairs
from ..prompts import DEFAULT_INSTRUCTION, build_prompt
from ..records import ImagePair
from ..scoring import case_variants, variant_token_ids
from ..vlm import VLM


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


def groups_of(level: str | None, category: str | None) -> tuple[str, ...]:
    """Score groups a pair contributes to: everything, its level, its category."""
    keys = ["all"]
    if level:
        keys.append(f"level:{level}")
    if category:
        keys.append(f"category:{category}")
    return tuple(keys)


def load_pairs(
    manifest: str | os.PathLike,
    levels: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[ImagePair]:
    """Read a `pairs.jsonl` (file or folder), keeping the given levels/categories, at most `limit` pairs."""
    if levels:
        unknown = [lv for lv in levels if lv not in LEVELS]
        if unknown:
            raise ValueError(f"unknown level(s) {unknown}; expected some of {list(LEVELS)}")
    wanted_cats = {c.lower() for c in categories} if categories else None
    out: list[ImagePair] = []
    for pair in read_pairs(manifest):
        level = pair.level or level_of(pair.category)
        if levels and level not in levels:
            continue
        if wanted_cats is not None and (pair.category or "").lower() not in wanted_cats:
            continue
        out.append(pair)
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ValueError(f"{manifest}: no pairs left after selecting levels={levels} categories={categories}")
    return out


def _find(candidates: Sequence[str], answer: str) -> int | None:
    a = answer.strip().lower()
    for i, c in enumerate(candidates):
        if c.strip().lower() == a:
            return i
    return None


def prepare_pairs(
    vlm: VLM, pairs: Iterable[ImagePair], instruction: str | None = DEFAULT_INSTRUCTION
) -> list[PairItem]:
    """Validate pairs and tokenize their candidates. Pairs without `candidates` use (answer, edited_answer)."""
    items = []
    for index, pair in enumerate(pairs):
        where = pair.source or f"pair {pair.pair_id}"
        cands = pair.candidates
        if not cands:
            if pair.edited_answer is None:
                raise PairError(
                    f"{where}: field 'candidates' is missing and 'edited_answer' is unknown; discovery "
                    'needs a closed answer set (e.g. ["yes", "no"])'
                )
            cands = (pair.answer, pair.edited_answer)
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
                        "token; discovery scores the first answer token only"
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


def group_keys(items: Sequence[PairItem]) -> list[str]:
    """Every group key present, in a stable order (all, levels in LEVELS order, categories sorted)."""
    present = {k for it in items for k in it.groups}
    levels = [f"level:{lv}" for lv in LEVELS if f"level:{lv}" in present]
    others = sorted(k for k in present if k not in levels and k != "all")
    return ["all", *levels, *others]


def open_image(path: str, source: str, field: str, max_pixels: int | None = None) -> Image.Image:
    """Decode an RGB image with the package's one loader (`vseam_pl.data.images.load_rgb`), naming the pair and the
    field on failure."""
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


@dataclass
class CandidateIndex:
    """Candidate token ids of a chunk as padded tensors: `ids [E, C, K]`, `valid [E, C, K]`, `n_cands [E]`."""

    ids: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def of(cls, items: Sequence[PairItem]) -> CandidateIndex:
        c = max(len(it.candidate_tokens) for it in items)
        k = max(len(t) for it in items for t in it.candidate_tokens)
        ids = torch.zeros(len(items), c, k, dtype=torch.long)
        valid = torch.zeros(len(items), c, k, dtype=torch.bool)
        for e, it in enumerate(items):
            for ci, toks in enumerate(it.candidate_tokens):
                ids[e, ci, : len(toks)] = torch.tensor(toks)
                valid[e, ci, : len(toks)] = True
        return cls(ids, valid)

    def logprobs(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Candidate log-probs normalised over the candidate set, `[R, C]` (-inf for padding candidates).

        `logits [R, V]` are next-token logits at the last prompt position; `rows [R]` says which example each row
        belongs to (default: row i is example i).
        """
        ids, valid = (self.ids, self.valid) if rows is None else (self.ids[rows], self.valid[rows])
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(-1, ids.to(logp.device).flatten(1)).view(ids.shape)
        picked = picked.masked_fill(~valid.to(logp.device), float("-inf"))
        per_cand = torch.logsumexp(picked, dim=-1)  # [R, C]
        return per_cand - torch.logsumexp(per_cand, dim=-1, keepdim=True)
