"""bench.training runs on a tiny model and reports every mode, with folding checked to be the same computation."""

from __future__ import annotations

import re

import torch

from bench import _env
from bench import training as bench


def test_bench_table(tiny_llava_dir, tmp_path, capsys):
    torch.set_num_threads(1)
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
    assert "inference timed in 1 alternated rounds; per-round ratio to none: attached" in table
    assert re.search(r"^load average at start \[[\d., ]+\], at end \[[\d., ]+\]$", table, flags=re.M)


def test_variants_are_timed_in_turns_with_every_repeat_kept():
    """A B A B ...: a load change during the run hits both variants, and the spread shows it."""
    calls: list[str] = []
    out = bench.alternated_ms(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, torch.device("cpu")
    )
    assert calls == ["a", "b"] * 4  # one untimed call each, then 3 rounds
    assert len(out["a"]["ms"]) == len(out["b"]["ms"]) == 3
    assert out["a"]["min_ms"] <= out["a"]["median_ms"] <= out["a"]["max_ms"]


def test_environment_records_threads_and_load():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        env = _env.environment()
    finally:
        torch.set_num_threads(threads)
    assert env["torch_threads"] == 1 and len(env["load_average"]) == 3 and env["cpu_count"] >= 1
