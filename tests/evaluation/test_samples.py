"""Every evaluation writes its per-question outcomes as JSON Lines beside metrics.json, and the report's
accuracies and paired p-values are recomputed from that file alone (issue 27.3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vseam_pl.evaluate import main as evaluate_main
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.report import outcome_rows, read_metrics_json
from vseam_pl.samples import SAMPLE_KEYS, outcomes_from_samples, read_samples
from vseam_pl.stats import cluster_permutation_test


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=8, n_val=4, n_test=40
    )


@pytest.fixture(scope="module")
def evaluated(tiny_llava_dir, tiny_world, tmp_path_factory) -> Path:
    """GQA and POPE, baseline vs strongly perturbed scales (so the systems disagree on some questions)."""
    out = tmp_path_factory.mktemp("eval")
    torch.manual_seed(1)
    scales = HeadModulation(4, 4, 16, model_name=tiny_llava_dir.name)
    with torch.no_grad():
        scales.scales.copy_(torch.rand(4, 4) * 3)
    scales.save(out / "head_scales.safetensors")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        evaluate_main(
            [
                *("--model.model", str(tiny_llava_dir), "--scales", str(out / "head_scales.safetensors")),
                *("--data.root", str(tiny_world), "--synth_root", "null", "--data.limit", "40"),
                *("--data.num_workers", "0", "--data.batch_size", "8", "--benchmarks", "gqa,pope"),
                *("--output", str(out / "eval.json"), "--trainer.enable_progress_bar", "false"),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    return out


def selected(samples: list[dict], row: dict) -> list[dict]:
    """The questions behind a report row, read from its benchmark and split alone."""
    mine = [s for s in samples if s["benchmark"] == row["benchmark"]]
    split = row["split"]
    if row["benchmark"] == "pope":
        return mine if split in ("all", "avg") else [s for s in mine if s["group"] == split]
    if split == "test":
        return mine
    group = split.removeprefix("test/")
    if group.startswith("level="):
        return [s for s in mine if s["level"] == group.removeprefix("level=")]
    return [s for s in mine if s["group"] == group]


def test_samples_are_written_beside_the_metrics(evaluated):
    report = read_metrics_json(evaluated / "eval.json")
    assert report["samples"] == "eval.samples.jsonl"
    samples = read_samples(evaluated / "eval.samples.jsonl")
    assert samples and all(list(s) == list(SAMPLE_KEYS) for s in samples)
    n = {r["benchmark"]: r["n"] for r in report["rows"] if r["split"] in ("test", "avg")}
    assert n == {"gqa": 40, "pope": 40}
    assert len(samples) == 80
    for s in samples:
        assert s["split"] == "test" and s["image_id"] and ":" in s["source"]
        assert s["baseline_reply"] is not None and s["modulated_reply"] is not None
    pope = [s for s in samples if s["benchmark"] == "pope"]
    assert {s["baseline_parsed"] for s in pope} <= {"yes", "no", None}
    assert all(s["baseline_correct"] == (s["baseline_parsed"] == s["gold"]) for s in pope)


def test_the_report_is_recomputed_from_the_samples_alone(evaluated):
    """Accuracies, yes-ratios and image-permutation p-values by hand from the JSONL equal metrics.json's."""
    report = json.loads((evaluated / "eval.json").read_text())
    samples = read_samples(evaluated / "eval.samples.jsonl")
    checked = 0
    for row in report["rows"]:
        chosen = selected(samples, row)
        assert len(chosen) == row["n"], row
        if row["metric"] == "yes_ratio":
            for system in ("baseline", "modulated"):
                share = np.mean([s[f"{system}_parsed"] == "yes" for s in chosen])
                assert share == pytest.approx(row[system]), row
            continue
        if row["metric"] != "accuracy" or row["split"] == "avg":
            continue
        base = np.array([s["baseline_correct"] for s in chosen], dtype=float)
        mod = np.array([s["modulated_correct"] for s in chosen], dtype=float)
        assert base.mean() == pytest.approx(row["baseline"]) and mod.mean() == pytest.approx(row["modulated"])
        assert row["p_test"] == "image_permutation"
        p = cluster_permutation_test(mod, base, [s["image_id"] for s in chosen], seed=0)
        assert p == pytest.approx(row["p_value"]), row
        checked += 1
    assert checked >= 5
    assert any(r["p_value"] is not None and r["p_value"] < 1 for r in report["rows"])  # the systems differ
    # and the package's own report function gives back every row from the file
    rows = outcome_rows(outcomes_from_samples(samples), parser=samples[0]["answer_parser"])
    assert rows == report["rows"]


def test_a_malformed_sample_line_is_named(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"benchmark": "gqa"}\n')
    with pytest.raises(ValueError, match=r"s.jsonl:1: missing field\(s\) \['split'"):
        read_samples(path)
