"""The batched patching engine: many interventions in one forward, one per batch row, for discovery and tracing alike.

An intervention is a :class:`Patch`: in example `example`'s run, overwrite a :class:`Site` — a named hook point of
one decoder layer (`head`, `resid`, `attn`, `mlp`, :mod:`.sites`) and an index into its activation (a head, some
positions) — with the value a :data:`Setter` gives (TransformerLens's hook name + index, pyvene's setter). Discovery
patches or ablates one head per row (:func:`head_grid`, :func:`ablation_setter`, :func:`head_source_setter`),
tracing copies the clean run's activation at some positions into the edited run (:func:`copy_setter`).

Exact discovery needs one intervened forward per (layer, head, example), tracing one per (site, layer, positions).
Instead of that many forwards at batch size 1, :func:`patched_logits` lays the patches out as the rows of large
batches, ordered by layer so that each batch replays the decoder from the lowest layer it touches (:mod:`.replay`),
with one hook per (hook point, layer) rewriting only the rows that target it.
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
from .sites import SITES, HookFn, hooks


@dataclass(frozen=True)
class Site:
    """Where a patch writes: hook point `hook` of decoder layer `layer`, at head `head` (the `head` hook's
    `z[..., head, :]`; None = the whole activation) and sequence `positions` (None = every position)."""

    hook: str
    layer: int
    head: int | None = None
    positions: tuple[int, ...] | None = None

    def index(self) -> tuple:
        """The index of the patched part in a batch of activations `[n, T, ...]`."""
        pos = slice(None) if self.positions is None else list(self.positions)
        return (slice(None), pos) if self.head is None else (slice(None), pos, self.head)


@dataclass(frozen=True)
class Patch:
    """One batch row: example `example` of the run, with `site` overwritten."""

    example: int
    site: Site


#: set(site, x, examples) -> the new value of `x[site.index()]`, given the rows' activations `x [n, T, ...]` at the
#: site's hook and layer and the example of each row `[n]` (all rows share the site).
Setter = Callable[[Site, torch.Tensor, torch.Tensor], torch.Tensor]


def head_grid(num_examples: int, num_layers: int, num_heads: int) -> list[Patch]:
    """Every (layer, head) at the `head` hook for every example, ordered by layer, then head, then example."""
    return [
        Patch(e, Site("head", layer, head))
        for layer in range(num_layers)
        for head in range(num_heads)
        for e in range(num_examples)
    ]


def head_patches(num_examples: int, heads: Sequence[tuple[int, int]]) -> list[Patch]:
    """Only the given (layer, head)s for every example, ordered like :func:`head_grid`."""
    return [
        Patch(e, Site("head", layer, head)) for layer, head in sorted(set(heads)) for e in range(num_examples)
    ]


def head_coords(patches: Sequence[Patch]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Example, layer and head `[R]` of each of a batch of `head`-hook patches (to scatter their results)."""
    return (
        torch.tensor([p.example for p in patches]),
        torch.tensor([p.site.layer for p in patches]),
        torch.tensor([p.site.head for p in patches]),
    )


def ablation_setter(mode: str, means: torch.Tensor | None = None) -> Setter:
    """The ablated head output, :func:`.ablation.replacement` (`means`: [L, H, D] for dataset_mean)."""

    def value(site: Site, z: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
        idx = torch.tensor([site.head], device=z.device)
        return replacement(z, idx, mode, None if means is None else means[site.layer]).squeeze(-2)

    return value


def head_source_setter(source: dict[int, torch.Tensor]) -> Setter:
    """The head's output in another run of each row's example (`source[layer]`: [E, T, H, D])."""

    def value(site: Site, z: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
        return source[site.layer][examples.to(z.device), :, site.head, :].to(z.dtype)

    return value


def copy_setter(sources: dict[str, torch.Tensor]) -> Setter:
    """One source example's activation (`sources[hook]`: [L, T, ...], e.g. the clean run's) at the site."""

    def value(site: Site, x: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
        if site.hook not in sources:
            raise ValueError(f"no source activations cached for site {site.hook!r}")
        return sources[site.hook][site.layer][site.index()[1:]].to(x)

    return value


def _check(site: Site, vlm: VLM, seq: int) -> None:
    if site.hook not in SITES:
        raise ValueError(f"unknown hook site {site.hook!r}; expected one of {SITES}")
    if (site.head is None) == (site.hook == "head"):
        raise ValueError(f"{site}: a head is given exactly for the 'head' hook")
    if site.head is not None and not 0 <= site.head < vlm.num_heads:
        raise IndexError(f"{site}: head outside {vlm.name}'s {vlm.num_heads} heads")
    if site.positions is not None and not all(0 <= p < seq for p in site.positions):
        raise IndexError(f"patch positions {site.positions} outside a {seq}-token sequence")


def _plan(batch: Sequence[Patch], setter: Setter) -> dict[str, dict[int, HookFn]]:
    """Per hook point and layer, a hook function that applies every row's patch at that layer to one copy."""
    rows: dict[Site, list[int]] = defaultdict(list)
    for r, patch in enumerate(batch):
        rows[patch.site].append(r)
    examples = torch.tensor([p.example for p in batch])
    edits: dict[str, dict[int, list[tuple[Site, torch.Tensor]]]] = defaultdict(lambda: defaultdict(list))
    for site, r in rows.items():
        edits[site.hook][site.layer].append((site, torch.tensor(r)))

    def at(hook: str) -> HookFn:
        def fn(layer: int, x: torch.Tensor) -> torch.Tensor | None:
            if layer not in edits[hook]:
                return None
            x = x.clone()
            for site, r in edits[hook][layer]:
                r = r.to(x.device)
                part = x[r]
                part[site.index()] = setter(site, part, examples[r.cpu()])
                x[r] = part
            return x

        return fn

    return {hook: at(hook) for hook in edits}


def patched_logits(
    vlm: VLM,
    run: DecoderRun,
    patches: Sequence[Patch],
    setter: Setter,
    batch_size: int,
    from_layer: bool = True,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """For each batch: the indices (into `patches`) of its rows and their last-position logits `[R, V]`.

    Patches run in layer order (stable), so each batch replays the decoder from its first patched layer
    (`from_layer`; else from layer 0, for decoders whose mid-layer replay is not exact): nothing before it changes.
    """
    seq = int(run.embeds.shape[1])
    for patch in patches:
        _check(patch.site, vlm, seq)
    order = sorted(range(len(patches)), key=lambda i: patches[i].site.layer)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = [patches[i] for i in idx]
        plan = _plan(batch, setter)
        with ExitStack() as stack:  # hooks are registered before run_rows cuts the layer list
            for hook, fn in plan.items():
                layers = sorted({p.site.layer for p in batch if p.site.hook == hook})
                stack.enter_context(hooks(vlm, hook, fn, layers))
            first = min(p.site.layer for p in batch) if from_layer else 0
            examples = torch.tensor([p.example for p in batch], dtype=torch.long)
            logits = run_rows(vlm, run, examples, start=first)
        yield idx, logits
