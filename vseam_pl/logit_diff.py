"""The logit difference `LD = log p(clean answer) - log p(edited answer)` at the last prompt position: the metric
head discovery (patching, attribution, AtP*) and causal tracing score runs by.

Two reductions of the next-token distribution give the pair of answer log-probs; both pool an answer's case
variants, and :func:`logit_diff` is the one difference taken from either:

- :func:`over_candidates` (discovery): log-probs normalised over the pair's candidate set, from
  :meth:`vseam_pl.discovery.data.CandidateIndex.logprobs` (every candidate's tokens pooled; the normaliser cancels
  in LD);
- :func:`over_vocabulary` (tracing): log-probs under the full next-token softmax of the first token of each case
  variant, pooled with logsumexp (tracing also reports `p(clean answer)`, which needs the full softmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: (log p(clean answer), log p(edited answer)), one value per row.
AnswerLogps = tuple[torch.Tensor, torch.Tensor]


def over_candidates(cand_logp: torch.Tensor, clean: torch.Tensor, edited: torch.Tensor) -> AnswerLogps:
    """The answers' log-probs from candidate log-probs `[R, C]` and each row's clean / edited candidate index `[R]`."""
    return cand_logp.gather(1, clean[:, None]).squeeze(1), cand_logp.gather(1, edited[:, None]).squeeze(1)


def over_vocabulary(logits: torch.Tensor, clean: Sequence[int], edited: Sequence[int]) -> AnswerLogps:
    """The answers' log-probs under the full next-token distribution of `logits [..., V]`, the token ids of each
    answer's variants (`clean`, `edited`) pooled."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp[..., list(clean)].logsumexp(-1), logp[..., list(edited)].logsumexp(-1)


def logit_diff(logps: AnswerLogps) -> torch.Tensor:
    """LD = log p(clean answer) - log p(edited answer), per row."""
    lp_clean, lp_edited = logps
    return lp_clean - lp_edited
