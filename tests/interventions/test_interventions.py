"""One hook engine serves every site: `head`, `attn`, `mlp` and `resid` of the embedded tiny-llava, each checked
against a hand-written forward of the decoder layer (the model's own norms, projections and MLP called directly)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import make_images
from vseam_pl.encoding import encode
from vseam_pl.interventions import SITES, cache, hooks
from vseam_pl.pairs import load_pairs, select_pairs, write_pairs
from vseam_pl.prompts import build_prompts
from vseam_pl.records import ImagePair
from vseam_pl.vlm import load_vlm

EMBEDDED = Path(__file__).resolve().parents[2] / "checkpoints" / "tiny-llava"
LAYER = 2


@pytest.fixture(scope="module")
def vlm(one_thread):
    return load_vlm(str(EMBEDDED))


@pytest.fixture(scope="module")
def inputs(vlm):
    prompts = build_prompts(vlm, ["is there a dog?", "what color is the car?"])
    return encode(vlm, prompts, make_images(2, seed=3)).to(vlm.device, vlm.model.dtype).inputs


def _zero(layer: int, x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


def _hidden_states(vlm, inputs) -> tuple[torch.Tensor, ...]:
    """The model's own per-layer residual stream: [0] = the decoder input, [l + 1] = layer l's output."""
    with torch.no_grad():
        return vlm.model(**inputs, output_hidden_states=True).hidden_states


@torch.no_grad()
def test_unhooked_sites_are_the_hand_written_layer(vlm, inputs):
    """`head` is o_proj's input split per head, `attn` = o_proj(head), `mlp` = mlp(norm(x + attn)), `resid` = x +
    attn + mlp (the layer's output), with x the residual entering the layer."""
    with cache(vlm, SITES, layers=[LAYER]) as cached:
        vlm.model(**inputs)
    hidden = _hidden_states(vlm, inputs)
    layer = vlm.layers[LAYER]
    z = cached["head"][LAYER]
    assert z.shape[-2:] == (vlm.num_heads, vlm.head_dim)
    attn = F.linear(z.flatten(-2), layer.self_attn.o_proj.weight, layer.self_attn.o_proj.bias)
    torch.testing.assert_close(cached["attn"][LAYER], attn)
    mid = hidden[LAYER] + attn
    mlp = layer.mlp(layer.post_attention_layernorm(mid))
    torch.testing.assert_close(cached["mlp"][LAYER], mlp)
    torch.testing.assert_close(cached["resid"][LAYER], mid + mlp)
    torch.testing.assert_close(cached["resid"][LAYER], hidden[LAYER + 1])


@torch.no_grad()
def test_zeroing_every_head_equals_zeroing_the_attention_output(vlm, inputs):
    """With a bias-free o_proj, z = 0 for every head of a layer and attention output = 0 are the same intervention;
    the layer then computes x + mlp(norm(x)) (written out by hand here), and so do the logits agree."""
    assert vlm.o_proj(LAYER).bias is None
    out = {}
    for site in ("head", "attn"):
        with hooks(vlm, site, _zero, [LAYER]), cache(vlm, ("resid",), layers=[LAYER]) as cached:
            out[site] = vlm.model(**inputs).logits, cached["resid"][LAYER]
    x = _hidden_states(vlm, inputs)[LAYER]  # unchanged: nothing before LAYER is hooked
    layer = vlm.layers[LAYER]
    hand = x + layer.mlp(layer.post_attention_layernorm(x))
    torch.testing.assert_close(out["head"][1], hand)
    torch.testing.assert_close(out["attn"][1], hand)
    torch.testing.assert_close(out["head"][0], out["attn"][0])
    assert not torch.allclose(out["head"][0], vlm.model(**inputs).logits, atol=1e-3)  # the intervention bites


@torch.no_grad()
def test_mlp_and_resid_hooks_rewrite_what_the_next_layer_reads(vlm, inputs):
    """Zeroing `mlp` leaves the layer output x + attn; replacing `resid` replaces what the next layer reads."""
    with cache(vlm, ("attn",), layers=[LAYER]) as clean:
        vlm.model(**inputs)
    x = _hidden_states(vlm, inputs)[LAYER]
    with hooks(vlm, "mlp", _zero, [LAYER]), cache(vlm, ("resid",), layers=[LAYER]) as cached:
        vlm.model(**inputs)
    torch.testing.assert_close(cached["resid"][LAYER], x + clean["attn"][LAYER])

    seen = {}

    def grab(module, args, kwargs) -> None:
        seen["x"] = (args[0] if args else kwargs["hidden_states"]).clone()

    handle = vlm.layers[LAYER + 1].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with hooks(vlm, "resid", lambda layer, h: h * 2, [LAYER]):
            vlm.model(**inputs)
    finally:
        handle.remove()
    torch.testing.assert_close(seen["x"], 2 * _hidden_states(vlm, inputs)[LAYER + 1])


def _hook_count(vlm) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in vlm.model.modules())


def test_hooks_refuse_unknown_sites_and_layers(vlm):
    before = _hook_count(vlm)
    with pytest.raises(ValueError, match="unknown hook site 'z'"):
        with hooks(vlm, "z", _zero):
            pass
    with pytest.raises(IndexError, match="layer 8 outside"):
        with hooks(vlm, "mlp", _zero, [vlm.num_layers]):
            pass
    with hooks(vlm, "head", _zero), cache(vlm, SITES):
        assert _hook_count(vlm) == before + 5 * vlm.num_layers
    assert _hook_count(vlm) == before  # nothing left behind


def _pair(i: int, category: str) -> ImagePair:
    return ImagePair(f"p{i}", "is it?", "c.png", "e.png", "yes", "no", category=category)


def test_load_pairs_is_select_pairs_over_the_manifest(tmp_path):
    pairs = [_pair(0, "Color"), _pair(1, "Animal"), _pair(2, "color"), _pair(3, "Spatial"), _pair(4, "Blob")]
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    ids = lambda ps: [p.pair_id for p in ps]  # noqa: E731
    assert ids(load_pairs(tmp_path, categories=["COLOR"])) == ["p0", "p2"]
    assert ids(select_pairs(pairs, ["attribute", "unknown"], limit=2)) == ["p0", "p2"]
    assert ids(load_pairs(tmp_path, ["unknown"])) == ["p4"]
    with pytest.raises(ValueError, match="no pairs left"):
        load_pairs(tmp_path, categories=["Vehicle"])
    assert select_pairs(pairs, categories=["Vehicle"]) == []
    with pytest.raises(ValueError, match="limit must be a positive"):
        select_pairs(pairs, limit=0)
