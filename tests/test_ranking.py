"""`vseam_pl.ranking.rank_heads`, the one head ranking: orders, ties, the sign filter and the NaN rule."""

from __future__ import annotations

import math

import pytest
import torch

from vseam_pl.discovery.scores import HeadScores, init_scales_from_scores
from vseam_pl.ranking import rank_heads


def _heads(ranked):
    return [(layer, head) for layer, head, _ in ranked]


def test_orders_and_ties_keep_grid_order():
    score = torch.tensor([[0.1, 0.9, -0.3], [0.9, -0.5, 0.3]])
    assert _heads(rank_heads(score, 6)) == [(0, 1), (1, 0), (1, 2), (0, 0), (0, 2), (1, 1)]
    assert _heads(rank_heads(score, 6, "smallest")) == [(1, 1), (0, 2), (0, 0), (1, 2), (0, 1), (1, 0)]
    # |0.3| ties twice: (0, 2) before (1, 2)
    assert _heads(rank_heads(score, 6, "abs")) == [(0, 1), (1, 0), (1, 1), (0, 2), (1, 2), (0, 0)]
    assert rank_heads(score, 2) == [(0, 1, pytest.approx(0.9)), (1, 0, pytest.approx(0.9))]
    assert len(rank_heads(score, 100)) == 6  # at most the grid


def test_signed_keeps_only_the_orders_sign():
    score = torch.tensor([[0.2, 0.0], [-0.1, 0.5]])
    assert _heads(rank_heads(score, 4, "largest", signed=True)) == [(1, 1), (0, 0)]
    assert _heads(rank_heads(score, 4, "smallest", signed=True)) == [(1, 0)]
    assert rank_heads(-score.abs() - 1, 4, "largest", signed=True) == []


def test_nan_ranks_after_every_number_in_every_order_and_has_no_sign():
    nan = float("nan")
    score = torch.tensor([[nan, 0.5, float("-inf")], [-0.5, nan, 0.0]])
    assert _heads(rank_heads(score, 6)) == [(0, 1), (1, 2), (1, 0), (0, 2), (0, 0), (1, 1)]
    assert _heads(rank_heads(score, 6, "smallest")) == [(0, 2), (1, 0), (1, 2), (0, 1), (0, 0), (1, 1)]
    assert _heads(rank_heads(score, 6, "abs")) == [(0, 2), (0, 1), (1, 0), (1, 2), (0, 0), (1, 1)]
    assert math.isnan(rank_heads(score, 6)[-1][2])  # reported as NaN, not as a made-up number
    assert _heads(rank_heads(score, 6, "largest", signed=True)) == [(0, 1)]
    assert _heads(rank_heads(score, 6, "smallest", signed=True)) == [(0, 2), (1, 0)]
    all_nan = torch.full((2, 2), nan)
    assert _heads(rank_heads(all_nan, 3)) == [(0, 0), (0, 1), (1, 0)]
    assert rank_heads(all_nan, 3, signed=True) == []


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="k must be >= 1"):
        rank_heads(torch.zeros(2, 2), 0)
    with pytest.raises(ValueError, match="unknown ranking order"):
        rank_heads(torch.zeros(2, 2), 1, "biggest")
    with pytest.raises(ValueError, match="order 'abs' has none"):
        rank_heads(torch.zeros(2, 2), 1, "abs", signed=True)
    with pytest.raises(ValueError, match=r"\[layers, heads\]"):
        rank_heads(torch.zeros(4), 1)


def test_head_scores_rank_nan_heads_last_in_fixed_size_sets():
    """The one place the NaN rule changed a ranking: discovery counted NaN as 0, which put a NaN head between the
    positive and the negative ones in `ranked_heads` (and reported it as 0.0); it now comes last."""
    signed = torch.tensor([[0.3, float("nan")], [-0.2, 0.1]])
    scores = HeadScores("patching", {"all": {"signed": signed}})
    assert _heads(scores.ranked_heads("all", "positive", 4)) == [(0, 0), (1, 1), (1, 0), (0, 1)]
    assert _heads(scores.ranked_heads("all", "negative", 4)) == [(1, 0), (1, 1), (0, 0), (0, 1)]
    assert _heads(scores.positive_heads("all", 4)) == [(0, 0), (1, 1)]
    assert _heads(scores.negative_heads("all", 4)) == [(1, 0)]
    scales = init_scales_from_scores(signed, "topk", k=1, up=2.0, down=0.5)
    assert scales.tolist() == [[2.0, 1.0], [0.5, 1.0]]
