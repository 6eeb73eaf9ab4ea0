"""Discovery's view of prepared pairs: the score groups present, and the candidates as padded tensors.

Pairs are read, selected and prepared by :mod:`vseam_pl.pairs`; discovery scores the answer at the last prompt
position from the next-token distribution restricted to the candidate set (:class:`CandidateIndex`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..levels import LEVELS
from ..logit_diff import logit_diff, over_candidates
from ..pairs import PairItem


def group_keys(items: Sequence[PairItem]) -> list[str]:
    """Every group key present, in a stable order (all, levels in LEVELS order, categories sorted)."""
    present = {k for it in items for k in it.groups}
    levels = [f"level:{lv}" for lv in LEVELS if f"level:{lv}" in present]
    others = sorted(k for k in present if k not in levels and k != "all")
    return ["all", *levels, *others]


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

    def logit_diff(
        self,
        logits: torch.Tensor,
        clean: torch.Tensor,
        edited: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """LD per row over the candidates (float64 on the CPU): `clean` / `edited` `[E]` are each example's
        answer candidates, `rows` as for :meth:`logprobs`."""
        lp = self.logprobs(logits, rows).cpu().double()
        c, e = (clean, edited) if rows is None else (clean[rows], edited[rows])
        return logit_diff(over_candidates(lp, c, e))
