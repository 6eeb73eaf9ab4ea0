"""Baseline modules: random heads learn exactly K scales; peft IA3/LoRA train adapter weights only, on the decoder,
with the frozen base untouched; the method builder sets up each comparison method (tiny random models)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import data, fit, frozen_state
from vseam_pl.baselines import (
    METHODS,
    TRAINED,
    HeadShiftModule,
    PeftAdapterModule,
    RandomHeadsModule,
    SelectedHeadsModule,
    build_method,
    discovery_head_count,
    random_head_mask,
    trainable_count,
)
from vseam_pl.discovery import HeadScores, init_scales_from_scores
from vseam_pl.lit_module import HeadModulationModule

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=5, n_train=16, n_val=4, n_test=8
    )


def scores_with(signed: torch.Tensor) -> HeadScores:
    return HeadScores("ablation", {"all": {"signed": signed}})


# ---------------------------------------------------------------- random heads


def test_random_head_mask_picks_exactly_k_reproducibly():
    a = random_head_mask(4, 4, 5, seed=0)
    assert a.dtype == torch.bool and a.shape == (4, 4) and int(a.sum()) == 5
    assert torch.equal(a, random_head_mask(4, 4, 5, seed=0))
    assert any(not torch.equal(a, random_head_mask(4, 4, 5, seed=s)) for s in range(1, 4))
    assert int(random_head_mask(4, 4, 16, seed=1).sum()) == 16
    with pytest.raises(ValueError, match=r"in \[1, 16\] for a 4x4 grid, got 17"):
        random_head_mask(4, 4, 17, seed=0)
    with pytest.raises(ValueError, match="got 0"):
        random_head_mask(4, 4, 0, seed=0)


def test_random_heads_train_only_the_k_chosen_scales(tiny_llava_dir, tiny_world):
    # weight decay would move every scale under plain AdamW: the frozen heads must still not move
    module = RandomHeadsModule(
        num_random_heads=3, head_seed=7, model=str(tiny_llava_dir), lr=0.2, weight_decay=0.5
    )
    assert trainable_count(module) == 3 and int(module.head_mask.sum()) == 3
    assert torch.equal(module.head_mask, random_head_mask(4, 4, 3, seed=7))
    before, base = module.modulation.scales.detach().clone(), frozen_state(module)
    fit(module, tiny_world)
    after = module.modulation.scales.detach()
    changed = after != before
    assert changed.any() and not (changed & ~module.head_mask).any()
    assert torch.equal(after[~module.head_mask], before[~module.head_mask])
    assert all(torch.equal(p, base[n]) for n, p in module.model.named_parameters())


# ---------------------------------------------------------------- peft adapters


@pytest.mark.parametrize(
    ("adapter", "model_dir"),
    [("ia3", "tiny_llava_dir"), ("lora", "tiny_llava_dir"), ("lora", "tiny_instructblip_dir")],
)
def test_peft_adapter_trains_only_adapter_weights_on_the_decoder(adapter, model_dir, tiny_world, request):
    module = PeftAdapterModule(adapter=adapter, model=str(request.getfixturevalue(model_dir)), lr=0.05)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    marker = "ia3_l" if adapter == "ia3" else "lora_"
    assert trainable and all(marker in n for n in trainable)
    decoder_ids = {id(p) for p in module.vlm.decoder.parameters()}
    assert all(
        id(p) in decoder_ids for p in module.trainable_parameters()
    )  # decoder only, not vision/projector
    assert not module.modulation.attached and not module.modulation.scales.requires_grad
    # 4 layers, hidden 64: IA3 scales o_proj's 64 input channels; LoRA r=4 on q_proj and v_proj (64 -> 64 each)
    expected = 4 * 64 if adapter == "ia3" else 4 * 2 * (4 * 64 + 64 * 4)
    assert trainable_count(module) == expected

    adapters = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    base, scales = frozen_state(module), module.modulation.scales.detach().clone()
    fit(module, tiny_world)
    now = dict(module.named_parameters())
    assert any(not torch.equal(now[n], v) for n, v in adapters.items())  # the adapter learned
    assert all(
        torch.equal(p, base[n]) for n, p in module.model.named_parameters() if n in base
    )  # base frozen
    assert torch.equal(module.modulation.scales, scales)
    keep = module._trained_keys()
    assert keep and all(marker in k for k in keep)  # checkpoints hold the adapter only


def test_peft_unmodulated_is_the_frozen_model(tiny_llava_dir, tiny_world):
    from vseam_pl.scoring import answer_loss

    module = PeftAdapterModule(adapter="ia3", model=str(tiny_llava_dir), lr=0.3)
    reference = HeadModulationModule(model=str(tiny_llava_dir))
    reference.modulation.detach()
    fit(module, tiny_world, steps=2)
    batch = next(iter(data(tiny_world).test_dataloader()))
    records, prompts, images = module._inputs(batch)
    answers = [r.answer for r in records]
    with torch.no_grad():
        adapted = answer_loss(module.vlm, prompts, images, answers)
        assert module.intervention_active
        with module.unmodulated():
            assert not module.intervention_active
            disabled = answer_loss(module.vlm, prompts, images, answers)
        frozen = answer_loss(reference.vlm, prompts, images, answers)
    assert module.intervention_active
    assert torch.allclose(disabled, frozen, atol=1e-6) and not torch.allclose(adapted, frozen, atol=1e-6)


def test_peft_rejects_unknown_adapter(tiny_llava_dir):
    with pytest.raises(ValueError, match="adapter must be one of"):
        PeftAdapterModule(adapter="prefix", model=str(tiny_llava_dir))


# ---------------------------------------------------------------- the method builder


def test_build_method_sets_up_each_method(tiny_llava_dir):
    signed = torch.linspace(-1, 1, 16).view(4, 4)
    scales = init_scales_from_scores(scores_with(signed), rule="closed_form")
    kwargs = {
        "model": str(tiny_llava_dir),
        "discovery_scales": scales,
        "num_random_heads": 4,
        "selected_heads": [(0, 0), (1, 2), (3, 3)],
    }

    zero = build_method("zero_shot", **kwargs)
    assert not zero.intervention_active and trainable_count(zero) == 0
    closed = build_method("closed_form", **kwargs)
    assert closed.intervention_active and torch.equal(closed.modulation.scales.detach(), scales)
    assert trainable_count(closed) == 0
    learned = build_method("learned_discovery", **kwargs)
    assert torch.equal(learned.modulation.scales.detach(), scales) and trainable_count(learned) == 16
    ones = build_method("learned_ones", **kwargs)
    assert torch.equal(ones.modulation.scales.detach(), torch.ones(4, 4)) and trainable_count(ones) == 16
    # Every listed method builds its own setup: a name in METHODS that build_method did not really handle would come
    # back as a plain module, and TRAINED (which methods compare.py fits) must say which ones have anything to train.
    shift = {"shift_heads": [(0, 1), (2, 3)]}
    expected = {  # class, trainable parameters (tiny model: 4 layers x 4 heads, head_dim 16); None: peft's count
        "zero_shot": (HeadModulationModule, 0),
        "closed_form": (HeadModulationModule, 0),
        "learned_ones": (HeadModulationModule, 16),
        "learned_discovery": (HeadModulationModule, 16),
        "random_heads": (RandomHeadsModule, 4),
        "discovered_heads": (SelectedHeadsModule, 3),
        "ia3": (PeftAdapterModule, None),
        "lora": (PeftAdapterModule, None),
        "iti_mass_mean": (HeadShiftModule, 0),
        "iti_learned": (HeadShiftModule, 2 * 16),
        "lofit": (HeadShiftModule, 2 * 16),
    }
    for method in METHODS:
        module = build_method(method, **kwargs, shift_kwargs=shift)
        cls, count = expected[method]
        assert type(module) is cls, method
        assert trainable_count(module) == count if count is not None else trainable_count(module) > 0, method
        assert (trainable_count(module) > 0) == (method in TRAINED), method

    with pytest.raises(ValueError, match="needs discovery_scales"):
        build_method("closed_form", model=str(tiny_llava_dir))
    with pytest.raises(ValueError, match="needs num_random_heads"):
        build_method("random_heads", model=str(tiny_llava_dir))
    with pytest.raises(ValueError, match="unknown method 'dora'"):
        build_method("dora", model=str(tiny_llava_dir))


def test_discovery_head_count_is_top_k_positive_plus_negative():
    signed = torch.zeros(4, 4)
    signed[0, 0], signed[1, 1], signed[2, 2] = 3.0, 2.0, -1.0  # 2 positive, 1 negative, the rest exactly 0
    assert discovery_head_count(scores_with(signed), k=10) == 3
    assert discovery_head_count(scores_with(signed), k=1) == 2
    assert discovery_head_count(scores_with(torch.linspace(-1, 1, 16).view(4, 4)), k=5) == 10


def test_claimed_run_dir_refuses_results_of_changed_model_files(tmp_path):
    from vseam_pl.baselines import claim_run_dir, model_fingerprint

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights-v1")
    runs = tmp_path / "runs" / "model"
    first = claim_run_dir(runs, str(model))
    assert json.loads((runs / "model.json").read_text())["fingerprint"] == first == model_fingerprint(model)
    assert claim_run_dir(runs, str(model)) == first  # same files: resume allowed
    (model / "model.safetensors").write_bytes(b"weights-v2")
    with pytest.raises(ValueError, match=r"model\.json: results there were computed with other files"):
        claim_run_dir(runs, str(model))
    assert model_fingerprint("org/hub-model") == "org/hub-model"


def test_each_method_declares_settings_the_comparison_has():
    """A method's learning-rate setting is a field of the comparison's config (a typo would be an AttributeError
    mid-study), and only ITI / LoFiT choose their heads before they are built."""
    from dataclasses import fields

    from vseam_pl.baselines import BASELINES, REFERENCE
    from vseam_pl.studies.compare import CompareConfig

    names = {f.name: f for f in fields(CompareConfig)}
    for method in BASELINES.values():
        assert method.lr_setting in names and isinstance(getattr(CompareConfig(), method.lr_setting), float)
    assert {m.name for m in BASELINES.values() if m.head_selection} == {
        "iti_mass_mean",
        "iti_learned",
        "lofit",
    }
    assert REFERENCE in BASELINES and not BASELINES[REFERENCE].trained
