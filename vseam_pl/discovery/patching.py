"""Exact activation patching across a clean/edited pair, batched one head per row.

With `LD = log p(clean answer) - log p(edited answer)` (candidate-normalised log-probs at the last prompt position,
:func:`vseam_pl.logit_diff.over_candidates`; the normaliser cancels), `LD_c` / `LD_e` on the clean / edited image:

- `clean_to_edited` (default, "denoising"): run the edited image, put head (l, h)'s output from the clean run in its
  place: `effect = LD_patched - LD_e`, how much of the clean answer that single head restores;
- `edited_to_clean` ("noising"): run the clean image with the head's edited-run output: `effect = LD_c - LD_patched`,
  how much of the clean answer that head's change destroys.

The group score (`patching_norm="sum"`, the default) is the normalised recovery
`sum_i effect_i / sum_i (LD_c,i - LD_e,i)` (1 = the head alone carries the whole edit effect, < 0 = patching it
moves the answer the other way). Summing before dividing keeps pairs whose edit barely moves the model from blowing
up the ratio, and makes scores additive across DDP shards. It is only meaningful when the model follows the edits:
when the summed edit effect is <= 0 every score flips sign, when it is tiny every score explodes. The runner warns
then (:func:`edit_effect_warnings`, :class:`EditEffectWarning`, with the numbers) and offers `per_pair` (the mean of
each pair's `effect_i / (LD_c,i - LD_e,i)`) and `none` (the unnormalised mean effect, in nats of LD).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..encoding import Encoded, encode
from ..interventions import capture, head_coords, head_grid, head_patches, head_source_setter, patched_logits
from ..pairs import PairError, PairItem, edited_index, images_of
from ..vlm import VLM
from .data import CandidateIndex

# scores.py imports the method registry (methods.py), which imports this module: types only
if TYPE_CHECKING:
    from .scores import ChunkStats

DIRECTIONS: tuple[str, ...] = ("clean_to_edited", "edited_to_clean")
NORMALIZATIONS: tuple[str, ...] = ("sum", "per_pair", "none")


class EditEffectWarning(UserWarning):
    """The edit effects patching scores are normalised by are <= 0 or tiny: the normalised scores mislead."""


def answer_indices(items: Sequence[PairItem]) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate indices of the clean and edited answers; the edited one must be known or implied (2 candidates)."""
    clean, edited = [], []
    for it in items:
        e = edited_index(it.correct, it.edited, len(it.candidate_tokens))
        if e is None:
            raise PairError(
                f"{it.pair.source or it.pair.pair_id}: patching needs an 'edited_answer' that differs "
                f"from 'answer' {it.pair.answer!r}"
            )
        clean.append(it.correct)
        edited.append(e)
    return torch.tensor(clean), torch.tensor(edited)


def encode_pair(vlm: VLM, items: Sequence[PairItem]) -> tuple[Encoded, Encoded]:
    """Clean and edited encodings, which must line up token by token for head outputs to be swapped."""
    prompts = [it.prompt for it in items]
    enc_c = encode(vlm, prompts, images_of(items, "clean"))
    enc_e = encode(vlm, prompts, images_of(items, "edited"))
    if enc_c.input_ids.shape != enc_e.input_ids.shape or not torch.equal(enc_c.input_ids, enc_e.input_ids):
        raise PairError(
            f"{items[0].pair.source}: clean and edited inputs tokenize differently; patching needs "
            "aligned positions (same question, same number of image tokens)"
        )
    return enc_c, enc_e


@torch.no_grad()
def patching_stats(
    vlm: VLM,
    items: Sequence[PairItem],
    batch_size: int = 64,
    direction: str = "clean_to_edited",
    prefix: bool = True,
    heads: list[tuple[int, int]] | None = None,
) -> ChunkStats:
    """Per-example patching effects `[E, L, H]` and edit effects `LD_c - LD_e` `[E]` of a chunk (only `heads`, the
    rest 0, when given: verifying attribution's top heads)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown patching direction {direction!r}; expected one of {DIRECTIONS}")
    cands = CandidateIndex.of(items)
    clean, edited = answer_indices(items)
    enc_c, enc_e = encode_pair(vlm, items)
    into_edited = direction == "clean_to_edited"
    run_c = capture(vlm, enc_c, residuals=prefix and not into_edited, heads=into_edited)
    run_e = capture(vlm, enc_e, residuals=prefix and into_edited, heads=not into_edited)
    ld_c, ld_e = cands.logit_diff(run_c.logits, clean, edited), cands.logit_diff(run_e.logits, clean, edited)
    target, source = (run_e, run_c) if into_edited else (run_c, run_e)
    effect = torch.zeros(len(items), vlm.num_layers, vlm.num_heads, dtype=torch.float64)
    patches = (
        head_grid(len(items), vlm.num_layers, vlm.num_heads)
        if heads is None
        else head_patches(len(items), heads)
    )
    for idx, logits in patched_logits(
        vlm, target, patches, head_source_setter(source.heads), batch_size, prefix
    ):
        example, layer, head = head_coords([patches[i] for i in idx])
        ld = cands.logit_diff(logits, clean, edited, example)
        effect[example, layer, head] = ld - ld_e[example] if into_edited else ld_c[example] - ld
    return {"signed": (effect, ld_c - ld_e, torch.ones(len(items), dtype=torch.bool))}


def normalise(stats: ChunkStats, norm: str = "sum") -> tuple[ChunkStats, torch.Tensor]:
    """Patching/attribution stats normalised as `norm` says, and the chunk's edit effects `LD_c - LD_e` `[E]`."""
    effect, edit, include = stats["signed"]
    ones = torch.ones_like(edit, dtype=torch.float64)
    if norm == "sum":
        return stats, edit
    if norm == "per_pair":
        return {"signed": (effect / edit.double()[:, None, None], ones, include)}, edit
    if norm == "none":
        return {"signed": (effect, ones, include)}, edit
    raise ValueError(f"unknown patching normalisation {norm!r}; expected one of {NORMALIZATIONS}")


def edit_effect_warnings(
    counts: dict[str, dict[str, dict[str, float]]], norm: str, small: float
) -> list[str]:
    """One message per group whose normaliser makes the scores misleading (`counts[g]["edit"]`: sum, n,
    nonpositive, small, as kept by :class:`.scores.Accumulator`)."""
    out = []
    for group, stats in counts.items():
        e = stats.get("edit")
        if e is None or e["n"] == 0:
            continue
        total, n = e["sum"], int(e["n"])
        numbers = (
            f"sum of LD_clean - LD_edited = {total:.4g} over {n} pair(s) (mean {total / n:.4g} nats; "
            f"{int(e['nonpositive'])} pair(s) <= 0, {int(e['small'])} with |.| < {small:g})"
        )
        if norm == "sum" and total <= 0:
            out.append(
                f"group {group}: {numbers}: the model does not follow the edits, so every normalised score "
                "has the opposite sign of the effect it measures; use --patching-norm none (unnormalised "
                "effect) or per_pair, or check the pairs"
            )
        elif norm == "sum" and total / n < small:
            out.append(
                f"group {group}: {numbers}: the normaliser is tiny, so every normalised score is the "
                f"mean effect times {n / total:.3g}; use --patching-norm none (unnormalised effect) or per_pair"
            )
        elif norm == "per_pair" and (e["small"] > 0 or e["nonpositive"] > 0):
            out.append(
                f"group {group}: {numbers}: those pairs' ratios explode or flip sign; use --patching-norm "
                "none (unnormalised effect) or sum"
            )
    return out
