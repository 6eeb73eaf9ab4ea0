"""``python -m vseam_pl.edit``: make clean/edited image pairs from GQA questions with a diffusers inpainting model.

Example::

    python -m vseam_pl.edit --questions GQA/Animal.json --images gqa/images --out pairs/animal \
        --pipeline stable-diffusion-v1-5/stable-diffusion-inpainting --device cuda --steps 30

Plans only (no model, no images): ``python -m vseam_pl.edit plan-table --questions GQA/*.json`` prints, per file, how
many records get a plan, the refusals by kind, and a markdown table of planned edits (the one in docs/editing.md).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .argparsing import ArgumentParser, Flag, Flat, command_kwargs, command_parser
from .editing.settings import EditSettings, Sampling
from .levels import LEVELS

if TYPE_CHECKING:  # the editing stack imports diffusers, transformers and Lightning: not for `--help`
    from .editing.pipeline import EditReport
    from .editing.quality import AnswerFn

#: `--dtype` choices: the keys of `vseam_pl.editing.inpaint.DTYPES` (a test keeps them equal).
DTYPE_NAMES: tuple[str, ...] = ("bfloat16", "float16", "float32")


def vlm_answer_fn(model: str, device: str, dtype: str, batch_size: int) -> AnswerFn:
    """Bind `vseam_pl.scoring.predict` to a VLM loaded with `vseam_pl.vlm.load_vlm` (imported only when asked for)."""
    from .scoring import predict
    from .vlm import load_vlm

    vlm = load_vlm(model, dtype=dtype, device=device)
    return lambda questions, images, candidates: predict(
        vlm, questions, images, candidates, batch_size=2 * batch_size
    )


def edit(
    questions: list[str],
    images: str,
    out: str,
    pipeline: str,
    scene_graphs: str | None = None,
    levels: Annotated[list[str] | None, Flag(choices=LEVELS)] = None,
    limit: int | None = None,
    vocab: str | None = None,
    sampling: Annotated[Sampling | None, Flat()] = None,
    settings: Annotated[EditSettings | None, Flat(skip=("model_id",))] = None,
    negative_prompt: str | None = None,
    relation_region: Annotated[str, Flag(choices=("union", "subject"))] = "union",
    device: str | None = None,
    dtype: Annotated[str | None, Flag(choices=DTYPE_NAMES)] = None,
    filter_model: str | None = None,
    progress: bool = True,
) -> EditReport:
    """`vseam edit`: plan, inpaint, filter and write the clean/edited pairs of GQA `questions`.

    Args:
        questions: GQA question file(s): JSON list or id-keyed object
        images: image folder with {imageId}.jpg|.png
        out: output folder (clean/, edited/, masks/, pairs.jsonl)
        pipeline: diffusers inpainting pipeline: hub id or local folder
        scene_graphs: GQA scene graphs JSON, for object boxes and attributes
        levels: edit only records of these levels
        limit: first N records (after --levels)
        vocab: user vocabulary JSON merged into the packaged edit_vocab.json
        sampling: the inpainting model's sampling (every field a flag of its own)
        settings: how pairs are rendered and checked (every field a flag of its own)
        negative_prompt: replaces the vocabulary's negative prompt templates
        relation_region: relation edits repaint both objects' boxes (union) or the subject's only
        device: cpu | cuda | cuda:N (default: cuda when available)
        dtype: default: float16 on GPU, else float32
        filter_model: VLM (path or hub id) for the V-SEAM filter: clean right, edited different
        progress: show a progress bar over pairs
    """
    import dataclasses

    import torch

    from .editing.gqa import read_gqa_questions, read_scene_graphs
    from .editing.inpaint import Inpainter, load_inpaint_pipeline
    from .editing.pipeline import run_edits
    from .editing.planner import EditPlanner
    from .editing.vocab import EditVocab

    sampling = sampling if sampling is not None else Sampling()
    settings = dataclasses.replace(settings if settings is not None else EditSettings(), model_id=pipeline)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or ("float16" if device.startswith("cuda") else "float32")
    records = [r for path in questions for r in read_gqa_questions(path, images)]
    if levels:
        records = [r for r in records if r.level in levels]
    if limit is not None:
        records = records[:limit]
    user_masks = {p.stem for p in Path(settings.masks).glob("*.png")} if settings.masks else set()
    planner = EditPlanner(
        EditVocab.load(vocab),
        seed=settings.seed,
        scene_graphs=read_scene_graphs(scene_graphs) if scene_graphs else None,
        relation_region=relation_region,
        negative_prompt=negative_prompt,
        user_masks=user_masks,
    )
    plans, unresolved = planner.plan_all(records)
    answer_fn = (
        vlm_answer_fn(filter_model, device, dtype, settings.filter_batch_size) if filter_model else None
    )

    def inpainter() -> Inpainter:
        pipe = load_inpaint_pipeline(pipeline, device=device, dtype=dtype)
        return Inpainter(
            pipe, steps=sampling.steps, guidance=sampling.guidance, resolution=sampling.resolution
        )

    report = run_edits(
        plans, out, inpainter, settings, answer_fn=answer_fn, unresolved=unresolved, progress=progress
    )
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    print(
        f"{len(records)} records: {report.written} pairs written, {report.resumed} already done, "
        f"{summary['unresolved']} unresolved (see {Path(out) / 'unresolved.json'}), "
        f"{summary['rejected']} rejected by filters (see {Path(out) / 'rejected.jsonl'})",
        file=sys.stderr,
    )
    return report


def build_parser() -> ArgumentParser:
    """`edit`'s signature as flags (`vseam edit --help`)."""
    return command_parser(edit, "python -m vseam_pl.edit", __doc__.split("\n")[0])


def main(argv: list[str] | None = None) -> EditReport:
    return edit(**command_kwargs(edit, build_parser().parse_args(argv)))


def plan_table(
    questions: list[str],
    scene_graphs: str | None = None,
    vocab: str | None = None,
    seed: int = EditSettings.seed,
    rows: int = 10,
) -> str:
    """Markdown: per question file, the coverage and refusals by kind, then `--rows` planned edits per level (evenly
    spaced over the file, so the table is not just its first records).

    Args:
        questions: GQA question file(s)
        scene_graphs: GQA scene graphs JSON, for object boxes and attributes
        vocab: user vocabulary JSON merged into the packaged edit_vocab.json
        seed: seeds the substitute choice
        rows: planned edits shown per file
    """
    from .editing.gqa import read_gqa_questions, read_scene_graphs
    from .editing.planner import EditPlanner
    from .editing.vocab import EditVocab

    planner = EditPlanner(
        EditVocab.load(vocab),
        seed=seed,
        scene_graphs=read_scene_graphs(scene_graphs) if scene_graphs else None,
    )
    lines = ["| file | records | planned | refused (by kind) | notes |", "|---|---|---|---|---|"]
    tables = []
    for path in questions:
        records = read_gqa_questions(path)
        plans, refused = planner.plan_all(records)
        kinds = Counter(r.kind for r in refused)
        noted = sum(bool(pl.notes) for pl in plans)
        lines.append(
            f"| {Path(path).name} | {len(records)} | {len(plans)} ({len(plans) / max(len(records), 1):.1%}) | "
            f"{', '.join(f'{k}: {n}' for k, n in kinds.most_common()) or '-'} | {noted} |"
        )
        step = max(len(plans) // max(rows, 1), 1)
        table = [
            "| level | question | target | substitute | edited question | prompt |",
            "|---|---|---|---|---|---|",
        ]
        for pl in plans[::step][:rows]:
            table.append(
                f"| {pl.level} | {pl.record.question} | {pl.target} | {pl.substitute} | "
                f"{pl.edited_question or '-'} | {pl.prompt} |"
            )
        tables.append(f"\n**{Path(path).name}**\n\n" + "\n".join(table))
    return "\n".join(lines) + "\n" + "\n".join(tables) + "\n"


def input_errors() -> tuple[type[Exception], ...]:
    """Bad inputs whose messages already name the file, record and field: shown without a traceback."""
    from .data.readers import BadRecordError
    from .editing.gqa import GQAFormatError
    from .editing.vocab import VocabError
    from .pairs import ManifestError

    return (BadRecordError, GQAFormatError, VocabError, ManifestError, FileNotFoundError)


def cli(argv: list[str] | None = None) -> int:
    """`main` for the shell: a bad input file exits with status 2 and its message instead of a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["plan-table"]:
            parser = command_parser(
                plan_table, "python -m vseam_pl.edit plan-table", plan_table.__doc__.split("\n\n")[0]
            )
            print(plan_table(**command_kwargs(plan_table, parser.parse_args(argv[1:]))), end="")
            return 0
        main(argv)
    # not `except input_errors()`: evaluating it would import the editing stack for --help's SystemExit
    except Exception as e:
        if not isinstance(e, input_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
