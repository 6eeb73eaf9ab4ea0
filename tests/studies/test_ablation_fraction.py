"""`vseam sweep` (`vseam_pl.studies.sweep`): each fraction's train.py run draws the expected number of questions and steps,
outputs (json, md, png) are written, and a rerun skips finished runs (tiny random model, tiny world)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vseam_pl.studies import sweep as ablate_fraction

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=2, n_train=40, n_val=6, n_test=8
    )


def argv(model: Path, world: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        "--models",
        str(model),
        "--data_root",
        str(world),
        "--out",
        str(tmp / "docs"),
        "--runs_dir",
        str(tmp / "runs"),
        "--fractions",
        "0.1",
        "1.0",
        "--seeds",
        "0",
        "--batch_size",
        "8",
        "--test_batches",
        "0",
        "--num_workers",
        "0",
        *extra,
    ]


def gqa_train_questions(world: Path) -> int:
    return sum(len(json.loads(p.read_text())) for p in (world / "train" / "GQA").glob("*.json"))


def test_fraction_runs_use_expected_records_and_resume(tiny_llava_dir, tiny_world, tmp_path, capsys):
    result = ablate_fraction.main(argv(tiny_llava_dir, tiny_world, tmp_path))
    total = gqa_train_questions(tiny_world)
    runs = {r["fraction"]: r for r in result["runs"]}
    assert set(runs) == {0.1, 1.0}
    assert runs[1.0]["train_records"] == total and runs[0.1]["train_records"] == round(0.1 * total)
    for r in runs.values():  # one epoch over each run's subsample, as train.py actually ran it
        assert r["steps"] == math.ceil(r["train_records"] / 8)
        assert r["n"] > 0 and 0 <= r["accuracy"] <= 1 and 0 <= r["p_value"] <= 1
        assert r["p_test"] == "image_permutation"  # train.py's default statistics: clustered by image
        assert set(r["levels"]) == {"object", "attribute", "relation"}
        # selected on validation (before training, after the epoch); the identity answers as the frozen model
        assert r["scales_used"] in ("selected", "identity")
        if r["scales_used"] == "identity":
            assert r["accuracy"] == r["zero_shot"] and r["selected_step"] in (0, r["steps"])
        folder = ablate_fraction.run_folder(tmp_path / "runs", str(tiny_llava_dir), r["fraction"], 0)
        assert (folder / "metrics.json").exists() and (folder / "head_scales.safetensors").exists()
        assert not list(
            folder.rglob("head_scores.safetensors")
        )  # the default config's discovery callback is off

    docs = tmp_path / "docs"
    saved = json.loads((docs / "ablation.json").read_text())
    assert saved["summary"] == result["summary"] and saved["command"].startswith("vseam sweep ")
    assert [s["fraction"] for s in saved["summary"]] == [0.1, 1.0]
    assert all(s["std"] is None and s["seeds"] == [0] for s in saved["summary"])
    assert (docs / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (docs / "ablation.md").read_text()
    assert saved["command"] in md and "| 0.1 |" in md and "ablation.png" in md
    assert "(image-clustered permutation test)" in md and "McNemar" not in md
    assert [s["identity_runs"] for s in saved["summary"]] == [
        int(runs[f]["scales_used"] == "identity") for f in (0.1, 1.0)
    ]

    # a second call finds every run finished: nothing is retrained, the records are the same
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("metrics.json")}
    capsys.readouterr()
    again = ablate_fraction.main(argv(tiny_llava_dir, tiny_world, tmp_path))
    assert capsys.readouterr().out.count("done already") == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["runs"] == result["runs"]
    with pytest.raises(
        ValueError, match="ablation_run.json: computed with settings"
    ):  # other settings: not reused
        ablate_fraction.main(argv(tiny_llava_dir, tiny_world, tmp_path, "--lr", "0.5"))


def test_aggregate_mean_and_sample_std():
    runs = [
        {
            "model": "m",
            "fraction": 0.1,
            "seed": s,
            "accuracy": a,
            "train_records": 5,
            "n": 10,
            "zero_shot": 0.4,
            "levels": {"object": a},
        }
        for s, a in enumerate([0.5, 0.7, 0.6])
    ]
    (summary,) = ablate_fraction.aggregate(runs)
    assert summary["mean"] == pytest.approx(0.6) and summary["std"] == pytest.approx(0.1)
    assert summary["seeds"] == [0, 1, 2] and summary["levels_mean"] == {"object": pytest.approx(0.6)}


def test_missing_gqa_accuracy_row_is_reported():
    with pytest.raises(ValueError, match="no GQA test accuracy row; splits present"):
        ablate_fraction.gqa_overall([{"benchmark": "pope", "split": "random", "metric": "accuracy"}])


def test_a_run_capped_below_its_epoch_is_an_error(tiny_llava_dir, tiny_world, tmp_path):
    capped = argv(tiny_llava_dir, tiny_world, tmp_path, "--train_args", "--trainer.limit_train_batches", "1")
    capped[capped.index("--fractions") + 1 : capped.index("--seeds")] = ["1.0"]
    with pytest.raises(ValueError, match=r"the run made 1 optimizer steps, not \d+ \(\d+ questions, batch 8"):
        ablate_fraction.main(capped)


def test_one_seed_has_no_spread_to_print():
    """Issue 30.10: a one-seed sweep printed "± 0.00", a spread it never measured."""
    one = {"mean": 0.612, "std": None}
    three = {"mean": 0.612, "std": 0.0035}
    assert ablate_fraction.mean_std(one) == "61.20 (1 seed)"
    assert ablate_fraction.mean_std(three) == "61.20 ± 0.35"
    runs = [
        {
            "model": "m",
            "fraction": f,
            "seed": 0,
            "accuracy": 0.6,
            "train_records": 5,
            "n": 10,
            "zero_shot": 0.5,
            "levels": {},
            "p_value": 0.5,
        }
        for f in (0.1, 1.0)
    ]
    summary = ablate_fraction.aggregate(runs)
    assert [s["std"] for s in summary] == [None, None]
    text = ablate_fraction.markdown(summary, runs, ablate_fraction.SweepConfig(), "vseam sweep")
    assert "± 0.00" not in text and "60.00 (1 seed)" in text


def test_sweep_runs_train_on_the_whole_split_not_the_default_recipes_caps(
    tiny_llava_dir, tiny_world, tmp_path
):
    """jsonargparse carries the default recipe's `data.init_args` over to the GQA DataModule a sweep run names; its
    per-split caps (3,200 training questions) must not cut the sweep's training split."""
    from vseam_pl.train import build_cli

    cfg = ablate_fraction.parse_config(argv(tiny_llava_dir, tiny_world, tmp_path))
    cli = build_cli(ablate_fraction.train_config(cfg, str(tiny_llava_dir), 1.0, 0, tmp_path / "run"))
    assert cli.datamodule.limit is None
