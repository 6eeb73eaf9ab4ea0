"""HF datasets in the lmms-eval schemas, offline: local parquet copies with exactly the Hub's columns and configs."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import datasets
import pytest
from PIL import Image

from vseam_pl.data import BadRecordError, GQADataModule, POPEDataModule

POPE_SPLITS = ("random", "popular", "adversarial")


def png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), (i % 256, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def write_config_readme(root: Path, configs: dict[str, tuple[str, str]]) -> None:
    """A README ``configs:`` block as on the Hub: config name -> (split, parquet glob)."""
    lines = ["---", "configs:"]
    for name, (split, glob) in configs.items():
        lines += [f"- config_name: {name}", "  data_files:", f"  - split: {split}", f"    path: {glob}"]
    (root / "README.md").write_text("\n".join([*lines, "---", ""]))


@pytest.fixture(scope="module")
def pope_hf(tmp_path_factory) -> Path:
    """lmms-lab/POPE layout: one ``default`` config, split ``test``, 2 parquet shards."""
    root = tmp_path_factory.mktemp("pope_hf")
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "question_id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "image_source": datasets.Value("string"),
            "image": datasets.Image(),
            "category": datasets.Value("string"),
        }
    )
    rows = [
        {
            "id": str(i),
            "question_id": str(i // 3 + 1),
            "question": f"Is there a thing {i}?",
            "answer": "yes" if i % 2 else "no",
            "image_source": f"COCO_val2014_{i // 6:012d}",
            "image": {"bytes": png(i // 6), "path": None},
            "category": POPE_SPLITS[i % 3],
        }
        for i in range(90)
    ]
    rows[7]["image"] = {"bytes": b"garbage", "path": None}
    ds = datasets.Dataset.from_list(rows, features=features)
    (root / "data").mkdir()
    for k in range(2):
        ds.shard(2, k, contiguous=True).to_parquet(str(root / "data" / f"test-0000{k}-of-00002.parquet"))
    write_config_readme(root, {"default": ("test", "data/test-*.parquet")})
    return root


@pytest.fixture(scope="module")
def gqa_hf(tmp_path_factory) -> Path:
    """lmms-lab/GQA layout: ``testdev_balanced_instructions`` + ``testdev_balanced_images`` joined on imageId."""
    root = tmp_path_factory.mktemp("gqa_hf")
    instr = datasets.Dataset.from_list(
        [
            {
                "id": f"q{i}",
                "imageId": f"n{i % 10}",
                "question": f"Is it {i}?",
                "answer": "yes" if i % 4 else "no",
                "fullAnswer": f"Full {i}.",
                "isBalanced": True,
                "groups": {"global": None, "local": "x"},
                "types": {"detailed": "d", "semantic": ("obj", "attr", "rel")[i % 3], "structural": "verify"},
                "semanticStr": "s",
            }
            for i in range(40)
        ]
    )
    images = datasets.Dataset.from_list(
        [{"id": f"n{j}", "image": {"bytes": png(j), "path": None}} for j in range(9)],
        features=datasets.Features({"id": datasets.Value("string"), "image": datasets.Image()}),
    )
    for name, ds in (("testdev_balanced_instructions", instr), ("testdev_balanced_images", images)):
        (root / name).mkdir()
        ds.to_parquet(str(root / name / "testdev-00000-of-00001.parquet"))
    write_config_readme(
        root,
        {
            n: ("testdev", f"{n}/testdev-*.parquet")
            for n in ("testdev_balanced_instructions", "testdev_balanced_images")
        },
    )
    return root


def drain(loader) -> tuple[list, list]:
    examples, skipped = [], []
    for b in loader:
        examples += b.examples
        skipped += b.skipped
    return examples, skipped


def test_pope_hf_streams_all_rows_with_images(pope_hf: Path) -> None:
    dm = POPEDataModule(
        hf_dataset=str(pope_hf), splitting="all", on_bad_record="skip", batch_size=16, num_workers=2
    )
    dm.setup("test")
    assert dm.counts["test"] == 90
    with pytest.warns(UserWarning, match=r"pope: skipped 1 .*:7: could not decode image embedded"):
        examples, skipped = drain(dm.test_dataloader())
    assert len(examples) == 89 and [s.rsplit(":", 1)[1].split()[0] for s, _ in skipped] == ["7"]
    r = next(e.record for e in examples if e.record.extra["id"] == "4")
    assert (r.question_id, r.answer, r.category, r.image_id, r.candidates) == (
        "popular-2",
        "no",
        "popular",
        "COCO_val2014_000000000000",
        ("yes", "no"),
    )
    assert r.image_path is None and r.source == f"{pope_hf}[default/test]:4"
    assert Counter(e.record.category for e in examples) == {"random": 30, "popular": 29, "adversarial": 30}
    assert all(e.image.size == (6, 4) and e.image.mode == "RGB" for e in examples)
    with pytest.raises(BadRecordError, match=r":7: could not decode image embedded in the dataset"):
        drain(POPEDataModule(hf_dataset=str(pope_hf), splitting="all").test_dataloader())


def test_pope_hf_splits_filter_ranks_and_by_image_split(pope_hf: Path) -> None:
    kw = dict(hf_dataset=str(pope_hf), splits=["adversarial"], on_bad_record="skip", batch_size=4)
    shards = []
    for rank in range(2):
        dm = POPEDataModule(**kw, rank=rank, world_size=2)
        dm.setup(None)
        shards.append([(e.record.source) for e in drain(dm.test_dataloader())[0]])
        assert {e.record.category for e in drain(dm.train_dataloader())[0]} <= {"adversarial"}
    every = [r.source for r in dm.iter_records("test")]
    assert sorted(shards[0] + shards[1]) == sorted(every) and not set(shards[0]) & set(shards[1])
    images = {s: {r.image_id for r in dm.iter_records(s)} for s in ("train", "val", "test")}
    assert not (
        images["train"] & images["test"] or images["train"] & images["val"] or images["val"] & images["test"]
    )


def test_gqa_hf_joins_instructions_and_images(gqa_hf: Path) -> None:
    dm = GQADataModule(
        hf_dataset=str(gqa_hf), splitting="all", on_bad_record="skip", batch_size=8, num_workers=2
    )
    dm.setup("test")
    assert dm.counts["test"] == 40
    with pytest.warns(
        UserWarning, match=r"gqa: skipped 4 .*image 'n9' not found in .*testdev_balanced_images"
    ):
        examples, skipped = drain(dm.test_dataloader())
    assert len(examples) == 36 and len(skipped) == 4
    assert sorted(e.record.question_id for e in examples) == sorted(f"q{i}" for i in range(40) if i % 10 != 9)
    by_id = {e.record.question_id: e for e in examples}
    r = by_id["q13"].record
    assert (r.image_id, r.answer, r.level, r.candidates, r.extra["fullAnswer"]) == (
        "n3",
        "yes",
        "attribute",
        ("yes", "no"),
        "Full 13.",
    )
    assert by_id["q13"].image.getpixel((0, 0)) == (3, 0, 0)  # the joined image is the right one
    levels = GQADataModule(hf_dataset=str(gqa_hf), splitting="all", levels=["relation"])
    assert {r.level for r in levels.iter_records("test")} == {"relation"}
    with pytest.raises(BadRecordError, match=r"image 'n9' not found"):
        drain(GQADataModule(hf_dataset=str(gqa_hf), splitting="all").test_dataloader())
