"""`ScaleMonitor`: the learned scales in TensorBoard each validation epoch — a layer x head heatmap of
`scale - 1` (diverging around "unchanged") and a histogram."""

from __future__ import annotations

import matplotlib.pyplot as plt
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from vseam_pl.discovery.plots import heatmap


class ScaleMonitor(Callback):
    """Log `pl_module.modulation.scales` as an image and a histogram (TensorBoard loggers only)."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = every_n_epochs

    def _tensorboard(self, trainer: Trainer):
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def log_scales(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        writer = self._tensorboard(trainer)
        if writer is None or trainer.global_rank != 0:
            return
        scales = pl_module.modulation.scales.detach().float().cpu()
        fig = heatmap(scales - 1, f"scale - 1 (epoch {trainer.current_epoch}, step {step})")
        writer.add_figure("scales/heatmap", fig, global_step=step)
        plt.close(fig)
        writer.add_histogram("scales/histogram", scales.flatten(), global_step=step)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_scales(trainer, pl_module, trainer.global_step)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        self.log_scales(trainer, pl_module, trainer.global_step)
