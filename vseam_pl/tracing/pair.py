"""One clean/edited pair made ready for tracing: encoded once, located, scored, and its activations cached.

Both images are encoded with the same prompt, so the two rows have identical token ids and every position means
the same thing in both runs — the precondition for copying activations between them. Prompts and answer tokens come
from the pairs module's preparation (:func:`vseam_pl.pairs.prepare_pairs`), and the decoder capture/replay from
:mod:`vseam_pl.interventions.replay`, as in head discovery, so both score an answer the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..encoding import encode
from ..interventions import DecoderRun, cache, capture, check_replay, stack_layers
from ..pairs import PairError, PairItem, edited_index, images_of, prepare_pairs
from ..prompts import DEFAULT_INSTRUCTION
from ..records import ImagePair
from ..vlm import VLM
from .patching import AnswerTokens, Scores
from .positions import TokenGroups, concept_words, token_groups


class UntraceablePairError(PairError):
    """A well-formed pair whose edited answer is unknown, so the logit difference is undefined."""


def answer_tokens(item: PairItem) -> tuple[AnswerTokens, str]:
    """First-token ids of the clean and the edited answer, and the edited answer (without `edited_answer`: the
    other of two candidates)."""
    edited = edited_index(item.correct, item.edited, len(item.candidate_tokens))
    if edited is None:
        raise UntraceablePairError(
            f"{item.pair.source or item.pair.pair_id}: the edited answer is unknown or equals "
            "the clean answer; the logit difference needs two different answers"
        )
    return AnswerTokens(
        list(item.candidate_tokens[item.correct]), list(item.candidate_tokens[edited])
    ), item.candidates[edited]


@dataclass
class TracedPair:
    """A pair's decoder run, token groups, answer tokens, baseline scores and cached activations."""

    pair: ImagePair
    prompt: str
    run: DecoderRun  # rows [clean, edited], with the residual entering every layer (for replays from a layer)
    groups: TokenGroups
    answers: AnswerTokens
    edited_answer: str
    baseline: Scores  # rows [clean, edited]
    clean: dict[str, torch.Tensor]  # site -> [L, T, ...] of the clean run
    edited: dict[str, torch.Tensor]  # site -> [L, T, ...] of the edited run
    replay_from_layer: bool = True  # replays may start at the first patched layer (checked on this pair)

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
            "edited_answer": self.edited_answer,
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
def trace_pair(
    vlm: VLM,
    pair: ImagePair,
    sites: Sequence[str] = ("resid",),
    instruction: str | None = DEFAULT_INSTRUCTION,
) -> TracedPair:
    """Encode the pair, locate its token groups, score both runs and cache `sites` of both."""
    where = pair.source or pair.pair_id
    if not pair.candidates and pair.edited_answer is None:
        raise UntraceablePairError(
            f"{where}: no `edited_answer` and no `candidates`; the logit difference needs both answers"
        )
    (item,) = prepare_pairs(vlm, [pair], instruction)
    answers, edited_answer = answer_tokens(item)
    images = images_of([item], "clean") + images_of([item], "edited")
    enc = encode(vlm, [item.prompt, item.prompt], images)
    if (
        not torch.equal(enc.input_ids[0], enc.input_ids[1])
        or int(enc.lengths.min()) != enc.input_ids.shape[1]
    ):
        raise PairError(f"{where}: the clean and edited images encode to different token sequences")
    try:
        groups = token_groups(
            vlm, item.prompt, pair.question, enc.input_ids[0], int(enc.lengths[0]), concept_words(pair)
        )
    except ValueError as e:
        raise PairError(f"{where}: {e}") from None
    with cache(vlm, sites) as cached:
        run = capture(vlm, enc, residuals=True)
    tol = 1e-3 if vlm.dtype == torch.float32 else 2e-2
    if not check_replay(vlm, run, atol=tol):
        raise PairError(
            f"{where}: replaying {vlm.name}'s decoder does not reproduce its logits; tracing unsupported"
        )
    from_layer = check_replay(vlm, run, starts=(vlm.num_layers // 2,), atol=tol)
    baseline = Scores(*(lp.cpu() for lp in answers.logps(run.logits)))
    clean = {s: stack_layers(cached[s], 0) for s in sites}
    edited = {s: stack_layers(cached[s], 1) for s in sites}
    return TracedPair(
        pair, item.prompt, run, groups, answers, edited_answer, baseline, clean, edited, from_layer
    )
