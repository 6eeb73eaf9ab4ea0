"""The resumable batch job: planned edits → inpainted, checked, composited pairs in the discovery layout.

Layout under `out`::

    clean/{imageId}.jpg|png     the original image files, copied unchanged
    edited/{pair_id}.png        the composited edit, same size as the clean image
    masks/{pair_id}.png         the soft mask used (255 = fully repainted)
    pairs.jsonl                 the manifest (`vseam_pl.pairs`), one line appended per finished pair
    rejected.jsonl              pairs the quality filters dropped, with the reason
    unresolved.json             records no edit could be planned or rendered for, with the reason
    summary.json                the counts of the last run

A pair is finished once its manifest line is written (after its image); a rerun skips pairs in the manifest whose
edited image exists, and pairs in `rejected.jsonl`, so an interrupted job picks up where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data.images import decode_image, resolve_image
from ..data.readers import BadRecordError
from ..io import atomic_path, write_json
from ..pairs import append_pair, read_pairs, write_pairs
from ..records import ImagePair
from .inpaint import Inpainter
from .masks import bbox, box_mask, load_user_mask, mask_image, soft_mask
from .prompts import EditPlan
from .quality import AnswerFn, check_region, vlm_filter


@dataclass
class EditSettings:
    """How pairs are rendered and checked (the sampling settings live on the `Inpainter`)."""

    dilate: int = 8
    feather: int = 4
    seed: int = 0
    masks: str | None = None  # folder of user masks {question_id}.png
    check_outside: bool = False  # filter (1): pixels outside the mask unchanged
    max_outside_diff: int = 0
    min_inside_change: float = 0.0
    model_id: str | None = None


@dataclass
class EditReport:
    """What a run did; `summary()` is what gets printed and written to summary.json."""

    planned: int = 0
    resumed: int = 0  # already finished in an earlier run
    generated: int = 0  # pipeline calls in this run
    written: int = 0  # pairs added to the manifest in this run
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (question_id, reason)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (pair_id, reason)

    def summary(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "resumed": self.resumed,
            "generated": self.generated,
            "written": self.written,
            "unresolved": len(self.unresolved),
            "rejected": len(self.rejected),
            "unresolved_reasons": dict(Counter(r for _, r in self.unresolved).most_common()),
            "rejected_reasons": dict(Counter(r.split(" (")[0] for _, r in self.rejected).most_common()),
        }


def pair_seed(seed: int, question_id: str) -> int:
    """A per-pair seed, stable across runs and record order (recorded in the manifest to reproduce the pair)."""
    return zlib.crc32(f"{seed}:{question_id}".encode()) & 0x7FFFFFFF


def _finished(out: Path) -> tuple[set[str], set[str]]:
    """Pair ids already in the manifest with their image, and already rejected; drops stale manifest lines."""
    manifest = out / "pairs.jsonl"
    done: set[str] = set()
    if manifest.exists():
        pairs = list(read_pairs(manifest))
        kept = [p for p in pairs if Path(p.edited_image).exists()]
        if len(kept) != len(pairs):  # an image vanished: forget its line so the pair is redone once
            write_pairs(manifest, kept)
        done = {p.pair_id for p in kept}
    rejected: set[str] = set()
    path = out / "rejected.jsonl"
    if path.exists():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rejected.add(json.loads(line)["pair_id"])
                except (json.JSONDecodeError, KeyError):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object with 'pair_id'") from None
    return done, rejected


def _append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(obj) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _copy_clean(src: Path, out: Path) -> Path:
    dst = out / "clean" / src.name
    if not dst.exists():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return dst


def _alpha(plan: EditPlan, size: tuple[int, int], settings: EditSettings) -> tuple[Any, str]:
    user = Path(settings.masks) / f"{plan.record.question_id}.png" if settings.masks else None
    if user is not None and user.exists():
        binary, source = load_user_mask(user, size), "user"
    else:
        binary, source = box_mask(size, plan.boxes), "boxes"
    return soft_mask(binary, settings.dilate, settings.feather), source


def run_edits(
    plans: Iterable[EditPlan],
    out: str | os.PathLike,
    inpainter: Inpainter | Callable[[], Inpainter],
    settings: EditSettings | None = None,
    answer_fn: AnswerFn | None = None,
    unresolved: Iterable[tuple[str, str]] = (),
    progress: bool = True,
) -> EditReport:
    """Render every plan not finished yet; `inpainter` may be a factory so a fully resumed run loads no model."""
    settings = settings or EditSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plans = list(plans)
    report = EditReport(planned=len(plans), unresolved=list(unresolved))
    done, rejected = _finished(out)
    todo = [p for p in plans if p.pair_id not in done and p.pair_id not in rejected]
    report.resumed = len(plans) - len(todo)
    for plan in tqdm(todo, desc="editing", unit="pair", disable=not progress):
        record = plan.record
        if not record.image_path:
            report.unresolved.append(
                (record.question_id, f"no image folder given for imageId {record.image_id}")
            )
            continue
        try:
            image_path = resolve_image(record.image_path, record.source)
            clean = decode_image(replace(record, image_path=str(image_path)))
        except BadRecordError as e:
            report.unresolved.append((record.question_id, e.reason))
            continue
        alpha, mask_source = _alpha(plan, clean.size, settings)
        region = bbox(alpha)
        if region is None:
            report.unresolved.append((record.question_id, "empty mask: the boxes lie outside the image"))
            continue
        if not isinstance(inpainter, Inpainter):
            inpainter = inpainter()
        seed = pair_seed(settings.seed, record.question_id)
        edited = inpainter(clean, alpha, plan.prompt, plan.negative_prompt, seed)
        report.generated += 1
        reason = None
        if settings.check_outside or settings.min_inside_change > 0:
            reason = check_region(clean, edited, alpha, settings.max_outside_diff, settings.min_inside_change)
        if reason is None and answer_fn is not None:
            reason = vlm_filter(
                answer_fn, [record.question], [clean], [edited], [record.answer], [record.candidates]
            )[0]
        if reason is not None:
            report.rejected.append((plan.pair_id, reason))
            _append_jsonl(
                out / "rejected.jsonl",
                {"pair_id": plan.pair_id, "question_id": record.question_id, "reason": reason},
            )
            continue
        edited_path = out / "edited" / f"{plan.pair_id}.png"
        with atomic_path(edited_path) as tmp:
            edited.save(tmp, format="PNG")
        with atomic_path(out / "masks" / f"{plan.pair_id}.png") as tmp:
            mask_image(alpha).save(tmp, format="PNG")
        edit = plan.edit_dict(inpainter.steps, inpainter.guidance)
        edit.update(
            dilate=settings.dilate,
            feather=settings.feather,
            mask_source=mask_source,
            target_boxes=[list(b) for b in plan.boxes],
        )
        pair = ImagePair(
            pair_id=plan.pair_id,
            question=record.question,
            clean_image=str(_copy_clean(image_path, out)),
            edited_image=str(edited_path),
            answer=record.answer,
            edited_answer=plan.edited_answer,
            level=plan.level,
            category=record.category,
            candidates=record.candidates,
            question_id=record.question_id,
            edit=edit,
            mask_box=region,
            seed=seed,
            model_id=settings.model_id,
        )
        append_pair(out / "pairs.jsonl", pair)
        report.written += 1
    write_json(out / "unresolved.json", [{"question_id": q, "reason": r} for q, r in report.unresolved])
    write_json(out / "summary.json", report.summary())
    return report
