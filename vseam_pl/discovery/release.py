"""The V-SEAM release's answer scoring (`Attention_Head_Analysis.py`), for `protocol="release"`.

What differs from vseam-pl's default protocol (see `docs/fidelity.md`):

- the prompt is the release's hard-coded one per family (:func:`vseam_pl.prompts.release_prompt`), no chat template;
- the answer is the manifest's `answer` *as written* (case-sensitive), tokenized on its own
  (`tokenizer(answer, add_special_tokens=False)`); no candidate set is needed;
- its probability is the full-vocabulary softmax, at the last prompt position, of the answer's first sub-token;
- an example is correct when the full-vocabulary argmax is one of the answer's tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from ..levels import level_of
from ..pairs import PairError, groups_of
from ..prompts import release_prompt
from ..records import ImagePair
from ..vlm import VLM

PROTOCOLS: tuple[str, ...] = ("default", "release")

#: score(logits [R, V], rows [R]) -> (p [R] float64, correct [R] bool), both on the CPU; row r is example rows[r].
AnswerScorer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ReleaseItem:
    """One pair under the release protocol. `index` is its position in the full list (stable across shards)."""

    pair: ImagePair
    index: int
    prompt: str
    level: str | None
    category: str | None
    answer_ids: tuple[int, ...]  # the answer's tokens; the first is the one scored

    @property
    def groups(self) -> tuple[str, ...]:
        return groups_of(self.level, self.category)


def prepare_release(
    vlm: VLM, pairs: Iterable[ImagePair], instruction: str | None = None
) -> list[ReleaseItem]:
    """Release prompts and answer tokens (`instruction` None: the release's own per family)."""
    items = []
    for index, pair in enumerate(pairs):
        ids = tuple(vlm.tokenizer(pair.answer, add_special_tokens=False)["input_ids"])
        if not ids:
            raise PairError(
                f"{pair.source or f'pair {pair.pair_id}'}: field 'answer' {pair.answer!r} tokenizes to "
                "nothing"
            )
        items.append(
            ReleaseItem(
                pair,
                index,
                release_prompt(vlm, pair.question, instruction),
                pair.level or level_of(pair.category),
                pair.category,
                ids,
            )
        )
    return items


def release_scorer(items: Sequence[ReleaseItem]) -> AnswerScorer:
    """Full-vocabulary probability of each example's first answer token; correct = argmax among its tokens."""
    first = torch.tensor([it.answer_ids[0] for it in items])
    allowed = [set(it.answer_ids) for it in items]

    def score(logits: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = rows.cpu()
        probs = torch.softmax(logits.double(), dim=-1).cpu()
        p = probs.gather(1, first[rows][:, None]).squeeze(1)
        top = probs.argmax(dim=1).tolist()
        correct = torch.tensor(
            [t in allowed[r] for t, r in zip(top, rows.tolist(), strict=True)], dtype=torch.bool
        )
        return p, correct

    return score
