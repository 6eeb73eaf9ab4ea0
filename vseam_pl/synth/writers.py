"""Write the synthetic benchmarks in the real file formats: GQA question JSON, POPE JSON Lines, COCO-QA CSV, plus
exact clean/edited image pairs (`pairs/pairs.jsonl`).

Layout under `out_dir`: `manifest.json` and `{train,val,test}/` each shaped like a real benchmark root
(`images/`, `GQA/`, `POPE/`, `COCOQA/`, `pairs/`, and `scene_graphs.json` with the ground-truth scenes).

Atomicity and resuming: a split is generated in a temporary folder beside it and renamed into place when complete
(with its `split.json` marker); `manifest.json` is written last. Re-running with the same arguments over a complete
output does nothing; a crashed run resumes at the first missing split; different arguments are an error unless
`overwrite=True`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from vseam_pl.io import folder_mode, read_json, write_json, write_text
from vseam_pl.pairs import write_pairs
from vseam_pl.records import YES_NO, ImagePair

from .edits import GQA_CATEGORIES, GQAItem, ask_and_edit
from .questions import (
    COCOQA_TYPES,
    POPE_MODES,
    cocoqa_questions,
    gqa_record,
    gqa_text,
    pope_negatives,
    pope_question,
)
from .scene import Scene
from .world import SceneWorld

GENERATOR = "vseam_pl.synth"
VERSION = "1"
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Image ids are `offset + index`, 7-digit numeric strings unique across splits (like GQA's image ids).
ID_OFFSETS: dict[str, int] = {"train": 1_000_000, "val": 2_000_000, "test": 3_000_000}
MAX_IMAGES = 1_000_000
COCOQA_HEADER = ["", "train_image_id_count", "question_count", "answer_count"]
#: POPE asks about at most this many present classes per image (as many absent ones), like the real files' 3+3.
POPE_PER_IMAGE = 3
CONVENTIONS = {
    "image": "images/{image_id}.png",
    "gqa_image": "images/{imageId}.png",
    "pope_image": "images/{image}",
    "cocoqa_image_pattern": "{id}.png",
    "edited_image": "pairs/edited/{pair_id}.png",
    "pair_id": "GQA question_id",
    "image_id": "split offset + index",
    "id_offsets": ID_OFFSETS,
}


def image_rng(seed: int, split: str, index: int, stream: str = "scene") -> random.Random:
    """An independent, platform-stable random stream per (seed, split, image, purpose)."""
    return random.Random(f"vseam-synth:{seed}:{split}:{index}:{stream}")


def generate_benchmarks(
    out_dir: str | os.PathLike,
    seed: int = 0,
    n_train: int = 4000,
    n_val: int = 400,
    n_test: int = 1200,
    image_size: int = 64,
    overwrite: bool = False,
    gqa_per_image: int = 2,
) -> Path:
    """Write train/val/test benchmark roots under `out_dir` and return it (see the module docstring)."""
    out = Path(out_dir)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for split, n in sizes.items():
        if not 0 <= n < MAX_IMAGES:
            raise ValueError(f"n_{split} must be in [0, {MAX_IMAGES}), got {n}")
    if gqa_per_image < 0:
        raise ValueError(f"gqa_per_image must be >= 0, got {gqa_per_image}")
    config = {
        "generator": GENERATOR,
        "version": VERSION,
        "seed": seed,
        "image_size": image_size,
        "n_images": sizes,
        "gqa_per_image": gqa_per_image,
    }
    manifest_path = out / "manifest.json"
    for stale in out.glob(".synth-*.tmp"):  # temp folders of an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    if overwrite:
        _remove_outputs(out)
    elif manifest_path.exists():
        existing = _read_json(manifest_path).get("config")
        if existing == config:
            return out
        raise FileExistsError(_conflict(manifest_path, existing, config))
    world = SceneWorld(image_size)
    counts = {}
    for split in SPLITS:
        counts[split] = _ensure_split(out, split, config, world)
    manifest = {
        **config,
        "config": config,
        "splits": counts,
        "conventions": CONVENTIONS,
        "vocabulary_size": len(world.vocabulary()),
    }
    write_json(manifest_path, manifest)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, "synthetic-world file", hint="; delete it or pass overwrite=True")


def _conflict(path: Path, existing: dict[str, Any] | None, config: dict[str, Any]) -> str:
    diff = {
        k: (None if existing is None else existing.get(k), v)
        for k, v in config.items()
        if existing is None or existing.get(k) != v
    }
    return (
        f"{path}: existing synthetic output was generated with different settings "
        f"(field: (existing, requested) = {diff}); use another --out or pass --overwrite"
    )


def _remove_outputs(out: Path) -> None:
    """Delete only what this generator writes (never other files in `out`)."""
    (out / "manifest.json").unlink(missing_ok=True)
    for split in SPLITS:
        if (out / split).exists():
            shutil.rmtree(out / split)


def _ensure_split(out: Path, split: str, config: dict[str, Any], world: SceneWorld) -> dict[str, Any]:
    """Reuse a complete split written with the same config, else (re)generate it atomically."""
    final = out / split
    marker = final / "split.json"
    if marker.exists():
        done = _read_json(marker)
        if done.get("config") == config:
            return done["counts"]
        raise FileExistsError(_conflict(marker, done.get("config"), config))
    if final.exists():
        raise FileExistsError(
            f"{final}: exists but has no split.json marker (not a complete synthetic split); "
            "remove it or pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".synth-{split}-", suffix=".tmp", dir=out))
    os.chmod(
        tmp, folder_mode()
    )  # renamed into place as the split folder: the user's usual permissions, not 0700
    try:
        counts = write_split(
            tmp, split, config["seed"], config["n_images"][split], world, config["gqa_per_image"]
        )
        write_json(tmp / "split.json", {"config": config, "split": split, "counts": counts})
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def write_split(root: Path, split: str, seed: int, n: int, world: SceneWorld, gqa_per_image: int = 2) -> dict:
    """Generate one split's scenes, images, questions and pairs under `root`; returns per-file counts."""
    offset = ID_OFFSETS[split]
    image_ids = [str(offset + i) for i in range(n)]
    scenes = [world.sample_scene(image_rng(seed, split, i)) for i in range(n)]
    (root / "images").mkdir(parents=True)
    for image_id, scene in zip(image_ids, scenes, strict=True):
        world.render(scene).save(root / "images" / f"{image_id}.png", format="PNG")
    write_json(
        root / "scene_graphs.json",
        {i: s.to_scene_graph(i) for i, s in zip(image_ids, scenes, strict=True)},
        indent=None,
    )
    counts: dict[str, Any] = {"images": n}
    counts["gqa"], counts["pairs"] = _write_gqa(root, split, seed, image_ids, scenes, world, gqa_per_image)
    counts["pope"] = _write_pope(root, split, seed, image_ids, scenes)
    counts["cocoqa"] = _write_cocoqa(root, split, seed, image_ids, scenes)
    return counts


def _write_gqa(root, split, seed, image_ids, scenes, world, per_image) -> tuple[dict[str, int], int]:
    """Up to `per_image` questions per image, neediest categories first; each category alternates its target answer
    so yes/no stay balanced."""
    records: dict[str, list[dict]] = {c: [] for c in GQA_CATEGORIES}
    answers: dict[str, Counter] = {c: Counter() for c in GQA_CATEGORIES}
    pairs: list[ImagePair] = []
    (root / "pairs" / "edited").mkdir(parents=True)
    for i, (image_id, scene) in enumerate(zip(image_ids, scenes, strict=True)):
        rng = image_rng(seed, split, i, "gqa")
        # the categories with the fewest questions so far go first (relations are feasible less often)
        order = sorted(GQA_CATEGORIES, key=lambda c: (len(records[c]), (GQA_CATEGORIES.index(c) - i) % 6))
        made = 0
        for category in order:
            if made == per_image:
                break
            want = "yes" if answers[category]["yes"] <= answers[category]["no"] else "no"
            item = ask_and_edit(scene, category, want, rng)
            if item is None:
                continue
            question_id = f"{image_id}{made:02d}"
            records[category].append(gqa_record(item, image_id, question_id))
            answers[category][want] += 1
            pairs.append(_pair(root, item, image_id, question_id, seed, world))
            made += 1
    for category, recs in records.items():
        write_json(root / "GQA" / f"{category}.json", recs)
    write_pairs(root / "pairs" / "pairs.jsonl", pairs)
    return {c: len(r) for c, r in records.items()}, len(pairs)


def _pair(
    root: Path, item: GQAItem, image_id: str, question_id: str, seed: int, world: SceneWorld
) -> ImagePair:
    assert item.edited is not None and item.mask_box is not None
    world.render(item.edited).save(root / "pairs" / "edited" / f"{question_id}.png", format="PNG")
    return ImagePair(
        pair_id=question_id,
        question_id=question_id,
        question=gqa_text(item)[0],
        clean_image=f"../images/{image_id}.png",
        edited_image=f"edited/{question_id}.png",
        answer=item.answer,
        edited_answer=item.edited_answer,
        level=item.level,
        category=item.category,
        candidates=YES_NO,
        edit=item.edit,
        mask_box=item.mask_box,
        seed=seed,
        model_id="synthetic",
    )


def _write_pope(root, split, seed, image_ids, scenes: list[Scene]) -> dict[str, int]:
    """Per image k <= 3 present classes ("yes") interleaved with k absent ones ("no"), sampled three ways."""
    frequency: Counter = Counter()
    cooccurrence: Counter = Counter()
    for scene in scenes:
        present = scene.present()
        frequency.update(present)
        cooccurrence.update((p, c) for p in present for c in present if p != c)
    lines: dict[str, list[str]] = {m: [] for m in POPE_MODES}
    for i, (image_id, scene) in enumerate(zip(image_ids, scenes, strict=True)):
        rng = image_rng(seed, split, i, "pope")
        present = scene.present()
        k = min(len(present), POPE_PER_IMAGE)
        positives = rng.sample(present, k)
        for mode in POPE_MODES:
            negatives = pope_negatives(present, k, mode, rng, frequency, cooccurrence)
            for yes, no in zip(positives, negatives, strict=True):
                for name, label in ((yes, "yes"), (no, "no")):
                    record = {
                        "question_id": len(lines[mode]) + 1,
                        "image": f"{image_id}.png",
                        "text": pope_question(name),
                        "label": label,
                    }
                    lines[mode].append(json.dumps(record))
    for mode, recs in lines.items():
        write_text(root / "POPE" / f"coco_pope_{mode}.json", "".join(r + "\n" for r in recs))
    return {m: len(r) for m, r in lines.items()}


def _write_cocoqa(root, split, seed, image_ids, scenes: list[Scene]) -> dict[str, int]:
    rows: dict[str, list[list[Any]]] = {t: [] for t in COCOQA_TYPES}
    for i, (image_id, scene) in enumerate(zip(image_ids, scenes, strict=True)):
        for kind, question, answer in cocoqa_questions(scene, image_rng(seed, split, i, "cocoqa")):
            rows[kind].append([len(rows[kind]), int(image_id), question, answer])
    for kind, table in rows.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COCOQA_HEADER)
        writer.writerows(table)
        write_text(root / "COCOQA" / f"{kind}_coco_qa.csv", buf.getvalue())
    return {t: len(r) for t, r in rows.items()}
