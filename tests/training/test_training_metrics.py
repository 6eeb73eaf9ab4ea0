"""`HeadModulationModule`'s torchmetrics objects are the evaluation path: validation logs what `val_paired` holds and
the test report is built from `test_paired` (tiny model; numbers checked against hand computations)."""

from __future__ import annotations

import warnings

import pytest
from lightning.pytorch import Trainer

from vseam_pl.data import GQADataModule
from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.records import QARecord
from vseam_pl.synth import generate_benchmarks
from vseam_pl.text import normalize_answer


@pytest.fixture(scope="module")
def module(tiny_llava_dir, one_thread) -> HeadModulationModule:
    return HeadModulationModule(model=str(tiny_llava_dir))


def _trainer() -> Trainer:
    return Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=2,
    )


def _gqa(i: int, answer: str, image: str, category: str) -> QARecord:
    return QARecord("gqa", f"q{i}", "what is it?", answer, image, category=category, source=f"gqa.json:{i}")


def test_test_report_is_built_from_the_test_metric(module):
    module.trainer = _trainer()
    module.on_test_epoch_start()
    #   question       0       1      2       3      4       5
    #   image          img1    img1   img2    img2   img3    img3
    #   category       Animal  Color  Animal  Color  Animal  Color
    #   baseline ok    1       0      0       0      1       1      -> 3/6
    #   modulated ok   1       1      1       1      1       0      -> 5/6
    answers = ["cat", "red", "dog", "blue", "cow", "green"]
    images = ["img1", "img1", "img2", "img2", "img3", "img3"]
    gqa = [_gqa(i, a, images[i], ["Animal", "Color"][i % 2]) for i, a in enumerate(answers)]
    module.test_paired.update(gqa, ["cat", "blue", "cow", "red", "cow", "green"], answers[:5] + ["red"])
    module.test_paired.update(gqa[:2], ["cat", "blue"], ["cat", "red"])  # a DistributedSampler repeat
    pope = [
        QARecord(
            "pope", f"p{i}", "is there a dog?", a, f"coco{i}", category="random", source=f"pope.json:{i}"
        )
        for i, a in enumerate(["yes", "no", "yes", "no"])
    ]
    module.test_paired.update(pope, ["Yes"] * 4, ["yes", "no", "no", "no"])
    module.on_test_epoch_end()

    rows = {(r["benchmark"], r["split"], r["metric"]): r for r in module.test_rows}
    gqa_all = rows["gqa", "test", "accuracy"]
    assert (gqa_all["n"], gqa_all["n_images"]) == (6, 3)
    assert gqa_all["baseline"] == pytest.approx(3 / 6) and gqa_all["modulated"] == pytest.approx(5 / 6)
    # image sums of (modulated - baseline): +1, +2, -1; |sum| >= 2 for 6 of the 8 sign patterns
    assert gqa_all["p_value"] == pytest.approx(6 / 8) and gqa_all["p_test"] == "image_permutation"
    animal, color = rows["gqa", "test/Animal", "accuracy"], rows["gqa", "test/Color", "accuracy"]
    assert (animal["baseline"], animal["modulated"]) == (pytest.approx(2 / 3), 1.0)
    assert (color["baseline"], color["modulated"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    # POPE, always "yes" vs one missed "yes": accuracy 2/4 vs 3/4, F1 2/3 (P 1/2, R 1) vs 2/3 (P 1, R 1/2)
    acc, f1 = rows["pope", "random", "accuracy"], rows["pope", "random", "f1"]
    assert (acc["n"], acc["baseline"], acc["modulated"]) == (4, 0.5, 0.75)
    assert (f1["baseline"], f1["modulated"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert rows["pope", "random", "yes_ratio"]["modulated"] == 0.25
    assert sorted(o.source for o in module.test_outcomes) == sorted(
        r.source for r in gqa + pope
    )  # repeat once

    module.on_test_epoch_start()  # a new test epoch starts from empty states
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert module.test_paired.compute() == []


def test_validation_logs_what_the_validation_metric_holds(module, tmp_path):
    synth = generate_benchmarks(tmp_path / "synth", seed=5, n_train=2, n_val=6, n_test=2)
    trainer = _trainer()
    module._baseline_done = False
    trainer.validate(module, datamodule=GQADataModule(root=str(synth), batch_size=3, num_workers=0))
    outcomes = module.val_paired.compute()
    assert len(outcomes) == 6  # both batches, each example once
    for o in outcomes:  # the metric scored each reply the way the benchmark reads it
        assert o.modulated_correct == (normalize_answer(o.modulated) == normalize_answer(o.answer))
        assert o.baseline_correct == (normalize_answer(o.baseline) == normalize_answer(o.answer))
    logged = trainer.callback_metrics
    assert logged["val/gqa/accuracy"].item() == pytest.approx(sum(o.modulated_correct for o in outcomes) / 6)
    assert logged["val/gqa/baseline_accuracy"].item() == pytest.approx(
        sum(o.baseline_correct for o in outcomes) / 6
    )
