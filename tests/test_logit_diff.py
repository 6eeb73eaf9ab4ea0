"""`vseam_pl.logit_diff`: the two answer reductions and the one LD discovery and tracing share."""

from __future__ import annotations

import torch

from vseam_pl.discovery.data import CandidateIndex
from vseam_pl.logit_diff import logit_diff, over_candidates, over_vocabulary


class _Item:
    def __init__(self, candidate_tokens):
        self.candidate_tokens = candidate_tokens


def test_the_reductions_agree_when_every_variant_is_one_token():
    """Candidate normalisation cancels in LD: over single-token variants both reductions give the same LD."""
    logits = torch.randn(3, 11, generator=torch.Generator().manual_seed(0))
    clean_ids, edited_ids, other = [2, 5], [7], [9]
    cands = CandidateIndex.of([_Item([[2, 5], [7], [9]])] * 3)
    clean, edited = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    by_cands = cands.logit_diff(logits, clean, edited)
    by_vocab = logit_diff(over_vocabulary(logits, clean_ids, edited_ids))
    torch.testing.assert_close(by_cands, by_vocab.double(), atol=1e-5, rtol=0)
    lp_c, lp_e = over_vocabulary(logits, clean_ids, edited_ids)
    full = torch.log_softmax(logits, -1)
    torch.testing.assert_close(lp_c, full[:, clean_ids].logsumexp(-1))
    # the candidate reduction is a distribution over the candidates; the vocabulary one is not
    c, e = over_candidates(cands.logprobs(logits), clean, edited)
    o = cands.logprobs(logits)[:, 2]
    torch.testing.assert_close(c.exp() + e.exp() + o.exp(), torch.ones(3))
    assert bool((lp_c.exp() + lp_e.exp() + full[:, other[0]].exp() < 1).all())


def test_rows_pick_each_rows_example():
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    cands = CandidateIndex.of([_Item([[1], [2]]), _Item([[3], [4]])])
    clean, edited = torch.tensor([0, 1]), torch.tensor([1, 0])
    rows = torch.tensor([1, 0, 1, 1])
    got = cands.logit_diff(logits, clean, edited, rows)
    lp = torch.log_softmax(logits.double(), -1)
    want = torch.stack([lp[0, 4] - lp[0, 3], lp[1, 1] - lp[1, 2], lp[2, 4] - lp[2, 3], lp[3, 4] - lp[3, 3]])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
