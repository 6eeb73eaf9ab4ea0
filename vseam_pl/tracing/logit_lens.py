"""Logit lens: read the answer from every layer's residual stream at the final position, through the model's own
final norm and LM head — at the last layer this is exactly the model's output."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..vlm import VLM
from .pair import TracedPair

RUNS: tuple[str, ...] = ("clean", "edited")
SITES_NEEDED: tuple[str, ...] = ("resid",)


@torch.no_grad()
def lens_logits(vlm: VLM, resid: torch.Tensor) -> torch.Tensor:
    """[..., hidden] residual states -> [..., vocab] logits via `final_norm` and `lm_head`."""
    head = vlm.lm_head()
    h = resid.to(device=head.weight.device, dtype=head.weight.dtype)
    return vlm.lm_head()(vlm.final_norm()(h)).float()


def logit_lens(vlm: VLM, tp: TracedPair) -> dict[str, torch.Tensor]:
    """`p_clean`, `p_edited`, `ld`, `rank_clean` (1 = top token): [runs=2 (clean, edited), layers]."""
    final = tp.groups.final
    resid = torch.stack([tp.clean["resid"][:, final], tp.edited["resid"][:, final]])  # [2, L, d]
    logits = lens_logits(vlm, resid).cpu()
    lp_c, lp_e = tp.answers.logps(logits)
    best = logits[..., tp.answers.clean].max(-1).values
    rank = (logits > best.unsqueeze(-1)).sum(-1) + 1
    logp = F.log_softmax(logits, -1)
    return {
        "p_clean": lp_c.exp(),
        "p_edited": lp_e.exp(),
        "ld": lp_c - lp_e,
        "rank_clean": rank,
        "entropy": -(logp.exp() * logp).sum(-1),
    }
