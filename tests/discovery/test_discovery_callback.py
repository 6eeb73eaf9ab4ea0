"""`HeadDiscovery` inside a real `lightning.Trainer` fit: TensorBoard images, outputs, in-place scale init."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_discovery import write_pair_manifest
from torch.utils.data import DataLoader

from callbacks.head_discovery import HeadDiscovery
from vseam_pl.discovery import DiscoveryConfig, HeadScores, init_scales_from_scores
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.vlm import load_vlm


class TinyModulated(pl.LightningModule):
    """The shape of the lead's module: `.vlm`, `.modulation` attached during fit, only the scales train."""

    def __init__(self, model_dir: str):
        super().__init__()
        self.vlm = load_vlm(model_dir)
        self.modulation = HeadModulation.for_vlm(self.vlm)
        self.attached_in_step: list[bool] = []

    def setup(self, stage: str) -> None:
        self.modulation.attach(self.vlm)

    def training_step(self, batch, batch_idx):
        self.attached_in_step.append(self.modulation.attached)
        return (self.modulation.scales - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.modulation.parameters(), lr=0.0)  # lr 0: the initial scales stay visible

    def train_dataloader(self):
        return DataLoader(torch.zeros(1, 1), batch_size=1)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_callback_logs_heatmaps_and_initialises_scales(tiny_llava_dir, tmp_path):
    manifest = write_pair_manifest(tmp_path / "pairs", n=4)
    module = TinyModulated(str(tiny_llava_dir))
    scales_param = module.modulation.scales
    callback = HeadDiscovery(manifest, DiscoveryConfig(method="attribution", top_k=2), init_scales="topk")
    logger = TensorBoardLogger(str(tmp_path / "logs"), name="fit")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        logger=logger,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module)

    run_dir = tmp_path / "logs" / "fit" / "version_0" / "head_discovery"
    scores = HeadScores.load(run_dir)
    torch.testing.assert_close(scores.signed(), callback.result.scores.signed())
    expected = init_scales_from_scores(scores, "topk", k=2)
    assert module.modulation.scales is scales_param  # written in place, the optimizer's Parameter
    assert torch.equal(module.modulation.scales.detach(), expected) and (expected != 1).any()
    assert torch.equal(HeadModulation.load(run_dir / "init_scales.safetensors").scales.detach(), expected)
    assert module.attached_in_step == [True]  # re-attached after discovery ran on the unmodulated model

    events = EventAccumulator(str(tmp_path / "logs" / "fit" / "version_0"), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["images"])
    assert {
        "head_discovery/heads/all/signed",
        "head_discovery/heads/level:object/signed",
        "head_discovery/overlap/negative",
        "head_discovery/profiles/levels",
    } <= tags
    image = events.Images("head_discovery/heads/all/signed")[0]
    assert image.width > 100 and image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"


def test_callback_scores_the_unmodulated_model(tiny_llava_dir, tmp_path):
    """Standalone use gives the same scores as the fit-time run, even though the fit module had scales != 1."""
    manifest = write_pair_manifest(tmp_path / "pairs", n=4)
    vlm = load_vlm(str(tiny_llava_dir))
    standalone = HeadDiscovery(manifest, DiscoveryConfig(method="attribution")).discover(vlm)
    module = TinyModulated(str(tiny_llava_dir))
    with torch.no_grad():
        module.modulation.scales.mul_(0.5)
    callback = HeadDiscovery(
        manifest, DiscoveryConfig(method="attribution"), out_dir=tmp_path / "run", log_figures=False
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        logger=False,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module)
    torch.testing.assert_close(callback.result.scores.signed(), standalone.scores.signed())
    assert (tmp_path / "run" / "head_scores.json").exists()
    with pytest.raises(ValueError, match="init_scales must be"):
        HeadDiscovery(manifest, init_scales="ones")
