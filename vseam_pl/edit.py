"""``python -m vseam_pl.edit``: make clean/edited image pairs from GQA questions with a diffusers inpainting model.

Example::

    python -m vseam_pl.edit --questions GQA/Animal.json --images gqa/images --out pairs/animal \
        --pipeline stable-diffusion-v1-5/stable-diffusion-inpainting --device cuda --steps 30

Plans only (no model, no images): ``python -m vseam_pl.edit plan-table --questions GQA/*.json`` prints, per file, how
many records get a plan, the refusals by kind, and a markdown table of planned edits (the one in docs/editing.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from .argparsing import ArgumentParser
from .levels import LEVELS

if TYPE_CHECKING:  # the editing stack imports diffusers, transformers and Lightning: not for `--help`
    from .editing.pipeline import EditReport
    from .editing.quality import AnswerFn

#: `--dtype` choices: the keys of `vseam_pl.editing.inpaint.DTYPES` (a test keeps them equal).
DTYPE_NAMES: tuple[str, ...] = ("bfloat16", "float16", "float32")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m vseam_pl.edit", description=__doc__.split("\n")[0])
    io = p.add_argument_group("data")
    io.add_argument(
        "--questions", nargs="+", required=True, help="GQA question file(s): JSON list or id-keyed object"
    )
    io.add_argument("--images", required=True, help="image folder with {imageId}.jpg|.png")
    io.add_argument("--out", required=True, help="output folder (clean/, edited/, masks/, pairs.jsonl)")
    io.add_argument("--scene-graphs", help="GQA scene graphs JSON, for object boxes and attributes")
    io.add_argument(
        "--masks", help="folder of user masks {question_id}.png (white = edit); they replace boxes"
    )
    io.add_argument("--levels", nargs="+", choices=LEVELS, help="edit only records of these levels")
    io.add_argument("--limit", type=int, help="first N records (after --levels)")
    io.add_argument("--vocab", help="user vocabulary JSON merged into the packaged edit_vocab.json")
    gen = p.add_argument_group("inpainting")
    gen.add_argument(
        "--pipeline", required=True, help="diffusers inpainting pipeline: hub id or local folder"
    )
    gen.add_argument("--steps", type=int, default=30)
    gen.add_argument("--guidance", type=float, default=7.5)
    gen.add_argument("--seed", type=int, default=0, help="seeds substitute choice and sampling (per pair)")
    gen.add_argument("--negative-prompt", help="replaces the vocabulary's negative prompt templates")
    gen.add_argument("--resolution", type=int, default=512, help="longer side the model works at")
    gen.add_argument("--dilate", type=int, default=8, help="mask dilation in px")
    gen.add_argument("--feather", type=int, default=4, help="mask feathering (linear ramp) in px")
    gen.add_argument(
        "--relation-region",
        choices=("union", "subject"),
        default="union",
        help="relation edits repaint both objects' boxes (union) or the subject's only",
    )
    gen.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    gen.add_argument(
        "--dtype", choices=DTYPE_NAMES, default=None, help="default: float16 on GPU, else float32"
    )
    flt = p.add_argument_group("quality filters")
    flt.add_argument(
        "--check-outside", action="store_true", help="reject pairs whose pixels outside the mask changed"
    )
    flt.add_argument("--max-outside-diff", type=int, default=0)
    flt.add_argument(
        "--min-inside-change",
        type=float,
        default=0.0,
        help="reject pairs whose masked region changed less than this mean difference (0-255)",
    )
    flt.add_argument(
        "--filter-model", help="VLM (path or hub id) for the V-SEAM filter: clean right, edited different"
    )
    flt.add_argument(
        "--filter-batch-size", type=int, default=8, help="pairs judged per VLM call (each pair is 2 images)"
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def vlm_answer_fn(model: str, device: str, dtype: str, batch_size: int) -> AnswerFn:
    """Bind `vseam_pl.scoring.predict` to a VLM loaded with `vseam_pl.vlm.load_vlm` (imported only when asked for)."""
    from .scoring import predict
    from .vlm import load_vlm

    vlm = load_vlm(model, dtype=dtype, device=device)
    return lambda questions, images, candidates: predict(
        vlm, questions, images, candidates, batch_size=2 * batch_size
    )


def main(argv: list[str] | None = None) -> EditReport:
    args = build_parser().parse_args(argv)
    import torch

    from .editing.gqa import read_gqa_questions, read_scene_graphs
    from .editing.inpaint import Inpainter, load_inpaint_pipeline
    from .editing.pipeline import EditSettings, run_edits
    from .editing.planner import EditPlanner
    from .editing.vocab import EditVocab

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("float16" if device.startswith("cuda") else "float32")
    records = [r for path in args.questions for r in read_gqa_questions(path, args.images)]
    if args.levels:
        records = [r for r in records if r.level in args.levels]
    if args.limit is not None:
        records = records[: args.limit]
    user_masks = {p.stem for p in Path(args.masks).glob("*.png")} if args.masks else set()
    planner = EditPlanner(
        EditVocab.load(args.vocab),
        seed=args.seed,
        scene_graphs=read_scene_graphs(args.scene_graphs) if args.scene_graphs else None,
        relation_region=args.relation_region,
        negative_prompt=args.negative_prompt,
        user_masks=user_masks,
    )
    plans, unresolved = planner.plan_all(records)
    answer_fn = (
        vlm_answer_fn(args.filter_model, device, dtype, args.filter_batch_size) if args.filter_model else None
    )
    settings = EditSettings(
        dilate=args.dilate,
        feather=args.feather,
        seed=args.seed,
        masks=args.masks,
        check_outside=args.check_outside,
        max_outside_diff=args.max_outside_diff,
        min_inside_change=args.min_inside_change,
        filter_batch_size=args.filter_batch_size,
        model_id=args.pipeline,
    )

    def inpainter() -> Inpainter:
        pipe = load_inpaint_pipeline(args.pipeline, device=device, dtype=dtype)
        return Inpainter(pipe, steps=args.steps, guidance=args.guidance, resolution=args.resolution)

    report = run_edits(
        plans,
        args.out,
        inpainter,
        settings,
        answer_fn=answer_fn,
        unresolved=unresolved,
        progress=not args.no_progress,
    )
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    print(
        f"{len(records)} records: {report.written} pairs written, {report.resumed} already done, "
        f"{summary['unresolved']} unresolved (see {Path(args.out) / 'unresolved.json'}), "
        f"{summary['rejected']} rejected by filters (see {Path(args.out) / 'rejected.jsonl'})",
        file=sys.stderr,
    )
    return report


def plan_table(argv: list[str]) -> str:
    """Markdown: per question file, the coverage and refusals by kind, then `--rows` planned edits per level (evenly
    spaced over the file, so the table is not just its first records)."""
    p = ArgumentParser(prog="python -m vseam_pl.edit plan-table", description=plan_table.__doc__)
    p.add_argument("--questions", nargs="+", required=True)
    p.add_argument("--scene-graphs")
    p.add_argument("--vocab")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=10)
    args = p.parse_args(argv)
    from .editing.gqa import read_gqa_questions, read_scene_graphs
    from .editing.planner import EditPlanner
    from .editing.vocab import EditVocab

    planner = EditPlanner(
        EditVocab.load(args.vocab),
        seed=args.seed,
        scene_graphs=read_scene_graphs(args.scene_graphs) if args.scene_graphs else None,
    )
    lines = ["| file | records | planned | refused (by kind) | notes |", "|---|---|---|---|---|"]
    tables = []
    for path in args.questions:
        records = read_gqa_questions(path)
        plans, refused = planner.plan_all(records)
        kinds = Counter(r.kind for r in refused)
        noted = sum(bool(pl.notes) for pl in plans)
        lines.append(
            f"| {Path(path).name} | {len(records)} | {len(plans)} ({len(plans) / max(len(records), 1):.1%}) | "
            f"{', '.join(f'{k}: {n}' for k, n in kinds.most_common()) or '-'} | {noted} |"
        )
        step = max(len(plans) // max(args.rows, 1), 1)
        rows = [
            "| level | question | target | substitute | edited question | prompt |",
            "|---|---|---|---|---|---|",
        ]
        for pl in plans[::step][: args.rows]:
            rows.append(
                f"| {pl.level} | {pl.record.question} | {pl.target} | {pl.substitute} | "
                f"{pl.edited_question or '-'} | {pl.prompt} |"
            )
        tables.append(f"\n**{Path(path).name}**\n\n" + "\n".join(rows))
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
            print(plan_table(argv[1:]), end="")
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
