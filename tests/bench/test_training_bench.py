"""bench/training.py runs on a tiny model and reports every mode, with folding checked to be the same computation."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_training", REPO / "bench" / "training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_table(tiny_llava_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    bench = load_bench()
    assert (
        bench.main(
            [
                "--model",
                str(tiny_llava_dir),
                "--batch",
                "2",
                "--repeats",
                "1",
                "--out",
                str(tmp_path / "t.md"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert table.strip() == (tmp_path / "t.md").read_text().strip()
    params = dict(re.findall(r"^\| ([^|]+?) \| ([\d,]+) \|", table, flags=re.M))
    assert params["V-SEAM scales step"] == "16"  # 4 layers x 4 heads: nothing else trains
    assert (
        int(params["peft IA3 step"].replace(",", "")) > 16
        and int(params["peft LoRA r=8 step"].replace(",", "")) > 16
    )
    for row in ("no modulation", "scales attached (hooks)", "scales folded into o_proj"):
        assert re.search(rf"^\| {re.escape(row)} \| [\d.]+ \| [\d.]+ \|$", table, flags=re.M), row
    attached, folded = re.search(r"folded vs attached loss: ([\d.]+) vs ([\d.]+)", table).groups()
    assert abs(float(attached) - float(folded)) < 1e-4
