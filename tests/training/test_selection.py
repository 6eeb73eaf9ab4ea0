"""Learning that cannot make a model worse: bounded scales, decay toward 1, the best validation candidate (not the
last step), and the do-no-harm check against the identity — each against hand-computed expectations."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import fit
from vseam_pl.evaluation import Outcome
from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.selection import ValidationSelection


def outcomes(modulated: list[bool], baseline: list[bool] | None = None, per_image: int = 1) -> list[Outcome]:
    """Validation outcomes: question i about image i // per_image."""
    return [
        Outcome(
            key=i,
            benchmark="pope",
            question_id=str(i),
            level=None,
            group="random",
            answer="yes",
            baseline=None,
            modulated="yes",
            baseline_correct=None if baseline is None else baseline[i],
            modulated_correct=ok,
            image_id=f"img{i // per_image}",
        )
        for i, ok in enumerate(modulated)
    ]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=12, n_val=4, n_test=8
    )


def state(value: float) -> list[torch.Tensor]:
    return [torch.full((2, 2), value)]


def test_the_best_candidate_is_kept_not_the_last_and_ties_keep_the_earlier():
    sel = ValidationSelection()
    base = [False] * 10
    assert sel.observe(0, outcomes([True] * 5 + [False] * 5, base), state(1.0))
    assert sel.observe(100, outcomes([True] * 8 + [False] * 2, base), state(0.5))
    assert not sel.observe(200, outcomes([True] * 8 + [False] * 2), state(0.7))  # a tie: the earlier stays
    assert not sel.observe(300, outcomes([True] * 3 + [False] * 7), state(0.9))  # the last, and worse
    assert sel.best.step == 100 and torch.equal(sel.best.state[0], torch.full((2, 2), 0.5))
    assert sel.history == [(0, 0.5), (100, 0.8), (200, 0.8), (300, 0.3)]


def test_do_no_harm_uses_the_exact_image_clustered_test():
    # 5 images each gaining one question: the exact sign-flip p is 2 / 2^5 = 0.0625 -> not below 0.05: identity
    sel = ValidationSelection(alpha=0.05)
    sel.observe(1, outcomes([True] * 5, [False] * 5), state(0.5))
    d = sel.decide()
    assert d.used == "identity" and d.p_value == pytest.approx(2 / 32) and d.delta == pytest.approx(1.0)
    assert "does not beat the identity" in d.reason
    # 6 images: p = 2 / 64 < 0.05 -> the selected scales are used
    sel = ValidationSelection(alpha=0.05)
    sel.observe(1, outcomes([True] * 6, [False] * 6), state(0.5))
    d = sel.decide()
    assert d.used == "selected" and d.p_value == pytest.approx(2 / 64) and d.selected_step == 1
    # the same 6 gains as 3 images of 2 questions: p = 2 / 8 -> identity (questions of one image are not independent)
    sel = ValidationSelection(alpha=0.05)
    sel.observe(1, outcomes([True] * 6, [False] * 6, per_image=2), state(0.5))
    assert sel.decide().used == "identity" and sel.decide().p_value == pytest.approx(2 / 8)


def test_a_candidate_worse_than_the_identity_is_never_used():
    sel = ValidationSelection(alpha=1.0)  # even with no significance needed
    sel.observe(0, outcomes([False] * 20, [True] * 20), state(0.0))
    d = sel.decide()
    assert d.used == "identity" and d.delta == pytest.approx(-1.0)
    sel = ValidationSelection(alpha=None)  # the check off: used whatever, and said so
    sel.observe(0, outcomes([False] * 20, [True] * 20), state(0.0))
    assert sel.decide().used == "selected" and "check off" in sel.decide().reason


def test_no_validation_means_the_last_step_said_so():
    d = ValidationSelection().decide()
    assert d.used == "last" and "no full validation pass" in d.reason


def test_selection_state_round_trips_through_a_checkpoint(tmp_path):
    sel = ValidationSelection()
    sel.observe(7, outcomes([True, False, True], [False, False, True]), state(0.25))
    path = tmp_path / "sel.pt"
    torch.save({"s": sel.state_dict()}, path)
    back = ValidationSelection()
    back.load_state_dict(torch.load(path, weights_only=True)["s"])
    assert back.best.step == 7 and back.history == [(7, 2 / 3)]
    assert back.decide().to_dict() == sel.decide().to_dict()


@pytest.fixture()
def module(tiny_llava_dir, one_thread):
    return HeadModulationModule(model=str(tiny_llava_dir))


def test_fit_end_loads_the_selected_candidate(module):
    sel = module.selection
    sel.observe(0, outcomes([True] * 4 + [False] * 16, [True] * 4 + [False] * 16), [torch.ones(4, 4)])
    best = torch.rand(4, 4) * 2
    sel.observe(50, outcomes([True] * 20, None), [best])  # +80 points on 20 images
    sel.observe(100, outcomes([True] * 10 + [False] * 10, None), [torch.zeros(4, 4)])  # the last
    module.on_fit_end()
    assert module.decision.used == "selected" and module.decision.selected_step == 50
    torch.testing.assert_close(module.modulation.scales.detach(), best)
    assert module.rejected_state is None


def test_fit_end_falls_back_to_the_identity_loudly_and_keeps_the_learned(module):
    learned = torch.full((4, 4), 0.3)
    module.selection.observe(0, outcomes([True] * 10, [True] * 10), [torch.ones(4, 4)])
    module.selection.observe(10, outcomes([True] * 9 + [False], None), [learned])
    with torch.no_grad():
        module.modulation.scales.copy_(learned)
    with pytest.warns(UserWarning, match="NO GAIN: the learned scales are NOT used"):
        module.on_fit_end()
    assert module.decision.used == "identity"
    assert torch.equal(module.modulation.scales.detach(), torch.ones(4, 4))
    torch.testing.assert_close(module.rejected_state[0], torch.ones(4, 4))  # the best candidate: step 0


def test_scales_stay_in_bounds_under_a_huge_lr(tiny_llava_dir, tiny_world, one_thread):
    bounded = HeadModulationModule(model=str(tiny_llava_dir), lr=50.0, scale_l2=0.0, select_on_val=False)
    fit(bounded, tiny_world, steps=3)
    s = bounded.modulation.scales.detach()
    assert float(s.min()) >= 0.0 and float(s.max()) <= 2.0 and not torch.equal(s, torch.ones_like(s))
    # the same run unbounded leaves [0, 2]: the bound is what keeps it there
    free = HeadModulationModule(
        model=str(tiny_llava_dir), lr=50.0, scale_l2=0.0, scale_bounds=None, select_on_val=False
    )
    fit(free, tiny_world, steps=3)
    s = free.modulation.scales.detach()
    assert float(s.min()) < 0.0 or float(s.max()) > 2.0


def test_weight_decay_pulls_scales_toward_one_not_zero(tiny_llava_dir, tiny_world, one_thread):
    lr, wd, steps = 1e-4, 1000.0, 3  # decay factor (1 - lr * wd) = 0.9 per step; Adam moves each scale <= ~lr
    module = HeadModulationModule(
        model=str(tiny_llava_dir), lr=lr, weight_decay=wd, scale_l2=0.0, select_on_val=False
    )
    with torch.no_grad():
        module.modulation.scales.fill_(0.2)
    fit(module, tiny_world, steps=steps)
    expected = 1 - 0.8 * (1 - lr * wd) ** steps  # 0.4168; decay toward 0 would give 0.2 * 0.9^3 = 0.1458
    torch.testing.assert_close(
        module.modulation.scales.detach(), torch.full((4, 4), expected), atol=steps * 2 * lr, rtol=0
    )


def test_negative_bounds_only_when_asked_and_bad_bounds_are_refused(tiny_llava_dir):
    with pytest.raises(ValueError, match="scale_bounds"):
        HeadModulationModule(model=str(tiny_llava_dir), scale_bounds=(2.0, 0.0))
    module = HeadModulationModule(model=str(tiny_llava_dir), scale_bounds=(-1.0, 2.0))
    assert module.hparams.scale_bounds == (-1.0, 2.0)
    assert HeadModulationModule(model=str(tiny_llava_dir)).hparams.scale_bounds == (0.0, 2.0)


@pytest.mark.parametrize("method", ["scales", "ia3", "lora", "shift", "lofit"])
def test_every_methods_identity_state_is_the_frozen_model(method, tiny_llava_dir, one_thread):
    """What the do-no-harm check writes when learning did not help must be a no-op for every trainable method:
    after random training values, loading `identity_state()` gives the frozen model's loss exactly."""
    from tests.helpers import make_images
    from vseam_pl.baselines import HeadShiftModule, LoFiTScalingModule, PeftAdapterModule
    from vseam_pl.prompts import build_prompts
    from vseam_pl.scoring import answer_loss

    model = str(tiny_llava_dir)
    module = {
        "scales": lambda: HeadModulationModule(model=model),
        "ia3": lambda: PeftAdapterModule(adapter="ia3", model=model),
        "lora": lambda: PeftAdapterModule(adapter="lora", model=model),
        "shift": lambda: HeadShiftModule(shift_heads=[(0, 1), (2, 3)], model=model),
        "lofit": lambda: LoFiTScalingModule(model=model),
    }[method]()
    prompts, images = build_prompts(module.vlm, ["is there a dog?"]), make_images(1)
    with module.unmodulated():
        frozen = answer_loss(module.vlm, prompts, images, ["yes"])
    with torch.no_grad():
        for p in module.trainable_parameters():
            p.add_(torch.randn_like(p))
    assert not torch.allclose(answer_loss(module.vlm, prompts, images, ["yes"]), frozen)  # really perturbed
    module.load_trainable_state(module.identity_state())
    torch.testing.assert_close(
        answer_loss(module.vlm, prompts, images, ["yes"]), frozen, rtol=1e-5, atol=1e-6
    )
