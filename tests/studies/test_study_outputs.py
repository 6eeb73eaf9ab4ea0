"""`vseam compare`, `sweep` and `headroom` write under runs/ by default: the comparison, ablation and headroom files
shipped in docs/ are only replaced when `--out docs` asks for it (issue 30.4)."""

from __future__ import annotations

import pytest

from vseam_pl.studies import compare, headroom, sweep


@pytest.mark.parametrize(
    "module, default",
    [(compare, "runs/compare"), (sweep, "runs/ablation"), (headroom, "runs/headroom")],
)
def test_studies_write_under_runs_unless_asked(module, default):
    assert module.parse_args([]).out == default
    assert module.parse_args(["--out", "docs"]).out == "docs"
