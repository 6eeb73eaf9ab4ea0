"""`scripts/paper_claims.py`: the fixed rules decide "reproduced" from the studies' outputs as written in the script,
and the README table goes between its markers."""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "paper_claims.py"
spec = importlib.util.spec_from_file_location("paper_claims", SCRIPT)
claims = importlib.util.module_from_spec(spec)
spec.loader.exec_module(claims)


def sweep(runs: Path, low: float, full: float) -> None:
    folder = runs / "claim3-sweep"
    folder.mkdir(parents=True)
    summary = [
        {"fraction": f, "mean": m, "std": 0.0, "seeds": [0, 1, 2], "n_test": 1024, "zero_shot": 0.6}
        for f, m in ((0.1, low), (1.0, full))
    ]
    (folder / "ablation.json").write_text(json.dumps({"summary": summary}))


@pytest.mark.parametrize(("low", "full", "expected"), [(0.700, 0.705, True), (0.690, 0.701, False)])
def test_low_data_claim_is_within_one_point(tmp_path, low, full, expected):
    sweep(tmp_path, low, full)
    assert claims.claim3("m", tmp_path, Namespace())["reproduced"] is expected


@pytest.mark.parametrize(
    ("pos", "neg", "expected"),
    [((0.5, 0.3), (0.2, 0.35), True), ((0.5, 0.3), (0.4, 0.2), False), ((0.3, 0.3), (0.2, 0.4), False)],
)
def test_overlap_claim_needs_both_halves(tmp_path, pos, neg, expected):
    folder = tmp_path / "discovery-test"
    folder.mkdir()
    overlap = {
        "k": 8,
        "positive": {"within_level_category_mean": pos[0], "across_level_category_mean": pos[1]},
        "negative": {"within_level_category_mean": neg[0], "across_level_category_mean": neg[1]},
    }
    (folder / "overlap.json").write_text(json.dumps(overlap))
    args = Namespace(data_root="data/synth", pairs=96, top_k=8)  # the discovery is done already: not rerun
    assert claims.claim4("m", tmp_path, args)["reproduced"] is expected


def test_readme_table_replaces_only_the_marked_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- claims-table -->\nold\n<!-- /claims-table -->\nbottom\n")
    claims.write_readme_table(readme, "| new |")
    assert readme.read_text() == "top\n<!-- claims-table -->\n| new |\n<!-- /claims-table -->\nbottom\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="claims-table"):
        claims.write_readme_table(readme, "| new |")
