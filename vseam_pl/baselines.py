"""Baselines for the V-SEAM comparison table, as `HeadModulationModule` variants that train and test like it.

Methods (`METHODS`, the keys of the `BASELINES` registry of `BaselineMethod`s): `zero_shot` (the frozen model),
`closed_form` (closed-form scales from discovery scores, no training; the release's constants only for
`protocol="release"` scores, docs/fidelity.md), `learned_ones` /
`learned_discovery` (per-head scales learned from 1 / from the closed-form scales),
`random_heads` (only K randomly chosen heads' scales learn; K = the number of heads the discovery top-K selects),
`discovered_heads` (only those K discovered heads' scales learn, from 1: the control `random_heads` is matched to),
the parameter-efficient fine-tuning baselines `ia3` and `lora` (`peft` adapters on the language decoder, with
the head scales detached and frozen), and two steering methods from the field at the same hook site (each head's
output before `o_proj`):

* ITI (Li et al., 2023, "Inference-Time Intervention"), as honest_llama implements it (`vseam_pl.iti`): heads
  ranked by the validation accuracy of a linear probe per head on "is this answer true" (activations at the
  answer's last token), shifted by ``alpha * std * unit(center-of-mass direction)`` at the last token of every
  forward; `iti_mass_mean` uses those vectors untrained (K heads and alpha chosen on the validation split).
  `iti_learned` (our variant; ITI trains nothing) learns vectors from 0 on the probe-selected heads with the answer
  loss, added at every position like LoFiT's biases (a shift on the last token of a teacher-forced answer would get
  no gradient).
* LoFiT (Yin et al., 2024, "LoFiT: Localized Fine-tuning on LLM Representations", github.com/fc2869/lo-fit):
  first learn a scaling *vector* per head (``z * (1 + A)``, L1 on A: `LoFiTScalingModule`), take the K heads whose
  vectors have the largest norm (`lofit_heads`), then learn bias vectors on those K heads only.

All of them answer the *same* test examples through the same `test_step`, so their correctness can be paired with
the zero-shot model's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .discovery.scores import HeadScores, apply_init_scales, init_scales_from_scores
from .interventions import add_hook
from .io import write_json
from .lit_module import HeadModulationModule
from .ranking import rank_heads
from .vlm import VLM

ADAPTERS: tuple[str, ...] = ("ia3", "lora")


def trainable_count(module: HeadModulationModule) -> int:
    """Trained scalars of a method: `num_trainable` when the module defines it (random heads: K), else the
    elements of `trainable_parameters()` that require grad (0 for zero-shot and the untrained closed form)."""
    explicit = getattr(module, "num_trainable", None)
    if explicit is not None:
        return int(explicit)
    return sum(p.numel() for p in module.trainable_parameters() if p.requires_grad)


def discovery_heads(scores: HeadScores, k: int, group: str = "all") -> list[tuple[int, int]]:
    """The heads the discovery top-K rule modulates: the top-K positive plus the top-K negative heads, sorted."""
    heads = {(lay, h) for lay, h, _ in scores.positive_heads(group, k)}
    heads |= {(lay, h) for lay, h, _ in scores.negative_heads(group, k)}
    return sorted(heads)


def discovery_head_count(scores: HeadScores, k: int, group: str = "all") -> int:
    """How many heads the discovery top-K rule modulates (the K of the random-heads control)."""
    return len(discovery_heads(scores, k, group))


def head_mask(num_layers: int, num_heads: int, heads: list[tuple[int, int]]) -> torch.Tensor:
    """A `[L, H]` bool mask of `heads`, each checked against the grid."""
    mask = torch.zeros(num_layers, num_heads, dtype=torch.bool)
    for layer, head in heads:
        if not (0 <= layer < num_layers and 0 <= head < num_heads):
            raise ValueError(f"head ({layer}, {head}) is outside the {num_layers}x{num_heads} grid")
        mask[layer, head] = True
    if not mask.any():
        raise ValueError("no heads selected: give at least one (layer, head)")
    return mask


def random_head_mask(num_layers: int, num_heads: int, k: int, seed: int) -> torch.Tensor:
    """A `[L, H]` bool mask with exactly `k` heads chosen uniformly at random (reproducible per seed)."""
    total = num_layers * num_heads
    if not 0 < k <= total:
        raise ValueError(
            f"number of random heads must be in [1, {total}] for a {num_layers}x{num_heads} grid, got {k}"
        )
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:k]
    mask = torch.zeros(total, dtype=torch.bool)
    mask[chosen] = True
    return mask.view(num_layers, num_heads)


class SelectedHeadsModule(HeadModulationModule):
    """Learn the scales of the selected heads only (`heads`: (layer, head) pairs); every other head stays at its
    initial scale. `discovered_heads` selects discovery's top-K heads, `random_heads` (a subclass) random ones.

    The other heads' gradients are masked to 0 (so Adam never moves them) and, after each optimizer step, their
    values are restored exactly (so weight decay cannot move them either).
    """

    def __init__(self, heads: list[tuple[int, int]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._restrict_to(head_mask(self.vlm.num_layers, self.vlm.num_heads, list(heads or [])))

    def _restrict_to(self, mask: torch.Tensor) -> None:
        self.register_buffer("head_mask", mask, persistent=False)
        self.register_buffer("frozen_scales", self.modulation.scales.detach().clone(), persistent=False)
        self.modulation.scales.register_hook(lambda g: g * self.head_mask.to(g.dtype))

    @property
    def num_trainable(self) -> int:
        return int(self.head_mask.sum())

    def on_fit_start(self) -> None:
        # Scales may have been re-initialised after __init__ (e.g. a discovery callback): freeze *those* values.
        self.frozen_scales.copy_(self.modulation.scales.detach())

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            s = self.modulation.scales
            s.copy_(torch.where(self.head_mask, s, self.frozen_scales))
        super().on_train_batch_end(outputs, batch, batch_idx)  # the non-finite stop


class RandomHeadsModule(SelectedHeadsModule):
    """`SelectedHeadsModule` on `num_random_heads` heads drawn uniformly at random (reproducible per `head_seed`)."""

    def __init__(self, num_random_heads: int = 10, head_seed: int = 0, **kwargs: Any) -> None:
        HeadModulationModule.__init__(self, **kwargs)
        self._restrict_to(
            random_head_mask(self.vlm.num_layers, self.vlm.num_heads, num_random_heads, head_seed)
        )


class PeftAdapterModule(HeadModulationModule):
    """A `peft` adapter (IA3 or LoRA) on the language decoder instead of head scales, trained on the same loss.

    The adapter is injected into the decoder layers only (`get_peft_model(vlm.decoder, ...)`): the vision tower and
    projector are untouched and every base weight stays frozen. The head-scale hooks are detached and the scales
    frozen, so the adapter weights are the only trainable parameters. `unmodulated()` is peft's
    `disable_adapter()` context: the paired test baseline is the frozen model itself.

    Args:
        adapter: `ia3` or `lora`.
        target_modules: decoder Linear layers to adapt (default: IA3 `["o_proj"]`, LoRA `["q_proj", "v_proj"]`).
        feedforward_modules: IA3 only: modules whose *input* channels are scaled (default: all targets, so IA3 on
            o_proj scales each head channel — a per-channel refinement of per-head scales).
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling numerator, dropout.
        **kwargs: `HeadModulationModule` arguments (model, lr, ...).
    """

    def __init__(
        self,
        adapter: str = "ia3",
        target_modules: list[str] | None = None,
        feedforward_modules: list[str] | None = None,
        lora_r: int = 4,
        lora_alpha: int = 8,
        lora_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        from peft import IA3Config, LoraConfig, get_peft_model

        if adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, got {adapter!r}")
        super().__init__(**kwargs)
        self.modulation.detach()
        self.modulation.scales.requires_grad_(False)
        if adapter == "ia3":
            targets = list(target_modules or ["o_proj"])
            ff = targets if feedforward_modules is None else list(feedforward_modules)
            config: Any = IA3Config(target_modules=targets, feedforward_modules=ff)
        else:
            targets = list(target_modules or ["q_proj", "v_proj"])
            config = LoraConfig(
                r=lora_r,
                lora_alpha=lora_alpha,
                lora_dropout=lora_dropout,
                target_modules=targets,
                bias="none",
            )
        # Not registered as a submodule: it wraps the decoder that `self.model` already holds (in place).
        self.__dict__["peft_model"] = get_peft_model(self.vlm.decoder, config)
        self._adapter_on = True
        self._check_only_adapters_train()

    def _check_only_adapters_train(self) -> None:
        names = [n for n, p in self.named_parameters() if p.requires_grad]
        stray = [n for n in names if "ia3_" not in n and "lora_" not in n]
        if stray or not names:
            raise RuntimeError(
                f"{self.hparams.adapter}: expected only adapter weights to train, got {stray or 'none'}"
            )

    @property
    def intervention_active(self) -> bool:
        return self._adapter_on

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def identity_state(self) -> list[torch.Tensor]:
        """The adapter as a no-op: IA3 vectors at 1, LoRA's B at 0 (A kept: B = 0 already cancels it)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        out = []
        for p in self.trainable_parameters():
            name = names[id(p)]
            if "ia3_" in name:
                out.append(torch.ones_like(p))
            elif "lora_B" in name:
                out.append(torch.zeros_like(p))
            else:
                out.append(p.detach().clone())
        return out

    @contextmanager
    def unmodulated(self) -> Iterator[None]:
        was_on = self._adapter_on
        self._adapter_on = False
        try:
            with self.peft_model.disable_adapter():
                yield
        finally:
            self._adapter_on = was_on


Head = tuple[int, int]


POSITIONS: tuple[str, ...] = ("all", "last")


class LastTokens:
    """Each row's last non-padding token in the decoder's current forward, read from the `attention_mask` the
    decoder is called with (left or right padding); a cached generation step (one new token) is its own last."""

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None
        self._handle = None

    def attach(self, vlm: VLM) -> None:
        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            mask = kwargs.get("attention_mask")
            if isinstance(mask, torch.Tensor) and mask.dim() == 2:
                seen = mask.flip(1).ne(0).int().argmax(1)
                self.index = mask.shape[1] - 1 - seen
            else:
                self.index = None

        self._handle = vlm.decoder.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def positions(self, z: torch.Tensor) -> torch.Tensor:
        """`[B]` positions in `z [B, T, ...]` to shift."""
        batch, length = z.shape[0], z.shape[1]
        if length == 1:
            return torch.zeros(batch, dtype=torch.long, device=z.device)
        if self.index is None:
            return torch.full((batch,), length - 1, dtype=torch.long, device=z.device)
        if self.index.shape[0] != batch or int(self.index.max()) >= length:
            raise RuntimeError(
                f"attention mask of {tuple(self.index.shape)} rows does not match head outputs of shape "
                f"{tuple(z.shape[:2])}: cannot find each row's last token"
            )
        return self.index.to(z.device)


class HeadShift(nn.Module):
    """`shifts: nn.Parameter[K, head_dim]` added to the outputs of `heads` (K (layer, head) pairs): at every
    position (`positions="all"`, LoFiT's bias vectors) or at each row's last token of every forward
    (`positions="last"`, honest_llama's ``ITI_Intervener``: the position predicting the next token)."""

    def __init__(
        self,
        heads: list[Head],
        head_dim: int,
        init: torch.Tensor | None = None,
        positions: str = "all",
    ) -> None:
        super().__init__()
        if not heads or len(set(map(tuple, heads))) != len(heads):
            raise ValueError(f"heads must be a non-empty list of distinct (layer, head) pairs, got {heads}")
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.positions = positions
        self._last = LastTokens()
        self.heads = [(int(lay), int(h)) for lay, h in heads]
        shape = (len(self.heads), head_dim)
        if init is not None and tuple(init.shape) != shape:
            raise ValueError(f"initial shifts must have shape {shape}, got {tuple(init.shape)}")
        self.shifts = nn.Parameter(torch.zeros(shape) if init is None else init.detach().float().clone())
        self._handles: list = []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, vlm: VLM) -> HeadShift:
        bad = [
            (lay, h) for lay, h in self.heads if not (0 <= lay < vlm.num_layers and 0 <= h < vlm.num_heads)
        ]
        if bad:
            raise ValueError(f"heads {bad} are outside {vlm.name}'s {vlm.num_layers}x{vlm.num_heads} grid")
        if self.shifts.shape[1] != vlm.head_dim:
            raise ValueError(
                f"shifts have {self.shifts.shape[1]} values per head, {vlm.name} has head_dim {vlm.head_dim}"
            )
        if self.attached:
            raise RuntimeError("HeadShift is already attached; detach() first")
        rows: dict[int, list[int]] = {}
        for k, (lay, _) in enumerate(self.heads):
            rows.setdefault(lay, []).append(k)

        def shift(layer: int, z: torch.Tensor) -> torch.Tensor:
            ks = rows[layer]
            heads = torch.tensor([self.heads[k][1] for k in ks], device=z.device)
            delta = torch.zeros(z.shape[-2], z.shape[-1], dtype=z.dtype, device=z.device)
            delta = delta.index_add(0, heads, self.shifts[ks].to(dtype=z.dtype, device=z.device))
            if self.positions == "all":
                return z + delta
            where = torch.zeros(z.shape[0], z.shape[1], 1, 1, dtype=z.dtype, device=z.device)
            where[torch.arange(z.shape[0], device=z.device), self._last.positions(z)] = 1
            return z + where * delta

        if self.positions == "last":
            self._last.attach(vlm)
        self._handles = [add_hook(vlm, "head", layer, shift) for layer in sorted(rows)]
        return self

    def detach(self) -> HeadShift:  # noqa: D401 - mirrors attach()
        for h in self._handles:
            h.remove()
        self._handles = []
        self._last.detach()
        return self


class HeadScaleVectors(nn.Module):
    """LoFiT's scaling vectors (``models/modeling_llama.py``: ``attn_A``): `A [L, H, head_dim]` multiplying each
    head's output elementwise by ``1 + A`` at every position, initialised ``normal(0, 1e-3)`` as
    ``lofit_trainer.py`` does."""

    def __init__(
        self, num_layers: int, num_heads: int, head_dim: int, seed: int = 0, std: float = 1e-3
    ) -> None:
        super().__init__()
        init = (
            torch.randn(num_layers, num_heads, head_dim, generator=torch.Generator().manual_seed(seed)) * std
        )
        self.vectors = nn.Parameter(init)
        self._handles: list = []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, vlm: VLM) -> HeadScaleVectors:
        if tuple(self.vectors.shape) != (vlm.num_layers, vlm.num_heads, vlm.head_dim):
            raise ValueError(
                f"scaling vectors {tuple(self.vectors.shape)} do not fit {vlm.name}'s "
                f"{vlm.num_layers}x{vlm.num_heads} heads of {vlm.head_dim}"
            )

        def scale(layer: int, z: torch.Tensor) -> torch.Tensor:
            return z * (1 + self.vectors[layer].to(dtype=z.dtype, device=z.device))

        self._handles = [add_hook(vlm, "head", layer, scale) for layer in range(vlm.num_layers)]
        return self

    def detach(self) -> HeadScaleVectors:  # noqa: D401 - mirrors attach()
        for h in self._handles:
            h.remove()
        self._handles = []
        return self


class HeadShiftModule(HeadModulationModule):
    """ITI / LoFiT-style additive shifts on `shift_heads` instead of scales (scales detached and frozen).

    Args:
        shift_heads: the (layer, head) pairs that get a vector.
        shift_init: `[K, head_dim]` initial vectors (default 0, i.e. the frozen model).
        learn_shifts: train the vectors (False: evaluate `shift_init` as given, e.g. ITI's vectors).
        extra_trained: parameters trained before this module (LoFiT's scaling vectors), for the parameter count.
        shift_positions: `all` (LoFiT's bias vectors) or `last` (ITI: each forward's last token).
    """

    def __init__(
        self,
        shift_heads: list[list[int]] | None = None,
        shift_init: torch.Tensor | None = None,
        learn_shifts: bool = True,
        extra_trained: int = 0,
        shift_positions: str = "all",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.modulation.detach()
        self.modulation.scales.requires_grad_(False)
        self.shift = HeadShift(
            [tuple(h) for h in shift_heads or []], self.vlm.head_dim, shift_init, positions=shift_positions
        )
        self.shift.shifts.requires_grad_(learn_shifts)
        self.shift.attach(self.vlm)
        self._extra_trained = int(extra_trained)

    @property
    def num_trainable(self) -> int:
        return self._extra_trained + (self.shift.shifts.numel() if self.hparams.learn_shifts else 0)

    @property
    def intervention_active(self) -> bool:
        return self.shift.attached

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [self.shift.shifts] if self.hparams.learn_shifts else []

    def identity_state(self) -> list[torch.Tensor]:
        return [torch.zeros_like(p) for p in self.trainable_parameters()]  # no shift

    @contextmanager
    def unmodulated(self) -> Iterator[None]:
        was = self.shift.attached
        self.shift.detach()
        try:
            yield
        finally:
            if was:
                self.shift.attach(self.vlm)


class LoFiTScalingModule(HeadModulationModule):
    """LoFiT's selection step (``lofit_trainer.py --lofit_component A``): per-head scaling *vectors*
    (`HeadScaleVectors`, the head scales detached and frozen) learned with ``l1 * sum |A|`` added to the loss
    (``utils/trainers.py``: the L1 of every trainable parameter)."""

    def __init__(self, lofit_l1: float = 5e-3, vector_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.modulation.detach()
        self.modulation.scales.requires_grad_(False)
        self.scaling = HeadScaleVectors(
            self.vlm.num_layers, self.vlm.num_heads, self.vlm.head_dim, vector_seed
        )
        self.scaling.attach(self.vlm)

    @property
    def num_trainable(self) -> int:
        return self.scaling.vectors.numel()

    @property
    def intervention_active(self) -> bool:
        return self.scaling.attached

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [self.scaling.vectors]

    def identity_state(self) -> list[torch.Tensor]:
        return [torch.zeros_like(self.scaling.vectors)]  # 1 + A = 1

    @contextmanager
    def unmodulated(self) -> Iterator[None]:
        was = self.scaling.attached
        self.scaling.detach()
        try:
            yield
        finally:
            if was:
                self.scaling.attach(self.vlm)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        loss = super().training_step(batch, batch_idx)
        if loss is None:
            return None
        return loss + self.hparams.lofit_l1 * self.scaling.vectors.abs().sum()


def lofit_heads(vectors: torch.Tensor, k: int) -> list[Head]:
    """LoFiT's selection (``lofit_trainer.py``): the `k` heads whose learned scaling vectors `[L, H, D]` have the
    largest norm ``|A|`` (the L1 keeps the others near 0)."""
    if vectors.dim() != 3:
        raise ValueError(
            f"LoFiT selects heads by the norm of [layers, heads, head_dim] vectors, got {tuple(vectors.shape)}"
        )
    if not 0 < k <= vectors.shape[0] * vectors.shape[1]:
        raise ValueError(f"k must be in [1, {vectors.shape[0] * vectors.shape[1]}] (the head grid), got {k}")
    return [(layer, head) for layer, head, _ in rank_heads(vectors.detach().norm(dim=-1), k)]


def lofit_bias_init(k: int, head_dim: int, seed: int = 0, std: float = 1e-3) -> torch.Tensor:
    """LoFiT's bias vectors start at ``normal(0, 1e-3)`` (``lofit_trainer.py --lofit_component v``)."""
    return torch.randn(k, head_dim, generator=torch.Generator().manual_seed(seed)) * std


@dataclass(frozen=True)
class BuildArgs:
    """What `build_method` was given, for a method's builder (each checks what it needs)."""

    discovery_scales: torch.Tensor | None
    num_random_heads: int | None
    head_seed: int
    selected_heads: list[tuple[int, int]] | None
    adapter_kwargs: dict[str, Any] | None
    shift_kwargs: dict[str, Any] | None
    module_kwargs: dict[str, Any]


@dataclass(frozen=True)
class BaselineMethod:
    """A comparison method: whether its parameters are trained (else it is evaluated as built), how its module is
    built from `build_method`'s arguments, and what a study must prepare for it (`vseam_pl.studies.compare` reads
    these instead of testing names)."""

    name: str
    trained: bool
    build: Callable[[str, BuildArgs], HeadModulationModule]
    #: The comparison setting that holds its learning rate (`CompareConfig.lr`, `.lora_lr` or `.shift_lr`).
    lr_setting: str = "lr"
    #: How its shifted heads are chosen before it is built: ITI's probes (`iti_probe`: the probe-ranked heads;
    #: `iti_sweep`: those plus K and alpha swept on validation), LoFiT's scaling-vector step (`lofit`), or none.
    head_selection: Literal["iti_probe", "iti_sweep", "lofit"] | None = None
    #: Run once per random seed (the heads it learns are drawn at random).
    per_seed: bool = False
    #: A LoRA adapter: it takes the study's rank (`lora_r`, alpha = 2 r).
    lora_rank: bool = False


def _scales_module(freeze: bool = False, init: bool = False, detach: bool = False):
    """Head scales from 1 (`init`: from the discovery scales; `freeze`: not trained; `detach`: not applied)."""

    def build(name: str, a: BuildArgs) -> HeadModulationModule:
        if init and a.discovery_scales is None:
            raise ValueError(f"method {name!r} needs discovery_scales (from init_scales_from_scores)")
        module = HeadModulationModule(**a.module_kwargs)
        if detach:
            module.modulation.detach()
        if init:
            apply_init_scales(module.modulation, a.discovery_scales)
        if freeze:
            module.modulation.scales.requires_grad_(False)
        return module

    return build


def _random_heads(name: str, a: BuildArgs) -> HeadModulationModule:
    if a.num_random_heads is None:
        raise ValueError("method 'random_heads' needs num_random_heads (see discovery_head_count)")
    return RandomHeadsModule(num_random_heads=a.num_random_heads, head_seed=a.head_seed, **a.module_kwargs)


def _discovered_heads(name: str, a: BuildArgs) -> HeadModulationModule:
    if not a.selected_heads:
        raise ValueError("method 'discovered_heads' needs selected_heads (see discovery_heads)")
    return SelectedHeadsModule(heads=a.selected_heads, **a.module_kwargs)


def _adapter(name: str, a: BuildArgs) -> HeadModulationModule:
    return PeftAdapterModule(adapter=name, **(a.adapter_kwargs or {}), **a.module_kwargs)


def _shift(learn: bool):
    """ITI shifts each forward's last token; the learned variants shift every position (a shift on the last token
    of a teacher-forced answer gets no gradient: nothing after it is predicted)."""

    def build(name: str, a: BuildArgs) -> HeadModulationModule:
        if not a.shift_kwargs or not a.shift_kwargs.get("shift_heads"):
            raise ValueError(
                f"method {name!r} needs shift_kwargs with shift_heads (see vseam_pl.iti.select_iti / lofit_heads)"
            )
        where = "all" if learn else "last"
        settings = {"shift_positions": where, **a.shift_kwargs, "learn_shifts": learn}
        return HeadShiftModule(**settings, **a.module_kwargs)

    return build


#: The comparison methods by public name (`vseam compare --methods`), in the table's order.
BASELINES: dict[str, BaselineMethod] = {
    m.name: m
    for m in (
        BaselineMethod("zero_shot", False, _scales_module(freeze=True, detach=True)),
        BaselineMethod("closed_form", False, _scales_module(freeze=True, init=True)),
        BaselineMethod("learned_ones", True, _scales_module()),
        BaselineMethod("learned_discovery", True, _scales_module(init=True)),
        BaselineMethod("random_heads", True, _random_heads, per_seed=True),
        BaselineMethod("discovered_heads", True, _discovered_heads),
        BaselineMethod("ia3", True, _adapter),
        BaselineMethod("lora", True, _adapter, lr_setting="lora_lr", lora_rank=True),
        BaselineMethod("iti_mass_mean", False, _shift(learn=False), head_selection="iti_sweep"),
        BaselineMethod(
            "iti_learned", True, _shift(learn=True), lr_setting="shift_lr", head_selection="iti_probe"
        ),
        # the second step of lofit (its first, LoFiTScalingModule, is vseam_pl.studies.compare.shift_setup's)
        BaselineMethod("lofit", True, _shift(learn=True), lr_setting="shift_lr", head_selection="lofit"),
    )
}
METHODS: tuple[str, ...] = tuple(BASELINES)
#: The frozen model: every comparison runs it first, and every p-value is against it.
REFERENCE: str = "zero_shot"
#: Methods whose parameters are trained (the others are evaluated as built).
TRAINED: frozenset[str] = frozenset(name for name, m in BASELINES.items() if m.trained)


def build_method(
    method: str,
    discovery_scales: torch.Tensor | None = None,
    num_random_heads: int | None = None,
    head_seed: int = 0,
    selected_heads: list[tuple[int, int]] | None = None,
    adapter_kwargs: dict[str, Any] | None = None,
    shift_kwargs: dict[str, Any] | None = None,
    **module_kwargs: Any,
) -> HeadModulationModule:
    """The module of one comparison method. `discovery_scales` (`[L, H]`, e.g. `init_scales_from_scores(scores,
    rule="closed_form")`) is needed by `closed_form` and `learned_discovery`, `num_random_heads` by `random_heads`,
    `selected_heads` (`discovery_heads(scores, k)`) by `discovered_heads`,
    `shift_kwargs` (`HeadShiftModule` arguments: heads, initial vectors) by `iti_mass_mean` / `iti_learned` and
    by the second step of `lofit` (whose first step is `LoFiTScalingModule`, see `vseam_pl.studies.compare.shift_setup`)."""
    if method not in BASELINES:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    args = BuildArgs(
        discovery_scales,
        num_random_heads,
        head_seed,
        selected_heads,
        adapter_kwargs,
        shift_kwargs,
        module_kwargs,
    )
    return BASELINES[method].build(method, args)


# ---------------------------------------------------------------- run bookkeeping (resumable comparison jobs)
_HASH_LIMIT = 256 * 2**20  # larger files are identified by size and mtime (hashing GBs of weights is slow)


def model_fingerprint(model: str | os.PathLike) -> str:
    """Identity of a model's files: a hash of a local folder's file names and contents (hub ids: the id itself)."""
    root = Path(model)
    if not root.is_dir():
        return str(model)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0".encode())
        if stat.st_size > _HASH_LIMIT:
            digest.update(str(stat.st_mtime_ns).encode())
            continue
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def claim_run_dir(run_dir: str | os.PathLike, model: str) -> str:
    """Tie the cached results under `run_dir` to one model's files: record its fingerprint on first use and refuse
    to resume from results of a model that has changed since (they would be silently stale)."""
    record = Path(run_dir) / "model.json"
    current = model_fingerprint(model)
    if record.exists():
        saved = json.loads(record.read_text())
        if saved.get("fingerprint") != current:
            raise ValueError(
                f"{record}: results there were computed with other files of {saved.get('model')!r} "
                f"(fingerprint {saved.get('fingerprint')}, now {current}); delete {run_dir} or pass "
                "another runs dir"
            )
    else:
        write_json(record, {"model": str(model), "fingerprint": current})
    return current


__all__ = [
    "ADAPTERS",
    "BASELINES",
    "BaselineMethod",
    "METHODS",
    "REFERENCE",
    "TRAINED",
    "HeadShift",
    "HeadShiftModule",
    "HeadScaleVectors",
    "LoFiTScalingModule",
    "lofit_bias_init",
    "lofit_heads",
    "PeftAdapterModule",
    "RandomHeadsModule",
    "SelectedHeadsModule",
    "build_method",
    "claim_run_dir",
    "discovery_head_count",
    "discovery_heads",
    "head_mask",
    "init_scales_from_scores",
    "model_fingerprint",
    "random_head_mask",
    "trainable_count",
]
