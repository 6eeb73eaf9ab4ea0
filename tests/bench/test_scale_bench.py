"""bench.scale: the big presets are the real architectures (built on the meta device, no memory), and the `tiny`
preset runs every part end to end and writes the JSON the GPU run will write."""

from __future__ import annotations

import json

import pytest
import torch

from bench import scale


@pytest.mark.parametrize(
    ("preset", "params", "grid", "rel"),
    [
        (
            "llava-1.5-7b",
            7_063_427_072,
            (32, 32, 4096),
            0.0,
        ),  # llava-hf/llava-1.5-7b-hf's parameter count, exactly
        ("instructblip-vicuna-7b", 7.9e9, (32, 32, 4096), 0.01),  # "7.9B" (Salesforce/instructblip-vicuna-7b)
    ],
)
def test_big_presets_are_the_real_architectures(preset, params, grid, rel):
    vlm = scale.build_vlm(preset, ["dog", "cat"], torch.device("meta"))
    assert sum(p.numel() for p in vlm.model.parameters()) == pytest.approx(params, rel=rel)
    assert (vlm.num_layers, vlm.num_heads, vlm.hidden_size) == grid
    assert vlm.dtype == torch.bfloat16


def test_big_presets_refuse_cpu(capsys):
    assert scale.main(["--preset", "llava-1.5-7b", "--device", "cpu"]) == 2
    assert "needs a GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_preset_end_to_end(tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert (
        scale.main(["--preset", "tiny", "--batch-sizes", "16", "--eval-batch-sizes", "2", "--json", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["preset"] == "tiny" and r["model"]["image_tokens"] == 16 and r["model"]["layers"] == 8
    d = r["discovery"]
    (row,) = d["batched_ablation"]
    assert row["batch_size"] == 16 and row["max_abs_diff_vs_loop"] <= 1e-6 < row["max_abs_score"]
    assert d["per_head_loop"]["heads_run"] == 64 and row["rows_per_s"] > 0
    assert d["patching"]["attribution"]["spearman_rho"] >= 0.8
    assert -1 <= d["patching"]["atp_star"]["magnitude_spearman_rho_vs_abs_exact"] <= 1
    steps = r["training"]["steps"]
    assert (
        steps["scales"]["trainable"] == 64
        and steps["ia3"]["trainable"] > 64
        and steps["lora"]["trainable"] > 64
    )
    assert steps["frozen_forward"]["time_vs_forward"] == 1.0
    inf = r["training"]["inference"]
    assert inf["folded_loss"] == pytest.approx(inf["attached_loss"], rel=1e-4)
    alt = inf["alternated"]
    assert len(alt["none"]["ms"]) == len(alt["folded"]["ms"]) == alt["repeats"] > 1
    lo, hi = alt["folded"]["vs_none_per_round"]
    assert lo <= hi and alt["folded"]["min_ms"] <= alt["folded"]["median_ms"] <= alt["folded"]["max_ms"]
    assert len(steps["scales"]["times"]["ms"]) == len(steps["frozen_forward"]["times"]["ms"])
    assert r["environment"]["torch_threads"] == 1 and len(r["environment"]["load_average"]) == 3
    assert len(r["load_average_at_end"]) == 3
    assert {(e["mode"], e["batch_size"]) for e in r["evaluation"]} == {("closed_set", 2), ("generation", 2)}
    assert all(e["questions_per_s"] > 0 and "peak_memory" in e for e in r["evaluation"])
    assert set(r["targets"]) == {
        "batched_ablation_10x_loop",
        "attribution_100x_exact_at_rho_0.8",
        "scales_step_3x_forward_less_memory_than_peft",
        "folded_1.01x_unmodulated",
    }
    assert "batched exact ablation, batch 16" in printed and "questions/s" in printed
