"""Exact head ablation scores (the V-SEAM release's procedure), batched one head per row.

For example i with target answer y_i (the answer on the image that is scored, clean by default) let
`p_i = p(y_i | prompt, image)` normalised over the candidate set, and `p_i^(l,h)` the same with head (l, h)'s output
replaced (`mean_others`: the mean of the other heads of its layer at each position, as in the release; `zero`;
`dataset_mean`: its mean output over the pairs' images). The per-example effect is

    d_i(l, h) = p_i - p_i^(l,h)        (> 0: the head helps the answer, < 0: ablating it helps)

and, per group (all / level / category):

- `positive` = mean of d over examples the model answers correctly (argmax candidate = y_i): positive heads;
- `negative` = mean of d over examples it answers wrongly, where d < 0 means removing the head fixes the answer:
  the most negative values are the negative heads;
- `signed`   = mean of d over all examples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..encoding import encode
from ..vlm import VLM
from .data import CandidateIndex, PairItem, images_of
from .interventions import Jobs, ablation_value, per_row_hook
from .replay import capture, run_rows
from .scores import ChunkStats


@torch.no_grad()
def ablation_stats(
    vlm: VLM,
    items: Sequence[PairItem],
    mode: str = "mean_others",
    means: torch.Tensor | None = None,
    batch_size: int = 64,
    image: str = "clean",
    prefix: bool = True,
) -> ChunkStats:
    """Per-example ablation effects `d [E, L, H]` of a chunk, as `signed`/`positive`/`negative` statistics."""
    if image == "edited" and any(it.edited is None for it in items):
        bad = next(it for it in items if it.edited is None)
        raise ValueError(f"{bad.pair.source}: ablation on edited images needs 'edited_answer'")
    cands = CandidateIndex.of(items)
    target = torch.tensor([it.correct if image == "clean" else it.edited for it in items])
    enc = encode(vlm, [it.prompt for it in items], images_of(items, image))
    run = capture(vlm, enc, residuals=prefix)
    logp = cands.logprobs(run.logits).cpu()
    p_base = logp.gather(1, target[:, None]).squeeze(1).exp()
    correct = logp.argmax(dim=1) == target
    d = torch.zeros(len(items), vlm.num_layers, vlm.num_heads, dtype=torch.float64)
    value = ablation_value(mode, means)
    for b in Jobs.grid(len(items), vlm.num_layers, vlm.num_heads).batches(batch_size):
        logits = run_rows(vlm, run, b.example, b.start if prefix else 0, per_row_hook(b, value), b.layers())
        lp = cands.logprobs(logits, b.example).cpu()
        p = lp.gather(1, target[b.example][:, None]).squeeze(1).exp()
        d[b.example, b.layer, b.head] = (p_base[b.example] - p).double()
    ones = torch.ones(len(items), dtype=torch.float64)
    return {"signed": (d, ones, torch.ones_like(correct)), "positive": (d, ones, correct), "negative": (d, ones, ~correct)}
