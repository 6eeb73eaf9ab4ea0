"""Head scales as a peft IA3 adapter, and back.

A per-head scale on the input of `o_proj` is exactly peft's IA3 on every decoder `o_proj` declared a *feed-forward*
module: IA3 then multiplies the layer's input features by a learned vector `ia3_l` (`[1, in_features]`) before the
weight, so writing `ia3_l = scales[layer].repeat_interleave(head_dim)` (each head's `head_dim` values tied) gives
the same forward pass, and `merge_and_unload()` folds it into the weight columns the way `HeadModulation.fold` does.

The adapter targets the decoder's `o_proj` modules by their full names, so a vision tower or Q-Former module that
happens to be called `o_proj` is never touched.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..vlm import VLM

if TYPE_CHECKING:
    from peft import IA3Config, PeftModel

    from .modulation import HeadModulation

IA3_KEY = "ia3_l"
#: peft prefixes saved adapter weights with the wrapper's attribute path.
PEFT_PREFIX = "base_model.model."


class PeftAdapterError(ValueError):
    """A peft adapter folder cannot be read as per-head scales (wrong type, targets, shape, or untied values)."""


def decoder_o_proj_names(vlm: VLM) -> list[str]:
    """Full module names (in `vlm.model`) of each decoder layer's `o_proj`, in layer order."""
    names = {id(module): name for name, module in vlm.model.named_modules()}
    out = []
    for layer in range(vlm.num_layers):
        name = names.get(id(vlm.o_proj(layer)))
        if name is None:
            raise PeftAdapterError(f"{vlm.name}: layer {layer}'s o_proj is not a submodule of the model")
        out.append(name)
    return out


def ia3_config(vlm: VLM, base_model: str | None = None) -> IA3Config:
    """IA3 on every decoder `o_proj`, scaling its input (feedforward), initialised to the identity."""
    from peft import IA3Config

    targets = decoder_o_proj_names(vlm)
    return IA3Config(
        target_modules=targets,
        feedforward_modules=targets,
        init_ia3_weights=True,
        base_model_name_or_path=base_model or vlm.name,
    )


def to_peft(modulation: HeadModulation, vlm: VLM, base_model: str | None = None) -> PeftModel:
    """Wrap `vlm.model` (in place, as `get_peft_model` does) in an IA3 adapter holding `modulation`'s scales."""
    from peft import get_peft_model

    modulation.check_fits(vlm)
    if modulation.attached:
        raise RuntimeError("detach() the scales first: the IA3 adapter would apply them a second time")
    config = ia3_config(vlm, base_model)
    base = config.base_model_name_or_path
    # get_peft_model overwrites the base with the model's own `name_or_path` (the folder it was loaded from, with
    # a warning); the adapter must name the base given here, e.g. the Hub id from `model_card.resolve_base_model`.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*base_model_name_or_path. was renamed")
        peft_model = get_peft_model(vlm.model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base
    with torch.no_grad():
        for layer in range(vlm.num_layers):
            vector = vlm.o_proj(layer).ia3_l["default"]  # the peft layer replaced the Linear; o_proj finds it
            tied = modulation.scales[layer].detach().repeat_interleave(modulation.head_dim)
            vector.copy_(tied.to(vector.dtype).view_as(vector))
    return peft_model


def save_peft(
    modulation: HeadModulation, vlm: VLM, out: str | os.PathLike, base_model: str | None = None
) -> Path:
    """Write `adapter_config.json` + `adapter_model.safetensors` (peft's own `save_pretrained`) to `out`.

    `vlm.model` is wrapped in place and unwrapped again afterwards (`unload`), so the caller's model is unchanged.
    """
    peft_model = to_peft(modulation, vlm, base_model)
    try:
        peft_model.save_pretrained(str(out))
    finally:
        peft_model.unload()
    return Path(out)


def _is_feedforward(name: str, feedforward: str | list[str] | set[str] | None) -> bool:
    """peft's own rule: a string is a full-match regex, a list matches a name or a dotted suffix of it."""
    if feedforward is None:
        return False
    if isinstance(feedforward, str):
        return re.fullmatch(feedforward, name) is not None
    return any(name == f or name.endswith("." + f) for f in feedforward)


def _tied_scales(vector: torch.Tensor, head_dim: int, where: str) -> torch.Tensor:
    if not torch.isfinite(vector).all():
        raise PeftAdapterError(f"{where}: IA3 values contain NaN or infinity")
    heads = vector.float().reshape(-1, head_dim)
    spread = (heads - heads[:, :1]).abs().amax(dim=1)
    tol = 1e-6 * heads[:, :1].abs().squeeze(1).clamp(min=1.0)
    bad = (spread > tol).nonzero().flatten().tolist()
    if bad:
        h = bad[0]
        raise PeftAdapterError(
            f"{where}: head {h}'s {head_dim} IA3 values differ (spread {float(spread[h]):.3g}); per-head scales need "
            f"each head's values tied (an IA3 adapter trained per channel is not a head-scale adapter; {len(bad)} "
            "head(s) untied)"
        )
    return heads[:, 0]


def scales_from_peft(adapter_dir: str | os.PathLike, vlm: VLM) -> torch.Tensor:
    """`[layers, heads]` scales of an IA3 adapter folder written for `vlm` (see `save_peft`), checked strictly."""
    from peft import PeftConfig
    from peft.utils import load_peft_weights

    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").exists():
        raise FileNotFoundError(f"{folder}: no adapter_config.json (not a peft adapter folder)")
    try:
        config = PeftConfig.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - json, TypeError (unknown keys), ValueError (bad values)
        raise PeftAdapterError(
            f"{folder}/adapter_config.json: not a valid peft adapter config ({type(e).__name__}: {e})"
        ) from None
    peft_type = str(getattr(config.peft_type, "value", config.peft_type))
    if peft_type != "IA3":
        raise PeftAdapterError(f"{folder}/adapter_config.json: peft_type {peft_type!r}, expected 'IA3'")
    weights_file = folder / "adapter_model.safetensors"
    if not weights_file.is_file() and not (folder / "adapter_model.bin").is_file():
        raise FileNotFoundError(
            f"{folder}: no {weights_file.name} (the adapter's weights; the folder is incomplete)"
        )
    try:
        weights = load_peft_weights(str(folder), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors and torch raise several types for a damaged file
        raise PeftAdapterError(f"{folder}: unreadable adapter weights ({type(e).__name__}: {e})") from None
    names = decoder_o_proj_names(vlm)
    expected = {f"{PEFT_PREFIX}{name}.{IA3_KEY}": layer for layer, name in enumerate(names)}
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise PeftAdapterError(
            f"{folder}: adapter weights {extra[:3]}{' ...' if len(extra) > 3 else ''} are not on {vlm.name}'s decoder "
            f"o_proj modules; only IA3 on every decoder o_proj (expected keys like {next(iter(expected))!r}) is a "
            "head-scale adapter"
        )
    missing = [k for k in expected if k not in weights]
    if missing:
        raise PeftAdapterError(
            f"{folder}: no IA3 vector for {len(missing)} decoder o_proj module(s), e.g. {missing[0]!r}"
        )
    not_ff = [n for n in names if not _is_feedforward(n, config.feedforward_modules)]
    if not_ff:
        raise PeftAdapterError(
            f"{folder}/adapter_config.json: o_proj modules {not_ff[:2]} are not in feedforward_modules, so IA3 "
            "scales their output channels, not the per-head input"
        )
    scales = torch.empty(vlm.num_layers, vlm.num_heads)
    width = vlm.num_heads * vlm.head_dim
    for key, layer in expected.items():
        vector = weights[key].flatten()
        if vector.numel() != width:
            raise PeftAdapterError(
                f"{folder}: {key} has {vector.numel()} values, expected {width} = {vlm.num_heads} heads x head_dim "
                f"{vlm.head_dim}"
            )
        scales[layer] = _tied_scales(vector, vlm.head_dim, f"{folder}: {key}")
    return scales
