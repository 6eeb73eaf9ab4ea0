"""Patched runs scored by the answer: the logit difference LD = log p(clean answer) - log p(edited answer), over
the full vocabulary (:func:`vseam_pl.logit_diff.over_vocabulary`).

Tracing patches three sites of :mod:`vseam_pl.interventions.sites`: `resid` (the residual stream after a layer),
`attn` (the `o_proj` output) and `mlp`. Many patches run in one forward through the core's batched engine
(:func:`vseam_pl.interventions.patched_logits`): the edited run is repeated along the batch and each row gets its
own :class:`~vseam_pl.interventions.Site` (hook point, layer, positions) set to the clean run's cached activation
(:func:`~vseam_pl.interventions.copy_setter`), replaying only the language
decoder from the first layer a batch patches; the answer is read through the model's own final norm and LM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..interventions import DecoderRun, Patch, Site, copy_setter, patched_logits
from ..logit_diff import AnswerLogps, logit_diff, over_vocabulary
from ..vlm import VLM

__all__ = ["AnswerTokens", "Scores", "normalised_recovery", "run_patches"]


@dataclass
class AnswerTokens:
    """First-token ids of the case variants of the clean and the edited answer (pooled with logsumexp)."""

    clean: list[int]
    edited: list[int]

    def logps(self, logits: torch.Tensor) -> AnswerLogps:
        """(log p(clean answer), log p(edited answer)) under the full next-token distribution of `logits` [..., V]
        (:func:`vseam_pl.logit_diff.over_vocabulary`)."""
        return over_vocabulary(logits, self.clean, self.edited)


@dataclass
class Scores:
    """Per-row answer log-probabilities of a batch of runs."""

    lp_clean: torch.Tensor
    lp_edited: torch.Tensor

    @property
    def ld(self) -> torch.Tensor:
        """Logit difference LD = log p(clean answer) - log p(edited answer)."""
        return logit_diff((self.lp_clean, self.lp_edited))

    @property
    def p_clean(self) -> torch.Tensor:
        return self.lp_clean.exp()


def run_patches(
    vlm: VLM,
    run: DecoderRun,
    clean: dict[str, torch.Tensor],
    sites: Sequence[Site],
    answers: AnswerTokens,
    batch_size: int = 32,
    row: int = 1,
    from_layer: bool = True,
) -> Scores:
    """Score the clean activation at each of `sites` copied into row `row` of `run` (the edited run): one batch row
    per site. `clean[hook]` holds the clean run's activations `[L, T, ...]` at that hook point."""
    if not sites:
        empty = torch.zeros(0)
        return Scores(empty, empty)
    patches = [Patch(row, site) for site in sites]
    lps = torch.empty(len(sites), 2)
    for idx, logits in patched_logits(vlm, run, patches, copy_setter(clean), batch_size, from_layer):
        lps[idx] = torch.stack(answers.logps(logits), -1).cpu()
    return Scores(*lps.T.contiguous())


def normalised_recovery(ld: torch.Tensor, ld_clean: float, ld_edited: float) -> torch.Tensor:
    """(LD_patched - LD_edited) / (LD_clean - LD_edited): 0 = no recovery, 1 = the clean run's preference."""
    gap = ld_clean - ld_edited
    if gap == 0:
        return torch.full_like(ld, float("nan"))
    return (ld - ld_edited) / gap
