"""Per-head modulation: one learnable scalar per (layer, head), the only trainable parameters of V-SEAM.

Each head's output `z[..., h, :]` (the `head` hook site) is multiplied by `scales[layer, h]` *before* the attention
output projection, at every position. Because `o_proj` is linear, the same effect can be folded into its weight columns
(`W[:, hD:(h+1)D] *= s`) for zero-overhead inference, and unfolded back bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..io import write_atomic
from ..vlm import VLM
from .sites import add_hook

SCALES_FORMAT = "vseam-head-scales/1"


class ScalesMismatchError(ValueError):
    """A scales file does not fit the model it is loaded for."""


def nonfinite_scales(scales: torch.Tensor) -> str | None:
    """None when every scale is finite, else a description naming how many are NaN/inf and the first (layer, head)."""
    bad = ~torch.isfinite(scales.detach())
    if not bool(bad.any()):
        return None
    first = [int(i) for i in bad.nonzero()[0]]
    where = f"(layer, head) = {tuple(first)}" if len(first) == 2 else f"index {first}"
    return f"{int(bad.sum())} of {bad.numel()} scales are NaN or inf (first at {where}: {scales.detach()[tuple(first)]})"


class HeadModulation(nn.Module):
    """`scales: nn.Parameter[num_layers, num_heads]` (init 1) applied to each head's output before `o_proj`."""

    def __init__(
        self, num_layers: int, num_heads: int, head_dim: int, init: float = 1.0, model_name: str | None = None
    ):
        super().__init__()
        self.scales = nn.Parameter(torch.full((num_layers, num_heads), float(init)))
        self.head_dim = head_dim
        self.model_name = model_name
        self._handles: list = []
        self._folded: dict[int, torch.Tensor] = {}
        self._folded_vlm: VLM | None = None

    @classmethod
    def for_vlm(cls, vlm: VLM, init: float = 1.0) -> HeadModulation:
        return cls(vlm.num_layers, vlm.num_heads, vlm.head_dim, init=init, model_name=vlm.name)

    @property
    def num_layers(self) -> int:
        return self.scales.shape[0]

    @property
    def num_heads(self) -> int:
        return self.scales.shape[1]

    # -- hooks -----------------------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def check_fits(self, vlm: VLM) -> None:
        if (vlm.num_layers, vlm.num_heads, vlm.head_dim) != (self.num_layers, self.num_heads, self.head_dim):
            raise ScalesMismatchError(
                f"scales are for a {self.num_layers}x{self.num_heads} head grid (head_dim {self.head_dim}) but "
                f"{vlm.name} has {vlm.num_layers}x{vlm.num_heads} (head_dim {vlm.head_dim})"
            )

    def attach(self, vlm: VLM) -> HeadModulation:
        """Multiply each head's output by its scale on every forward (differentiable w.r.t. `scales`)."""
        self.check_fits(vlm)
        if self.attached:
            raise RuntimeError("HeadModulation is already attached; detach() first")
        if self._folded:
            raise RuntimeError("scales are folded into the weights; unfold() before attaching")

        def scale(layer: int, z: torch.Tensor) -> torch.Tensor:
            s = self.scales[layer].to(dtype=z.dtype, device=z.device)
            return z * s.view(*([1] * (z.dim() - 2)), -1, 1)

        self._handles = [add_hook(vlm, "head", layer, scale) for layer in range(vlm.num_layers)]
        return self

    def detach(self) -> HeadModulation:  # noqa: D401 - mirrors attach()
        """Remove the hooks (the model is unmodulated again)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        return self

    # -- folding ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def fold(self, vlm: VLM) -> HeadModulation:
        """Multiply each head's `o_proj` weight columns by its scale in place: modulated inference at zero cost."""
        self.check_fits(vlm)
        if self.attached:
            raise RuntimeError("detach() before fold(): the scales would be applied twice")
        if self._folded:
            raise RuntimeError("already folded")
        for layer in range(vlm.num_layers):
            weight = vlm.o_proj(layer).weight
            self._folded[layer] = weight.detach().clone()
            col_scale = self.scales[layer].detach().to(weight.dtype).repeat_interleave(self.head_dim)
            weight.mul_(col_scale.to(weight.device).unsqueeze(0))
        self._folded_vlm = vlm
        return self

    @torch.no_grad()
    def unfold(self) -> HeadModulation:
        """Restore the exact original `o_proj` weights."""
        if self._folded_vlm is None:
            raise RuntimeError("nothing to unfold")
        for layer, original in self._folded.items():
            self._folded_vlm.o_proj(layer).weight.copy_(original)
        self._folded, self._folded_vlm = {}, None
        return self

    # -- persistence -----------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        return {
            "format": SCALES_FORMAT,
            "model": self.model_name or "",
            "num_layers": str(self.num_layers),
            "num_heads": str(self.num_heads),
            "head_dim": str(self.head_dim),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the scales as float32 safetensors with model/grid metadata (atomically); non-finite scales are
        refused (a file of NaNs would make every answer the same and still be reported as an accuracy)."""
        bad = nonfinite_scales(self.scales)
        if bad:
            raise ValueError(f"{path}: not writing scales: {bad}")
        tensors = {"scales": self.scales.detach().to("cpu", torch.float32).contiguous()}
        return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=self.metadata()))

    @classmethod
    def load(
        cls, path: str | os.PathLike, vlm: VLM | None = None, check_model: bool = True
    ) -> HeadModulation:
        """Read a scales file; with `vlm`, check it belongs to that model's head grid (and name)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no scales file")
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                if "scales" not in fh.keys():
                    raise ScalesMismatchError(f"{path}: no 'scales' tensor (keys: {list(fh.keys())})")
                scales = fh.get_tensor("scales")
        except (OSError, RuntimeError, SafetensorError) as e:
            raise ScalesMismatchError(f"{path}: not a safetensors scales file ({e})") from None
        if meta.get("format") != SCALES_FORMAT:
            raise ScalesMismatchError(
                f"{path}: metadata format {meta.get('format')!r}, expected {SCALES_FORMAT!r}"
            )
        if scales.dim() != 2:
            raise ScalesMismatchError(
                f"{path}: scales must be [layers, heads], got shape {tuple(scales.shape)}"
            )
        bad = nonfinite_scales(scales)
        if bad:
            raise ScalesMismatchError(f"{path}: {bad}; refusing to load them")
        try:
            head_dim = int(meta.get("head_dim", 0))
        except ValueError:
            raise ScalesMismatchError(
                f"{path}: metadata head_dim {meta['head_dim']!r} is not an integer"
            ) from None
        mod = cls(scales.shape[0], scales.shape[1], head_dim, model_name=meta.get("model") or None)
        with torch.no_grad():
            mod.scales.copy_(scales.float())
        if vlm is not None:
            mod.check_fits(vlm)
            if check_model and mod.model_name and mod.model_name != vlm.name:
                raise ScalesMismatchError(
                    f"{path}: scales were learned for model {mod.model_name!r}, not {vlm.name!r} "
                    "(pass check_model=False to load them anyway)"
                )
        return mod

    @classmethod
    def from_peft(cls, adapter_dir: str | os.PathLike, vlm: VLM) -> HeadModulation:
        """Read scales back from a peft IA3 adapter folder (`python -m vseam_pl.export --format peft`).

        Refuses adapters that are not IA3 on every decoder `o_proj` input, or whose values within a head differ
        (a per-channel IA3 adapter has no per-head equivalent); see :mod:`.peft`.
        """
        from .peft import scales_from_peft

        mod = cls.for_vlm(vlm)
        with torch.no_grad():
            mod.scales.copy_(scales_from_peft(adapter_dir, vlm))
        return mod


@contextmanager
def unmodulated(modulation: HeadModulation | None, vlm: VLM) -> Iterator[None]:
    """Run the frozen model without the scales: detach `modulation` if attached, re-attach it on exit.

    The one protocol for baselines, head discovery and tracing; a missing or detached modulation is a no-op.
    """
    reattach = modulation is not None and modulation.attached
    if reattach:
        modulation.detach()
    try:
        yield
    finally:
        if reattach:
            modulation.attach(vlm)
