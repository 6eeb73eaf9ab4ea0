"""Loading a frozen VLM and locating its language decoder's attention heads.

`load_vlm` is the one loading path for hub ids (`llava-hf/llava-1.5-7b-hf`) and local folders
(`checkpoints/tiny-llava`): `AutoModelForImageTextToText.from_pretrained` + `AutoProcessor.from_pretrained`, then every
weight frozen. The returned :class:`VLM` knows the decoder's head grid, which is what modulation, discovery and tracing
are indexed by.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Where decoders live in the layouts we know, tried in order after `get_decoder()`.
DECODER_PATHS: tuple[str, ...] = (
    "model.language_model",  # transformers>=4.52 LLaVA / Qwen2-VL / Idefics3 / PaliGemma
    "language_model.model",  # InstructBLIP, older LLaVA
    "language_model",
    "model.text_model",
    "model",
)


class UnsupportedModelError(TypeError):
    """The model has no Llama-style decoder (`layers[i].self_attn.o_proj`) that we can find."""


@dataclass
class VLM:
    """A frozen vision-language model, its processor, and the geometry of its decoder's heads."""

    model: nn.Module
    processor: Any
    name: str
    family: str
    decoder: nn.Module
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int

    @property
    def layers(self) -> nn.ModuleList:
        return self.decoder.layers

    def o_proj(self, layer: int) -> nn.Linear:
        """The attention output projection of `layer`; its *input* is where per-head outputs live."""
        return self.layers[layer].self_attn.o_proj

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.layers[0].self_attn.o_proj.weight.dtype

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def text_config(self) -> Any:
        cfg = self.model.config
        return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg

    def final_norm(self) -> nn.Module:
        """The decoder's last norm (for the logit lens)."""
        return self.decoder.norm

    def lm_head(self) -> nn.Module:
        head = self.model.get_output_embeddings()
        if head is None:
            raise UnsupportedModelError(f"{self.name}: no output embeddings (lm_head) found")
        return head


def model_family(model: nn.Module) -> str:
    """`llava`, `instructblip`, … from the config's model_type (used for prompt fallbacks)."""
    model_type = getattr(model.config, "model_type", "") or ""
    if model_type.startswith("llava"):
        return "llava"
    if model_type.startswith("instructblip"):
        return "instructblip"
    return model_type or "generic"


def _has_head_layout(module: nn.Module | None) -> bool:
    layers = getattr(module, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return False
    attn = getattr(layers[0], "self_attn", None)
    return isinstance(getattr(attn, "o_proj", None), nn.Linear)


def _get_path(root: nn.Module, dotted: str) -> nn.Module | None:
    obj: Any = root
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_decoder(model: nn.Module) -> nn.Module:
    """The language decoder (a module with `.layers[i].self_attn.o_proj`), by `get_decoder()` then known paths."""
    candidates: list[nn.Module | None] = []
    if hasattr(model, "get_decoder"):
        try:
            candidates.append(model.get_decoder())
        except (AttributeError, NotImplementedError, TypeError):
            pass
    candidates += [_get_path(model, p) for p in DECODER_PATHS]
    for module in candidates:
        if _has_head_layout(module):
            return module
    raise UnsupportedModelError(
        f"{type(model).__name__}: no Llama-style language decoder found. Expected a module with "
        f"`layers[i].self_attn.o_proj` (an nn.Linear) at get_decoder() or one of: "
        + ", ".join(f"`{p}.layers`" for p in DECODER_PATHS)
    )


def check_layers(decoder: nn.Module, width: int, name: str) -> None:
    """Every counted layer must have self-attention with an `o_proj` taking `heads * head_dim` features: the head
    grid covers all of them. Mllama interleaves cross-attention layers (no `self_attn`), which modulation, discovery
    and tracing would index as self-attention heads, so such decoders are refused here rather than later."""
    for i, layer in enumerate(decoder.layers):
        o_proj = getattr(getattr(layer, "self_attn", None), "o_proj", None)
        if not isinstance(o_proj, nn.Linear):
            kind = "a cross-attention layer" if hasattr(layer, "cross_attn") else f"a {type(layer).__name__}"
            raise UnsupportedModelError(
                f"{name}: decoder layer {i} is {kind} without `self_attn.o_proj`; vseam-pl's head grid needs "
                "self-attention in every decoder layer (cross-attention decoders such as Mllama / Llama 3.2 Vision "
                "are not supported)"
            )
        if o_proj.in_features != width:
            raise UnsupportedModelError(
                f"{name}: layer {i} o_proj takes {o_proj.in_features} features but num_attention_heads*head_dim = {width}"
            )


def freeze(model: nn.Module) -> nn.Module:
    """Freeze every weight and switch to eval mode: the VLM is never trained, only observed and modulated."""
    model.requires_grad_(False)
    return model.eval()


def wrap_vlm(model: nn.Module, processor: Any, name: str | None = None) -> VLM:
    """Describe an already-loaded model (frozen here) as a :class:`VLM`."""
    freeze(model)
    decoder = find_decoder(model)
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    num_heads = int(cfg.num_attention_heads)
    hidden = int(cfg.hidden_size)
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // num_heads)
    check_layers(decoder, num_heads * head_dim, name or type(model).__name__)
    return VLM(
        model=model,
        processor=processor,
        name=name or str(getattr(model.config, "_name_or_path", "") or type(model).__name__),
        family=model_family(model),
        decoder=decoder,
        num_layers=len(decoder.layers),
        num_heads=num_heads,
        num_kv_heads=int(getattr(cfg, "num_key_value_heads", None) or num_heads),
        head_dim=head_dim,
        hidden_size=hidden,
    )


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """Accept `"bf16"`, `"bfloat16"`, `"fp16"`, `"float32"`, `"auto"` or a torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    aliases = {
        "bf16": "bfloat16",
        "fp16": "float16",
        "half": "float16",
        "fp32": "float32",
        "float": "float32",
    }
    name = aliases.get(str(dtype), str(dtype)).replace("torch.", "")
    resolved = getattr(torch, name, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; expected one of bfloat16, float16, float32, auto")
    return resolved


def model_display_name(name_or_path: str) -> str:
    """A short stable name: the hub id, or a local folder's name."""
    p = Path(name_or_path)
    return p.name if p.exists() else name_or_path


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def check_local_model_path(name_or_path: str) -> None:
    """A name that can only be a local path (``./x``, ``/x``, ``~/x``, ``a/b/c``, or under an existing folder) but
    does not exist: say so, instead of letting it reach the hub as a repo id (a confusing 404 or network error)."""
    s = str(name_or_path)
    path = Path(s).expanduser()
    if path.exists():
        return
    local = (
        s.startswith(("./", "../", "/", "~", ".\\"))
        or (path.parent != Path(".") and path.parent.is_dir())
        or (os.sep in s and not _HUB_ID.fullmatch(s))
    )
    if local:
        from huggingface_hub import is_offline_mode

        offline = " (offline mode: nothing was downloaded)" if is_offline_mode() else ""
        raise FileNotFoundError(f"model {s!r}: no such folder {path.absolute()}{offline}")


def load_vlm(
    name_or_path: str,
    dtype: str | torch.dtype | None = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str | None = "eager",
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> VLM:
    """Load model + processor by hub id or local folder, freeze every weight, and describe the decoder heads.

    `attn_implementation="eager"` is the default because it is exact and fast for small models on CPU; pass
    `"sdpa"` (or `"flash_attention_2"`) for large models on GPU. Head hooks sit on `o_proj`'s input, so every
    attention implementation is supported.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    check_local_model_path(name_or_path)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    model = AutoModelForImageTextToText.from_pretrained(
        name_or_path, dtype=resolve_dtype(dtype), attn_implementation=attn_implementation, **kwargs
    )
    processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
    model.to(device)
    return wrap_vlm(model, processor, name=model_display_name(name_or_path))
