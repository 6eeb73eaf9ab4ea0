"""The per-pair token figure says what its `[q]`, `[c]`, `[f]` marks mean (issue 30.10)."""

from __future__ import annotations

import numpy as np

from vseam_pl.tracing.plots import SITES, pair_token_figure, role_legend


def test_pair_token_figure_has_a_legend_for_its_role_marks():
    tokens, roles = ["is", "dog", "?"], ["question", "concept", "final"]
    fig = pair_token_figure(np.zeros((len(SITES), 4, 3)), tokens, roles)
    texts = fig.get_supxlabel()
    assert "[q] question token" in texts and "[c] the edited concept's word" in texts
    assert "[f] final position" in texts
    assert role_legend(["question", "final"]) == (
        "[q] question token   [f] final position (where the answer is predicted)"
    )
