"""bench.strategies on CPU: with bf16 frozen weights under bf16-mixed, the single-device run and FSDP
(`FrozenFSDPStrategy`, gloo, one process) pass every check (only the scales get gradients, the losses match, the
checkpoint holds only the scales); Lightning's own FSDPStrategy is refused on CPU, which is checked too. The JSON is
written after every leg, so a leg that raises keeps the rows of the legs before it."""

from __future__ import annotations

import json

import pytest
import torch

from bench import strategies


def test_lightning_refuses_fsdp_on_cpu():
    """Why the bench uses vseam_pl's subclass on CPU (if Lightning starts allowing it, this test says so)."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.strategies import FSDPStrategy

    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        Trainer(accelerator="cpu", devices=1, strategy=FSDPStrategy(), logger=False)
    Trainer(accelerator="cpu", devices=1, strategy=strategies.strategy_for("fsdp"), logger=False)


def test_single_device_and_fsdp_bf16_on_cpu(tiny_llava_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "strategies.json"
    code = strategies.main(
        [
            "--model",
            str(tiny_llava_dir),
            "--steps",
            "2",
            "--accelerator",
            "cpu",
            "--dtype",
            "bfloat16",
            "--precision",
            "bf16-mixed",
            "--atol",
            "5e-3",
            "--strategies",
            "auto",
            "fsdp",
            "deepspeed_stage_2",
            "--json",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    rows = {r["strategy"]: r for r in report["rows"]}
    assert code == 0, capsys.readouterr().out[-2000:]
    assert report["finished"] and report["environment"]["torch_threads"] == 1
    assert len(report["environment"]["load_average"]) == 3
    for name in ("auto", "fsdp"):
        row = rows[name]
        assert row["steps"] == 2 and row["params_with_grad"] == ["modulation.scales"], row
        assert row["checkpoint_keys"] == ["modulation.scales"], row
    assert rows["fsdp"]["loss_matches_single"] and rows["fsdp"]["max_scale_diff_vs_single"] < 0.01
    assert "CUDA" in rows["deepspeed_stage_2"]["skipped"]
    assert (
        not torch.distributed.is_initialized()
    )  # the FSDP leg's process group is released for what runs next


def test_a_leg_that_raises_keeps_the_earlier_rows(tiny_llava_dir, tmp_path, monkeypatch):
    """Each leg's row is written as it finishes: a failing leg is an `error` row, the others stay, exit 1."""
    torch.set_num_threads(1)
    real = strategies.run_one

    def run_one(name, *args, **kwargs):
        if name == "fsdp":
            raise RuntimeError("boom in the FSDP leg")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(strategies, "run_one", run_one)
    out = tmp_path / "strategies.json"
    args = ["--model", str(tiny_llava_dir), "--steps", "1", "--accelerator", "cpu", "--json", str(out)]
    code = strategies.main([*args, "--strategies", "auto", "fsdp"])
    rows = {r["strategy"]: r for r in json.loads(out.read_text())["rows"]}
    assert code == 1
    assert rows["auto"]["checkpoint_only_scales"] and rows["fsdp"] == {
        "strategy": "fsdp",
        "error": "RuntimeError: boom in the FSDP leg",
    }
