"""Batched single-head interventions: one (layer, head, example) job per batch row.

Exact discovery needs, for every example, one intervened forward per head. Instead of L*H*N forwards at batch size
1, the jobs are laid out as rows of large batches (ordered by layer so each batch starts its decoder replay at its
lowest layer, see :mod:`.replay`), and one hook per layer rewrites, for the rows that target it, only their head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..ablation import replacement
from ..hooks import HeadFn


@dataclass
class Jobs:
    """Row i intervenes on head `head[i]` of layer `layer[i]` for example `example[i]`."""

    layer: torch.Tensor
    head: torch.Tensor
    example: torch.Tensor

    def __len__(self) -> int:
        return int(self.layer.numel())

    @classmethod
    def grid(cls, num_examples: int, num_layers: int, num_heads: int) -> Jobs:
        """Every (layer, head) for every example, ordered by layer, then head, then example."""
        layer, head, example = torch.meshgrid(
            torch.arange(num_layers), torch.arange(num_heads), torch.arange(num_examples), indexing="ij"
        )
        return cls(layer.flatten(), head.flatten(), example.flatten())

    @classmethod
    def for_heads(cls, num_examples: int, heads: list[tuple[int, int]]) -> Jobs:
        """Only the given (layer, head)s for every example, ordered like :meth:`grid`."""
        rows = [(layer, head, e) for layer, head in sorted(set(heads)) for e in range(num_examples)]
        layer, head, example = (torch.tensor(c, dtype=torch.long) for c in zip(*rows, strict=True))
        return cls(layer, head, example)

    def batches(self, batch_size: int) -> Iterator[Jobs]:
        for s in range(0, len(self), batch_size):
            yield Jobs(
                self.layer[s : s + batch_size],
                self.head[s : s + batch_size],
                self.example[s : s + batch_size],
            )

    @property
    def start(self) -> int:
        """The first layer any row touches: nothing before it differs from the unintervened run."""
        return int(self.layer.min())

    def layers(self) -> list[int]:
        return sorted(set(self.layer.tolist()))


#: value(layer, head, rows, z) -> the new output [len(rows), T, D] of `head` for those rows of z [R, T, H, D].
ValueFn = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]


def per_row_hook(jobs: Jobs, value: ValueFn) -> HeadFn:
    """A head function that sets, in each row, its job's head to `value(...)` at its job's layer."""
    plan: dict[int, list[tuple[int, torch.Tensor]]] = {}
    for layer in jobs.layers():
        at_layer = jobs.layer == layer
        for head in sorted(set(jobs.head[at_layer].tolist())):
            plan.setdefault(layer, []).append((head, torch.nonzero(at_layer & (jobs.head == head)).flatten()))

    def fn(layer: int, z: torch.Tensor) -> torch.Tensor | None:
        if layer not in plan:
            return None
        z = z.clone()
        for head, rows in plan[layer]:
            rows = rows.to(z.device)
            z[rows, :, head, :] = value(layer, head, rows, z)
        return z

    return fn


def ablation_value(mode: str, means: torch.Tensor | None = None) -> ValueFn:
    """Ablated head output via :func:`vseam_pl.ablation.replacement` (`means`: [L, H, D] for dataset_mean)."""

    def value(layer: int, head: int, rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        idx = torch.tensor([head], device=z.device)
        return replacement(z[rows], idx, mode, None if means is None else means[layer]).squeeze(-2)

    return value


def patch_value(source: dict[int, torch.Tensor], examples: torch.Tensor) -> ValueFn:
    """The head's output in another run (`source[layer]`: [E, T, H, D]) of each row's example."""

    def value(layer: int, head: int, rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return source[layer][examples.to(z.device)[rows], :, head, :].to(z.dtype)

    return value
