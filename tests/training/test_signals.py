"""SIGTERM never ends `train.py` / `evaluate.py` with exit status 0: they exit 143, say what was saved and how to
resume, and a process busy in one long step still stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.signals import SIGTERM_STATUS, stop_on_sigterm

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=24, n_val=8, n_test=8
    )


def train_args(model: Path, world: Path, tmp_path: Path, max_epochs: int = 1000) -> list[str]:
    config = tmp_path / "recipe.yaml"  # no discovery callback; a checkpoint every step
    config.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [
                        {
                            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                            "init_args": {"save_last": True, "every_n_train_steps": 1},
                        }
                    ]
                }
            }
        )
    )
    return [
        *("-c", str(config), "--model.model", str(model), "--data", "vseam_pl.data.GQADataModule"),
        *("--data.root", str(world), "--data.batch_size", "8", "--data.num_workers", "0"),
        *("--synth_root", "null", "--trainer.max_epochs", str(max_epochs)),
        *("--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"),
        *("--output_dir", str(tmp_path / "out")),
    ]


@pytest.mark.slow
def test_sigterm_to_a_training_process_exits_143_naming_the_checkpoint(tiny_llava_dir, tiny_world, tmp_path):
    args = train_args(tiny_llava_dir, tiny_world, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # wait until it has checkpointed, however loaded the machine (no deadline: it can only hang, never trip)
        while not list((tmp_path / "runs").rglob("last.ckpt")) and proc.poll() is None:
            time.sleep(0.25)
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate()
    finally:
        proc.kill()
    err = err.decode()
    assert proc.returncode == SIGTERM_STATUS, err[-3000:]
    assert "stopped by SIGTERM" in err and "last.ckpt" in err and "--ckpt_path" in err, err[-3000:]
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_sigterm_in_a_long_training_step_stops_it_after_the_grace_period(
    tiny_llava_dir, tiny_world, tmp_path, monkeypatch, capsys, one_thread
):
    """Lightning only looks at the signal between batches; a step that never ends is stopped by the grace timer."""
    import train

    def long_step(self, batch, batch_idx):
        if self.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(600)  # one very long step: interrupted by the grace timer
        return step(self, batch, batch_idx)

    step = HeadModulationModule.training_step
    monkeypatch.setattr(HeadModulationModule, "training_step", long_step)
    main = stop_on_sigterm(train.main.__wrapped__, "train.py", grace_s=0.5)
    with pytest.raises(SystemExit) as e:
        main(train_args(tiny_llava_dir, tiny_world, tmp_path))
    assert e.value.code == SIGTERM_STATUS
    err = capsys.readouterr().err
    assert "stopped by SIGTERM" in err and "last checkpoint:" in err and "last.ckpt" in err, err
    assert not (tmp_path / "out").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_sigterm_during_the_last_evaluation_batch_exits_143_without_metrics(
    tiny_llava_dir, tiny_world, tmp_path, monkeypatch, capsys, one_thread
):
    """Lightning ignores SIGTERM on the last batch; before, evaluate.py then wrote metrics and exited 0."""
    import evaluate

    def killed_step(self, batch, batch_idx, dataloader_idx=0):
        os.kill(os.getpid(), signal.SIGTERM)
        return step(self, batch, batch_idx, dataloader_idx)

    step = HeadModulationModule.test_step
    monkeypatch.setattr(HeadModulationModule, "test_step", killed_step)
    out = tmp_path / "eval" / "metrics.json"
    with pytest.raises(SystemExit) as e:
        evaluate.main(
            [
                *("--model.model", str(tiny_llava_dir), "--data", "vseam_pl.data.GQADataModule"),
                *("--data.root", str(tiny_world), "--data.batch_size", "64", "--data.num_workers", "0"),
                *("--synth_root", "null", "--output", str(out), "--trainer.enable_progress_bar", "false"),
            ]
        )
    assert e.value.code == SIGTERM_STATUS
    assert "evaluate.py: stopped by SIGTERM" in capsys.readouterr().err and not out.exists()
