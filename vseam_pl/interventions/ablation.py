"""Temporary head ablation at the `head` site — the intervention head discovery is built from.

Modes (the replacement for an ablated head's output `z[..., h, :]`):
- `zero`: zeros;
- `mean_others`: the mean of the *other* heads' outputs at the same position (the replacement the V-SEAM release
  uses; its scoring protocol is `protocol="release"` in :mod:`vseam_pl.discovery`);
- `dataset_mean`: a per-(layer, head) mean output over a dataset, from :func:`head_output_means`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch

from ..vlm import VLM
from .sites import hooks

AblationMode = Literal["zero", "mean_others", "dataset_mean"]
ABLATION_MODES: tuple[str, ...] = ("zero", "mean_others", "dataset_mean")


def replacement(
    z: torch.Tensor, heads: torch.Tensor, mode: str, means: torch.Tensor | None = None
) -> torch.Tensor:
    """The ablated value for `heads` (indices) of `z` [..., H, D], shape [..., len(heads), D]."""
    if mode == "zero":
        return torch.zeros_like(z[..., heads, :])
    if mode == "mean_others":
        total = z.sum(dim=-2, keepdim=True)
        return (total - z[..., heads, :]) / (z.shape[-2] - 1)
    if mode == "dataset_mean":
        if means is None:
            raise ValueError("mode='dataset_mean' needs `means` [heads, head_dim] (see head_output_means)")
        return means[heads].to(z).expand_as(z[..., heads, :])
    raise ValueError(f"unknown ablation mode {mode!r}; expected one of {ABLATION_MODES}")


@contextmanager
def ablate_heads(
    vlm: VLM,
    heads: Iterable[tuple[int, int]],
    mode: AblationMode = "zero",
    means: torch.Tensor | None = None,
) -> Iterator[None]:
    """Within the block, replace the outputs of the given (layer, head)s. `means`: [L, H, D] for `dataset_mean`."""
    by_layer: dict[int, list[int]] = defaultdict(list)
    for layer, head in heads:
        if not (0 <= layer < vlm.num_layers and 0 <= head < vlm.num_heads):
            raise IndexError(f"head ({layer}, {head}) outside the {vlm.num_layers}x{vlm.num_heads} grid")
        by_layer[layer].append(head)
    if mode not in ABLATION_MODES:
        raise ValueError(f"unknown ablation mode {mode!r}; expected one of {ABLATION_MODES}")
    if mode == "dataset_mean" and means is None:
        raise ValueError(
            "mode='dataset_mean' needs `means` [layers, heads, head_dim] (see head_output_means)"
        )
    index = {layer: torch.tensor(hs) for layer, hs in by_layer.items()}

    def ablate(layer: int, z: torch.Tensor) -> torch.Tensor:
        idx = index[layer].to(z.device)
        z = z.clone()
        z[..., idx, :] = replacement(z, idx, mode, None if means is None else means[layer])
        return z

    with hooks(vlm, "head", ablate, sorted(index)):
        yield


@torch.no_grad()
def head_output_means(vlm: VLM, batches: Iterable[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Mean head output [L, H, D] over every non-padding token of the given model-input batches."""
    sums = torch.zeros(vlm.num_layers, vlm.num_heads, vlm.head_dim, dtype=torch.float64)
    count = 0
    mask_holder: dict[str, torch.Tensor] = {}

    def accumulate(layer: int, z: torch.Tensor) -> None:
        m = mask_holder["mask"].to(z.device, z.dtype)[..., None, None]
        sums[layer] += (z * m).sum(dim=(0, 1)).double().cpu()

    with hooks(vlm, "head", accumulate):
        for batch in batches:
            mask_holder["mask"] = batch["attention_mask"]
            count += int(batch["attention_mask"].sum())
            vlm.model(**batch)
    if count == 0:
        raise ValueError("head_output_means: no tokens in the given batches")
    return (sums / count).float()
