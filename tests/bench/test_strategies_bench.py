"""bench/strategies.py on CPU: the single-device run passes every check (only the scales get gradients, the
checkpoint holds only them); FSDP is reported skipped because Lightning refuses it on CPU, which is checked too."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def load_strategies():
    spec = importlib.util.spec_from_file_location("bench_strategies", REPO / "bench" / "strategies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_strategies"] = module
    spec.loader.exec_module(module)
    return module


def test_lightning_refuses_fsdp_on_cpu():
    """Why the FSDP path cannot be exercised on CPU here (if Lightning starts allowing it, this test says so)."""
    from lightning.pytorch import Trainer

    bench = load_strategies()
    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        Trainer(accelerator="cpu", devices=1, strategy=bench.strategy_for("fsdp"), logger=False)


def test_single_device_checks_and_skips_on_cpu(tiny_llava_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "strategies.json"
    code = load_strategies().main(
        [
            "--model",
            str(tiny_llava_dir),
            "--steps",
            "2",
            "--accelerator",
            "cpu",
            "--strategies",
            "auto",
            "fsdp",
            "deepspeed_stage_2",
            "--json",
            str(out),
        ]
    )
    rows = {r["strategy"]: r for r in json.loads(out.read_text())}
    assert code == 0, capsys.readouterr().out[-2000:]
    auto = rows["auto"]
    assert (
        auto["steps"] == 2
        and auto["only_scales_get_grad"]
        and auto["params_with_grad"] == ["modulation.scales"]
    )
    assert auto["checkpoint_only_scales"] and auto["checkpoint_keys"] == ["modulation.scales"]
    assert "requires a GPU" in rows["fsdp"]["skipped"] and "CUDA" in rows["deepspeed_stage_2"]["skipped"]
