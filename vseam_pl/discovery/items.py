"""The pairs a discovery run scores: prepared under a protocol, cut into chunks, filtered the V-SEAM way, and the
checks and means every scoring method shares (the replay check, dataset-mean head outputs).

Below the runner, so that the methods (:mod:`.atp`'s verification, :mod:`.set_ablation`) use the same preparation
without importing the driver that imports them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..encoding import encode
from ..interventions import capture, check_replay, head_output_means
from ..pairs import PairItem, images_of, prepare_pairs
from ..prompts import DEFAULT_INSTRUCTION
from ..records import ImagePair
from ..vlm import VLM, UnsupportedModelError
from .data import CandidateIndex
from .release import ReleaseItem, prepare_release


def chunks(items: Sequence[PairItem], size: int) -> list[list[PairItem]]:
    return [list(items[s : s + size]) for s in range(0, len(items), size)]


def prepare_items(
    vlm: VLM, pairs: Sequence[ImagePair], protocol: str = "default", instruction: str | None = None
) -> list[PairItem] | list[ReleaseItem]:
    """Pairs ready for scoring under `protocol` (`instruction`: None = the protocol's own, "" = none)."""
    if protocol == "release":
        return prepare_release(vlm, pairs, instruction)
    return prepare_pairs(vlm, pairs, DEFAULT_INSTRUCTION if instruction is None else (instruction or None))


@torch.no_grad()
def predictions(vlm: VLM, items: Sequence[PairItem], which: str, pair_batch: int) -> torch.Tensor:
    """Index of the highest-scoring candidate on the clean or edited image, per item."""
    out = []
    for chunk in chunks(items, pair_batch):
        run = capture(vlm, encode(vlm, [it.prompt for it in chunk], images_of(chunk, which)), residuals=False)
        out.append(CandidateIndex.of(chunk).logprobs(run.logits).argmax(dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def vseam_filter(vlm: VLM, items: Sequence[PairItem], pair_batch: int) -> tuple[list[PairItem], torch.Tensor]:
    """Keep pairs the model answers right on the clean image and wrong on the edited one.

    "Wrong on edited" is `prediction != edited_answer` when the manifest knows it, else "still gives the clean
    answer" (the edit was meant to change it). Returns the kept items and counts `[total, right_on_clean,
    wrong_on_edited, kept]`.
    """
    if not items:
        return [], torch.zeros(4, dtype=torch.float64)
    clean = predictions(vlm, items, "clean", pair_batch)
    edited = predictions(vlm, items, "edited", pair_batch)
    right = torch.tensor([int(c) == it.correct for c, it in zip(clean, items, strict=True)])
    wrong = torch.tensor(
        [
            int(e) != it.edited if it.edited is not None else int(e) == it.correct
            for e, it in zip(edited, items, strict=True)
        ]
    )
    keep = right & wrong
    kept = [it for it, k in zip(items, keep.tolist(), strict=True) if k]
    counts = torch.tensor(
        [len(items), int(right.sum()), int(wrong.sum()), int(keep.sum())], dtype=torch.float64
    )
    return kept, counts


def dataset_means(vlm: VLM, items: Sequence[PairItem], which: str, pair_batch: int) -> torch.Tensor:
    """Mean head outputs `[L, H, D]` over the images of all pairs (every rank computes the same)."""

    def batches():
        for chunk in chunks(items, pair_batch):
            enc = encode(vlm, [it.prompt for it in chunk], images_of(chunk, which))
            yield enc.to(vlm.device, vlm.model.dtype).inputs

    return head_output_means(vlm, batches()).to(vlm.device)


def replay_prefix_ok(vlm: VLM, items: Sequence[PairItem], which: str, middle: bool = True) -> bool:
    """Whether this decoder can be replayed from a middle layer (else intervened rows run from layer 0). The replay
    from the input embeddings is always checked; `middle=False` (methods that only replay from layer 0) skips the
    middle-layer check and returns False."""
    chunk = list(items[:2])
    run = capture(vlm, encode(vlm, [it.prompt for it in chunk], images_of(chunk, which)), residuals=True)
    if not check_replay(vlm, run, starts=(0,)):
        raise UnsupportedModelError(
            f"{vlm.name}: re-running its decoder from the input embeddings does not reproduce "
            "the model's logits; head discovery cannot batch interventions for it"
        )
    return middle and check_replay(vlm, run, starts=(vlm.num_layers // 2,))
