"""The named hook sites of a decoder layer and the one way to hook them.

Every intervention in the package — modulation, ablation, caching, patching, tracing — is a function
`fn(layer, x) -> new x (or None to keep x)` installed at one of four sites of decoder layer `layer`
(TransformerLens's names in brackets):

- `head`: the per-head attention output, the *input* of `self_attn.o_proj` viewed as `z [batch, seq, heads,
  head_dim]` (`hook_z`). Head `h` reaches the residual stream only through `o_proj.weight[:, h*D:(h+1)*D] @
  z[..., h, :]`, so scaling, ablating and patching a head are all rewrites of `z[..., h, :]`;
- `attn`: the attention output, the *output* of `o_proj`, `[batch, seq, hidden]` (`hook_attn_out`); with a
  bias-free `o_proj` it is zero exactly when every head's `z` is;
- `mlp`: the MLP's output, `[batch, seq, hidden]` (`hook_mlp_out`);
- `resid`: the decoder layer's output, the residual stream after layer `layer`, `[batch, seq, hidden]`
  (`hook_resid_post`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..vlm import VLM

SITES: tuple[str, ...] = ("head", "resid", "attn", "mlp")

#: fn(layer, x) -> new x, or None to keep x. x is z [B, T, H, D] at `head`, [B, T, hidden] at the other sites.
HookFn = Callable[[int, torch.Tensor], "torch.Tensor | None"]


def _output_hook(layer: int, fn: HookFn) -> Callable:
    """A forward hook passing a module's output (the first element of a tuple output) through `fn`."""

    def hook(module: nn.Module, args: tuple, output):
        x = output[0] if isinstance(output, tuple) else output
        new = fn(layer, x)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


def add_hook(vlm: VLM, site: str, layer: int, fn: HookFn) -> RemovableHandle:
    """Register `fn` at `site` of decoder layer `layer`; remove it with the returned handle."""
    if site == "head":
        heads, head_dim = vlm.num_heads, vlm.head_dim

        def pre_hook(module: nn.Module, args: tuple) -> tuple | None:
            x = args[0]
            out = fn(layer, x.view(*x.shape[:-1], heads, head_dim))
            return None if out is None else (out.reshape(x.shape), *args[1:])

        return vlm.o_proj(layer).register_forward_pre_hook(pre_hook)
    if site == "attn":
        module = vlm.o_proj(layer)
    elif site == "mlp":
        module = vlm.layers[layer].mlp
    elif site == "resid":
        module = vlm.layers[layer]
    else:
        raise ValueError(f"unknown hook site {site!r}; expected one of {SITES}")
    return module.register_forward_hook(_output_hook(layer, fn))


@contextmanager
def hooks(vlm: VLM, site: str, fn: HookFn, layers: Sequence[int] | None = None) -> Iterator[None]:
    """Apply `fn` at `site` of `layers` (default: all) during the forwards run inside the block. Nest or stack
    blocks for several sites; hooks of the same site run in the order they were installed."""
    layers = range(vlm.num_layers) if layers is None else layers
    for layer in layers:
        if not 0 <= layer < vlm.num_layers:
            raise IndexError(f"layer {layer} outside {vlm.name}'s {vlm.num_layers} decoder layers")
    handles = [add_hook(vlm, site, layer, fn) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def cache(
    vlm: VLM, sites: Sequence[str] = ("head",), layers: Sequence[int] | None = None, detach: bool = True
) -> Iterator[dict[str, dict[int, torch.Tensor]]]:
    """Record the activation at each of `sites` of `layers` (default all) during the forwards inside the block:
    `{site: {layer: x}}` (the last forward's, detached unless `detach=False`)."""
    store: dict[str, dict[int, torch.Tensor]] = {s: {} for s in sites}

    def recorder(site: str) -> HookFn:
        def record(layer: int, x: torch.Tensor) -> None:
            store[site][layer] = x.detach() if detach else x

        return record

    with ExitStack() as stack:
        for site in sites:
            stack.enter_context(hooks(vlm, site, recorder(site), layers))
        yield store


def stack_layers(cached: dict[int, torch.Tensor], row: int) -> torch.Tensor:
    """`{layer: [B, T, ...]}` -> `[L, T, ...]` for one batch row."""
    return torch.stack([cached[layer][row] for layer in sorted(cached)])
