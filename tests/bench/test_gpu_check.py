"""scripts/gpu_check.sh on a bare box, rehearsed on CPU (issue 28): a venv that holds only the device box's packages
(scripts/box_env.py) cannot import the benches without the carried wheels, and the check itself installs them and runs
both steps with `python3` alone on PATH."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def box_python(tmp_path_factory) -> Path:
    """A `python3` (and no `python`) in a folder of its own, running a venv with only the box's packages."""
    root = tmp_path_factory.mktemp("box")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "box_env.py"), str(root / "venv")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {root / "venv" / "bin" / "python3"} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def box_env(box_python: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{box_python.parent}:/usr/bin:/bin"
    return env


@pytest.mark.slow  # builds a venv, then a fresh interpreter imports torch, lightning and transformers
def test_box_venv_lacks_what_the_box_lacks(box_python):
    """Without the carried wheel the benches fail at import, as on the box; torch and lightning are there."""
    env = box_env(box_python)
    ok = subprocess.run(
        ["python3", "-c", "import torch, lightning, transformers"], env=env, capture_output=True
    )
    assert ok.returncode == 0, ok.stderr.decode()[-2000:]
    bench = subprocess.run(
        ["python3", "-m", "bench.strategies", "--help"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert bench.returncode != 0 and "No module named 'jsonargparse'" in bench.stderr
    assert subprocess.run(["sh", "-c", "command -v python"], env=env, capture_output=True).returncode != 0


def test_box_packages_list_names_the_essentials():
    spec = importlib.util.spec_from_file_location("box_env", REPO / "scripts" / "box_env.py")
    box_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(box_env)
    names = set(box_env.box_packages())
    assert {"torch", "lightning", "transformers", "peft", "pip"} <= names
    assert "jsonargparse" not in names  # what the carried wheel is for
    wheels = sorted(p.name.split("-")[0] for p in (REPO / "bench" / "wheels").glob("*.whl"))
    assert wheels == ["jsonargparse"]


@pytest.mark.slow
def test_rehearsal_runs_both_steps(box_python, tmp_path):
    out = tmp_path / "out"
    env = {**box_env(box_python), "PRESET": "tiny"}
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    log = (out / "gpu_check.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert "== not installed here: jsonargparse" in log and "== installed bench/wheels/jsonargparse" in log
    scale = json.loads((out / "scale-tiny.json").read_text())
    assert "targets" in scale and scale["environment"]["load_average"]
    report = json.loads((out / "strategies-tiny.json").read_text())
    rows = {r["strategy"]: r for r in report["rows"]}
    assert report["finished"] and report["args"]["dtype"] == "bfloat16"
    assert rows["fsdp"]["loss_matches_single"] and rows["fsdp"]["checkpoint_only_scales"]
