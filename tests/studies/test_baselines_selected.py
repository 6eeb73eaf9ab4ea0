"""`discovered_heads`: only discovery's top-K heads learn — the treatment the random-heads control is matched to."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import fit, frozen_state
from vseam_pl.baselines import SelectedHeadsModule, build_method, discovery_heads, head_mask, trainable_count
from vseam_pl.discovery.scores import HeadScores

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=5, n_train=16, n_val=4, n_test=8
    )


def test_only_the_selected_heads_learn(tiny_llava_dir, world):
    heads = [(0, 1), (2, 3), (3, 0)]
    module = SelectedHeadsModule(heads=heads, model=str(tiny_llava_dir), lr=0.2, weight_decay=0.5)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 1] = expected[2, 3] = expected[3, 0] = True
    assert torch.equal(module.head_mask, expected) and trainable_count(module) == 3
    before, base = module.modulation.scales.detach().clone(), frozen_state(module)
    fit(module, world)
    after = module.modulation.scales.detach()
    assert (after != before)[expected].any()
    assert torch.equal(after[~expected], before[~expected])
    assert all(torch.equal(p, base[n]) for n, p in module.model.named_parameters())


def test_discovery_heads_are_the_top_k_positive_and_negative_heads():
    score = torch.zeros(4, 4)
    score[1, 2], score[3, 3], score[0, 0] = 3.0, 2.0, -5.0  # two positive, one clearly negative head
    score[2, 1] = -1.0
    scores = HeadScores(method="ablation", scores={"all": {"signed": score}})
    assert discovery_heads(scores, 2) == [(0, 0), (1, 2), (2, 1), (3, 3)]
    assert discovery_heads(scores, 1) == [(0, 0), (1, 2)]


def test_a_head_outside_the_grid_or_an_empty_selection_is_refused(tiny_llava_dir):
    with pytest.raises(ValueError, match=r"head \(4, 0\) is outside the 4x4 grid"):
        head_mask(4, 4, [(4, 0)])
    with pytest.raises(ValueError, match="no heads selected"):
        head_mask(4, 4, [])
    with pytest.raises(ValueError, match="needs selected_heads"):
        build_method("discovered_heads", model=str(tiny_llava_dir))
