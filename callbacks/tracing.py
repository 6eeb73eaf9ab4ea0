"""`CausalTracing`: the tracing analyses (layer patching by token group, token-wise patching, logit lens) as a
Lightning callback, at fit start and/or fit end, with figures and headline numbers logged to TensorBoard.

Tracing is about the frozen model, so the modulation hooks are removed while it runs (`modulated=False`, default)
and re-attached after; with `modulated=True` the model is traced as trained, and the results are tagged with a
digest of the scales so a resumed run never mixes two scale settings.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from vseam_pl.interventions.modulation import unmodulated
from vseam_pl.pairs import read_pairs, select_pairs
from vseam_pl.records import ImagePair
from vseam_pl.tracing.layer_patching import GROUPS
from vseam_pl.tracing.runner import TraceConfig, TraceResult, parse_analyses, run_tracing

STAGES: tuple[str, ...] = ("fit_start", "fit_end")


class CausalTracing(Callback):
    """Trace where image information flows in `pl_module.vlm`.

    Args:
        pairs: a `pairs.jsonl` manifest (or its folder) or a list of :class:`ImagePair`.
        trace: how pairs are traced, the same `TraceConfig` as `vseam trace`'s flags (analyses, batch_size,
            min_gap, ci, instruction, pair_plots; in a YAML recipe a mapping of its fields); default: its defaults.
        out_dir: results folder; default `<trainer.log_dir>/tracing`. Each stage writes to `<out_dir>/<stage>`.
        stages: when to run: `fit_start`, `fit_end`, or both.
        levels, limit: which pairs (see `select_pairs`).
        modulated: trace with the modulation scales applied (default: the frozen model alone).
        resume: continue partial results found in the stage folder.
        log_figures: log the figures to a TensorBoardLogger.
    """

    def __init__(
        self,
        pairs: str | os.PathLike | Sequence[ImagePair],
        trace: TraceConfig | None = None,
        out_dir: str | os.PathLike | None = None,
        stages: str | Sequence[str] = "fit_start",
        levels: Sequence[str] | None = None,
        limit: int | None = 32,
        modulated: bool = False,
        resume: bool = True,
        log_figures: bool = True,
    ) -> None:
        self.pairs, self.levels, self.limit = pairs, levels, limit
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.config = trace if trace is not None else TraceConfig()
        self.analyses = parse_analyses(self.config.analyses)
        self.stages = tuple(s.strip() for s in (stages.split(",") if isinstance(stages, str) else stages))
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise ValueError(f"unknown stages {bad or self.stages}; expected some of {list(STAGES)}")
        self.modulated, self.resume, self.log_figures = modulated, resume, log_figures
        self.results: dict[str, TraceResult] = {}

    def load(self) -> list[ImagePair]:
        source = read_pairs(self.pairs) if isinstance(self.pairs, (str, os.PathLike)) else self.pairs
        return select_pairs(source, self.levels, limit=self.limit)

    def run_dir(self, trainer: Trainer, stage: str) -> Path:
        root = self.out_dir or Path(trainer.log_dir or trainer.default_root_dir) / "tracing"
        return root / stage

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "fit_start" in self.stages:
            self.trace(trainer, pl_module, "fit_start")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "fit_end" in self.stages:
            self.trace(trainer, pl_module, "fit_end")

    def trace(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> TraceResult | None:
        """Run the analyses on rank zero (tracing is not sharded); other ranks wait at a barrier."""
        if trainer.is_global_zero:
            self.results[stage] = self._trace_rank_zero(trainer, pl_module, stage)
        trainer.strategy.barrier("causal_tracing")
        return self.results.get(stage)

    def _trace_rank_zero(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> TraceResult:
        vlm = pl_module.vlm
        modulation = getattr(pl_module, "modulation", None)
        attached = modulation is not None and modulation.attached
        variant = "base"
        if self.modulated and attached:
            digest = hashlib.sha1(modulation.scales.detach().float().cpu().numpy().tobytes()).hexdigest()[:12]
            variant = f"modulated:{digest}"
        with nullcontext() if self.modulated else unmodulated(modulation, vlm):
            result = run_tracing(
                vlm,
                self.load(),
                self.run_dir(trainer, stage),
                self.config,
                resume=self.resume,
                overwrite=not self.resume,
                variant=variant,
                log=lambda msg: None,
            )
        self._log(trainer, stage, result)
        return result

    def _log(self, trainer: Trainer, stage: str, result: TraceResult) -> None:
        step = trainer.global_step
        metrics = {}
        for level, bands in result.aggregated.get("layers", {}).items():
            for g, group in enumerate(GROUPS):
                curve = bands["recovery"].mean[g]
                metrics[f"tracing/{stage}/{level}/{group}_recovery_max"] = float(
                    curve.nan_to_num(float("-inf")).max()
                )
                metrics[f"tracing/{stage}/{level}/{group}_recovery_mean"] = float(curve.nanmean())
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        if not self.log_figures:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for name, fig in result.figures.items():
                    logger.experiment.add_figure(
                        f"tracing/{stage}/{name}", fig, global_step=step, close=False
                    )
