"""Attribution patching: the first-order (gradient) approximation of :mod:`.patching` for every head at once.

For head output a (at every position, [T, D]) and the patched run's metric LD, patching a from the source run
changes LD by approximately `(a_source - a_target) . dLD/da |target`. For both directions this gives
`effect ~= sum_{t,d} (a_clean - a_edited) * dLD/da` with the gradient taken on the run being patched (edited for
`clean_to_edited`, clean for `edited_to_clean`). Cost per chunk: one forward of each image + one backward,
instead of L*H intervened forwards. Scores are normalised like exact patching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..interventions import DecoderRun, capture, run_rows
from ..logit_diff import logit_diff, over_candidates
from ..pairs import PairItem
from ..vlm import VLM
from .data import CandidateIndex
from .patching import DIRECTIONS, answer_indices, encode_pair

# scores.py imports the method registry (methods.py), which imports this module: types only
if TYPE_CHECKING:
    from .scores import ChunkStats


@dataclass
class PairRuns:
    """Both runs of a chunk of pairs with their head outputs, and what attribution needs to score them."""

    cands: CandidateIndex
    clean: torch.Tensor  # [E] candidate index of the clean answer
    edited: torch.Tensor  # [E] candidate index of the edited answer
    run_c: DecoderRun
    run_e: DecoderRun
    ld_c: torch.Tensor  # [E] LD on the clean image
    ld_e: torch.Tensor  # [E] LD on the edited image


def pair_runs(vlm: VLM, items: Sequence[PairItem], direction: str) -> PairRuns:
    """One captured forward of each image of every pair (the setup of attribution and AtP*)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown patching direction {direction!r}; expected one of {DIRECTIONS}")
    cands = CandidateIndex.of(items)
    clean, edited = answer_indices(items)
    enc_c, enc_e = encode_pair(vlm, items)
    run_c = capture(vlm, enc_c, residuals=False, heads=True)
    run_e = capture(vlm, enc_e, residuals=False, heads=True)
    ld_c = cands.logit_diff(run_c.logits, clean, edited)
    ld_e = cands.logit_diff(run_e.logits, clean, edited)
    return PairRuns(cands, clean, edited, run_c, run_e, ld_c, ld_e)


def attribution_stats(vlm: VLM, items: Sequence[PairItem], direction: str = "clean_to_edited") -> ChunkStats:
    """Per-example attribution estimates `[E, L, H]` of the patching effects, and the edit effects `[E]`."""
    pr = pair_runs(vlm, items, direction)
    cands, clean, edited, run_c, run_e = pr.cands, pr.clean, pr.edited, pr.run_c, pr.run_e
    target = run_e if direction == "clean_to_edited" else run_c
    # A zero leaf added to each head output: its gradient is the total derivative of LD w.r.t. that output.
    deltas = {layer: torch.zeros_like(z, requires_grad=True) for layer, z in target.heads.items()}
    rows = torch.arange(len(items))
    with torch.enable_grad():
        logits = run_rows(vlm, target, rows, 0, lambda layer, z: z + deltas[layer])
        lp = cands.logprobs(logits)
        ld = logit_diff(over_candidates(lp, clean.to(lp.device), edited.to(lp.device)))
        grads = torch.autograd.grad(ld.sum(), [deltas[layer] for layer in range(vlm.num_layers)])
    effect = (
        torch.stack(
            [
                ((run_c.heads[layer] - run_e.heads[layer]).float() * g.float()).sum(dim=(1, 3))
                for layer, g in enumerate(grads)
            ],
            dim=1,
        )
        .double()
        .cpu()
    )  # [E, L, H]
    return {"signed": (effect, pr.ld_c - pr.ld_e, torch.ones(len(items), dtype=torch.bool))}
