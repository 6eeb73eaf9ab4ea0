"""One clean/edited pair made ready for tracing: encoded once, located, scored, and its activations cached.

Both images are encoded with the same prompt, so the two rows have identical token ids and every position means
the same thing in both runs — the precondition for copying activations between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from ..encoding import encode
from ..prompts import DEFAULT_INSTRUCTION, build_prompt
from ..records import ImagePair
from ..vlm import VLM
from .patching import (
    AnswerTokens,
    Scores,
    answer_tokens,
    cache_sites,
    capture_decoder_inputs,
    decoder_logits,
    last_logits,
    model_inputs,
    select_rows,
    stack_layers,
)
from .positions import TokenGroups, concept_words, token_groups


class PairError(ValueError):
    """A malformed pair (unreadable image, mismatched encodings); the message names the pair and the reason."""


class UntraceablePairError(PairError):
    """A well-formed pair the logit difference is undefined for (no edited answer, answers sharing a first token)."""


def edited_answer(pair: ImagePair) -> str:
    """The answer the edit should produce: `edited_answer`, else the other of two candidates."""
    if pair.edited_answer:
        return pair.edited_answer
    cands = [c for c in (pair.candidates or ()) if c.strip().lower() != pair.answer.strip().lower()]
    if len(cands) == 1:
        return cands[0]
    raise UntraceablePairError(f"{pair.source or pair.pair_id}: no `edited_answer`, and `candidates` do not name a single other answer")


def load_rgb(path: str, where: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (FileNotFoundError, OSError) as e:
        raise PairError(f"{where}: cannot read image {path} ({e})") from None


@dataclass
class TracedPair:
    """A pair's inputs, token groups, answer tokens, baseline scores and cached activations."""

    pair: ImagePair
    prompt: str
    inputs: dict[str, torch.Tensor]  # decoder inputs (see `capture_decoder_inputs`), rows [clean, edited]
    groups: TokenGroups
    answers: AnswerTokens
    baseline: Scores  # rows [clean, edited]
    clean: dict[str, torch.Tensor]  # site -> [L, T, ...] of the clean run
    edited: dict[str, torch.Tensor]  # site -> [L, T, ...] of the edited run

    @property
    def edited_inputs(self) -> dict[str, torch.Tensor]:
        return select_rows(self.inputs, slice(1, 2), 2)

    @property
    def ld_clean(self) -> float:
        return float(self.baseline.ld[0])

    @property
    def ld_edited(self) -> float:
        return float(self.baseline.ld[1])

    def summary(self) -> dict:
        """JSON-ready description shared by every analysis of the pair."""
        p = self.pair
        return {
            "pair_id": p.pair_id,
            "question": p.question,
            "answer": p.answer,
            "edited_answer": edited_answer(p),
            "level": p.level,
            "category": p.category,
            "ld_clean": self.ld_clean,
            "ld_edited": self.ld_edited,
            "p_clean_clean": float(self.baseline.p_clean[0]),
            "p_clean_edited": float(self.baseline.p_clean[1]),
            "n_image": len(self.groups.image),
            "n_text": len(self.groups.text),
            "image_span": [self.groups.image[0], self.groups.image[-1]],
            "final": self.groups.final,
        }


@torch.no_grad()
def trace_pair(vlm: VLM, pair: ImagePair, sites: Sequence[str] = ("resid",),
               instruction: str | None = DEFAULT_INSTRUCTION) -> TracedPair:  # fmt: skip
    """Encode the pair, locate its token groups, score both runs and cache `sites` of both."""
    where = pair.source or pair.pair_id
    prompt = build_prompt(vlm, pair.question, instruction)
    images = [load_rgb(pair.clean_image, where), load_rgb(pair.edited_image, where)]
    enc = encode(vlm, [prompt, prompt], images)
    if not torch.equal(enc.input_ids[0], enc.input_ids[1]) or int(enc.lengths.min()) != enc.input_ids.shape[1]:
        raise PairError(f"{where}: the clean and edited images encode to different token sequences")
    try:
        answers = answer_tokens(vlm, prompt, pair.answer, edited_answer(pair))
    except UntraceablePairError:
        raise
    except ValueError as e:
        raise UntraceablePairError(f"{where}: {e}") from None
    try:
        groups = token_groups(vlm, prompt, pair.question, enc.input_ids[0], int(enc.lengths[0]), concept_words(pair))
    except ValueError as e:
        raise PairError(f"{where}: {e}") from None
    with cache_sites(vlm, sites) as cache, capture_decoder_inputs(vlm) as decoder_inputs:
        baseline = Scores(*(lp.cpu() for lp in answers.logps(last_logits(vlm, model_inputs(enc, vlm)))))
    replay = Scores(*(lp.cpu() for lp in answers.logps(decoder_logits(vlm, select_rows(decoder_inputs, slice(1, 2), 2)))))
    tol = 1e-3 if vlm.dtype == torch.float32 else 0.1
    if not torch.allclose(replay.lp_clean, baseline.lp_clean[1:], atol=tol):
        raise PairError(f"{where}: replaying {vlm.name}'s decoder does not reproduce its output; tracing unsupported")
    clean = {s: stack_layers(cache[s], 0) for s in sites}
    edited = {s: stack_layers(cache[s], 1) for s in sites}
    return TracedPair(pair, prompt, decoder_inputs, groups, answers, baseline, clean, edited)
