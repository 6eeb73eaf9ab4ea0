"""Helpers for the data tests (no tests here): stand-in images and small benchmark roots in the official formats."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

_CACHE: dict[str, bytes] = {}


def image_bytes(fmt: str = "PNG") -> bytes:
    """One tiny 8x8 image, encoded once and written under many names (fast even for ~20k files)."""
    if fmt not in _CACHE:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, fmt)
        _CACHE[fmt] = buf.getvalue()
    return _CACHE[fmt]


def write_images(folder: Path, names: Iterable[str]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for name in set(names):
        (folder / name).write_bytes(image_bytes("JPEG" if name.endswith(".jpg") else "PNG"))
        n += 1
    return n


def gqa_rows(n: int, n_images: int, category: str, start: int = 0) -> list[dict]:
    """GQA-schema questions: ``n`` questions over ``n_images`` images, answers alternating yes/no."""
    sem = {"Animal": "obj", "Material": "attr", "Spatial": "rel"}.get(category, "obj")
    return [
        {
            "question_id": str(start + i),
            "imageId": f"img{(start + i) % n_images}",
            "question": f"Q{i} {category}?",
            "answer": "Yes" if i % 3 else "No",
            "fullAnswer": "x",
            "types": {"semantic": sem},
            "object_positions": [{"x": 1, "y": 1, "w": 2, "h": 2}],
        }
        for i in range(n)
    ]


def make_root(root: Path, n_gqa: int = 60, n_pope: int = 40, n_coco: int = 30, n_images: int = 20) -> Path:
    """A small benchmark root (GQA Animal+Material, POPE random+popular, COCO-QA color+count) with images."""
    (root / "GQA").mkdir(parents=True)
    (root / "POPE").mkdir()
    (root / "COCOQA").mkdir()
    images: list[str] = []
    for k, cat in enumerate(("Animal", "Material")):
        rows = gqa_rows(n_gqa, n_images, cat, start=k * 1000)
        (root / "GQA" / f"{cat}.json").write_text(json.dumps(rows))
        images += [f"{r['imageId']}.png" for r in rows]
    for split in ("random", "popular"):
        with open(root / "POPE" / f"coco_pope_{split}.json", "w") as f:
            for i in range(n_pope):
                img = f"COCO_val2014_{i % n_images:012d}.jpg"
                f.write(
                    json.dumps(
                        {
                            "question_id": i + 1,
                            "image": img,
                            "text": f"Is there a {split} {i}?",
                            "label": "yes" if i % 2 else "no",
                        }
                    )
                    + "\n"
                )
                images.append(img)
    for qtype in ("color", "count"):
        with open(root / "COCOQA" / f"{qtype}_coco_qa.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["", "train_image_id_count", "question_count", "answer_count"])
            for i in range(n_coco):
                w.writerow([i, 100 + i % n_images, f"what {qtype} {i}", ["red", "two", "Blue"][i % 3]])
                images.append(f"{100 + i % n_images}.png")
    write_images(root / "images", images)
    return root
