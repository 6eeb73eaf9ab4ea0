"""`HeadModulationModule`: a LightningModule over a frozen VLM whose only trainable parameters are the per-head
modulation scales.

Fit minimises the answer cross-entropy (plus an optional L2 pull of the scales toward 1). Validation logs accuracy per
benchmark for the modulated model and, once, for the unmodulated baseline. Test evaluates baseline *and* modulated on
the same examples and leaves the paired report rows in `test_rows`. Both update `vseam_pl.metrics.PairedOutcomes`
(`val_paired`, `test_paired`), which torchmetrics synchronises over DDP ranks; the numbers come from its states.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger

from .context import PromptTooLongError
from .data import Batch
from .evaluation import Outcome, benchmark_accuracy
from .metrics import PairedOutcomes
from .modulation import HeadModulation, nonfinite_scales, unmodulated
from .prompts import DEFAULT_INSTRUCTION, build_prompts
from .report import STATISTICS, outcome_rows
from .resume import CHECKPOINT_KEY, check_checkpoint
from .scoring import answer_loss, predict
from .text import batch_generation, generation_settings
from .vlm import load_vlm

#: How questions are answered: closed sets by candidate log-probability (default), or everything generated.
ANSWER_SCORING: tuple[str, ...] = ("closed_set_logprob", "generate")


def headline_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """`test/<benchmark>/<metric>/{baseline,modulated,delta,p_value}` of the overall test rows (not the per-group
    ones), as numbers for TensorBoard's HParams tab."""
    out: dict[str, float] = {}
    for row in rows:
        if row["split"] != "test":
            continue
        for key in ("baseline", "modulated", "delta", "p_value"):
            if row.get(key) is not None:
                out[f"test/{row['benchmark']}/{row['metric']}/{key}"] = float(row[key])
    return out


def synced_outcomes(metric: PairedOutcomes) -> list[Outcome]:
    """`metric.compute()` on every rank (torchmetrics gathers all ranks' states); a rank, or a whole epoch, without
    examples is expected (sanity checks, uneven shards), so torchmetrics' compute-before-update warning is muted."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
        return metric.compute()


@contextmanager
def naming_records(records: list) -> Iterator[None]:
    """Name the record (``file:line``) in a too-long-prompt error raised for a batch row."""
    try:
        yield
    except PromptTooLongError as e:
        source = next((r.source for r in records if r.question and r.question in e.text), None)
        if source is None:
            raise
        raise e.naming(source) from None


class HeadModulationModule(LightningModule):
    """Learn one scale per (layer, head) of a frozen VLM.

    Args:
        model: hub id or local folder (the embedded default: `checkpoints/tiny-llava`).
        dtype: dtype the frozen model is loaded in (`bfloat16`/`float16` halve its memory; scales stay fp32).
        attn_implementation: `eager` (exact, best for tiny models on CPU), `sdpa`, `flash_attention_2`.
        instruction: appended to every question (None: the bare question).
        lr, weight_decay: AdamW on the scales.
        scale_l2: weight of `mean((scales - 1)^2)` added to the loss.
        init_scales: `ones`, or a `head_scales.safetensors` file to start from (discovery callbacks can also
            initialise the scales at fit start).
        eval_baseline: also evaluate the unmodulated model once in validation (for the comparison line).
        max_new_tokens: generation length for open questions.
        gradient_checkpointing: recompute decoder activations in backward (large models on one GPU).
        trust_remote_code: passed to `from_pretrained`; off unless asked for.
        answer_scoring: `closed_set_logprob` (default: closed questions answered by the best candidate's
            log-probability, open ones by greedy generation) or `generate` (every question generated, as
            lmms-eval / VLMEvalKit / LLaVA's scripts do).
        answer_parser: how generated replies are read (`vseam_pl.text.ANSWER_PARSERS`: vseam, lmms_eval, llava,
            vlmevalkit); recorded in metrics.json.
        generation: `vseam` (default: `max_new_tokens`, first line of the reply) or `toolkit` (the parser's
            toolkit's own generation per benchmark, whole reply: `vseam_pl.text.TOOLKIT_GENERATION`).
        statistics: `image_clustered` (default: p-values and CIs resample images) or `per_question` (McNemar and a
            per-question bootstrap); each row's `p_test` says which was used.
    """

    def __init__(
        self,
        model: str = "checkpoints/tiny-llava",
        dtype: str = "float32",
        attn_implementation: str | None = "eager",
        instruction: str | None = DEFAULT_INSTRUCTION,
        lr: float = 0.02,
        weight_decay: float = 0.0,
        scale_l2: float = 0.0,
        init_scales: str = "ones",
        eval_baseline: bool = True,
        max_new_tokens: int = 8,
        gradient_checkpointing: bool = False,
        trust_remote_code: bool = False,
        answer_scoring: str = "closed_set_logprob",
        answer_parser: str = "vseam",
        statistics: str = "image_clustered",
        generation: str = "vseam",
    ) -> None:
        super().__init__()
        if statistics not in STATISTICS:
            raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")
        if answer_scoring not in ANSWER_SCORING:
            raise ValueError(f"answer_scoring must be one of {ANSWER_SCORING}, got {answer_scoring!r}")
        generation_settings(generation, answer_parser, None, max_new_tokens)  # refuses bad settings early
        self.save_hyperparameters()
        self.vlm = load_vlm(
            model, dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code
        )
        # Registered so that strategies (DDP/FSDP/DeepSpeed) and `.to()` see the frozen weights; checkpoints keep
        # only the scales (see on_save_checkpoint).
        self.model = self.vlm.model
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.modulation = HeadModulation.for_vlm(self.vlm)
        if init_scales != "ones":
            self.load_scales(init_scales)
        self.modulation.attach(self.vlm)
        self.strict_loading = False
        self._baseline_done = False
        self._baseline_acc: dict[str, float] = {}
        # What validation and test update (torchmetrics syncs them over DDP ranks) and the report is built from.
        self.val_paired = PairedOutcomes(parser=self.answer_parser)
        self.test_paired = PairedOutcomes(parser=self.answer_parser)
        self.test_rows: list[dict[str, Any]] = []
        self.test_outcomes: list[Outcome] = []

    # -- scales ----------------------------------------------------------------------------------------------
    def load_scales(self, path: str | Path) -> None:
        loaded = HeadModulation.load(path, self.vlm)
        with torch.no_grad():
            self.modulation.scales.copy_(loaded.scales)

    @property
    def intervention_active(self) -> bool:
        """Whether the model currently differs from the frozen baseline (subclasses with adapters override)."""
        return self.modulation.attached

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What the optimizer sees: the scales (subclasses may return adapter weights instead)."""
        return [self.modulation.scales]

    @contextmanager
    def unmodulated(self) -> Iterator[None]:
        """The frozen model as it was, for baselines and discovery."""
        with unmodulated(self.modulation, self.vlm):
            yield

    # -- training --------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        """Transformers recompute a checkpointed layer only while `layer.training`; the frozen model stays in eval
        mode (no dropout), so only those layers' own flag is set (Lightning's evaluation loops reset and restore it)."""
        if self.hparams.gradient_checkpointing:
            for module in self.model.modules():
                if getattr(module, "gradient_checkpointing", False):
                    module.training = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.trainable_parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def _inputs(self, batch: Batch) -> tuple[list, list, list]:
        records = [ex.record for ex in batch.examples]
        return (
            records,
            build_prompts(self.vlm, [r.question for r in records], self.hparams.instruction),
            [ex.image for ex in batch.examples],
        )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        if not batch.examples:  # every record of the batch was skipped (on_bad_record="skip")
            return None
        records, prompts, images = self._inputs(batch)
        with naming_records(records):
            loss = answer_loss(self.vlm, prompts, images, [r.answer for r in records])
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch}, first record {records[0].source}); stopping. The last "
                "checkpoint holds the scales from before; lower the lr or check the inputs"
            )
        self.log("train/answer_loss", loss, batch_size=len(records))
        if self.hparams.scale_l2:
            loss = loss + self.hparams.scale_l2 * (self.modulation.scales - 1).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(records))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Stop before a non-finite scale can be checkpointed or saved."""
        bad = nonfinite_scales(self.modulation.scales)
        if bad:
            raise FloatingPointError(
                f"after optimizer step {self.global_step} (epoch {self.current_epoch}): {bad}; "
                "stopping. The last checkpoint holds the scales from before; lower the lr"
            )

    # -- answering -------------------------------------------------------------------------------------------
    @property
    def answer_parser(self) -> str:
        return self.hparams.get("answer_parser", "vseam")

    @property
    def answer_scoring(self) -> str:
        return self.hparams.get("answer_scoring", "closed_set_logprob")

    def answer_settings(self) -> dict[str, str]:
        """What metrics.json records about how answers were produced and read."""
        return {
            "answer_scoring": self.answer_scoring,
            "answer_parser": self.answer_parser,
            "answer_generation": self.hparams.get("generation", "vseam"),
        }

    def answer(self, batch: Batch) -> tuple[list, list[str]]:
        records = [ex.record for ex in batch.examples]
        closed = self.answer_scoring == "closed_set_logprob"
        gen = batch_generation(
            self.hparams.get("generation", "vseam"),
            self.answer_parser,
            [r.benchmark for r in records],
            self.hparams.max_new_tokens,
        )
        with naming_records(records):
            preds = predict(
                self.vlm,
                [r.question for r in records],
                [ex.image for ex in batch.examples],
                [r.candidates if closed else None for r in records],
                instruction=self.hparams.instruction,
                batch_size=len(records),
                max_new_tokens=gen.max_new_tokens,
                first_line=gen.first_line,
                fit_context=gen.fit_context,
            )
        return records, preds

    # -- validation ------------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.val_paired.reset()

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not batch.examples:
            return
        records, preds = self.answer(batch)
        baseline = None
        if self.hparams.eval_baseline and not self._baseline_done:
            with self.unmodulated():
                _, baseline = self.answer(batch)
        self.val_paired.update(records, baseline, preds)

    def on_validation_epoch_end(self) -> None:
        outcomes = synced_outcomes(self.val_paired)  # every rank: torchmetrics gathers the ranks' states
        for bench, acc in benchmark_accuracy(outcomes).items():
            self._log_value(f"val/{bench}/accuracy", acc["modulated"])
            if "baseline" in acc:
                self._baseline_acc[bench] = acc["baseline"]
            # every epoch, so the baseline draws as a line beside the accuracy
            if bench in self._baseline_acc:
                self._log_value(f"val/{bench}/baseline_accuracy", self._baseline_acc[bench])
        if outcomes and not self.trainer.sanity_checking:
            self._baseline_done = True
        s = self.modulation.scales.detach()
        self.log_dict(
            {"scales/mean": s.mean(), "scales/std": s.std(), "scales/min": s.min(), "scales/max": s.max()}
        )

    def _log_value(self, name: str, value: float) -> None:
        # Same arguments every epoch: Lightning refuses a key logged with different options in one hook.
        self.log(name, value, prog_bar=name.endswith("/accuracy"), rank_zero_only=True)

    # -- test: paired baseline vs modulated ------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self.test_paired.reset()

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Baseline (unmodulated) always; modulated too when scales are attached (evaluate.py without --scales
        detaches them and reports the baseline alone)."""
        if not batch.examples:
            return
        modulated = self.answer(batch)[1] if self.intervention_active else None
        with self.unmodulated():
            records, baseline = self.answer(batch)
        self.test_paired.update(records, baseline, modulated)

    def on_test_epoch_end(self) -> None:
        self.test_outcomes = synced_outcomes(self.test_paired)
        self.test_rows = outcome_rows(
            self.test_outcomes,
            parser=self.answer_parser,
            statistics=self.hparams.get("statistics", "image_clustered"),
        )
        self._log_hparams(headline_metrics(self.test_rows))

    # -- TensorBoard hparams: logged at fit start without metrics, at the end with the test headline numbers ----
    def on_fit_start(self) -> None:
        if not self.trainer.enable_autolog_hparams:
            self._log_hparams({})

    def _log_hparams(self, metrics: dict[str, float]) -> None:
        """`metrics={}` records the hyperparameters only; TensorBoard's HParams tab then shows the metrics written at
        the end (with Trainer(enable_autolog_hparams=True) Lightning's `hp_metric=-1` session is written first).
        Other loggers (CSV, W&B) get the hyperparameters once at fit start and the headline test metrics as metrics."""
        if self.trainer.global_rank != 0:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.hparams, metrics=metrics, step=self.trainer.global_step)
            elif metrics:
                logger.log_metrics(metrics, step=self.trainer.global_step)
            elif not self.trainer.enable_autolog_hparams:
                logger.log_hyperparams(self.hparams)
        for logger in self.loggers:
            if metrics and not isinstance(logger, TensorBoardLogger):
                logger.save()

    # -- checkpoints hold the trained parameters only -------------------------------------------------------
    def _trained_keys(self) -> set[str]:
        trained = {id(p) for p in self.trainable_parameters()}
        return {name for name, p in self.named_parameters() if id(p) in trained}

    @property
    def head_grid(self) -> tuple[int, int, int]:
        """(layers, heads, head_dim) of the model: with its name, what a checkpoint must match to be resumed."""
        return self.vlm.num_layers, self.vlm.num_heads, self.vlm.head_dim

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self._trained_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint[CHECKPOINT_KEY] = {"name": self.vlm.name, "grid": list(self.head_grid)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint(checkpoint, self.vlm.name, self.head_grid)
        keep = self._trained_keys()
        unexpected = [k for k in checkpoint["state_dict"] if k not in keep]
        if unexpected:
            raise ValueError(
                f"checkpoint holds parameters this module does not train (e.g. {unexpected[0]!r})"
            )
