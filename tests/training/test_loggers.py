"""`train.py --trainer.logger ...`: the CSV logger (documented example in docs/sharing.md) and, when the `wandb`
extra is installed, W&B in offline mode (nothing leaves the machine)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import train
from vseam_pl.report import read_metrics_json


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=16, n_val=8, n_test=8
    )


def common(model: Path, world: Path) -> list[str]:
    return [
        "--model.model",
        str(model),
        "--data",
        "vseam_pl.data.GQADataModule",
        "--data.root",
        str(world),
        "--data.batch_size",
        "8",
        "--data.num_workers",
        "0",
        "--synth_root",
        "null",
        "--trainer.max_steps",
        "3",
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks",
        "[]",
    ]


def test_csv_logger_through_trainer_logger(tiny_llava_dir, tiny_world, tmp_path, one_thread):
    # The example of docs/sharing.md ("Loggers"), with the tiny model and world.
    train.main(
        [
            *common(tiny_llava_dir, tiny_world),
            "--trainer.logger",
            "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir",
            str(tmp_path / "logs"),
            "--trainer.logger.name",
            "vseam",
        ]
    )
    run = tmp_path / "logs" / "vseam" / "version_0"
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = set(rows[0])
    assert {"train/loss", "val/gqa/accuracy", "val/gqa/baseline_accuracy", "scales/mean", "step"} <= columns
    assert sum(bool(r["train/loss"]) for r in rows) == 3 and any(r["val/gqa/accuracy"] for r in rows)
    final = [
        r for r in rows if r["test/gqa/accuracy/modulated"]
    ]  # the headline test numbers, as in TensorBoard
    report = read_metrics_json(run / "metrics.json")  # outputs go to the logger's run dir
    overall = report["rows"][0]
    assert len(final) == 1 and float(final[0]["test/gqa/accuracy/modulated"]) == pytest.approx(
        overall["modulated"]
    )
    assert "lr: 0.02" in (run / "hparams.yaml").read_text()
    assert overall["benchmark"] == "gqa" and (run / "head_scales.safetensors").exists()


def test_wandb_logger_offline(tiny_llava_dir, tiny_world, tmp_path, monkeypatch, one_thread):
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'vseam-pl[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    train.main(
        [
            *common(tiny_llava_dir, tiny_world),
            "--trainer.logger",
            "lightning.pytorch.loggers.WandbLogger",
            "--trainer.logger.offline",
            "true",
            "--trainer.logger.project",
            "vseam-test",
            "--trainer.logger.save_dir",
            str(tmp_path / "wandb"),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    runs = list((tmp_path / "wandb").rglob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))  # an offline run file, syncable later with `wandb sync`
    assert read_metrics_json(tmp_path / "out" / "metrics.json")["rows"]
