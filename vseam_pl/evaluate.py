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
from pathlib import Path
from typing import Any

import torch
from jsonargparse.typing import PositiveInt
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
from vseam_pl.prompts import DEFAULT_INSTRUCTION
from vseam_pl.signals import stop_on_sigterm


def evaluate(
    model: str = "checkpoints/tiny-llava",
    scales: str | None = None,
    output: str | None = None,
    benchmarks: str = "gqa,pope,cocoqa",
    data_root: str = "data/synth",
    image_dir: str | None = None,
    splitting: str = "auto",
    levels: list[str] | None = None,
    categories: list[str] | None = None,
    pope_splits: list[str] | None = None,
    cocoqa_types: list[str] | None = None,
    cocoqa_image_pattern: str | None = None,
    hf_dataset: str | None = None,
    hf_config: str | None = None,
    limit: PositiveInt | None = None,
    on_bad_record: str = "error",
    batch_size: int | str = 32,
    num_workers: int = 1,
    dtype: str = "float32",
    attn_implementation: str | None = "eager",
    instruction: str | None = DEFAULT_INSTRUCTION,
    max_new_tokens: int = 8,
    answer_scoring: str = "closed_set_logprob",
    answer_parser: str = "vseam",
    generation: str = "vseam",
    statistics: str = "image_clustered",
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    precision: str = "32-true",
    seed: int = 0,
) -> list[dict]:
    """Evaluate baseline (and modulated, with --scales) on the test split of each benchmark.

    Args:
        model: hub id or local folder of the VLM.
        scales: head_scales.safetensors from train.py; without it only the baseline is evaluated.
        output: metrics.json path (default: metrics.json beside the scales, else runs/eval/metrics.json).
        benchmarks: comma-separated subset of gqa,pope,cocoqa.
        data_root: a benchmark root (GQA/, POPE/, COCOQA/ folders) or the synthetic world (generated if missing).
        image_dir: image folder (default: `images` inside each split root).
        splitting: auto | folders | hash | all ("all": every record of the files is a test record).
        levels, categories: GQA selection; pope_splits: random/popular/adversarial; cocoqa_types: color/count/location.
        cocoqa_image_pattern: COCO-QA image file name from the id (default: the synthetic world's or COCO's).
        hf_dataset, hf_config: read a Hugging Face dataset in the lmms-eval schema instead of files.
        limit: at most this many test records per benchmark.
        on_bad_record: error | skip (skips are counted and reported).
        batch_size, num_workers: inference batch size ("auto": the largest that fits on the GPU, sized on the longest
            question of each benchmark's first batch); image-decoding worker processes.
        dtype, attn_implementation: how the frozen model is loaded.
        instruction, max_new_tokens: prompting and open-question generation length.
        answer_scoring: closed_set_logprob (closed sets scored by candidate log-probability; the default) or
            generate (every question answered by greedy generation, as lmms-eval / VLMEvalKit do).
        answer_parser: how generated replies are read: vseam | lmms_eval | llava | vlmevalkit (docs/statistics.md).
        generation: vseam (max_new_tokens, first line) or toolkit (the answer parser's toolkit's generation per
            benchmark, whole reply; `vseam_pl.text.TOOLKIT_GENERATION`).
        statistics: image_clustered (p-values and CIs resample images; the default) or per_question (McNemar).
        accelerator, devices, strategy, precision: Lightning Trainer settings (e.g. 2 devices with ddp).
        seed: seeds the bootstrap CIs.
    """
    seed_everything(seed, verbose=False)
    outputs = evaluation_outputs(output, scales)  # checked before any work
    if hf_dataset is None and data_root == "data/synth":
        ensure_synthetic(data_root)
    conventions = synthetic_conventions(data_root) if hf_dataset is None else {}
    pattern = cocoqa_image_pattern or conventions.get("cocoqa_image_pattern")
    size = resolve(batch_size)
    common = dict(
        root=None if hf_dataset else data_root,
        image_dir=image_dir,
        hf_dataset=hf_dataset,
        hf_config=hf_config,
        batch_size=size or 32,
        num_workers=num_workers,
        splitting=splitting,
        limit=limit,
        on_bad_record=on_bad_record,
        seed=seed,
    )
    per = {
        "gqa": {"levels": levels, "categories": categories},
        "pope": {"splits": pope_splits},
        "cocoqa": {"types": cocoqa_types, **({"image_pattern": pattern} if pattern else {})},
    }
    names = [b.strip().lower() for b in benchmarks.split(",") if b.strip()]
    data = build_datamodule(names, per_benchmark={n: per[n] for n in names if n in per}, **common)

    module = HeadModulationModule(
        model=model,
        dtype=dtype,
        attn_implementation=attn_implementation,
        instruction=instruction,
        max_new_tokens=max_new_tokens,
        init_scales=scales or "ones",
        answer_scoring=answer_scoring,
        answer_parser=answer_parser,
        generation=generation,
        statistics=statistics,
    )
    if scales is None:
        module.modulation.detach()
    if size is None:
        auto_batch_size(module, data, accelerator)
    trainer = Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    return run_test(trainer, module, data, scales, output, outputs=outputs)


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
