"""Exact single-head ablation scores, batched one head per row, under two protocols.

For example i with target answer y_i, `p_i` is the probability of y_i on the scored image and `p_i^(l,h)` the same
with head (l, h)'s output replaced (`mean_others`: the mean of the other heads of its layer at each position, the
release's replacement; `zero`; `dataset_mean`: its mean output over the pairs' images). The per-example effect is

    d_i(l, h) = p_i - p_i^(l,h)        (> 0: the head helps the answer, < 0: ablating it helps)

**default protocol** (vseam-pl's own; differs from the release, see `docs/fidelity.md`): chat-template prompt,
`p` normalised over the pair's candidate set (case variants pooled), correct = argmax candidate is y_i, image clean
or edited, optional V-SEAM filter; per group (all / level / category):

- `positive` = mean of d over examples the model answers correctly;
- `negative` = mean of d over examples it answers wrongly (signed: the most *negative* values are negative heads);
- `signed`   = mean of d over all examples.

**release protocol** (`Attention_Head_Analysis.py`, see :mod:`.release`): the release's prompt, `p` = full-vocabulary
probability of the answer's first sub-token as written, correct = full-vocabulary argmax among the answer's tokens,
clean image, no filter; `mean_others` or `zero`:

- `positive` = mean of max(0, d) over correct examples;
- `negative` = mean of max(0, -d) over wrong examples (a non-negative gain: the *largest* values are negative heads);
- `signed`   = mean of d over all examples (the release's overall score).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..encoding import encode
from ..interventions import DecoderRun, ablation_setter, capture, head_coords, head_grid, patched_logits
from ..pairs import PairItem, images_of
from ..vlm import VLM
from .data import CandidateIndex
from .release import AnswerScorer, ReleaseItem, release_scorer

# scores.py imports the method registry (methods.py), which imports this module: types only
if TYPE_CHECKING:
    from .scores import ChunkStats

Item = PairItem | ReleaseItem


def candidate_scorer(items: Sequence[PairItem], image: str = "clean") -> AnswerScorer:
    """Candidate-normalised probability of the answer on `image` (clean: `answer`, edited: `edited_answer`)."""
    if image == "edited" and any(it.edited is None for it in items):
        bad = next(it for it in items if it.edited is None)
        raise ValueError(f"{bad.pair.source}: ablation on edited images needs 'edited_answer'")
    cands = CandidateIndex.of(items)
    target = torch.tensor([it.correct if image == "clean" else it.edited for it in items])

    def score(logits: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = rows.cpu()
        logp = cands.logprobs(logits, rows).cpu().double()
        t = target[rows]
        return logp.gather(1, t[:, None]).squeeze(1).exp(), logp.argmax(dim=1) == t

    return score


def scorer_for(items: Sequence[Item], image: str = "clean") -> AnswerScorer:
    """The answer scorer of the items' protocol (release items carry their own answer tokens)."""
    if items and isinstance(items[0], ReleaseItem):
        return release_scorer(items)  # type: ignore[arg-type]
    return candidate_scorer(items, image)  # type: ignore[arg-type]


@torch.no_grad()
def single_head_effects(
    vlm: VLM,
    run: DecoderRun,
    score: AnswerScorer,
    mode: str,
    means: torch.Tensor | None,
    batch_size: int,
    prefix: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unablated correctness `[E]` and effects `d [E, L, H]` (float64) of ablating each head alone."""
    n = run.embeds.shape[0]
    p_base, correct = score(run.logits, torch.arange(n))
    d = torch.zeros(n, vlm.num_layers, vlm.num_heads, dtype=torch.float64)
    patches = head_grid(n, vlm.num_layers, vlm.num_heads)
    for idx, logits in patched_logits(vlm, run, patches, ablation_setter(mode, means), batch_size, prefix):
        example, layer, head = head_coords([patches[i] for i in idx])
        p, _ = score(logits, example)
        d[example, layer, head] = p_base[example] - p
    return correct, d


@torch.no_grad()
def ablation_stats(
    vlm: VLM,
    items: Sequence[Item],
    mode: str = "mean_others",
    means: torch.Tensor | None = None,
    batch_size: int = 64,
    image: str = "clean",
    prefix: bool = True,
) -> ChunkStats:
    """Per-example ablation effects of a chunk as `signed`/`positive`/`negative` statistics (protocol of `items`)."""
    score = scorer_for(items, image)
    run = capture(vlm, encode(vlm, [it.prompt for it in items], images_of(items, image)), residuals=prefix)
    correct, d = single_head_effects(vlm, run, score, mode, means, batch_size, prefix)
    ones = torch.ones(len(items), dtype=torch.float64)
    if items and isinstance(items[0], ReleaseItem):
        return {
            "signed": (d, ones, torch.ones_like(correct)),
            "positive": (d.clamp(min=0), ones, correct),
            "negative": ((-d).clamp(min=0), ones, ~correct),
        }
    return {
        "signed": (d, ones, torch.ones_like(correct)),
        "positive": (d, ones, correct),
        "negative": (d, ones, ~correct),
    }
