"""`vseam evaluate` (= `python evaluate.py`): evaluate a frozen VLM — and, with `--scales`, the same VLM with learned head scales — on GQA, POPE and COCO-QA.

    python evaluate.py                                             # tiny LLaVA, synthetic test split, 3 benchmarks
    python evaluate.py --model checkpoints/tiny-llava --scales runs/.../head_scales.safetensors
    python evaluate.py --model llava-hf/llava-1.5-7b-hf --data_root ../shared/data/vseam --splitting all \
        --image_dir /data/coco/val2014 --benchmarks pope --precision bf16-mixed --devices 2 --strategy ddp

Baseline and modulated answers are computed on the *same* examples; each row of the printed table and of
`metrics.json` gives both accuracies, the difference with a 95% bootstrap CI and McNemar's exact p-value.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from jsonargparse import CLI
from jsonargparse.typing import PositiveInt
from lightning.pytorch import Trainer, seed_everything

from vseam_pl.batch_size import datamodule_batch_size, resolve
from vseam_pl.cli import (
    ensure_synthetic,
    gather_skipped,
    synthetic_conventions,
    write_outputs,
)
from vseam_pl.data import build_datamodule
from vseam_pl.distributed import release_process_group
from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.prompts import DEFAULT_INSTRUCTION


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
        answer_parser: how generated replies are read: vseam | lmms_eval | llava | vlmevalkit (docs/evaluation.md).
        statistics: image_clustered (p-values and CIs resample images; the default) or per_question (McNemar).
        accelerator, devices, strategy, precision: Lightning Trainer settings (e.g. 2 devices with ddp).
        seed: seeds the bootstrap CIs.
    """
    seed_everything(seed, verbose=False)
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
        statistics=statistics,
    )
    if scales is None:
        module.modulation.detach()
    if size is None:
        if accelerator != "cpu" and torch.cuda.is_available():
            module.vlm.model.to("cuda")
            size = datamodule_batch_size(
                module.vlm, data, instruction=instruction, max_new_tokens=max_new_tokens
            )
            print(f"--batch_size auto: {size} questions per batch", file=sys.stderr)
        else:
            print("--batch_size auto: no GPU to size against; using 32", file=sys.stderr)
    trainer = Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.test(module, datamodule=data, verbose=False)
    out = Path(output) if output else (Path(scales).parent if scales else Path("runs/eval")) / "metrics.json"
    skipped = gather_skipped(getattr(data, "skipped", []))
    write_outputs(
        out.parent,
        module.vlm.name,
        module.test_rows,
        None,
        {"skipped_records": len(skipped), **module.answer_settings()},
        metrics_name=out.name,
        scales_path=scales,
    )
    release_process_group()
    return module.test_rows


def main(argv: list[str] | None = None) -> list[dict]:
    """The command line: every argument of `evaluate` as a `--flag`."""
    return CLI(evaluate, as_positional=False, args=argv)


if __name__ == "__main__":
    main()
