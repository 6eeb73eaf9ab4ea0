"""`vseam evaluate` (= `python evaluate.py`): evaluate a frozen VLM — and, with `--scales` or `--ckpt_path`, the same
VLM with learned head scales — on GQA, POPE and COCO-QA.

It reads train's configuration tree (`model.*`, `data.*`, `trainer.*`, `seed_everything`; default
`configs/default.yaml`), so one recipe serves both and a training run is evaluated from its own `config.yaml`:

    python evaluate.py                                                   # tiny InstructBLIP, synthetic POPE test split
    python evaluate.py --benchmarks gqa,pope,cocoqa --scales runs/.../head_scales.safetensors
    python evaluate.py -c runs/lightning_logs/version_0/config.yaml --ckpt_path last
    python evaluate.py -c configs/llava-1.5-7b.yaml --benchmarks pope --trainer.devices 2 --trainer.strategy ddp

Baseline and modulated answers are computed on the *same* examples; each row of the printed table and of
`metrics.json` gives both accuracies, the difference with a 95% CI and a paired p-value. Training-only keys of a
recipe (`trainer.max_epochs`, `trainer.callbacks`, `model.lr`, ...) are accepted and unused: evaluation writes no
logs or checkpoints and runs no callbacks.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, Trainer, seed_everything

from vseam_pl.batch_size import datamodule_batch_size, resolve
from vseam_pl.cli import (
    DEFAULT_CONFIG,
    VSeamCLI,
    checkpoint_roots,
    ensure_synthetic,
    gather_skipped,
    synthetic_conventions,
    write_outputs,
)
from vseam_pl.data import MultiBenchmarkDataModule, QADataModule, build_datamodule
from vseam_pl.distributed import release_process_group
from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.outputs import OutputPaths, resolve_metrics_path
from vseam_pl.signals import stop_on_sigterm

#: where `evaluate` differs from the DataModules' and the Trainer's own defaults (which are training's): the synthetic
#: world, 32 questions a batch and one image-decoding worker, one device in full precision
DATA_DEFAULTS: dict[str, Any] = {"root": "data/synth", "batch_size": 32, "num_workers": 1}
TRAINER_DEFAULTS: dict[str, Any] = {"devices": 1, "precision": "32-true"}
#: the per-benchmark keys of `evaluate`'s `data` (each a mapping of that benchmark's DataModule arguments)
BENCHMARKS: tuple[str, ...] = ("gqa", "pope", "cocoqa")


def evaluate(
    module: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    trainer: Mapping[str, Any] | None = None,
    benchmarks: str = "gqa,pope,cocoqa",
    scales: str | None = None,
    output: str | None = None,
    seed: int = 0,
) -> list[dict]:
    """Evaluate baseline (and modulated, with `scales`) on the test split of each benchmark.

    The three mappings are `vseam evaluate`'s `--model.*`, `--data.*` and `--trainer.*` keys, each taken by the
    class it configures, so every setting and default is that class's own (`DATA_DEFAULTS` and `TRAINER_DEFAULTS`
    name the few that evaluation changes):

        evaluate({"model": "checkpoints/tiny-instructblip"}, {"root": "data/synth", "limit": 100, "pope": {"splits": ["random"]}})

    Args:
        module: `HeadModulationModule` arguments (model, dtype, attn_implementation, instruction, max_new_tokens,
            answer_scoring, answer_parser, generation, statistics, ...); the scales come from `scales`.
        data: the DataModules' shared arguments (root: a benchmark root or the synthetic world, generated if
            missing; image_dir, splitting, hf_dataset, hf_config, limit, on_bad_record, num_workers, batch_size:
            "auto" sizes it on the GPU from each benchmark's first batch) and, under `gqa`, `pope`, `cocoqa`, one
            benchmark's own (levels, categories; splits; types, image_pattern).
        trainer: `Trainer` arguments (accelerator, devices, strategy, precision).
        benchmarks: comma-separated subset of gqa,pope,cocoqa.
        scales: head_scales.safetensors from train.py; without it only the baseline is evaluated.
        output: metrics.json path (default: metrics.json beside the scales, else runs/eval/metrics.json).
        seed: seeds the bootstrap CIs (and the DataModules unless `data` gives their seed).
    """
    seed_everything(seed, verbose=False)
    outputs = evaluation_outputs(output, scales)  # checked before any work
    module = dict(module or {})
    if "init_scales" in module:
        raise ValueError("evaluate: give the learned scales as scales=..., not module['init_scales']")
    common = {**DATA_DEFAULTS, "seed": seed, **(data or {})}
    per = {n: dict(common.pop(n, None) or {}) for n in BENCHMARKS}
    if common.get("hf_dataset"):
        common["root"] = None
    elif common["root"] == DATA_DEFAULTS["root"]:
        ensure_synthetic(common["root"])
    conventions = {} if common.get("hf_dataset") else synthetic_conventions(common["root"])
    pattern = per["cocoqa"].pop("image_pattern", None) or conventions.get("cocoqa_image_pattern")
    if pattern:
        per["cocoqa"]["image_pattern"] = pattern
    size = resolve(common["batch_size"])
    common["batch_size"] = size or DATA_DEFAULTS["batch_size"]
    names = [b.strip().lower() for b in benchmarks.split(",") if b.strip()]
    datamodule = build_datamodule(names, per_benchmark={n: per[n] for n in names if n in per}, **common)

    lit = HeadModulationModule(**module, init_scales=scales or "ones")
    if scales is None:
        lit.modulation.detach()
    trainer_args = {**TRAINER_DEFAULTS, **(trainer or {})}
    if size is None:
        auto_batch_size(lit, datamodule, str(trainer_args.get("accelerator")))
    test = Trainer(
        **trainer_args,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    return run_test(test, lit, datamodule, scales, output, outputs=outputs)


def evaluation_outputs(output: str | None, learned: str | None) -> OutputPaths:
    """Where an evaluation writes, checked now: `--output` as given (a folder gets a free `metrics[-n].json`);
    by default a free name beside the scales or checkpoint, else in runs/eval — never over an existing file
    (beside a run's scales, that run's own metrics.json)."""
    default = Path(learned).parent if learned else Path("runs/eval")
    return resolve_metrics_path(output, default)


def auto_batch_size(module: HeadModulationModule, data: LightningDataModule, accelerator: str) -> None:
    """Batch size `auto`: the largest that fits on the GPU, written into `data` (on CPU the configured one stays)."""
    if accelerator != "cpu" and torch.cuda.is_available():
        module.vlm.model.to("cuda")
        hp = module.hparams
        size = datamodule_batch_size(
            module.vlm, data, instruction=hp.instruction, max_new_tokens=hp.max_new_tokens
        )
        print(f"batch size auto: {size} questions per batch", file=sys.stderr)
    else:
        print(f"batch size auto: no GPU to size against; using {data.batch_size}", file=sys.stderr)


def run_test(
    trainer: Trainer,
    module: HeadModulationModule,
    data: LightningDataModule,
    scales: str | None,
    output: str | None,
    ckpt_path: str | None = None,
    outputs: OutputPaths | None = None,
) -> list[dict]:
    """Test `module` on `data` and write metrics.json, the table and the per-question samples (to `outputs`, else
    to `evaluation_outputs(output, ...)`); the rows."""
    learned = scales or ckpt_path
    outputs = outputs or evaluation_outputs(output, learned)
    trainer.test(module, datamodule=data, verbose=False, ckpt_path=ckpt_path)
    skipped = gather_skipped(getattr(data, "skipped", []))
    write_outputs(
        outputs,
        module.vlm.name,
        module.test_rows,
        None,
        {"skipped_records": len(skipped), **module.answer_settings()},
        scales_path=learned,
        outcomes=module.test_outcomes,
    )
    release_process_group()
    return module.test_rows


# -- the command line: train's configuration tree plus what only evaluation needs ------------------------------
class EvaluateCLI(VSeamCLI):
    """`train.py`'s LightningCLI keys (so a recipe or a run's `config.yaml` configures both) plus `--scales`,
    `--benchmarks`, `--output` and `--auto_batch_size`. The Trainer runs the test loop only: no logger, no
    checkpointing, none of the recipe's (training) callbacks."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument(
            "--scales",
            type=str | None,
            default=None,
            help="head_scales.safetensors to evaluate (or --ckpt_path); without either: the baseline alone",
        )
        parser.add_argument(
            "--benchmarks",
            type=str | None,
            default=None,
            help="comma list of gqa,pope,cocoqa: test these with the data settings of `data` "
            "(default: the benchmarks `data` configures)",
        )
        parser.add_argument(
            "--output",
            type=str | None,
            default=None,
            help="metrics file, or a folder for metrics.json (default: a new metrics[-n].json beside --scales / "
            "--ckpt_path, else in runs/eval; an existing file is never replaced unless named here)",
        )
        parser.add_argument(
            "--auto_batch_size",
            type=bool,
            default=False,
            help="replace data.batch_size by the largest that fits on the GPU (no-op on CPU)",
        )

    outputs: OutputPaths | None = None

    def input_files(self) -> list[tuple[str, str]]:
        scales = self.config.get("scales")
        return [*(super().input_files()), *([("--scales", scales)] if scales else [])]

    def instantiate_classes(self) -> None:
        asked = self.config.get("ckpt_path")
        super().instantiate_classes()
        if (
            asked == "last" and self.config.get("ckpt_path") is None
        ):  # training starts afresh; evaluation cannot
            raise FileNotFoundError(
                f"--ckpt_path last: no last*.ckpt of {self.model.vlm.name} under "
                f"{', '.join(map(str, checkpoint_roots(self.trainer)))}"
            )
        if self.outputs is None:  # `--ckpt_path last`: the destination is known now
            self.outputs = self._checked(
                lambda: evaluation_outputs(self.config.get("output"), self.config["ckpt_path"])
            )

    def _checked(self, check: Any) -> Any:
        """`check()`, its error as one `error:` line of the parser."""
        try:
            return check()
        except (OSError, ValueError) as e:
            self.parser.error(str(e))

    def before_instantiate_classes(self) -> None:
        """Inputs and outputs are checked before the model is loaded: a missing `--scales` or checkpoint, both
        given, or an unwritable `--output` is one `error:` line, in a second."""
        cfg = self.config
        scales, ckpt_path = cfg.get("scales"), cfg.get("ckpt_path")
        if scales and ckpt_path:
            self.parser.error("give --scales or --ckpt_path, not both")
        self.check_inputs()
        if ckpt_path != "last":
            self.outputs = self._checked(lambda: evaluation_outputs(cfg.get("output"), scales or ckpt_path))
        trainer = self.config["trainer"]
        trainer["logger"] = False
        trainer["callbacks"] = None
        trainer["enable_checkpointing"] = False
        trainer["enable_model_summary"] = False


def build_cli(argv: list[str] | None = None) -> EvaluateCLI:
    """Parse and instantiate (model, data, trainer) from the shared configuration tree; nothing is run."""
    return EvaluateCLI(
        HeadModulationModule,
        datamodule_class=None,
        subclass_mode_data=True,
        save_config_callback=None,
        run=False,
        args=argv,
        parser_kwargs={"default_config_files": [str(DEFAULT_CONFIG)]},
    )


def for_benchmarks(
    data: LightningDataModule, data_config: Any, benchmarks: str | None
) -> LightningDataModule:
    """The test data for `--benchmarks`: `data` itself when None; the named children of a multi-benchmark `data`;
    for one benchmark's `data`, a module per named benchmark with its shared settings (root, image_dir, splitting,
    batch_size, limit, ...; `data_config` is its `class_path`/`init_args`)."""
    if benchmarks is None:
        return data
    names = [b.strip().lower() for b in benchmarks.split(",") if b.strip()]
    if not names:
        raise ValueError("--benchmarks: give at least one of gqa,pope,cocoqa")
    if isinstance(data, MultiBenchmarkDataModule):
        missing = [n for n in names if n not in data.names]
        if missing:
            raise ValueError(
                f"--benchmarks {missing}: not in the configured data (it has {data.names}); "
                "add their datamodules to data.init_args.datamodules"
            )
        chosen = {n: data.datamodules[data.names.index(n)] for n in names}
        if len(chosen) == 1:
            return next(iter(chosen.values()))
        return MultiBenchmarkDataModule(
            chosen, data.train_mode, data.batch_size, data.num_workers, data.collate_fn
        )
    if not isinstance(data, QADataModule):
        raise ValueError(
            f"--benchmarks needs a vseam_pl.data QA or multi-benchmark DataModule, got {type(data).__name__}"
        )
    if names == [data.benchmark]:
        return data
    own = dict(data_config["init_args"] or {})
    if own.get("hf_dataset"):
        raise ValueError(
            f"--benchmarks {names}: data.hf_dataset {own['hf_dataset']!r} is one benchmark's dataset; configure a "
            "vseam_pl.data.MultiBenchmarkDataModule with one datamodule per benchmark instead"
        )
    shared = set(inspect.signature(QADataModule.__init__).parameters) - {"self"}
    common = {k: v for k, v in own.items() if k in shared}
    per: dict[str, dict[str, Any]] = {data.benchmark: own}
    pattern = synthetic_conventions(own["root"]).get("cocoqa_image_pattern") if own.get("root") else None
    if pattern and data.benchmark != "cocoqa":
        per["cocoqa"] = {"image_pattern": pattern}
    return build_datamodule(names, per_benchmark=per, **common)


def _main(argv: list[str] | None = None) -> list[dict]:
    """`vseam evaluate`: the configured model on the configured test data, baseline vs learned scales."""
    cli = build_cli(argv)
    cfg = cli.config
    scales, ckpt_path = cfg.get("scales"), cfg.get("ckpt_path")
    ensure_synthetic(cfg.get("synth_root"), cfg.get("synth_seed", 0))
    module: HeadModulationModule = cli.model
    data = for_benchmarks(cli.datamodule, cfg["data"], cfg.get("benchmarks"))
    if scales:
        module.load_scales(scales)
    elif not ckpt_path:
        module.modulation.detach()
    if cfg.get("auto_batch_size"):
        auto_batch_size(module, data, str(cfg["trainer"]["accelerator"]))
    return run_test(cli.trainer, module, data, scales, cfg.get("output"), ckpt_path, cli.outputs)


# SIGTERM: exit 143 at once (an evaluation keeps no partial results to finish writing), never 0
main = stop_on_sigterm(_main, "evaluate.py", outputs="metrics.json was", graceful=False)


if __name__ == "__main__":
    main()
