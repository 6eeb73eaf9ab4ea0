"""The resumable batch job: planned edits → inpainted, checked, composited pairs in the discovery layout.

Layout under `out`::

    clean/{imageId}.jpg|png     the original image files, copied unchanged (EXIF-rotated ones: upright PNG)
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image
from tqdm.auto import tqdm

from ..data.images import decode_image, resolve_image
from ..data.readers import BadRecordError
from ..io import atomic_path, write_json
from ..pairs import append_pair, read_pairs, write_pairs
from ..records import ImagePair
from .inpaint import Inpainter
from .masks import bbox, box_mask, load_user_mask, mask_image, soft_mask
from .planner import EditPlan, Refusal
from .quality import AnswerFn, check_region, vlm_filter
from .settings import EditSettings


@dataclass
class EditReport:
    """What a run did; `summary()` is what gets printed and written to summary.json."""

    planned: int = 0
    noted: int = 0  # planned pairs whose record the planner doubts (EditPlan.notes, e.g. a reversed relation)
    resumed: int = 0  # already finished in an earlier run
    generated: int = 0  # pipeline calls in this run
    written: int = 0  # pairs added to the manifest in this run
    unresolved: list[Refusal] = field(default_factory=list)  # records without a pair: id, kind, reason
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (pair_id, reason)

    def summary(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "planned_with_notes": self.noted,
            "resumed": self.resumed,
            "generated": self.generated,
            "written": self.written,
            "unresolved": len(self.unresolved),
            "rejected": len(self.rejected),
            "unresolved_reasons": dict(Counter(r.kind for r in self.unresolved).most_common()),
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


def _write_clean(src: Path, clean: Image.Image, out: Path) -> Path:
    """The clean image of a pair, oriented as the model sees it and the edit was drawn.

    A file without an EXIF rotation is copied unchanged; one with a rotation (a phone photo stored sideways) is
    written as its upright pixels in a lossless PNG, so clean and edited images display alike in any viewer, EXIF-aware
    or not, and boxes/masks (displayed coordinates) line up with both.
    """
    with Image.open(src) as im:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in (None, 1):
        dst = out / "clean" / src.name
        if not dst.exists():
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        return dst
    dst = out / "clean" / f"{src.stem}.png"
    if not dst.exists():
        with atomic_path(dst) as tmp:
            clean.save(tmp, format="PNG")
    return dst


def _alpha(plan: EditPlan, size: tuple[int, int], settings: EditSettings) -> tuple[Any, str]:
    user = Path(settings.masks) / f"{plan.record.question_id}.png" if settings.masks else None
    if user is not None and user.exists():
        binary, source = load_user_mask(user, size), "user"
    else:
        binary, source = box_mask(size, plan.boxes), "boxes"
    return soft_mask(binary, settings.dilate, settings.feather), source


@dataclass
class _Rendered:
    """An inpainted pair waiting for the V-SEAM filter (which runs on batches of pairs)."""

    plan: EditPlan
    image_path: Path
    clean: Image.Image
    edited: Image.Image
    alpha: Any
    mask_source: str
    seed: int


class _Job:
    """One run over the plans: renders, checks and writes pairs, keeping the report and the output files in step."""

    def __init__(
        self,
        out: Path,
        inpainter: Inpainter | Callable[[], Inpainter],
        settings: EditSettings,
        answer_fn: AnswerFn | None,
        report: EditReport,
    ) -> None:
        self.out, self.settings, self.answer_fn, self.report = out, settings, answer_fn, report
        self._inpainter = inpainter

    @property
    def inpainter(self) -> Inpainter:
        if not isinstance(self._inpainter, Inpainter):  # load the model only once a pair needs it
            self._inpainter = self._inpainter()
        return self._inpainter

    def render(self, plan: EditPlan) -> _Rendered | None:
        """Inpaint one plan, or record why it cannot be (missing image, empty mask, failed image check)."""
        record, settings = plan.record, self.settings
        if not record.image_path:
            self.report.unresolved.append(
                Refusal(
                    record.question_id,
                    "no image folder",
                    f"no image folder given for imageId {record.image_id}",
                )
            )
            return None
        try:
            image_path = resolve_image(record.image_path, record.source)
            clean = decode_image(replace(record, image_path=str(image_path)))
        except BadRecordError as e:
            self.report.unresolved.append(
                Refusal(record.question_id, "image missing or unreadable", e.reason)
            )
            return None
        alpha, mask_source = _alpha(plan, clean.size, settings)
        if bbox(alpha) is None:
            self.report.unresolved.append(
                Refusal(record.question_id, "empty mask", "empty mask: the boxes lie outside the image")
            )
            return None
        seed = pair_seed(settings.seed, record.question_id)
        edited = self.inpainter(clean, alpha, plan.prompt, plan.negative_prompt, seed)
        self.report.generated += 1
        if settings.check_outside or settings.min_inside_change > 0:
            reason = check_region(clean, edited, alpha, settings.max_outside_diff, settings.min_inside_change)
            if reason is not None:
                self.reject(plan, reason)
                return None
        return _Rendered(plan, image_path, clean, edited, alpha, mask_source, seed)

    def flush(self, pending: list[_Rendered]) -> None:
        """Run the V-SEAM filter on the pending pairs in one `answer_fn` call, then write or reject each."""
        if not pending:
            return
        reasons: list[str | None] = [None] * len(pending)
        if self.answer_fn is not None:
            reasons = vlm_filter(
                self.answer_fn,
                [r.plan.record.question for r in pending],
                [r.clean for r in pending],
                [r.edited for r in pending],
                [r.plan.record.answer for r in pending],
                [r.plan.record.candidates for r in pending],
            )
        for rendered, reason in zip(pending, reasons, strict=True):
            if reason is None:
                self.write(rendered)
            else:
                self.reject(rendered.plan, reason)
        pending.clear()

    def reject(self, plan: EditPlan, reason: str) -> None:
        self.report.rejected.append((plan.pair_id, reason))
        _append_jsonl(
            self.out / "rejected.jsonl",
            {"pair_id": plan.pair_id, "question_id": plan.record.question_id, "reason": reason},
        )

    def write(self, r: _Rendered) -> None:
        """Images first (atomically), then the manifest line: a pair counts as finished only once both exist."""
        plan, record, settings = r.plan, r.plan.record, self.settings
        edited_path = self.out / "edited" / f"{plan.pair_id}.png"
        with atomic_path(edited_path) as tmp:
            r.edited.save(tmp, format="PNG")
        with atomic_path(self.out / "masks" / f"{plan.pair_id}.png") as tmp:
            mask_image(r.alpha).save(tmp, format="PNG")
        edit = plan.edit_dict(self.inpainter.steps, self.inpainter.guidance)
        edit.update(
            dilate=settings.dilate,
            feather=settings.feather,
            mask_source=r.mask_source,
            target_boxes=[list(b) for b in plan.boxes],
        )
        pair = ImagePair(
            pair_id=plan.pair_id,
            question=record.question,
            clean_image=str(_write_clean(r.image_path, r.clean, self.out)),
            edited_image=str(edited_path),
            answer=record.answer,
            edited_answer=plan.edited_answer,
            level=plan.level,
            category=record.category,
            candidates=record.candidates,
            question_id=record.question_id,
            edit=edit,
            mask_box=bbox(r.alpha),
            seed=r.seed,
            model_id=settings.model_id,
        )
        append_pair(self.out / "pairs.jsonl", pair)
        self.report.written += 1


def run_edits(
    plans: Iterable[EditPlan],
    out: str | os.PathLike,
    inpainter: Inpainter | Callable[[], Inpainter],
    settings: EditSettings | None = None,
    answer_fn: AnswerFn | None = None,
    unresolved: Iterable[Refusal] = (),
    progress: bool = True,
) -> EditReport:
    """Render every plan not finished yet; `inpainter` may be a factory so a fully resumed run loads no model.

    With `answer_fn` (the V-SEAM filter) pairs are judged `settings.filter_batch_size` at a time, so an interrupted
    run redoes at most that many unjudged pairs.
    """
    settings = settings or EditSettings()
    if settings.filter_batch_size < 1:
        raise ValueError(f"filter_batch_size must be >= 1, got {settings.filter_batch_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plans = list(plans)
    report = EditReport(
        planned=len(plans), noted=sum(bool(p.notes) for p in plans), unresolved=list(unresolved)
    )
    done, rejected = _finished(out)
    todo = [p for p in plans if p.pair_id not in done and p.pair_id not in rejected]
    report.resumed = len(plans) - len(todo)
    job = _Job(out, inpainter, settings, answer_fn, report)
    batch = settings.filter_batch_size if answer_fn is not None else 1
    pending: list[_Rendered] = []
    for plan in tqdm(todo, desc="editing", unit="pair", disable=not progress):
        rendered = job.render(plan)
        if rendered is not None:
            pending.append(rendered)
        if len(pending) >= batch:
            job.flush(pending)
    job.flush(pending)
    write_json(out / "unresolved.json", [asdict(r) for r in report.unresolved])
    write_json(out / "summary.json", report.summary())
    return report
