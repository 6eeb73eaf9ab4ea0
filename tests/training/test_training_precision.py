"""Precision and memory options through a real Trainer step on a tiny LLaVA: the frozen model loaded in bf16 with
fp32 scales, bf16-mixed autocast close to fp32, gradient checkpointing (really dropping activations) with the same
gradients,
and scales files portable between bf16- and fp32-loaded models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from vseam_pl.data import GQADataModule
from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.synth import generate_benchmarks


class Capture(Callback):
    """The first step's loss and the scales' gradient just before the optimizer uses it."""

    def __init__(self) -> None:
        self.loss: float | None = None
        self.grad: torch.Tensor | None = None
        self.saved_bytes = 0  # activations autograd keeps for backward during the forward
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.saved_bytes += t.numel() * t.element_size()
        return t

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._hooks.__enter__()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._hooks.__exit__(None, None, None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss = float(outputs["loss"])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grad = pl_module.modulation.scales.grad.detach().clone()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return generate_benchmarks(tmp_path_factory.mktemp("precision") / "synth", n_train=4, n_val=2, n_test=2)


def one_step(module: HeadModulationModule, synth: Path, tmp: Path, precision: str = "32-true") -> Capture:
    capture = Capture()
    data = GQADataModule(root=str(synth), batch_size=4, limit=4, num_workers=0, shuffle_buffer=0)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[capture],
        default_root_dir=tmp,
    )
    trainer.fit(module, datamodule=data)
    return capture


def test_bf16_weights_fp32_scales_step(tiny_llava_dir, synth, tmp_path):
    module = HeadModulationModule(str(tiny_llava_dir), dtype="bfloat16")
    assert module.vlm.o_proj(0).weight.dtype == torch.bfloat16
    assert module.model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert module.modulation.scales.dtype == torch.float32
    cap = one_step(module, synth, tmp_path)
    assert cap.loss is not None and torch.isfinite(torch.tensor(cap.loss))
    assert cap.grad.dtype == torch.float32 and cap.grad.abs().sum() > 0
    assert module.modulation.scales.dtype == torch.float32 and not torch.all(module.modulation.scales == 1)
    assert (
        module.vlm.o_proj(0).weight.dtype == torch.bfloat16
    )  # the strategy/precision did not upcast the model


@pytest.fixture(scope="module")
def fp32_step(tiny_llava_dir, synth, tmp_path_factory) -> Capture:
    return one_step(HeadModulationModule(str(tiny_llava_dir)), synth, tmp_path_factory.mktemp("fp32"))


@pytest.mark.parametrize("precision", ["bf16-mixed"])  # on CPU Lightning turns 16-mixed into bf16-mixed
def test_mixed_precision_loss_is_finite_and_close_to_fp32(
    tiny_llava_dir, synth, tmp_path, fp32_step, precision
):
    module = HeadModulationModule(str(tiny_llava_dir))
    mixed = one_step(module, synth, tmp_path, precision=precision)
    assert torch.isfinite(torch.tensor(mixed.loss))
    assert mixed.loss == pytest.approx(fp32_step.loss, rel=2e-2)
    assert module.modulation.scales.dtype == torch.float32  # autocast leaves the parameter in fp32
    cos = torch.nn.functional.cosine_similarity(mixed.grad.flatten(), fp32_step.grad.flatten(), dim=0)
    assert cos > 0.95


def test_gradient_checkpointing_drops_activations_and_gives_the_same_gradients(
    tiny_llava_dir, synth, tmp_path
):
    runs = {}
    for ckpt in (False, True):
        runs[ckpt] = one_step(
            HeadModulationModule(str(tiny_llava_dir), gradient_checkpointing=ckpt),
            synth,
            tmp_path / str(ckpt),
        )
    # it really checkpointed inside Lightning's fit (the frozen model is in eval mode): far fewer saved activations
    assert runs[True].saved_bytes < runs[False].saved_bytes / 3
    torch.testing.assert_close(runs[True].grad, runs[False].grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("src, dst", [("bfloat16", "float32"), ("float32", "bfloat16")])
def test_scales_files_are_portable_across_dtypes(tiny_llava_dir, tmp_path, src, dst):
    a = HeadModulationModule(str(tiny_llava_dir), dtype=src)
    with torch.no_grad():
        a.modulation.scales.copy_(
            torch.linspace(0.5, 1.5, a.modulation.scales.numel()).view_as(a.modulation.scales)
        )
    path = a.modulation.save(tmp_path / "head_scales.safetensors")
    b = HeadModulationModule(str(tiny_llava_dir), dtype=dst, init_scales=str(path))
    assert b.vlm.o_proj(0).weight.dtype == getattr(torch, dst) and b.modulation.scales.dtype == torch.float32
    torch.testing.assert_close(b.modulation.scales, a.modulation.scales, atol=0, rtol=0)
