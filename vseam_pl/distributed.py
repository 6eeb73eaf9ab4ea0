"""The default process group, seen the same way everywhere: rank and world size, gathering objects, summing tensors.

Every helper is a no-op (or the single-process answer) without an initialised group, so library code calls them
unconditionally; collectives must then be called by every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.precision import FSDPPrecision
from lightning.pytorch.strategies import FSDPStrategy


def initialized() -> bool:
    """Whether a default process group exists (torch may be built without distributed support)."""
    return dist.is_available() and dist.is_initialized()


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (`[obj]` in a single process). Objects must be picklable."""
    if not initialized() or dist.get_world_size() == 1:
        return [obj]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over ranks, on CPU (`t` itself in a single process). NCCL reduces on the current GPU."""
    if initialized() and dist.get_world_size() > 1:
        device = (
            torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl"
            else torch.device("cpu")
        )
        t = t.to(device)
        dist.all_reduce(t)
    return t.cpu()


def release_process_group() -> None:
    """End of a successful multi-process run: destroy the process group while the interpreter is alive. Left to
    interpreter exit, gloo's worker threads can abort the process ("terminate called without an active exception",
    pytorch/pytorch#190489). Not called on errors: a rank that fails must not wait for the others here."""
    if initialized():
        dist.destroy_process_group()


def frozen_wrap_policy(
    model: torch.nn.Module, layer_classes: set[type[torch.nn.Module]], sharding_strategy: Any = None
) -> Any:
    """An FSDP1 wrap policy under which no unit mixes the frozen weights with the trainable parameters.

    Why: FSDP1 flattens each unit's parameters into one tensor of a single dtype. With only the layer classes
    wrapped, the root unit holds the frozen embeddings, norms, projector and head (bf16/fp16) beside the fp32 scales
    ("Must flatten tensors with uniform dtype"). Here each layer is a unit, and so is every other module whose own
    parameters are all frozen; the root then holds the trainable parameters alone, which stay fp32 and get their
    gradients reduced by FSDP. The units it makes take `sharding_strategy` (when given), so the root may use
    another one (`FrozenFSDPStrategy` keeps it `NO_SHARD`: the scales whole on every rank).
    """
    from torch.distributed.fsdp.wrap import CustomPolicy

    classes = tuple(layer_classes)
    inside = {
        id(sub) for m in model.modules() if isinstance(m, classes) for sub in m.modules() if sub is not m
    }
    wrapped: bool | dict[str, Any] = (
        True if sharding_strategy is None else {"sharding_strategy": sharding_strategy}
    )

    def wrap(module: torch.nn.Module) -> bool | dict[str, Any]:
        if module is model or id(module) in inside:
            return False
        if isinstance(module, classes):
            return wrapped
        own = list(module.parameters(recurse=False))
        return wrapped if own and not any(p.requires_grad for p in own) else False

    return CustomPolicy(wrap)


def restore_parameter_views(model: torch.nn.Module) -> None:
    """Make the original parameters of unsharded FSDP1 units `nn.Parameter`s again after a backward.

    Why: with `use_orig_params` FSDP1 swaps them for plain tensor views in the forward and pre-backward; a sharded
    unit swaps back when it reshards, but an unsharded one (NO_SHARD, which FULL_SHARD becomes on one rank) whose
    parameters are all frozen never does (torch 2.13), and its layer is then missing from the full state dict
    ("FSDP assumes ...q_proj.weight is in the state_dict").
    """
    from torch.distributed.fsdp import FullyShardedDataParallel

    for unit in FullyShardedDataParallel.fsdp_modules(model):
        handle = unit._handle
        if handle is not None and handle._use_orig_params and not handle.uses_sharded_strategy:
            handle._use_unsharded_views(as_params=True)


class BatchFSDPPrecision(FSDPPrecision):
    """FSDPPrecision that passes vseam batches through: they hold records and PIL images, no tensor to cast, and
    Lightning's cast walks into their frozen record dataclasses and fails ("A frozen dataclass was passed to
    `apply_to_collection`") on the first bf16/fp16-mixed training batch."""

    def convert_input(self, data: Any) -> Any:
        from .data import Batch

        return data if isinstance(data, Batch) else super().convert_input(data)


class FrozenFSDPStrategy(FSDPStrategy):
    """Lightning's FSDP strategy (FSDP1) for a frozen model in bf16/fp16 with fp32 trainable scales.

    `auto_wrap_policy` names the layer classes as for Lightning's strategy; they become `frozen_wrap_policy` when
    the model is wrapped, so the scales sit alone in the root unit, which is `NO_SHARD` (`sharding_strategy` applies
    to the frozen units). Batches pass the mixed-precision plugin untouched (`BatchFSDPPrecision`), and unsharded
    units get their parameters back after each backward (`restore_parameter_views`). Everything else (mixed
    precision, state-dict type, activation checkpointing) is Lightning's.
    Lightning refuses a CPU accelerator only when `type(strategy) is FSDPStrategy`, so this subclass also runs on
    CPU with the gloo backend (how the tests exercise it).
    """

    def __init__(
        self,
        auto_wrap_policy: set[type[torch.nn.Module]] | None = None,
        sharding_strategy: str = "FULL_SHARD",
        state_dict_type: str = "full",
        **kwargs: Any,
    ) -> None:
        # from YAML the classes come as a list
        if not (isinstance(auto_wrap_policy, (set, list, tuple)) and auto_wrap_policy):
            raise ValueError(
                "FrozenFSDPStrategy: auto_wrap_policy must list the layer classes to wrap (e.g. "
                f"transformers.models.llama.modeling_llama.LlamaDecoderLayer), got {auto_wrap_policy!r}"
            )
        super().__init__(sharding_strategy=sharding_strategy, state_dict_type=state_dict_type, **kwargs)
        self._layer_classes = set(auto_wrap_policy)

    @property
    def precision_plugin(self) -> FSDPPrecision:
        plugin = FSDPStrategy.precision_plugin.fget(self)
        if type(plugin) is FSDPPrecision:  # what the trainer's `precision` flag makes
            plugin = BatchFSDPPrecision(plugin.precision, plugin.scaler)
            self._precision_plugin = plugin
        return plugin

    @precision_plugin.setter
    def precision_plugin(self, plugin: Any) -> None:
        FSDPStrategy.precision_plugin.fset(self, plugin)

    def post_backward(self, closure_loss: torch.Tensor) -> None:
        super().post_backward(closure_loss)
        if self.model is not None:
            restore_parameter_views(self.model)

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Lightning's wrapping, except: the policy is `frozen_wrap_policy` (the frozen units take the configured
        sharding), the root unit (the scales alone) is `NO_SHARD`, so the scales stay whole on every rank outside
        the forward too (logging, `nonfinite_scales`, `head_scales.safetensors`), and on CPU FSDP is given the CPU
        as its device (Lightning passes `root_device.index`, None there, and FSDP then looks for an accelerator)."""
        from lightning.fabric.strategies.fsdp import _move_torchmetrics_to_device
        from lightning.pytorch.strategies.fsdp import _setup_activation_checkpointing
        from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

        if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            return super()._setup_model(model)  # wrapped by the user: Lightning's handling
        kwargs = dict(self.kwargs)
        kwargs["auto_wrap_policy"] = frozen_wrap_policy(model, self._layer_classes, self.sharding_strategy)
        model = FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=ShardingStrategy.NO_SHARD,
            device_id=self.root_device if self.root_device.type == "cpu" else self.root_device.index,
            **kwargs,
        )
        _move_torchmetrics_to_device(model, self.root_device)
        _setup_activation_checkpointing(model, self._activation_checkpointing_kwargs)
        return model
