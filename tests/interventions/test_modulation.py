"""HeadModulation: only scales train; hooks equal a hand-written o_proj-input hook; fold/unfold exact; persistence."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import make_images
from vseam_pl.encoding import encode
from vseam_pl.interventions.ablation import ablate_heads, head_output_means
from vseam_pl.interventions.modulation import HeadModulation, ScalesMismatchError, unmodulated
from vseam_pl.prompts import build_prompts
from vseam_pl.scoring import answer_loss, forward_logits
from vseam_pl.vlm import load_vlm


def _batch(vlm, n=3):
    prompts = build_prompts(
        vlm, ["is there a dog?", "what color is the car?", "is the cat left of the bus?"][:n]
    )
    return encode(vlm, prompts, make_images(n))


def _random_scales(vlm, seed=1):
    mod = HeadModulation.for_vlm(vlm)
    with torch.no_grad():
        mod.scales.copy_(
            torch.rand(vlm.num_layers, vlm.num_heads, generator=torch.Generator().manual_seed(seed)) * 2
        )
    return mod


def test_only_scales_require_grad_and_receive_gradients(tiny_vlm):
    mod = HeadModulation.for_vlm(tiny_vlm).attach(tiny_vlm)
    trainable = [n for n, p in tiny_vlm.model.named_parameters() if p.requires_grad]
    assert trainable == [] and [n for n, p in mod.named_parameters() if p.requires_grad] == ["scales"]
    assert mod.scales.shape == (tiny_vlm.num_layers, tiny_vlm.num_heads) and torch.all(mod.scales == 1)
    prompts = build_prompts(tiny_vlm, ["is there a dog?", "is there a cat?"])
    images = make_images(2)
    answer_loss(tiny_vlm, prompts, images, ["yes", "no"]).backward()
    assert mod.scales.grad.abs().sum() > 0
    # the gradient is the loss's own slope: central differences on the two scales it is largest for
    top = mod.scales.grad.abs().flatten().topk(2).indices.tolist()
    for layer, head in [divmod(i, tiny_vlm.num_heads) for i in top]:
        losses = []
        for step in (1e-2, -1e-2):
            with torch.no_grad():
                mod.scales[layer, head] = 1 + step
                losses.append(answer_loss(tiny_vlm, prompts, images, ["yes", "no"]).item())
                mod.scales[layer, head] = 1
        slope = (losses[0] - losses[1]) / 2e-2
        assert mod.scales.grad[layer, head].item() == pytest.approx(slope, rel=0.05)
    mod.detach()


@pytest.mark.parametrize("fixture", ["tiny_llava_dir", "tiny_llava_gqa_dir", "tiny_instructblip_dir"])
def test_attached_scales_equal_hand_written_o_proj_hook(request, fixture):
    vlm = load_vlm(str(request.getfixturevalue(fixture)))
    enc = _batch(vlm)
    base = forward_logits(vlm, enc)
    mod = _random_scales(vlm)

    handles = []
    for layer in range(vlm.num_layers):  # independent reference: scale slices of the flat o_proj input

        def hook(module, args, layer=layer):
            x = args[0].clone()
            for h in range(vlm.num_heads):
                x[..., h * vlm.head_dim : (h + 1) * vlm.head_dim] *= mod.scales[layer, h].item()
            return (x,)

        handles.append(vlm.o_proj(layer).register_forward_pre_hook(hook))
    reference = forward_logits(vlm, enc)
    for h in handles:
        h.remove()

    mod.attach(vlm)
    modulated = forward_logits(vlm, enc)
    mod.detach()
    assert not torch.allclose(reference, base, atol=1e-4)  # the scales do something
    torch.testing.assert_close(modulated, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(forward_logits(vlm, enc), base)  # detach restores the model


def test_unmodulated_runs_the_frozen_model_and_reattaches_even_on_error(tiny_vlm):
    enc = _batch(tiny_vlm)
    base = forward_logits(tiny_vlm, enc)
    mod = _random_scales(tiny_vlm).attach(tiny_vlm)
    scaled = forward_logits(tiny_vlm, enc)
    assert not torch.allclose(scaled, base, atol=1e-4)
    with pytest.raises(KeyError), unmodulated(mod, tiny_vlm):
        assert not mod.attached
        torch.testing.assert_close(forward_logits(tiny_vlm, enc), base)
        raise KeyError("inside")
    assert mod.attached
    torch.testing.assert_close(forward_logits(tiny_vlm, enc), scaled)
    mod.detach()
    with unmodulated(mod, tiny_vlm), unmodulated(None, tiny_vlm):
        torch.testing.assert_close(forward_logits(tiny_vlm, enc), base)
    assert not mod.attached  # a detached modulation stays detached


def test_fold_matches_hooks_and_unfold_is_bit_exact(tiny_vlm):
    enc = _batch(tiny_vlm)
    mod = _random_scales(tiny_vlm)
    originals = [tiny_vlm.o_proj(i).weight.detach().clone() for i in range(tiny_vlm.num_layers)]
    mod.attach(tiny_vlm)
    hooked = forward_logits(tiny_vlm, enc)
    mod.detach()
    mod.fold(tiny_vlm)
    torch.testing.assert_close(forward_logits(tiny_vlm, enc), hooked, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="unfold"):
        mod.attach(tiny_vlm)
    mod.unfold()
    for i, w in enumerate(originals):
        assert torch.equal(tiny_vlm.o_proj(i).weight, w)


def test_save_load_roundtrip_and_mismatch_errors(tiny_vlm, tiny_llava_gqa_dir, tmp_path):
    mod = _random_scales(tiny_vlm)
    path = mod.save(tmp_path / "head_scales.safetensors")
    loaded = HeadModulation.load(path, tiny_vlm)
    assert torch.equal(loaded.scales, mod.scales) and loaded.model_name == tiny_vlm.name

    other = load_vlm(str(tiny_llava_gqa_dir))  # same grid, another model
    with pytest.raises(ScalesMismatchError, match="learned for model"):
        HeadModulation.load(path, other)
    assert HeadModulation.load(path, other, check_model=False).num_heads == 4

    wrong = HeadModulation(3, 4, 16, model_name=tiny_vlm.name).save(tmp_path / "wrong.safetensors")
    with pytest.raises(ScalesMismatchError, match="3x4 head grid"):
        HeadModulation.load(wrong, tiny_vlm)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ScalesMismatchError, match="junk.safetensors"):
        HeadModulation.load(tmp_path / "junk.safetensors")


def test_ablation_modes(tiny_vlm):
    enc = _batch(tiny_vlm)
    base = forward_logits(tiny_vlm, enc)
    # zero-ablating a head equals a scale of 0 on it
    mod = HeadModulation.for_vlm(tiny_vlm)
    with torch.no_grad():
        mod.scales[1, 2] = 0.0
    mod.attach(tiny_vlm)
    scaled = forward_logits(tiny_vlm, enc)
    mod.detach()
    with ablate_heads(tiny_vlm, [(1, 2)], mode="zero"):
        zeroed = forward_logits(tiny_vlm, enc)
    torch.testing.assert_close(zeroed, scaled)
    assert not torch.allclose(zeroed, base)
    # mean of the other heads, checked by hand at layer 0
    captured = {}
    with ablate_heads(
        tiny_vlm, [(0, 1)], mode="mean_others"
    ):  # pre-hooks run in order: capture after ablating
        hook = tiny_vlm.o_proj(0).register_forward_pre_hook(
            lambda m, a: captured.setdefault("x", a[0].clone())
        )
        forward_logits(tiny_vlm, enc)
    hook.remove()
    z = captured["x"].view(*captured["x"].shape[:-1], tiny_vlm.num_heads, tiny_vlm.head_dim)
    torch.testing.assert_close(z[..., 1, :], z[..., [0, 2, 3], :].mean(-2), atol=1e-6, rtol=1e-5)
    # dataset mean
    means = head_output_means(tiny_vlm, [enc.inputs])
    assert means.shape == (tiny_vlm.num_layers, tiny_vlm.num_heads, tiny_vlm.head_dim)
    with ablate_heads(tiny_vlm, [(2, 0)], mode="dataset_mean", means=means):
        assert not torch.allclose(forward_logits(tiny_vlm, enc), base)
    with pytest.raises(IndexError):
        with ablate_heads(tiny_vlm, [(99, 0)]):
            pass
    with pytest.raises(ValueError, match="needs `means`"):
        with ablate_heads(tiny_vlm, [(0, 0)], mode="dataset_mean"):
            pass
