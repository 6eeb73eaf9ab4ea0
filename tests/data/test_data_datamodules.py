"""DataModules end to end: every release file through the loaders, splits, fraction, DDP/worker sharding, bad input."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import jsonargparse
import lightning.pytorch as pl
import pytest
import torch
from test_data_support import make_root, write_images

from tests.release_files import SHARED_DATA as SHARED
from vseam_pl.data import (
    BadRecordError,
    Batch,
    COCOQADataModule,
    GQADataModule,
    MultiBenchmarkDataModule,
    POPEDataModule,
    build_datamodule,
    iter_records,
)
from vseam_pl.records import Example

needs_shared = pytest.mark.usefixtures("shared_data")


def drain(loader) -> tuple[list[Example], list[tuple[str, str]]]:
    examples, skipped = [], []
    for batch in loader:
        assert isinstance(batch, Batch)
        examples += batch.examples
        skipped += batch.skipped
    return examples, skipped


def expected_labels(bench: str) -> Counter:
    """(category, answer) counts parsed straight from the release files, independently of the readers."""
    expected: Counter = Counter()
    if bench == "gqa":
        for cat in ("Animal", "Material", "Spatial"):
            expected += Counter(
                (cat, x["answer"].lower()) for x in json.loads((SHARED / "GQA" / f"{cat}.json").read_text())
            )
    elif bench == "pope":
        for split in ("random", "popular", "adversarial"):
            lines = (SHARED / "POPE" / f"coco_pope_{split}.json").read_text().splitlines()
            expected += Counter((split, json.loads(x)["label"]) for x in lines)
    else:
        for qtype in ("color", "count", "location"):
            with open(SHARED / "COCOQA" / f"{qtype}_coco_qa.csv", newline="") as f:
                expected += Counter((qtype, row[3].lower()) for row in list(csv.reader(f))[1:])
    return expected


def stand_in_images(folder: Path, bench: str, limit: int | None = None) -> Path:
    """Stand-in images for the records a DataModule will read; GQA alternates .jpg/.png (extension fallback)."""
    records = list(iter_records(bench, str(SHARED), limit=limit))
    if bench == "gqa":
        write_images(folder, [f"{r.image_id}.{'png' if int(r.image_id) % 2 else 'jpg'}" for r in records])
    else:
        write_images(folder, [Path(r.image_path).name for r in records])
    return folder


@needs_shared
@pytest.mark.parametrize("bench,n", [("gqa", 3115), ("pope", 8910), ("cocoqa", 23623)])
def test_release_files_counts_and_label_balance(bench: str, n: int) -> None:
    got = Counter((r.category, r.answer) for r in iter_records(bench, str(SHARED)))
    assert got == expected_labels(bench) and sum(got.values()) == n


def _read_release(bench: str, folder: Path, limit: int | None = None) -> list[Example]:
    dm = build_datamodule(
        bench, root=str(SHARED), image_dir=str(folder), splitting="all", batch_size=512, limit=limit
    )
    dm.setup("test")
    examples, skipped = drain(dm.test_dataloader())
    assert skipped == [] and dm.skipped == [] and dm.counts["test"] == len(examples)
    assert len({e.record.source for e in examples}) == len(examples)
    assert all(
        e.image.mode == "RGB" and e.image.size == (8, 8) and e.record.benchmark == bench for e in examples
    )
    return examples


@needs_shared
@pytest.mark.parametrize("bench", ["gqa", "pope"])
def test_every_release_record_through_the_datamodule(tmp_path: Path, bench: str) -> None:
    examples = _read_release(bench, stand_in_images(tmp_path, bench))
    assert Counter((e.record.category, e.record.answer) for e in examples) == expected_labels(bench)


@needs_shared
def test_cocoqa_release_through_the_datamodule(tmp_path: Path) -> None:
    """COCO-QA has ~19k distinct images: load the first 1500 records (round-robin over the three files) with images;
    all 23623 are counted and checked by `test_release_files_counts_and_label_balance`."""
    examples = _read_release("cocoqa", stand_in_images(tmp_path, "cocoqa", limit=1500), limit=1500)
    assert len(examples) == 1500 and Counter(e.record.category for e in examples) == {
        "color": 500,
        "count": 500,
        "location": 500,
    }


@needs_shared
@pytest.mark.slow
def test_cocoqa_every_record_through_the_datamodule(tmp_path: Path) -> None:
    examples = _read_release("cocoqa", stand_in_images(tmp_path, "cocoqa"))
    assert Counter((e.record.category, e.record.answer) for e in examples) == expected_labels("cocoqa")


@needs_shared
def test_by_image_split_is_disjoint_deterministic_and_salted() -> None:
    def split_images(**kw) -> dict[str, set[str]]:
        dm = GQADataModule(root=str(SHARED), **kw)
        dm.setup(None)
        return {s: {r.image_id for r in dm.iter_records(s)} for s in ("train", "val", "test")}

    a, b, c = split_images(), split_images(), split_images(split_salt="other")
    assert a == b and a != c
    assert not (a["train"] & a["val"] or a["train"] & a["test"] or a["val"] & a["test"])
    every = {r.image_id for r in iter_records("gqa", str(SHARED))}
    assert a["train"] | a["val"] | a["test"] == every
    assert 0.75 < len(a["train"]) / len(every) < 0.85 and 0.07 < len(a["val"]) / len(every) < 0.13
    d = split_images(split_ratios=(0.5, 0.25, 0.25))
    assert 0.45 < len(d["train"]) / len(every) < 0.55


@needs_shared
def test_fraction_is_stratified_seeded_and_train_only() -> None:
    full = POPEDataModule(root=str(SHARED))
    full.setup(None)
    train = Counter((r.category, r.answer) for r in full.iter_records("train"))

    def subsample(seed: int) -> tuple[POPEDataModule, list]:
        dm = POPEDataModule(root=str(SHARED), fraction=0.1, seed=seed)
        dm.setup(None)
        return dm, list(dm.iter_records("train"))

    dm, picked = subsample(0)
    assert len(picked) == dm.counts["train"] == round(0.1 * sum(train.values()))
    strata = Counter((r.category, r.answer) for r in picked)
    for key, n in train.items():
        assert abs(strata[key] - 0.1 * n) <= 1, key  # stratified by (POPE split, answer)
    assert [r.source for r in subsample(0)[1]] == [r.source for r in picked]
    other = {r.source for r in subsample(1)[1]}
    assert other != {r.source for r in picked} and len(other) == len(picked)
    assert dm.counts["val"] == full.counts["val"] and dm.counts["test"] == full.counts["test"]


def test_folder_splits_are_used_when_present(tmp_path: Path) -> None:
    for split, n in (("train", 30), ("val", 12), ("test", 9)):
        make_root(tmp_path / split, n_gqa=n)
    dm = GQADataModule(root=str(tmp_path), categories=["animal"])
    dm.setup(None)
    assert dm.mode() == "folders" and dm.counts == {"train": 30, "val": 12, "test": 9}
    examples, _ = drain(dm.val_dataloader())
    assert {Path(e.record.image_path).parent for e in examples} == {tmp_path / "val" / "images"}


def test_ddp_ranks_cover_eval_exactly_once_and_train_evenly(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", n_gqa=101, n_images=50)
    world = 3
    ids: dict[str, list[list[str]]] = {"train": [], "test": []}
    for rank in range(world):
        dm = GQADataModule(
            root=str(root), rank=rank, world_size=world, batch_size=4, num_workers=2 if rank else 0
        )
        dm.setup(None)
        for split, loader in (("train", dm.train_dataloader()), ("test", dm.test_dataloader())):
            ids[split].append([e.record.source for e in drain(loader)[0]])
    every_test = [r.source for r in dm.iter_records("test")]
    flat = [s for shard in ids["test"] for s in shard]
    assert sorted(flat) == sorted(every_test)  # each test record exactly once over the ranks
    n_train = dm.counts["train"]
    assert n_train % world != 0  # so the drop_last path is exercised
    assert [len(s) for s in ids["train"]] == [n_train // world] * world
    train_flat = [s for shard in ids["train"] for s in shard]
    assert len(set(train_flat)) == len(train_flat)


def test_workers_shard_without_duplicates(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    dm = COCOQADataModule(
        root=str(root), image_pattern="{id}.png", splitting="all", num_workers=2, batch_size=3
    )
    examples, _ = drain(dm.test_dataloader())
    assert sorted(e.record.source for e in examples) == sorted(r.source for r in dm.iter_records("test"))
    assert len(examples) == 60


def test_train_shuffle_changes_order_per_epoch_not_content(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", n_pope=80)
    dm = POPEDataModule(root=str(root), splitting="all", shuffle_buffer=50, batch_size=16)
    loader = dm.train_dataloader()
    first = [e.record.source for e in drain(loader)[0]]
    second = [e.record.source for e in drain(loader)[0]]
    assert first != second and sorted(first) == sorted(second)
    assert first == [
        e.record.source
        for e in drain(
            POPEDataModule(
                root=str(root), splitting="all", shuffle_buffer=50, batch_size=16
            ).train_dataloader()
        )[0]
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_loader_resumes_mid_pass_from_its_state(tmp_path: Path, monkeypatch, workers: int) -> None:
    """Outside a trainer the loader's own count is the resume point: a fresh loader given the state replays the
    interrupted pass (same shuffle seed) without the batches handed out, then carries on with the next epochs."""
    root = make_root(tmp_path / "r", n_pope=80)

    def loader():
        return POPEDataModule(
            root=str(root), splitting="all", shuffle_buffer=50, batch_size=8, num_workers=workers
        ).train_dataloader()

    def sources(batches) -> list[list[str]]:
        return [[e.record.source for e in b.examples] for b in batches]

    reference = loader()
    passes = [sources(reference) for _ in range(2)]
    interrupted = loader()
    it = iter(interrupted)
    seen = sources(next(it) for _ in range(5))
    state = interrupted.state_dict()
    assert state == {"epoch": 0, "batches": 5, "ended": False} and seen == passes[0][:5]
    del it
    resumed = loader()
    resumed.load_state_dict(state)
    if workers == 0:  # the dropped batches are skipped as rows: their images are never decoded
        import vseam_pl.data.sources as sources_module

        decoded = []
        real = sources_module.decode_image
        monkeypatch.setattr(sources_module, "decode_image", lambda r, *a: decoded.append(r) or real(r, *a))
    assert sources(resumed) == passes[0][5:]
    if workers == 0:
        assert len(decoded) == sum(map(len, passes[0][5:]))
    assert resumed.state_dict() == {"epoch": 0, "batches": len(passes[0]), "ended": True}
    assert sources(resumed) == passes[1]  # the next epoch's shuffle
    with pytest.raises(ValueError, match="must hold epoch, batches and ended"):
        resumed.load_state_dict({"epoch": 1})


def test_bad_images_raise_or_are_counted(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", n_images=5)
    (root / "images" / "COCO_val2014_000000000001.jpg").unlink()
    (root / "images" / "COCO_val2014_000000000002.jpg").write_bytes(b"not an image")
    (root / "images" / "COCO_val2014_000000000003.jpg").rename(
        root / "images" / "COCO_val2014_000000000003.png"
    )
    kw = dict(root=str(root), splitting="all", splits=["random"], batch_size=4)
    with pytest.raises(
        BadRecordError,
        match=r"coco_pope_random\.json:2: image file not found: .*"
        r"COCO_val2014_000000000001\.jpg \(also tried .*\.png\)",
    ):
        drain(POPEDataModule(**kw).test_dataloader())
    dm = POPEDataModule(**kw, on_bad_record="skip")
    with pytest.warns(UserWarning, match=r"pope: skipped 16 bad record\(s\).*coco_pope_random\.json:2"):
        examples, skipped = drain(dm.test_dataloader())
    assert len(examples) == 24 and len(skipped) == 16 and dm.skipped == skipped  # 8 questions per bad image
    reasons = {r.split(":")[0] for _, r in skipped}
    assert reasons == {
        "image file not found",
        "could not decode image " + str(root / "images" / "COCO_val2014_000000000002.jpg"),
    }
    assert any(e.record.image_path.endswith("000000000003.jpg") for e in examples)  # .png fallback worked


def test_bad_images_in_workers_reach_the_main_process(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", n_images=5)
    (root / "images" / "img1.png").unlink()
    dm = GQADataModule(root=str(root), splitting="all", on_bad_record="skip", num_workers=2, batch_size=5)
    with pytest.warns(UserWarning, match="gqa: skipped 24"):
        examples, skipped = drain(dm.test_dataloader())
    assert len(examples) + len(skipped) == 120 and len(dm.skipped) == 24


def test_bad_records_are_reported_once_by_setup(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    with open(root / "POPE" / "coco_pope_random.json", "a") as f:
        f.write('{"question_id": 99, "image": "COCO_val2014_000000000001.jpg", "text": "Q?"}\n{broken\n')
    with pytest.raises(BadRecordError, match=r"coco_pope_random\.json:41: missing required field 'label'"):
        POPEDataModule(root=str(root)).setup("fit")
    dm = POPEDataModule(root=str(root), on_bad_record="skip")
    with pytest.warns(UserWarning, match=r"skipped 2 bad record\(s\) while reading questions"):
        dm.setup(None)
    assert [s.rsplit(":", 1)[1] for s, _ in dm.skipped] == ["41", "42"]
    assert sum(dm.counts.values()) == 80
    examples, skipped = drain(dm.train_dataloader())
    assert len(examples) == dm.counts["train"] and not skipped and len(dm.skipped) == 2


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    with pytest.raises(ValueError, match=r"gqa: the val split is empty after filtering"):
        GQADataModule(root=str(root), split_ratios=(1.0, 0.0, 0.0)).setup("fit")
    with pytest.raises(FileNotFoundError, match=r"gqa: no question files \(\.json\) matching the selection"):
        GQADataModule(root=str(root), levels=["relation"], splitting="all").setup("test")
    (root / "GQA" / "Extra.json").write_text(
        json.dumps(
            [
                {
                    "question_id": "1",
                    "imageId": "img1",
                    "question": "Q?",
                    "answer": "no",
                    "types": {"semantic": "attr"},
                }
            ]
        )
    )
    with pytest.raises(ValueError, match=r"the test split is empty.*levels=frozenset\(\{'relation'\}\)"):
        GQADataModule(root=str(root), levels=["relation"], splitting="all").setup("test")
    with pytest.raises(FileNotFoundError, match=r"cocoqa: no question files .* in .*COCOQA"):
        COCOQADataModule(root=str(root), types=["location"]).setup("test")


def test_custom_collate_gets_examples_and_keeps_skips(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    (root / "images" / "101.png").unlink()

    def collate(examples: list[Example]) -> dict:
        return {"questions": [e.record.question for e in examples], "pixels": torch.zeros(len(examples), 3)}

    dm = COCOQADataModule(
        root=str(root),
        splitting="all",
        image_pattern="{id}.png",
        on_bad_record="skip",
        collate_fn=collate,
        batch_size=7,
    )
    with pytest.warns(UserWarning, match="cocoqa: skipped 4"):
        batches = list(dm.test_dataloader())
    assert (
        sum(len(b["questions"]) for b in batches) == 56
        and sum(len(b.get("skipped", [])) for b in batches) == 4
    )
    assert len(dm.skipped) == 4


def test_multi_benchmark_loaders(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    kw = dict(root=str(root), splitting="all", batch_size=8)
    multi = build_datamodule(
        ["gqa", "pope", "cocoqa"], per_benchmark={"cocoqa": {"image_pattern": "{id}.png"}}, **kw
    )
    assert isinstance(multi, MultiBenchmarkDataModule) and multi.names == ["gqa", "pope", "cocoqa"]
    multi.setup("fit")
    vals = multi.val_dataloader()
    assert [len(drain(v)[0]) for v in vals] == [120, 80, 60]
    first = next(iter(multi.train_dataloader()))
    assert isinstance(first, Batch) and {r.benchmark for r in first.records} == {"gqa", "pope", "cocoqa"}
    assert sum(len(b) for b in multi.train_dataloader()) == 260
    combined = MultiBenchmarkDataModule(multi.datamodules, train_mode="max_size_cycle").train_dataloader()
    batch, _, _ = next(iter(combined))
    assert set(batch) == {"gqa", "pope", "cocoqa"} and all(isinstance(b, Batch) for b in batch.values())


class _Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[str, int]] = []

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self.w.sum() * len(batch)

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.seen += [(r.benchmark, dataloader_idx) for r in batch.records]

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[str]:
        return [r.question_id for r in batch.records]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trainer_fit_validate_predict(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    multi = MultiBenchmarkDataModule(
        [GQADataModule(root=str(root), batch_size=16), POPEDataModule(root=str(root), batch_size=16)]
    )
    model = _Recorder()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=multi)
    assert {idx for _, idx in model.seen} == {0, 1}
    assert all(name == multi.names[idx] for name, idx in model.seen)
    assert Counter(idx for _, idx in model.seen) == {
        0: multi.counts["gqa"]["val"],
        1: multi.counts["pope"]["val"],
    }
    preds = trainer.predict(model, datamodule=multi)
    assert [sum(len(p) for p in per) for per in preds] == [
        multi.counts["gqa"]["test"],
        multi.counts["pope"]["test"],
    ]


def test_constructor_arguments_work_as_cli_keys(tmp_path: Path) -> None:
    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(GQADataModule, "data")
    cfg = parser.parse_args(
        [
            "--data.root",
            str(tmp_path),
            "--data.categories",
            "[Animal, Spatial]",
            "--data.fraction",
            "0.1",
            "--data.on_bad_record",
            "skip",
            "--data.batch_size",
            "4",
        ]
    )
    dm = parser.instantiate(cfg).data
    assert isinstance(dm, GQADataModule)
    assert (dm.categories, dm.fraction, dm.on_bad_record, dm.batch_size) == (
        ["Animal", "Spatial"],
        0.1,
        "skip",
        4,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--data.root", "x", "--data.on_bad_record", "ignore"])


def test_a_batch_size_above_the_split_is_capped_and_a_bad_one_refused(tmp_path: Path) -> None:
    """`--data.batch_size 1000000000` on 8 records: the DataLoader allocated a billion indices per batch (>13 GB)."""
    root = make_root(tmp_path / "r", n_gqa=8)
    dm = GQADataModule(root=str(root), batch_size=1_000_000_000, splitting="all", categories=["Animal"])
    dm.setup("test")
    loader = dm.test_dataloader()
    assert loader.batch_size == dm.counts["test"] == 8
    assert [len(b) for b in loader] == [8]
    for bad in (0, -3, True):
        with pytest.raises(ValueError, match="batch_size must be a positive number"):
            GQADataModule(root=str(root), batch_size=bad)
