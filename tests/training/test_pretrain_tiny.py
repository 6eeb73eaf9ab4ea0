"""`scripts/pretrain_tiny.py` end to end on a few steps: the vision stage, the language stage, a continuation stage,
and a folder that `load_vlm` reads like a hub model. Each test runs the script in a subprocess for tens of seconds,
so they are slow tests (CI runs them in its `-m slow` step)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vseam_pl import load_vlm

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pretrain_tiny.py"
FEW = [
    "--vision-steps",
    "3",
    "--vision-batch-size",
    "4",
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--eval-per-kind",
    "4",
]


def pretrain(*args: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch", ["llava", "instructblip"])
def test_stages_are_recorded_and_the_folder_loads(tmp_path, arch):
    first, second = tmp_path / "first", tmp_path / "second"
    pretrain("--arch", arch, "--out", str(first), *FEW)
    pretrain("--arch", arch, "--init-from", str(first), "--out", str(second), "--shift", "realistic", *FEW)
    record = json.loads((second / "pretraining.json").read_text())
    stage1, stage2 = record["stages"]
    assert [h["step"] for h in stage1["vision_history"]] == [1, 3]  # first and last step (--log-every is 50)
    assert stage2["vision_history"] == []  # a continuation does not redo the vision stage
    assert stage2["shift"] == {
        "yes_share": 0.7,
        "theme": 3.0,
        "salience": 0.9,
    }  # the instruction stage's shift
    final = stage2["history"][-1]
    assert final["step"] == 2 and set(final["heldout_accuracy"]) == {
        "gqa-object",
        "gqa-attribute",
        "gqa-relation",
        "pope",
        "pope-cooccur",
        "yes_rate",
    }
    assert all(0.0 <= v <= 1.0 for v in final["heldout_accuracy"].values())
    assert stage1["shift"] == {"yes_share": 0.5, "theme": 1.0, "salience": 0.5}
    vlm = load_vlm(str(second))
    assert (vlm.num_layers, vlm.num_heads) == (8, 8)
    assert not any(p.requires_grad for p in vlm.model.parameters())


def test_thread_benchmark_times_both_stages_of_both_architectures(tiny_llava_dir, tiny_instructblip_dir):
    models = [str(tiny_llava_dir), str(tiny_instructblip_dir)]
    args = ["--models", *models, "--threads", "1", "2", "--steps", "1", "--warmup", "0"]
    done = subprocess.run(  # as docs/benchmarks.md runs it: a module of the bench package, from the repo root
        [sys.executable, "-m", "bench.pretraining", *args],
        cwd=SCRIPT.parents[1],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [
        line.split(" | ")
        for line in done.stdout.splitlines()
        if line.startswith(f"| {tiny_llava_dir.name}") or line.startswith(f"| {tiny_instructblip_dir.name}")
    ]
    assert [(r[0].strip("| "), r[1]) for r in rows] == [
        (Path(m).name, s) for m in models for s in ("vision", "language")
    ]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 and r[5].strip(" |") in ("yes", "no") for r in rows)
