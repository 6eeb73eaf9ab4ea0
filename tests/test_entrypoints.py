"""End to end: `train.py` learns scales and writes its outputs; `evaluate.py` reads them back (tiny model, tiny world)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import evaluate
import train
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.report import read_metrics_json


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=24, n_val=8, n_test=12
    )


def test_train_then_evaluate(tiny_llava_dir, tiny_world, tmp_path, capsys):
    out = tmp_path / "run"
    train.main(
        [
            "--model.model",
            str(tiny_llava_dir),
            "--model.lr",
            "0.05",
            "--data",
            "vseam_pl.data.GQADataModule",
            "--data.root",
            str(tiny_world),
            "--data.batch_size",
            "8",
            "--data.num_workers",
            "0",
            "--synth_root",
            "null",
            "--trainer.max_steps",
            "3",
            "--trainer.max_epochs",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
            "--output_dir",
            str(out),
            "--trainer.enable_progress_bar",
            "false",
            "--model.select_on_val",  # the last step's scales: this test follows the plumbing (tests/training/test_selection.py)
            "false",
        ]
    )
    printed = capsys.readouterr().out.strip().splitlines()
    last_blank = len(printed) - 1 - printed[::-1].index("")
    paths = dict(line.strip().split(": ", 1) for line in printed[last_blank + 1 :])
    assert list(paths) == ["scales", "metrics", "table", "samples"]

    scales = HeadModulation.load(out / "head_scales.safetensors")
    assert scales.scales.shape == (4, 4) and not torch.allclose(scales.scales, torch.ones(4, 4))  # it learned
    report = read_metrics_json(out / "metrics.json")
    overall = report["rows"][0]
    assert overall["benchmark"] == "gqa" and overall["split"] == "test" and overall["n"] > 0
    assert overall["modulated"] is not None and 0 <= overall["p_value"] <= 1
    groups = {r["split"] for r in report["rows"]}
    assert {"test/level=object", "test/level=attribute", "test/level=relation"} <= groups
    discovery = list(
        (tmp_path / "runs").rglob("head_discovery/head_scores.json")
    )  # the default recipe's callback
    assert len(discovery) == 1 and json.loads(discovery[0].read_text())["method"] == "ablation"
    ckpts = list((tmp_path / "runs").rglob("last.ckpt"))
    assert len(ckpts) == 1 and ckpts[0].stat().st_size < 64_000  # scales + optimizer + loop state only
    assert set(torch.load(ckpts[0], weights_only=True)["state_dict"]) == {"modulation.scales"}

    rows = evaluate.evaluate(
        module={"model": str(tiny_llava_dir)},
        data={"root": str(tiny_world), "num_workers": 0, "batch_size": 8, "limit": 6},
        scales=str(out / "head_scales.safetensors"),
        output=str(tmp_path / "eval.json"),
        benchmarks="gqa,pope,cocoqa",
    )
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["rows"] == rows and saved["scales"].endswith("head_scales.safetensors")
    assert {r["benchmark"] for r in rows} == {"gqa", "pope", "cocoqa"}
    pope_metrics = {r["metric"] for r in rows if r["benchmark"] == "pope"}
    assert {"accuracy", "f1", "precision", "recall", "yes_ratio"} <= pope_metrics


def test_evaluate_without_scales_reports_baseline_only(tiny_llava_dir, tiny_world, tmp_path):
    rows = evaluate.evaluate(
        module={"model": str(tiny_llava_dir)},
        data={"root": str(tiny_world), "num_workers": 0, "limit": 5},
        output=str(tmp_path / "m.json"),
        benchmarks="gqa",
    )
    assert rows and all(r["modulated"] is None and r["p_value"] is None for r in rows)
