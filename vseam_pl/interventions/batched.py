"""The batched intervention engine: many interventions in one forward, one per batch row.

Exact discovery needs one intervened forward per (layer, head, example), tracing one per (site, layer, positions).
Instead of that many forwards at batch size 1, the interventions are laid out as the rows of large batches, ordered
by layer so that each batch replays the decoder from the lowest layer it touches (:mod:`.replay`), and one hook per
(site, layer) rewrites only the rows that target it (:func:`rows_hook`). Two layouts share that hook:

- :class:`Jobs` (discovery): row i rewrites head `head[i]` of layer `layer[i]` for example `example[i]` with a
  :data:`ValueFn` (:func:`ablation_value`, :func:`patch_value`); :func:`run_jobs` runs them;
- :class:`PatchSpec` (tracing): row i copies another run's activation at (`site`, `layer`, `positions`) into one
  example; :func:`patched_metrics` runs them and reduces each row's logits with a metric.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch

from ..vlm import VLM
from .ablation import replacement
from .replay import DecoderRun, run_rows
from .sites import HookFn, hooks

#: edit(x) rewrites some rows of the (already cloned) activation x in place.
RowEdit = Callable[[torch.Tensor], None]


def rows_hook(plan: dict[int, list[RowEdit]]) -> HookFn:
    """A hook function applying, at each layer of `plan`, its row edits to one copy of the activation."""

    def fn(layer: int, x: torch.Tensor) -> torch.Tensor | None:
        if layer not in plan:
            return None
        x = x.clone()
        for edit in plan[layer]:
            edit(x)
        return x

    return fn


# -- head jobs (discovery) ------------------------------------------------------------------------------------


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


#: value(layer, head, z_rows, examples) -> the new output [n, T, D] of `head` for n rows, given their activations
#: z_rows [n, T, H, D] and the example index of each row [n].
ValueFn = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]


def per_row_hook(jobs: Jobs, value: ValueFn) -> HookFn:
    """A `head`-site function that sets, in each row, its job's head to `value(...)` at its job's layer."""
    plan: dict[int, list[RowEdit]] = defaultdict(list)
    for layer in jobs.layers():
        at_layer = jobs.layer == layer
        for head in sorted(set(jobs.head[at_layer].tolist())):
            rows = torch.nonzero(at_layer & (jobs.head == head)).flatten()
            plan[layer].append(_head_edit(layer, head, rows, jobs.example[rows], value))
    return rows_hook(plan)


def _head_edit(layer: int, head: int, rows: torch.Tensor, examples: torch.Tensor, value: ValueFn) -> RowEdit:
    def edit(z: torch.Tensor) -> None:
        r = rows.to(z.device)
        z[r, :, head, :] = value(layer, head, z[r], examples)

    return edit


def ablation_value(mode: str, means: torch.Tensor | None = None) -> ValueFn:
    """Ablated head output via :func:`.ablation.replacement` (`means`: [L, H, D] for dataset_mean)."""

    def value(layer: int, head: int, z: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
        idx = torch.tensor([head], device=z.device)
        return replacement(z, idx, mode, None if means is None else means[layer]).squeeze(-2)

    return value


def patch_value(source: dict[int, torch.Tensor]) -> ValueFn:
    """The head's output in another run (`source[layer]`: [E, T, H, D]) of each row's example."""

    def value(layer: int, head: int, z: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
        return source[layer][examples.to(z.device), :, head, :].to(z.dtype)

    return value


def run_jobs(
    vlm: VLM, run: DecoderRun, jobs: Jobs, value: ValueFn, batch_size: int, prefix: bool = True
) -> Iterator[tuple[Jobs, torch.Tensor]]:
    """Each batch of `jobs` and its last-position logits `[R, V]` on the rows of `run`, replayed from the batch's
    first layer (`prefix`; else from layer 0, for decoders whose mid-layer replay is not exact)."""
    for b in jobs.batches(batch_size):
        yield b, run_rows(vlm, run, b.example, b.start if prefix else 0, per_row_hook(b, value), b.layers())


# -- site patches (tracing) -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchSpec:
    """Copy the source run's activation at (`site`, `layer`, `positions`) into the target run."""

    site: str
    layer: int
    positions: tuple[int, ...]


def _copy_edit(rows: torch.Tensor, mask: torch.Tensor, source: torch.Tensor) -> RowEdit:
    """Rows `rows` take `source` [T, ...] where their mask [n, T] is set."""

    def edit(x: torch.Tensor) -> None:
        r, m = rows.to(x.device), mask.to(x.device)
        m = m.view(*m.shape, *([1] * (x.dim() - 2)))
        x[r] = torch.where(m, source.to(x).unsqueeze(0), x[r])

    return edit


@torch.no_grad()
def patched_metrics(
    vlm: VLM,
    run: DecoderRun,
    sources: dict[str, torch.Tensor],
    specs: Sequence[PatchSpec],
    metric: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 32,
    row: int = 1,
    from_layer: bool = True,
) -> torch.Tensor:
    """`metric` of every patch applied to row `row` of `run`, one batch row per spec: `[len(specs), ...]` (CPU).

    `sources[site]` holds the source run's activations `[L, T, ...]` at that site; `metric` maps last-position
    logits `[R, V]` to `[R, ...]`. Specs are run in layer order so each batch replays the decoder from its first
    patched layer (`from_layer`; nothing before it can change).
    """
    seq = int(run.embeds.shape[1])
    order = sorted(range(len(specs)), key=lambda i: specs[i].layer)
    out: torch.Tensor | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        chunk = [specs[i] for i in idx]
        by_site: dict[str, dict[int, list[tuple[int, tuple[int, ...]]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for r, spec in enumerate(chunk):
            if spec.site not in sources:
                raise ValueError(f"no source activations cached for site {spec.site!r}")
            if not all(0 <= p < seq for p in spec.positions):
                raise IndexError(f"patch positions {spec.positions} outside a {seq}-token sequence")
            by_site[spec.site][spec.layer].append((r, spec.positions))
        with ExitStack() as stack:  # hooks are registered before run_rows cuts the layer list
            for site, by_layer in by_site.items():
                plan: dict[int, list[RowEdit]] = {}
                for layer, items in by_layer.items():
                    mask = torch.zeros(len(items), seq, dtype=torch.bool)
                    for i, (_, positions) in enumerate(items):
                        mask[i, list(positions)] = True
                    rows = torch.tensor([r for r, _ in items])
                    plan[layer] = [_copy_edit(rows, mask, sources[site][layer])]
                stack.enter_context(hooks(vlm, site, rows_hook(plan), sorted(plan)))
            first = min(s.layer for s in chunk) if from_layer else 0
            logits = run_rows(vlm, run, torch.full((len(chunk),), row, dtype=torch.long), start=first)
        values = metric(logits).cpu()
        if out is None:
            out = torch.empty(len(specs), *values.shape[1:], dtype=values.dtype)
        out[idx] = values
    return out if out is not None else torch.zeros(0)
