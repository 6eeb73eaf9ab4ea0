"""Where vseam-pl hooks sit: the per-head attention output, i.e. the input of each decoder layer's `o_proj`.

At that site the activation is `z` of shape `[batch, seq, heads, head_dim]` (TransformerLens calls it `hook_z`):
head `h`'s contribution to the residual stream is `o_proj.weight[:, h*D:(h+1)*D] @ z[..., h, :]`. Scaling,
ablating, caching and patching a head are all functions `z -> z` registered here, so every intervention in the
package shares one definition of "a head's output".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.utils.hooks import RemovableHandle

from .vlm import VLM

#: f(layer, z) -> new z (or None to keep z), with z of shape [batch, seq, heads, head_dim].
HeadFn = Callable[[int, torch.Tensor], "torch.Tensor | None"]


def add_head_hook(vlm: VLM, layer: int, fn: HeadFn) -> RemovableHandle:
    """Register `fn` on layer `layer`'s per-head output (a forward pre-hook on `o_proj`)."""
    heads, head_dim = vlm.num_heads, vlm.head_dim

    def pre_hook(module: torch.nn.Module, args: tuple) -> tuple | None:
        x = args[0]
        z = x.view(*x.shape[:-1], heads, head_dim)
        out = fn(layer, z)
        if out is None:
            return None
        return (out.reshape(x.shape), *args[1:])

    return vlm.o_proj(layer).register_forward_pre_hook(pre_hook)


@contextmanager
def head_hooks(vlm: VLM, fn: HeadFn, layers: Sequence[int] | None = None) -> Iterator[None]:
    """Temporarily apply `fn` at the head-output site of `layers` (default: all)."""
    handles = [
        add_head_hook(vlm, layer, fn) for layer in (range(vlm.num_layers) if layers is None else layers)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def cache_head_outputs(
    vlm: VLM, layers: Sequence[int] | None = None, detach: bool = True
) -> Iterator[dict[int, torch.Tensor]]:
    """Record z for each layer during the forward passes run inside the block: `{layer: [B, T, H, D]}`."""
    cache: dict[int, torch.Tensor] = {}

    def record(layer: int, z: torch.Tensor) -> None:
        cache[layer] = z.detach() if detach else z

    with head_hooks(vlm, record, layers):
        yield cache
