"""Field baselines at V-SEAM's hook site, against hand-written references: ITI as honest_llama implements it
(probes on the answer's truth, center-of-mass shifts at the last token) and LoFiT as lo-fit implements it (L1-sparse
per-head scaling vectors select the heads by norm, then bias vectors on them)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import data, fit, frozen_state, make_images
from vseam_pl.baselines import (
    HeadScaleVectors,
    HeadShift,
    HeadShiftModule,
    LoFiTScalingModule,
    build_method,
    lofit_heads,
    trainable_count,
)
from vseam_pl.iti import (
    AnswerActivations,
    answer_activations,
    com_directions,
    fit_logistic,
    iti_vectors,
    probe_accuracies,
    select_iti,
    split_questions,
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
    assert fixed.shift.positions == "last"  # honest_llama's ITI_Intervener: each forward's last token
    learned = build_method("iti_learned", model=str(tiny_llava_dir), shift_kwargs={"shift_heads": heads})
    assert (
        learned.shift.positions == "all"
    )  # trained: a last-token shift of a teacher-forced answer gets no gradient
    assert torch.equal(fixed.shift.shifts.detach(), torch.ones(2, 16))
    lofit = build_method(
        "lofit", model=str(tiny_llava_dir), shift_kwargs={"shift_heads": heads, "extra_trained": 16}
    )
    assert trainable_count(lofit) == 16 + 2 * 16
    with pytest.raises(ValueError, match="needs shift_kwargs"):
        build_method("iti_learned", model=str(tiny_llava_dir))


def test_head_shift_at_the_last_token_only(tiny_vlm):
    # honest_llama's ITI_Intervener adds at b[0, -1]: with a right-padded batch that is each row's last real token.
    from vseam_pl.encoding import encode
    from vseam_pl.scoring import forward_logits

    prompts = build_prompts(tiny_vlm, ["is there a dog?", "what color is the big red car on the left?"])
    enc = encode(tiny_vlm, prompts, make_images(2))
    last = enc.lengths - 1
    assert last[0] < last[1]  # row 0 is padded on the right
    with torch.no_grad():
        base = forward_logits(tiny_vlm, enc)
        shift = HeadShift([(1, 2)], tiny_vlm.head_dim, torch.full((1, 16), 3.0), positions="last").attach(
            tiny_vlm
        )
        shifted = forward_logits(tiny_vlm, enc)
        shift.detach()
    for row in range(2):
        n = int(last[row])
        torch.testing.assert_close(
            shifted[row, :n], base[row, :n]
        )  # causal: nothing before the last token moves
        assert (shifted[row, n] - base[row, n]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="positions must be one of"):
        HeadShift([(0, 0)], 16, positions="first")


def test_lofit_scaling_vectors_and_l1(tiny_llava_dir, tiny_world, tiny_vlm):
    vectors = HeadScaleVectors(4, 4, 16, seed=0)
    assert 0 < float(vectors.vectors.abs().max()) < 1e-2  # lo-fit's normal(0, 1e-3) start
    with torch.no_grad():
        vectors.vectors.copy_(torch.randn(4, 4, 16, generator=torch.Generator().manual_seed(1)))
    prompts, images = build_prompts(tiny_vlm, ["is there a dog?"]), make_images(1)
    d = tiny_vlm.head_dim  # reference: z_head * (1 + A_head) on the o_proj input, by hand

    def scale(layer):
        def hook(module, args):
            return (args[0] * (1 + vectors.vectors[layer].detach().reshape(-1)),)

        return hook

    handles = [tiny_vlm.o_proj(i).register_forward_pre_hook(scale(i)) for i in range(tiny_vlm.num_layers)]
    reference = logits(tiny_vlm, prompts, images)
    for h in handles:
        h.remove()
    vectors.attach(tiny_vlm)
    with torch.no_grad():
        torch.testing.assert_close(logits(tiny_vlm, prompts, images), reference, atol=1e-5, rtol=1e-5)
    vectors.detach()
    assert d == 16

    module = LoFiTScalingModule(lofit_l1=0.5, model=str(tiny_llava_dir))
    plain = LoFiTScalingModule(lofit_l1=0.0, model=str(tiny_llava_dir))
    assert {n for n, p in module.named_parameters() if p.requires_grad} == {"scaling.vectors"}
    assert trainable_count(module) == 4 * 4 * 16 and not module.modulation.attached
    a = torch.zeros(4, 4, 16)
    a[0, 0, :2], a[3, 2, 5] = 0.25, -0.5  # sum |A| = 1.0
    for m in (module, plain):
        with torch.no_grad():
            m.scaling.vectors.copy_(a)
        m.log = lambda *a, **k: None  # no trainer attached: logging is not under test
    batch = next(iter(data(tiny_world).train_dataloader()))
    with torch.no_grad():
        diff = module.training_step(batch, 0) - plain.training_step(batch, 0)
    assert float(diff) == pytest.approx(0.5 * 1.0, rel=1e-5)  # lo-fit's l1_lambda * sum |A|


def test_lofit_selection_by_vector_norm():
    vectors = torch.zeros(2, 2, 4)
    vectors[0, 0] = 0.3  # norm 0.6, largest element 0.3
    vectors[1, 1, 0] = 0.5  # norm 0.5, largest element 0.5: a scalar per head would pick this one first
    vectors[0, 1, :2] = 0.1  # norm 0.14
    assert lofit_heads(vectors, 2) == [(0, 0), (1, 1)]
    with pytest.raises(ValueError, match="norm of"):
        lofit_heads(torch.ones(2, 2), 1)
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        lofit_heads(vectors, 5)


def test_logistic_probe_solves_the_l2_objective():
    # At scikit-learn's optimum of 0.5|w|^2 + C sum logloss: w = C sum (y - p) x and sum (y - p) = 0 (KKT).
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 5, generator=gen)
    y = (torch.randn(40, generator=gen) > 0).long()
    w, b = fit_logistic(x, y, c=1.0)
    p = torch.sigmoid(torch.einsum("pnd,pd->pn", x.double(), w) + b[:, None])
    resid = y.double() - p
    torch.testing.assert_close(w, torch.einsum("pn,pnd->pd", resid, x.double()), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(resid.sum(1), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)


def test_probes_rank_the_head_that_reads_the_answer_and_com_shifts_by_hand():
    gen = torch.Generator().manual_seed(3)
    n_q = 50
    questions = torch.arange(n_q).repeat_interleave(2)
    labels = torch.tensor([1, 0] * n_q)
    acts = torch.randn(2 * n_q, 2, 3, 4, generator=gen)
    acts[:, 1, 2, 0] += 3.0 * (2 * labels - 1)  # head (1, 2) reads the answer's truth
    data = AnswerActivations(acts, labels, questions)
    train_q, val_q = split_questions(n_q, 0.2, seed=0)
    assert len(train_q) == 40 and len(val_q) == 10 and not set(train_q.tolist()) & set(val_q.tolist())
    accuracy = probe_accuracies(data, train_q, val_q)
    assert accuracy.shape == (2, 3) and accuracy[1, 2] == accuracy.max() and accuracy[1, 2] >= 0.95
    selection = select_iti(data, seed=0)
    assert selection.ranked[0] == (1, 2)
    direction = com_directions(data)
    torch.testing.assert_close(
        direction[1, 2], acts[labels == 1, 1, 2].mean(0) - acts[labels == 0, 1, 2].mean(0)
    )
    heads, vecs = selection.shifts(1, 15.0)
    unit = direction[1, 2] / direction[1, 2].norm()
    expected = 15.0 * (acts[:, 1, 2] @ unit).std() * unit  # validate_2fold.py: alpha * proj_val_std * unit
    assert heads == [(1, 2)]
    torch.testing.assert_close(vecs[0], expected)
    torch.testing.assert_close(iti_vectors(data, direction, heads, 15.0), vecs)


def test_answer_activations_by_hand(tiny_vlm, tiny_world):
    from vseam_pl.encoding import encode

    questions = ["is there a dog?", "is the car red?"]
    images = make_images(2)
    acts = answer_activations(
        tiny_vlm, questions, images, [("yes", "no"), ("yes", "no")], ["no", "Yes"], batch_size=3
    )
    assert acts.acts.shape == (4, 4, 4, 16)
    assert acts.labels.tolist() == [0, 1, 1, 0] and acts.questions.tolist() == [0, 0, 1, 1]
    captured = {}  # reference: one forward per (question, answer), o_proj input at the answer's last token
    handle = tiny_vlm.o_proj(2).register_forward_pre_hook(
        lambda m, a: captured.__setitem__("x", a[0].detach())
    )
    prompts = build_prompts(tiny_vlm, questions)
    for row, (q, answer) in enumerate([(0, "yes"), (0, "no"), (1, "yes"), (1, "no")]):
        enc = encode(tiny_vlm, [prompts[q]], [images[q]], [answer])
        with torch.no_grad():
            tiny_vlm.model(**enc.inputs)
        ref = captured["x"][0, int(enc.lengths[0]) - 1].view(4, 16)[1]  # layer 2, head 1
        torch.testing.assert_close(acts.acts[row, 2, 1], ref, atol=1e-5, rtol=1e-4)
    handle.remove()
    with pytest.raises(ValueError, match="not among"):
        answer_activations(tiny_vlm, questions[:1], images[:1], [("yes", "no")], ["maybe"])
