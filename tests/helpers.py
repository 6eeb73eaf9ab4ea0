"""Helpers shared by the test folders (fixtures live in conftest.py): random images, and the tiny Lightning fit and
frozen-state snapshot the method tests use."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer


def make_images(n: int, size: int = 64, seed: int = 0):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    return [
        Image.fromarray((torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy(), "RGB")
        for _ in range(n)
    ]


def data(root, batch_size: int = 4):
    from vseam_pl.data import GQADataModule

    return GQADataModule(root=str(root), batch_size=batch_size, num_workers=0)


def fit(module, root, steps: int = 2) -> None:
    trainer = Trainer(
        accelerator="cpu",
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data(root))


def frozen_state(module) -> dict[str, torch.Tensor]:
    trained = {id(p) for p in module.trainable_parameters()}
    return {n: p.detach().clone() for n, p in module.model.named_parameters() if id(p) not in trained}
