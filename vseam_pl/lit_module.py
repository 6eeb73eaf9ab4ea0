"""`HeadModulationModule`: a LightningModule over a frozen VLM whose only trainable parameters are the per-head
modulation scales.

Fit minimises the answer cross-entropy plus an L2 pull of the scales toward 1, with the scales projected into
`scale_bounds` ([0, 2] by default, as the release's closed form) after every optimizer step. Validation logs accuracy
per benchmark for the modulated model and, once, for the unmodulated baseline; every full validation pass is a
candidate of `vseam_pl.selection.ValidationSelection`, and at the end of fit the module holds the best candidate if
it beats the identity on validation, else the identity (`decision` says which and why). Test evaluates baseline
*and* modulated on the same examples and leaves the paired report rows in `test_rows`. Both update `vseam_pl.metrics.PairedOutcomes`
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
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from .context import PromptTooLongError
from .data import Batch
from .evaluation import Outcome, benchmark_accuracy
from .interventions.modulation import HeadModulation, nonfinite_scales, unmodulated
from .metrics import PairedOutcomes
from .prompts import DEFAULT_INSTRUCTION, build_prompts
from .report import STATISTICS, outcome_rows
from .resume import CHECKPOINT_KEY, check_checkpoint
from .scoring import answer_token_losses, predict
from .selection import Decision, ValidationSelection
from .text import batch_generation, generation_settings
from .vlm import load_vlm

#: Where a checkpoint keeps the validation candidates, so that a resumed fit selects among all of them.
SELECTION_KEY = "vseam_selection"

#: How questions are answered: closed sets by candidate log-probability (default), or everything generated.
ANSWER_SCORING: tuple[str, ...] = ("closed_set_logprob", "generate")


def headline_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """`test/<benchmark>[/<split>]/<metric>/{baseline,modulated,delta,p_value}` of every report row, as numbers
    for TensorBoard: GQA's overall `test` row (no split part) and its groups (`test/gqa/Animal/accuracy/...`),
    POPE's `random`/`popular`/`adversarial`/`avg`/`all` rows (`test/pope/all/accuracy/...`), and so on."""
    out: dict[str, float] = {}
    for row in rows:
        split = row["split"].removeprefix("test").strip("/")
        name = "/".join(part for part in ("test", row["benchmark"], split, row["metric"]) if part)
        for key in ("baseline", "modulated", "delta", "p_value"):
            if row.get(key) is not None:
                out[f"{name}/{key}"] = float(row[key])
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
        model: hub id or local folder (default: the embedded `checkpoints/tiny-instructblip`, as `configs/default.yaml`).
        dtype: dtype the frozen model is loaded in (`bfloat16`/`float16` halve its memory; scales stay fp32).
        attn_implementation: `eager` (exact, best for tiny models on CPU), `sdpa`, `flash_attention_2`.
        instruction: appended to every question (None: the bare question).
        lr: AdamW's learning rate (the default was chosen by a validation sweep, docs/results.md).
        weight_decay: decoupled decay of the scales toward 1 (never toward 0, which would switch heads off);
            other trainable parameters (adapters, shifts) get AdamW's usual decay toward 0.
        scale_l2: weight of `mean((scales - 1)^2)` added to the loss (on by default: scales move only where the
            data asks, so a result is a few readable heads rather than every head nudged).
        scale_bounds: `(lo, hi)` the scales are projected into after every optimizer step (default `[0, 2]`: a
            head is at most switched off, never sign-flipped); None for unbounded; a negative `lo` only if asked.
        select_on_val: report the best validation candidate (not the last step) and check it against the identity.
        harm_alpha, harm_min_gain: the do-no-harm check of `vseam_pl.selection`: the selected scales are kept only
            if they beat the identity on validation by more than `harm_min_gain` with image-clustered permutation
            p < `harm_alpha` (None: no check).
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
        model: str = "checkpoints/tiny-instructblip",
        dtype: str = "float32",
        attn_implementation: str | None = "eager",
        instruction: str | None = DEFAULT_INSTRUCTION,
        lr: float = 0.02,
        weight_decay: float = 0.0,
        scale_l2: float = 1.0,
        scale_bounds: tuple[float, float] | None = (0.0, 2.0),
        select_on_val: bool = True,
        harm_alpha: float | None = 0.05,
        harm_min_gain: float = 0.0,
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
        if scale_bounds is not None and not scale_bounds[0] < scale_bounds[1]:
            raise ValueError(f"scale_bounds must be (lo, hi) with lo < hi, got {scale_bounds}")
        if weight_decay < 0 or scale_l2 < 0:
            raise ValueError(f"weight_decay and scale_l2 must be >= 0, got {weight_decay} and {scale_l2}")
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
            self.project_scales(f"initial scales {init_scales}")
        self.modulation.attach(self.vlm)
        self.selection = ValidationSelection(harm_alpha, harm_min_gain) if select_on_val else None
        self.decision: Decision | None = None
        self.rejected_state: list[torch.Tensor] | None = None
        self._loss_ema: float | None = None
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
        params = self.trainable_parameters()
        scales = [p for p in params if p is self.modulation.scales]
        others = [p for p in params if p is not self.modulation.scales]
        groups = [{"params": scales, "weight_decay": 0.0}] if scales else []  # decayed toward 1 below
        if others:
            groups.append({"params": others, "weight_decay": self.hparams.weight_decay})
        return torch.optim.AdamW(groups, lr=self.hparams.lr)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """AdamW's step, then the scales' decay toward 1 and their projection into `scale_bounds`."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # before the projection, which would hide an infinite step as a bound (Lightning counts the step after this)
        self.stop_on_nonfinite_scales(self.global_step + 1)
        with torch.no_grad():
            s = self.modulation.scales
            if self.hparams.weight_decay and s.requires_grad:
                lr = next(g["lr"] for g in optimizer.param_groups if any(p is s for p in g["params"]))
                s.sub_(lr * self.hparams.weight_decay * (s - 1))
        self.project_scales()

    @torch.no_grad()
    def project_scales(self, what: str | None = None) -> None:
        """Clamp the scales into `scale_bounds` (`what`: name them in a warning when any was outside)."""
        bounds = self.hparams.get("scale_bounds")
        if bounds is None:
            return
        s = self.modulation.scales
        lo, hi = float(bounds[0]), float(bounds[1])
        if what is not None and bool(((s < lo) | (s > hi)).any()):
            rank_zero_warn(f"{what}: scales outside scale_bounds [{lo}, {hi}] are clipped into them")
        s.clamp_(lo, hi)

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
            ce, is_eos = answer_token_losses(self.vlm, prompts, images, [r.answer for r in records])
        loss = ce.mean()  # the objective: the answer's tokens and the end-of-sequence token
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch}, first record {records[0].source}); stopping. The last "
                "checkpoint holds the scales from before; lower the lr or check the inputs"
            )
        # What is watched: the cross-entropy of the answer's own tokens (the end-of-sequence token's is ~0 after a
        # one-word answer and would halve it), and its moving average.
        answer_ce = float(ce.detach()[~is_eos].mean()) if bool((~is_eos).any()) else float(loss.detach())
        self._loss_ema = answer_ce if self._loss_ema is None else 0.9 * self._loss_ema + 0.1 * answer_ce
        self.log("train/answer_ce", answer_ce, batch_size=len(records))
        self.log("train/answer_ce_ema", self._loss_ema, batch_size=len(records))
        if self.hparams.scale_l2:
            loss = loss + self.hparams.scale_l2 * (self.modulation.scales - 1).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(records))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Stop before a non-finite scale can be checkpointed or saved."""
        self.stop_on_nonfinite_scales(self.global_step)

    def stop_on_nonfinite_scales(self, step: int) -> None:
        bad = nonfinite_scales(self.modulation.scales)
        if bad:
            raise FloatingPointError(
                f"after optimizer step {step} (epoch {self.current_epoch}): {bad}; "
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

    @property
    def full_sanity_pass(self) -> bool:
        """Whether the running sanity check validates the whole validation set (`num_sanity_val_steps: -1`): then
        it is the step-0 candidate (the initial scales) and evaluates the baseline."""
        return bool(self.trainer.sanity_checking) and self.trainer.num_sanity_val_steps == float("inf")

    def on_validation_epoch_end(self) -> None:
        outcomes = synced_outcomes(self.val_paired)  # every rank: torchmetrics gathers the ranks' states
        if self.trainer.sanity_checking and not self.full_sanity_pass:
            return
        values: dict[str, float] = {}
        for bench, acc in benchmark_accuracy(outcomes).items():
            values[f"val/{bench}/accuracy"] = acc["modulated"]
            if "baseline" in acc:
                self._baseline_acc[bench] = acc["baseline"]
            # every pass, so the baseline draws as a line beside the accuracy
            if bench in self._baseline_acc:
                values[f"val/{bench}/baseline_accuracy"] = self._baseline_acc[bench]
        mod = [o.modulated_correct for o in outcomes if o.modulated_correct is not None]
        if mod:
            values["val/accuracy"] = sum(mod) / len(
                mod
            )  # what selection, checkpoints and early stopping watch
        if outcomes:
            self._baseline_done = True
        s = self.modulation.scales.detach()
        values.update(
            {
                "scales/mean": float(s.mean()),
                "scales/min": float(s.min()),
                "scales/max": float(s.max()),
                "scales/moved": float(((s - 1).abs() > 0.1).sum()),
            }
        )
        if self.trainer.sanity_checking:  # Lightning drops what is logged during the sanity check
            for logger in self.loggers if self.trainer.is_global_zero else []:
                logger.log_metrics(values, step=self.global_step)
        else:
            for name, value in values.items():
                # Same arguments every pass: Lightning refuses a key logged with different options in one hook.
                self.log(name, value, prog_bar=name == "val/accuracy", rank_zero_only=True)
        if self.selection is not None and mod:
            self.selection.observe(self.global_step, outcomes, self.trainable_state())

    # -- selection: the best validation candidate, if it beats the identity ------------------------------------
    def trainable_state(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.trainable_parameters()]

    @torch.no_grad()
    def load_trainable_state(self, state: list[torch.Tensor]) -> None:
        params = self.trainable_parameters()
        if len(params) != len(state):
            raise ValueError(f"state has {len(state)} tensors, the module trains {len(params)}")
        for p, v in zip(params, state, strict=True):
            p.copy_(v.to(p))

    def identity_state(self) -> list[torch.Tensor]:
        """The trainable values that make the intervention a no-op (every scale 1; subclasses override)."""
        return [torch.ones_like(self.modulation.scales)]

    def on_fit_end(self) -> None:
        """Hold the selected parameters (or the identity, saying so loudly) before test and export."""
        if self.selection is None:
            return
        self.decision = decision = self.selection.decide()
        best = self.selection.best
        if decision.used == "last":
            rank_zero_warn(f"scales: {decision.reason}")
        elif decision.used == "selected" and best is not None:
            self.load_trainable_state(best.state)
            rank_zero_info(
                f"scales: the step-{decision.selected_step} validation candidate ({decision.reason})"
            )
        elif decision.used == "identity":
            self.rejected_state = best.state if best is not None else self.trainable_state()
            self.load_trainable_state(self.identity_state())
            rank_zero_warn(
                "\n"
                + "!" * 100
                + f"\nNO GAIN: the learned scales are NOT used. The best validation candidate "
                f"(step {decision.selected_step}) {decision.reason}.\nThe result is the identity (every scale 1, "
                "the frozen model); the learned scales are kept as learned_head_scales.safetensors.\n"
                + "!"
                * 100
            )

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
        if self.selection is not None:
            checkpoint[SELECTION_KEY] = self.selection.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint(checkpoint, self.vlm.name, self.head_grid)
        if self.selection is not None and SELECTION_KEY in checkpoint:
            self.selection.load_state_dict(checkpoint[SELECTION_KEY])
        keep = self._trained_keys()
        unexpected = [k for k in checkpoint["state_dict"] if k not in keep]
        if unexpected:
            raise ValueError(
                f"checkpoint holds parameters this module does not train (e.g. {unexpected[0]!r})"
            )
