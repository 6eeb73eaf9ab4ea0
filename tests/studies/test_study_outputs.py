"""`vseam compare`, `sweep` and `headroom` write under runs/ by default: the comparison, ablation and headroom files
shipped in docs/ are only replaced when `--out docs` asks for it (issue 30.4)."""

from __future__ import annotations

import pytest

from vseam_pl.studies import compare, headroom, sweep


@pytest.mark.parametrize(
    "parse, default",
    [
        (compare.parse_config, "runs/compare"),
        (sweep.parse_config, "runs/ablation"),
        (headroom.parse_config, "runs/headroom"),
    ],
)
def test_studies_write_under_runs_unless_asked(parse, default):
    assert parse([]).out == default
    assert parse(["--out", "docs"]).out == "docs"
