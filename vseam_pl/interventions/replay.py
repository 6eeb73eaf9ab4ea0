"""Decoder replay: re-running only the language decoder, from any layer, on rows drawn from an already-encoded chunk.

An intervention at layer `l` cannot change anything before layer `l`, so discovery and tracing run the full VLM once
per chunk (vision tower, projector, embedding merge), records what its decoder received (`inputs_embeds`,
`attention_mask`) and the residual stream entering every layer, and then runs each batch of intervened rows from the
first layer it touches: the decoder with its layer list temporarily cut to `layers[start:]`, fed the cached residual
as `inputs_embeds`. Only the logits at the last prompt position are computed.

The decoder is replayed with the model's *own* keyword arguments (:data:`DecoderRun.kwargs`): the 3-D M-RoPE
`position_ids` Qwen2-VL computes from the image grid, PaliGemma's prefix-LM mask, Gemma 3's dict of sliding/global
masks. Without them a replay silently attends with the wrong positions or mask. :func:`check_replay` verifies a
replay against the full forward on real data; callers fall back to full decoder runs (start 0) when a mid-layer
start does not reproduce it (Gemma scales its input embeddings inside the decoder).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..vlm import VLM, UnsupportedModelError
from .sites import HookFn, cache, hooks

# interventions import nothing above them (tests/test_layers.py): an Encoded is only a type hint here
if TYPE_CHECKING:
    from ..encoding import Encoded


@dataclass
class DecoderRun:
    """What the decoder saw for a chunk of E examples, and their unintervened results."""

    embeds: torch.Tensor  # [E, T, hidden] decoder input
    kwargs: dict[
        str, Any
    ]  # the other arguments the model passed its decoder (masks, position ids), batch-first
    last: torch.Tensor  # [E] last prompt position
    residuals: list[torch.Tensor] | None  # per layer: [E, T, hidden] residual stream entering it
    heads: dict[int, torch.Tensor] | None  # per layer: [E, T, H, D] head outputs (for patching)
    logits: torch.Tensor  # [E, V] next-token logits at the last prompt position

    @property
    def attention_mask(self) -> torch.Tensor:
        """The `[E, T]` padding mask (1 = a real token) the decoder was given, for code that needs to know which
        positions are tokens; a family that passes its decoder a 4-D or per-layer mask instead is refused."""
        mask = self.kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            return mask
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise UnsupportedModelError(
            f"the decoder was given an attention mask of shape {shape}, not a 2-D padding "
            "mask; this analysis needs the padding mask"
        )


#: Decoder arguments that are not replayed: the input itself, caches and output switches.
NOT_REPLAYED = frozenset(
    {
        "inputs_embeds",
        "input_ids",
        "cache",
        "past_key_values",
        "use_cache",
        "return_dict",
        "output_attentions",
        "output_hidden_states",
    }
)


def select_rows(key: str, value: Any, rows: torch.Tensor, batch: int) -> Any:
    """`value` (a recorded decoder argument) restricted to example `rows`. Batch-first tensors are indexed on dim 0,
    M-RoPE `position_ids` ([3 or 4, B, T]) on dim 1, dicts (Gemma 3's masks) per entry; broadcast (size-1) and
    non-batch values are kept. Anything else is refused rather than guessed."""
    if isinstance(value, dict):
        return {k: select_rows(key, v, rows, batch) for k, v in value.items()}
    if not isinstance(value, torch.Tensor):
        return value
    if key == "position_ids" and value.dim() == 3:
        return value if value.shape[1] == 1 else value[:, rows]
    if key == "cache_position":
        return value
    if value.dim() > 0 and value.shape[0] == batch:
        return value[rows]
    if value.dim() > 0 and value.shape[0] == 1:
        return value
    raise UnsupportedModelError(
        f"decoder argument {key!r} of shape {tuple(value.shape)} is not batch-first for {batch} examples; "
        "discovery and tracing cannot replay this decoder"
    )


def forward_logits(vlm: VLM, enc: Encoded) -> torch.Tensor:
    """Logits [B, T, V] for an encoded batch (moved to the model's device/dtype)."""
    moved = enc.to(vlm.device, vlm.model.dtype if vlm.model.dtype.is_floating_point else None)
    return vlm.model(**moved.inputs).logits


def last_prompt_activations(vlm: VLM, enc: Encoded, site: str) -> torch.Tensor:
    """`site` of every decoder layer at each row's last prompt token (where the answer is predicted), from one
    forward of `enc`: `[B, L, ...]`, float32 on the CPU."""
    with cache(vlm, (site,)) as store:
        forward_logits(vlm, enc)
    acts = store[site]
    rows, pos = torch.arange(enc.batch_size), enc.last_prompt_positions()
    return torch.stack(
        [acts[layer][rows, pos.to(acts[layer].device)].float().cpu() for layer in sorted(acts)], 1
    )


@torch.no_grad()
def capture(vlm: VLM, enc: Encoded, residuals: bool = True, heads: bool = False) -> DecoderRun:
    """One full forward of the VLM, recording the decoder's inputs (and optionally residuals / head outputs)."""
    moved = enc.to(vlm.device, vlm.model.dtype)
    seen: dict[str, torch.Tensor] = {}
    res: dict[int, torch.Tensor] = {}
    head_out: dict[int, torch.Tensor] = {}

    def grab_decoder(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        if kwargs.get("inputs_embeds") is None:
            raise UnsupportedModelError(
                f"{vlm.name}: its decoder was not called with inputs_embeds; discovery and tracing "
                "replay the decoder from its input embeddings"
            )
        seen["embeds"] = kwargs["inputs_embeds"].detach()
        seen["kwargs"] = {k: v for k, v in kwargs.items() if k not in NOT_REPLAYED and v is not None}

    def grab_layer(i: int):
        def hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            res[i] = (args[0] if args else kwargs["hidden_states"]).detach()

        return hook

    def grab_heads(layer: int, z: torch.Tensor) -> None:
        head_out[layer] = z.detach().clone()

    with ExitStack() as stack:
        handles = [vlm.decoder.register_forward_pre_hook(grab_decoder, with_kwargs=True)]
        if residuals:
            handles += [
                layer.register_forward_pre_hook(grab_layer(i), with_kwargs=True)
                for i, layer in enumerate(vlm.layers)
            ]
        stack.callback(lambda: [h.remove() for h in handles])
        if heads:
            stack.enter_context(hooks(vlm, "head", grab_heads))
        logits = vlm.model(**moved.inputs).logits
    last = enc.last_prompt_positions().to(vlm.device)
    rows = torch.arange(len(last), device=vlm.device)
    return DecoderRun(
        embeds=seen["embeds"],
        kwargs=seen["kwargs"],
        last=last,
        residuals=[res[i] for i in range(vlm.num_layers)] if residuals else None,
        heads=head_out if heads else None,
        logits=logits[rows, last].float(),
    )


@contextmanager
def decoder_from(vlm: VLM, start: int) -> Iterator[None]:
    """Temporarily make the decoder run `layers[start:]` only."""
    if start == 0:
        yield
        return
    original = vlm.decoder.layers
    vlm.decoder.layers = nn.ModuleList(list(original)[start:])
    try:
        yield
    finally:
        vlm.decoder.layers = original


def run_rows(
    vlm: VLM,
    run: DecoderRun,
    examples: torch.Tensor,
    start: int = 0,
    fn: HookFn | None = None,
    layers: list[int] | None = None,
) -> torch.Tensor:
    """Last-position logits `[R, V]` for rows of `run` (`examples [R]` = example index of each row), started at
    layer `start` from the cached residual, with `fn` applied at the `head` site of `layers` (absolute indices)."""
    examples = examples.to(vlm.device)
    if start > 0 and run.residuals is None:
        raise ValueError("run_rows(start>0) needs a DecoderRun captured with residuals=True")
    hidden = run.embeds[examples] if start == 0 else run.residuals[start][examples]
    with ExitStack() as stack:
        if fn is not None:  # hooks first: they locate o_proj through vlm.layers, which the cut below shortens
            stack.enter_context(hooks(vlm, "head", fn, layers))
        stack.enter_context(decoder_from(vlm, start))
        batch = run.embeds.shape[0]
        kwargs = {k: select_rows(k, v, examples, batch) for k, v in run.kwargs.items()}
        out = vlm.decoder(inputs_embeds=hidden, use_cache=False, **kwargs)
    last_hidden = out[0][torch.arange(len(examples), device=vlm.device), run.last[examples]]
    return vlm.lm_head()(last_hidden).float()


@torch.no_grad()
def check_replay(vlm: VLM, run: DecoderRun, starts: tuple[int, ...] = (0,), atol: float = 1e-3) -> bool:
    """True when replaying the decoder from each of `starts` reproduces the full model's logits (`run` needs
    residuals for starts > 0)."""
    rows = torch.arange(run.embeds.shape[0])
    tol = atol * max(1.0, float(run.logits.abs().max()))
    return all(
        torch.allclose(run_rows(vlm, run, rows, start=s), run.logits, atol=tol, rtol=0) for s in starts
    )
