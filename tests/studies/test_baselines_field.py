"""Field baselines at V-SEAM's hook site: ITI-style additive head shifts (mass-mean or learned) and LoFiT-style
selection (L1-sparse scales, then bias vectors on the selected heads), against hand-written references."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import data, fit, frozen_state, make_images
from vseam_pl.baselines import (
    HeadShift,
    HeadShiftModule,
    L1ScalesModule,
    build_method,
    iti_shifts,
    lofit_heads,
    mass_mean_directions,
    top_heads,
    trainable_count,
)
from vseam_pl.prompts import build_prompts

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=5, n_train=16, n_val=4, n_test=8
    )


def logits(vlm, prompts, images):
    batch = vlm.processor(images=images, text=prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return vlm.model(**batch).logits


def test_head_shift_adds_each_vector_to_its_head_only(tiny_vlm):
    heads = [(0, 1), (2, 3), (2, 0)]
    shifts = torch.randn(3, tiny_vlm.head_dim, generator=torch.Generator().manual_seed(0))
    prompts, images = build_prompts(tiny_vlm, ["is there a dog?", "what color is the car?"]), make_images(2)
    base = logits(tiny_vlm, prompts, images)

    d = tiny_vlm.head_dim  # reference: add to the o_proj input columns of each head, by hand

    def add(layer):
        def hook(module, args):
            x = args[0].clone()
            for (lay, h), v in zip(heads, shifts, strict=True):
                if lay == layer:
                    x[..., h * d : (h + 1) * d] += v
            return (x,)

        return hook

    handles = [
        tiny_vlm.o_proj(layer).register_forward_pre_hook(add(layer)) for layer in range(tiny_vlm.num_layers)
    ]
    reference = logits(tiny_vlm, prompts, images)
    for h in handles:
        h.remove()
    shift = HeadShift(heads, tiny_vlm.head_dim, shifts).attach(tiny_vlm)
    torch.testing.assert_close(logits(tiny_vlm, prompts, images), reference, atol=1e-6, rtol=1e-6)
    assert (reference - base).abs().max() > 1e-3
    shift.detach()
    torch.testing.assert_close(logits(tiny_vlm, prompts, images), base)

    with pytest.raises(ValueError, match="outside"):
        HeadShift([(9, 0)], tiny_vlm.head_dim).attach(tiny_vlm)
    with pytest.raises(ValueError, match="distinct"):
        HeadShift([(0, 0), (0, 0)], tiny_vlm.head_dim)


def test_learned_shifts_are_the_only_trained_parameters(tiny_llava_dir, tiny_world):
    heads = [[1, 2], [3, 0]]
    module = HeadShiftModule(shift_heads=heads, model=str(tiny_llava_dir), lr=0.1, weight_decay=0.1)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"shift.shifts"} and trainable_count(module) == 2 * 16
    assert not module.modulation.attached and module.intervention_active
    base, scales = frozen_state(module), module.modulation.scales.detach().clone()
    fit(module, tiny_world)
    assert module.shift.shifts.detach().abs().sum() > 0  # learned from 0
    assert all(torch.equal(p, base[n]) for n, p in module.model.named_parameters())
    assert torch.equal(module.modulation.scales, scales) and module._trained_keys() == {"shift.shifts"}
    with module.unmodulated():
        assert not module.intervention_active
    assert module.intervention_active

    fixed = build_method(
        "iti_mass_mean",
        model=str(tiny_llava_dir),
        shift_kwargs={"shift_heads": heads, "shift_init": torch.ones(2, 16)},
    )
    assert trainable_count(fixed) == 0 and fixed.trainable_parameters() == []
    assert torch.equal(fixed.shift.shifts.detach(), torch.ones(2, 16))
    lofit = build_method(
        "lofit", model=str(tiny_llava_dir), shift_kwargs={"shift_heads": heads, "extra_trained": 16}
    )
    assert trainable_count(lofit) == 16 + 2 * 16
    with pytest.raises(ValueError, match="needs shift_kwargs"):
        build_method("iti_learned", model=str(tiny_llava_dir))


def test_l1_scales_loss_adds_the_penalty(tiny_llava_dir, tiny_world):
    module = L1ScalesModule(scale_l1=0.5, model=str(tiny_llava_dir))
    plain = L1ScalesModule(scale_l1=0.0, model=str(tiny_llava_dir))
    s = torch.ones(4, 4)
    s[0, 0], s[3, 2] = 1.8, 0.6  # mean |s - 1| = (0.8 + 0.4) / 16 = 0.075
    for m in (module, plain):
        with torch.no_grad():
            m.modulation.scales.copy_(s)
        m.log = lambda *a, **k: None  # no trainer attached: logging is not under test
    batch = next(iter(data(tiny_world).train_dataloader()))
    with torch.no_grad():
        diff = module.training_step(batch, 0) - plain.training_step(batch, 0)
    assert float(diff) == pytest.approx(0.5 * 0.075, rel=1e-5)


def test_top_heads_lofit_and_iti_selection_by_hand():
    score = torch.tensor([[0.1, 0.9], [0.5, 0.9]])
    assert top_heads(score, 3) == [(0, 1), (1, 1), (1, 0)]  # ties: earlier position first
    scales = torch.tensor([[1.0, 1.4], [0.5, 1.05]])
    assert lofit_heads(scales, 2) == [(1, 0), (0, 1)]  # |s - 1| = 0.5, 0.4

    direction = torch.zeros(2, 2, 2)
    direction[0, 0] = torch.tensor([3.0, 4.0])  # |d| = 5, sigma 10 -> separation 0.5
    direction[1, 1] = torch.tensor([0.0, 2.0])  # |d| = 2, sigma 1 -> separation 2
    sigma = torch.tensor([[10.0, 1.0], [1.0, 1.0]])
    heads, vecs = iti_shifts(direction, sigma, k=2, alpha=3.0)
    assert heads == [(1, 1), (0, 0)]
    torch.testing.assert_close(vecs, torch.tensor([[0.0, 3.0], [3 * 10 * 0.6, 3 * 10 * 0.8]]))


def test_mass_mean_directions_by_hand(tiny_vlm, tiny_world):
    from vseam_pl.discovery import load_pairs
    from vseam_pl.encoding import encode
    from vseam_pl.pairs import images_of, prepare_pairs

    items = prepare_pairs(tiny_vlm, load_pairs(tiny_world / "train" / "pairs" / "pairs.jsonl", limit=5))
    direction, sigma = mass_mean_directions(tiny_vlm, items, batch_size=2)
    assert direction.shape == (4, 4, 16) and sigma.shape == (4, 4)

    captured = {}  # reference: one forward per image, o_proj input at the last prompt token, by hand
    handle = tiny_vlm.o_proj(2).register_forward_pre_hook(
        lambda m, a: captured.__setitem__("x", a[0].detach())
    )
    acts = {"clean": [], "edited": []}
    for it in items:
        for which in acts:
            enc = encode(tiny_vlm, [it.prompt], images_of([it], which))
            with torch.no_grad():
                tiny_vlm.model(**enc.inputs)
            acts[which].append(
                captured["x"][0, int(enc.prompt_lengths[0]) - 1].view(4, 16)[1]
            )  # layer 2, head 1
    handle.remove()
    clean, edited = torch.stack(acts["clean"]), torch.stack(acts["edited"])
    expected = clean.mean(0) - edited.mean(0)
    torch.testing.assert_close(direction[2, 1], expected, atol=1e-5, rtol=1e-4)
    unit = expected / expected.norm()
    torch.testing.assert_close(sigma[2, 1], (torch.cat([clean, edited]) @ unit).std(), atol=1e-5, rtol=1e-4)
