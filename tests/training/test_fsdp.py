"""FSDP with the frozen weights in bf16 and the scales in fp32, on CPU with gloo (issue 28).

Lightning's FSDPStrategy wraps with FSDP1, whose units flatten their parameters into one tensor of one dtype; with
only the decoder/vision layers wrapped, the root unit mixes the frozen bf16 embeddings and head with the fp32 scales
and the wrap fails. `vseam_pl.distributed.frozen_wrap_policy` gives every frozen module outside the layers its own
unit, so the root holds the scales alone. The slow test runs FSDP1 (FULL_SHARD, bf16 mixed precision as Lightning's
`bf16-mixed` sets it) and FSDP2 (`fully_shard`) over two gloo processes and compares each rank's loss and the
averaged scale gradients with one process computing the same batches without FSDP.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vseam_pl.distributed import frozen_wrap_policy, release_process_group

QUESTIONS = [
    "is there a dog in the image",
    "what color is the car",
    "is the bird left of the cat",
    "is it red",
]
ANSWERS = ["yes", "blue", "no", "yes"]


def layer_classes() -> set[type[nn.Module]]:
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    return {LlamaDecoderLayer, CLIPEncoderLayer}


class Step(nn.Module):
    """The training objective as a module forward, so it runs through the FSDP root as Lightning's does."""

    def __init__(self, lit: nn.Module) -> None:
        super().__init__()
        self.lit = lit

    def forward(self, rows: list[int]) -> torch.Tensor:
        from tests.helpers import make_images
        from vseam_pl.prompts import build_prompts
        from vseam_pl.scoring import answer_loss

        vlm = self.lit.vlm
        images = make_images(len(QUESTIONS))
        prompts = build_prompts(vlm, [QUESTIONS[i] for i in rows])
        return answer_loss(vlm, prompts, [images[i] for i in rows], [ANSWERS[i] for i in rows])


def module(model_dir: str, dtype: str = "bfloat16") -> nn.Module:
    from vseam_pl.lit_module import HeadModulationModule

    torch.manual_seed(0)
    lit = HeadModulationModule(model=model_dir, dtype=dtype)
    with torch.no_grad():  # scales away from 1, so that their gradient depends on them
        lit.modulation.scales.copy_(1 + 0.1 * torch.randn(lit.modulation.scales.shape))
    return Step(lit)


def mixed_precision():
    from torch.distributed.fsdp import MixedPrecision

    # what Lightning's FSDPPrecision("bf16-mixed").mixed_precision_config gives
    return MixedPrecision(
        param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, buffer_dtype=torch.bfloat16
    )


@pytest.fixture()
def one_process_group(tmp_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        yield
    finally:
        release_process_group()


def fsdp1(step: nn.Module, policy, sharding: str = "FULL_SHARD"):
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

    return FullyShardedDataParallel(
        step,
        auto_wrap_policy=policy,
        mixed_precision=mixed_precision(),
        sharding_strategy=ShardingStrategy[sharding],
        device_id=torch.device("cpu"),
        use_orig_params=True,
    )


def test_layer_policy_fails_on_bf16_weights_beside_fp32_scales(tiny_llava_dir, one_process_group):
    """The defect: the policy of Lightning's strategy file (the layer classes alone) cannot wrap the module."""
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    with pytest.raises(ValueError, match="uniform dtype"):
        fsdp1(module(str(tiny_llava_dir)), ModuleWrapPolicy(layer_classes()))


def test_frozen_policy_puts_the_scales_alone_in_the_root_unit(tiny_llava_dir, one_process_group):
    from torch.distributed.fsdp import FullyShardedDataParallel

    step = module(str(tiny_llava_dir))
    wrapped = fsdp1(step, frozen_wrap_policy(step, layer_classes()))
    units = [m for m in wrapped.modules() if isinstance(m, FullyShardedDataParallel)]
    root = units[0]
    assert list(root._handle.flat_param._fqns) == ["lit.modulation.scales"]
    assert root._handle.flat_param.dtype == torch.float32
    dtypes = {m._handle.flat_param.dtype for m in units[1:] if m._handle}
    assert dtypes == {torch.bfloat16}
    assert sum(isinstance(m._fsdp_wrapped_module, tuple(layer_classes())) for m in units) == 8  # 4 + 4 layers
    loss = wrapped(list(range(4)))
    loss.backward()
    assert step.lit.modulation.scales.grad is not None and step.lit.modulation.scales.grad.abs().sum() > 0


def test_policy_needs_layer_classes():
    from vseam_pl.distributed import FrozenFSDPStrategy

    with pytest.raises(ValueError, match="auto_wrap_policy must list the layer classes"):
        FrozenFSDPStrategy(auto_wrap_policy=None)


# ---- two gloo processes against one process --------------------------------------------------------------------
ROWS = {0: [0, 1], 1: [2, 3]}


def _fsdp1_rank(step: nn.Module):
    """As `FrozenFSDPStrategy` wraps: the frozen units FULL_SHARD, the root (the scales alone) NO_SHARD."""
    from torch.distributed.fsdp import ShardingStrategy

    policy = frozen_wrap_policy(step, layer_classes(), ShardingStrategy.FULL_SHARD)
    return fsdp1(step, policy, sharding="NO_SHARD")


def _fsdp2_rank(step: nn.Module):
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for m in list(step.modules()):
        if isinstance(m, tuple(layer_classes())):
            fully_shard(m, mp_policy=policy)
    return fully_shard(step, mp_policy=policy)


def _worker(rank: int, kind: str, model_dir: str, root: str) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dist.init_process_group("gloo", init_method=f"file://{root}/rendezvous-{kind}", rank=rank, world_size=2)
    try:
        step = module(model_dir)
        wrapped = _fsdp1_rank(step) if kind == "fsdp1" else _fsdp2_rank(step)
        scales = step.lit.modulation.scales  # FSDP2 replaces the parameter by a DTensor one
        loss = wrapped(ROWS[rank])
        loss.backward()
        if kind == "fsdp1":
            from torch.distributed.fsdp import FullyShardedDataParallel

            with FullyShardedDataParallel.summon_full_params(wrapped, with_grads=True):
                grad = scales.grad.detach().clone()
                dtype = scales.dtype
        else:
            grad = scales.grad.full_tensor()
            dtype = scales.dtype
        torch.optim.SGD([scales], lr=1.0).step()
        sharded = None
        if kind == "fsdp1":
            from torch.distributed.fsdp import FullyShardedDataParallel

            units = [u for u in FullyShardedDataParallel.fsdp_modules(wrapped) if u._handle is not None]
            sharded = [u._handle.uses_sharded_strategy for u in units]
        outside = (
            scales.detach().float().clone() if kind == "fsdp1" else scales.full_tensor().detach().float()
        )
        state = _full_state(wrapped, kind)
        torch.save(
            {
                "loss": loss.item(),
                "grad": grad,
                "dtype": dtype,
                "keys": sorted(state),
                "scales": state.get("s"),
                "outside_forward": outside,  # what logging and head_scales.safetensors read
                "sharded": sharded,
            },
            Path(root) / f"{kind}-{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def _full_state(wrapped: nn.Module, kind: str) -> dict:
    """The full state dict's keys (after the step), with the learned scales under "s"."""
    if kind == "fsdp1":
        from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType

        cfg = FullStateDictConfig(offload_to_cpu=False, rank0_only=False)
        with FullyShardedDataParallel.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, cfg):
            state = wrapped.state_dict()
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True))
    out = dict.fromkeys(state)
    out["s"] = state["lit.modulation.scales"].detach().float().clone()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fsdp1", "fsdp2"])
def test_two_ranks_match_one_process(tiny_llava_dir, tmp_path, kind):
    mp.spawn(_worker, args=(kind, str(tiny_llava_dir), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{kind}-{r}.pt", weights_only=False) for r in range(2)]
    torch.set_num_threads(1)
    step = module(str(tiny_llava_dir))
    scales = step.lit.modulation.scales
    losses, grads = [], []
    for r in range(2):
        scales.grad = None
        loss = step(ROWS[r])
        loss.backward()
        losses.append(loss.item())
        grads.append(scales.grad.clone())
    mean_grad = (grads[0] + grads[1]) / 2
    for r, res in enumerate(ranks):
        assert res["dtype"] == torch.float32
        assert res["loss"] == pytest.approx(losses[r], abs=0.02, rel=0.01)
        torch.testing.assert_close(
            res["grad"], mean_grad, atol=0.02 * float(mean_grad.abs().max()), rtol=0.05
        )
        torch.testing.assert_close(res["scales"], (scales - mean_grad).detach(), atol=1e-3, rtol=1e-3)
        assert len(res["keys"]) > 100 and "lit.modulation.scales" in res["keys"]
        torch.testing.assert_close(
            res["outside_forward"], (scales - mean_grad).detach(), atol=1e-3, rtol=1e-3
        )
        if kind == "fsdp1":  # the root (first) unit replicated, every frozen unit sharded
            assert res["sharded"][0] is False and all(res["sharded"][1:]) and len(res["sharded"]) > 9


def test_strategy_file_instantiates_the_layer_classes():
    """configs/strategies/fsdp.yaml as the CLI reads it: class paths in auto_wrap_policy become classes."""
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import Strategy

    from vseam_pl.distributed import FrozenFSDPStrategy

    repo = Path(__file__).resolve().parents[2]
    cfg = yaml.safe_load((repo / "configs/strategies/fsdp.yaml").read_text())["trainer"]["strategy"]
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    strategy = parser.instantiate(parser.parse_object({"strategy": cfg})).strategy
    assert isinstance(strategy, FrozenFSDPStrategy) and strategy._layer_classes == layer_classes()
    assert strategy.kwargs["use_orig_params"] and strategy._state_dict_type == "full"


def test_mixed_precision_passes_vseam_batches_through():
    """Lightning's FSDP precision plugin walks a batch to cast its tensors and refuses the frozen record
    dataclasses in a vseam batch; the strategy's plugin leaves batches (which hold no tensor) alone."""
    from lightning.pytorch.plugins.precision import FSDPPrecision
    from PIL import Image

    from vseam_pl.data import Batch
    from vseam_pl.distributed import BatchFSDPPrecision, FrozenFSDPStrategy
    from vseam_pl.records import Example, QARecord

    batch = Batch([Example(QARecord("gqa", "1", "is it red?", "yes", "img1"), Image.new("RGB", (8, 8)))])
    with pytest.raises(ValueError, match="frozen dataclass"):
        FSDPPrecision("bf16-mixed").convert_input(batch)
    assert BatchFSDPPrecision("bf16-mixed").convert_input(batch) is batch
    strategy = FrozenFSDPStrategy(auto_wrap_policy=layer_classes())
    strategy.precision_plugin = FSDPPrecision("bf16-mixed")
    assert isinstance(strategy.precision_plugin, BatchFSDPPrecision)
    assert strategy.precision_plugin.precision == "bf16-mixed"
