"""`HeadDiscovery`: causal head discovery as a Lightning callback (at fit start) or standalone.

At fit start it scores every attention head of `pl_module.vlm` on the clean/edited pairs with the modulation hooks
temporarily removed (discovery is about the frozen model), writes the outputs of :func:`run_discovery` to
`<log_dir>/head_discovery`, logs the heatmaps to TensorBoard, and, when `init_scales` is set, writes the initial
scales into `pl_module.modulation.scales` in place. Under DDP every rank scores its shard and gets the same
all-reduced scores, so every rank writes the same initial scales.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

from vseam_pl.discovery.methods import METHODS
from vseam_pl.discovery.runner import DiscoveryConfig, DiscoveryResult, run_discovery
from vseam_pl.discovery.scores import apply_init_scales, init_scales_from_scores
from vseam_pl.discovery.set_ablation import SetAblationResult, run_set_ablation, set_ablation_config
from vseam_pl.interventions.modulation import unmodulated
from vseam_pl.pairs import load_pairs
from vseam_pl.records import ImagePair
from vseam_pl.vlm import VLM


class HeadDiscovery(pl.Callback):
    """Find positive/negative heads from edited image pairs; optionally initialise the modulation scales from them.

    Args:
        pairs: a `pairs.jsonl` manifest (or its folder) or a list of :class:`ImagePair`.
        discovery: how heads are scored, the same `DiscoveryConfig` as `vseam discover`'s flags (method, protocol,
            top_k, batch_size, ...; in a YAML recipe a mapping of its fields); default: its defaults.
        out_dir: run folder; default `<trainer.log_dir>/head_discovery`.
        levels, categories, limit: which pairs (see `load_pairs`).
        set_ablation: also run set ablation after scoring, with these `SetAblationConfig` fields (k, random_sets,
            seed, mode, group; K and pair_batch default to `discovery`'s, see `set_ablation_config`); `{}` for the
            defaults, None to skip.
        init_scales: `None` (leave the scales alone), `"closed_form"` or `"topk"` (see `init_scales_from_scores`).
        init_group: which group's scores initialise the scales (`all`, `level:object`, `category:Color`, ...).
        init_kwargs: extra arguments of `init_scales_from_scores` (lam, clip, eps, normalize, up, down); constants
            left out take the protocol's defaults.
        resume: continue from the run folder's partial results (a restarted fit does not redo finished chunks).
        log_figures: log heatmaps, profiles and overlap matrices to a TensorBoardLogger.
    """

    def __init__(
        self,
        pairs: str | os.PathLike | Sequence[ImagePair],
        discovery: DiscoveryConfig | None = None,
        out_dir: str | os.PathLike | None = None,
        levels: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        limit: int | None = None,
        set_ablation: dict[str, Any] | None = None,
        init_scales: str | None = None,
        init_group: str = "all",
        init_kwargs: dict[str, Any] | None = None,
        resume: bool = True,
        log_figures: bool = True,
    ):
        if init_scales not in (None, "closed_form", "topk"):
            raise ValueError(f"init_scales must be None, 'closed_form' or 'topk', got {init_scales!r}")
        self.config = discovery if discovery is not None else DiscoveryConfig()
        self.config.validate()
        self.set_config = None
        if set_ablation is not None:
            if not METHODS[self.config.method].ablates:
                raise ValueError(
                    "set_ablation needs method='ablation' scores (it ablates the top positive/negative heads)"
                )
            self.set_config = set_ablation_config(self.config, **set_ablation)
        self.pairs, self.levels, self.categories, self.limit = pairs, levels, categories, limit
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.init_scales, self.init_group, self.init_kwargs = init_scales, init_group, dict(init_kwargs or {})
        self.resume, self.log_figures = resume, log_figures
        self.result: DiscoveryResult | None = None
        self.set_result: SetAblationResult | None = None

    def load(self) -> list[ImagePair]:
        if isinstance(self.pairs, (str, os.PathLike)):
            return load_pairs(self.pairs, levels=self.levels, categories=self.categories, limit=self.limit)
        pairs = list(self.pairs)
        return pairs[: self.limit] if self.limit is not None else pairs

    def discover(self, vlm: VLM, out_dir: str | os.PathLike | None = None, sink=None) -> DiscoveryResult:
        """Standalone use: score the heads of `vlm` (no trainer needed)."""
        out = out_dir if out_dir is not None else self.out_dir
        pairs = self.load()
        self.result = run_discovery(
            vlm, pairs, self.config, out_dir=out, resume=self.resume and out is not None, sink=sink
        )
        if self.set_config is not None:
            self.set_result = run_set_ablation(
                vlm, pairs, self.result.scores, self.set_config, out_dir=out, sink=sink
            )
        return self.result

    def run_dir(self, trainer: pl.Trainer) -> Path:
        if self.out_dir is not None:
            return self.out_dir
        return Path(trainer.log_dir or trainer.default_root_dir) / "head_discovery"

    def resolve_pairs(self, trainer: pl.Trainer) -> None:
        """A relative manifest path that does not exist from the working directory is taken relative to the
        DataModule's `root` (so `pairs: train/pairs/pairs.jsonl` follows `--data.root`); with several benchmarks
        (`MultiBenchmarkDataModule`), relative to the first of their roots that has it."""
        if (
            not isinstance(self.pairs, (str, os.PathLike))
            or Path(self.pairs).is_absolute()
            or Path(self.pairs).exists()
        ):
            return
        data = getattr(trainer, "datamodule", None)
        members = getattr(data, "datamodules", None) or [data]
        roots = [r for r in (getattr(m, "root", None) for m in members) if r is not None]
        found = [Path(r) / self.pairs for r in roots if (Path(r) / self.pairs).exists()]
        if found:
            self.pairs = found[0]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.resolve_pairs(trainer)
        vlm: VLM = pl_module.vlm
        modulation = getattr(pl_module, "modulation", None)
        logger = trainer.logger if isinstance(trainer.logger, TensorBoardLogger) else None
        sink = None
        if self.log_figures and logger is not None and trainer.is_global_zero:

            def sink(tag: str, fig: Any) -> None:
                logger.experiment.add_figure(
                    f"head_discovery/{tag}", fig, global_step=trainer.global_step, close=False
                )

        out = self.run_dir(trainer)
        with unmodulated(modulation, vlm):
            result = self.discover(vlm, out, sink)
        if trainer.logger is not None and result.filter_report is not None:
            trainer.logger.log_metrics(
                {f"head_discovery/filter_{k}": float(v) for k, v in result.filter_report.items()},
                step=trainer.global_step,
            )
        if self.init_scales is not None:
            if modulation is None:
                raise AttributeError(
                    "HeadDiscovery(init_scales=...) needs `pl_module.modulation` (a HeadModulation)"
                )
            scales = init_scales_from_scores(
                result.scores,
                self.init_scales,
                group=self.init_group,
                k=self.config.top_k,
                **self.init_kwargs,
            )
            apply_init_scales(modulation, scales)
            if trainer.is_global_zero:
                modulation.save(out / "init_scales.safetensors")
