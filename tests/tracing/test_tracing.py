"""Causal tracing on tiny random-weight VLMs: token groups, batched patching vs hand-written hooks, planted
mechanisms, the logit lens, and the aggregation statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from tests.helpers import make_images
from vseam_pl.encoding import encode
from vseam_pl.interventions import Site
from vseam_pl.pairs import write_pairs
from vseam_pl.prompts import build_prompt
from vseam_pl.records import ImagePair
from vseam_pl.tracing.aggregate import aggregate, mean_band
from vseam_pl.tracing.layer_patching import layer_patching
from vseam_pl.tracing.logit_lens import logit_lens
from vseam_pl.tracing.pair import UntraceablePairError, trace_pair
from vseam_pl.tracing.patching import run_patches
from vseam_pl.tracing.positions import concept_words, image_token_id, token_groups
from vseam_pl.tracing.token_patching import SITES, by_role, token_patching
from vseam_pl.vlm import load_vlm

QUESTIONS = [  # (question, answer, edited answer, level, category, edit)
    ("Is there a dog in the image?", "yes", "no", "object", "Animal", {"from": "dog", "to": "cat"}),
    ("Is the car red?", "no", "yes", "attribute", "Color", {"from": "blue", "to": "red"}),
    (
        "Is the bird to the left of the bus?",
        "yes",
        "no",
        "relation",
        "Spatial",
        {"from": "left", "to": "right"},
    ),
]


def make_pairs(root, n: int = 3, seed: int = 0) -> list[ImagePair]:
    """`n` pairs with random-noise clean/edited images written as PNGs under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    images = make_images(2 * n, seed=seed)
    pairs = []
    for i in range(n):
        q, a, e, level, cat, edit = QUESTIONS[i % len(QUESTIONS)]
        clean, edited = root / f"c{i}.png", root / f"e{i}.png"
        images[2 * i].save(clean)
        images[2 * i + 1].save(edited)
        pairs.append(
            ImagePair(
                f"p{i}",
                q,
                str(clean),
                str(edited),
                a,
                e,
                level=level,
                category=cat,
                candidates=("yes", "no"),
                edit=edit,
                source=f"test:{i}",
            )
        )
    return pairs


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def llava(tiny_llava_dir):
    return load_vlm(str(tiny_llava_dir))


@pytest.fixture(scope="module")
def blip(tiny_instructblip_dir):
    """Tiny InstructBLIP whose (near-zero initialised) vision tower is re-drawn so the image changes the answer."""
    vlm = load_vlm(str(tiny_instructblip_dir))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in vlm.model.vision_model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return vlm


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


# -- token groups ---------------------------------------------------------------------------------------------


def test_image_positions_come_from_the_input_not_a_fixed_prefix(llava, blip):
    for vlm, n_image in (
        (llava, llava.model.config.image_seq_length),
        (blip, blip.model.config.num_query_tokens),
    ):
        prompt = build_prompt(vlm, "Is the car red?")
        enc = encode(vlm, [prompt], make_images(1))
        ids = enc.input_ids[0]
        g = token_groups(vlm, prompt, "Is the car red?", ids, int(enc.lengths[0]), ["red"])
        assert g.image == (ids == image_token_id(vlm)).nonzero().flatten().tolist()
        assert len(g.image) == n_image
        assert sorted(g.image + g.text) == list(range(len(ids)))
        assert [g.tokens[p] for p in g.question] == ["is", "the", "car", "red", "?"]
        assert [g.tokens[p] for p in g.concept] == ["red"]
        assert g.final == len(ids) - 1 and g.role(g.final) == "final"
    # LLaVA's template puts "USER:" first: the image does not start at position 0.
    assert (
        token_groups(
            llava,
            build_prompt(llava, "Is the car red?"),
            "Is the car red?",
            *_one(llava, build_prompt(llava, "Is the car red?")),
        ).image[0]
        == 2
    )


def _one(vlm, prompt):
    enc = encode(vlm, [prompt], make_images(1))
    return enc.input_ids[0], int(enc.lengths[0])


def test_image_placed_after_the_question_is_found_there(llava):
    prompt = "USER: is the dog red ? <image> ASSISTANT:"
    ids, length = _one(llava, prompt)
    g = token_groups(llava, prompt, "is the dog red ?", ids, length, ["dog"])
    assert g.image == list(range(7, 7 + llava.model.config.image_seq_length))
    assert [g.tokens[p] for p in g.question] == ["is", "the", "dog", "red", "?"] and g.question == [
        2,
        3,
        4,
        5,
        6,
    ]
    assert [g.tokens[p] for p in g.concept] == ["dog"]


def test_prompt_that_does_not_match_the_encoding_is_an_error(llava):
    ids, length = _one(llava, build_prompt(llava, "Is the car red?"))
    with pytest.raises(ValueError, match="not among the processor"):
        token_groups(llava, build_prompt(llava, "Is the bus red?"), "Is the bus red?", ids, length)
    with pytest.raises(ValueError, match="does not occur"):
        token_groups(llava, build_prompt(llava, "Is the car red?"), "Is the cat blue?", ids, length)


def test_concept_words_from_synthetic_and_diffusion_edits():
    base = dict(pair_id="x", question="q", clean_image="c", edited_image="e", answer="yes")
    assert concept_words(ImagePair(**base, edit={"kind": "recolor", "from": "red", "to": "blue"})) == [
        "red",
        "blue",
    ]
    assert concept_words(ImagePair(**base, edit={"target": "dog", "substitute": "cat", "steps": 30})) == [
        "dog",
        "cat",
    ]
    assert concept_words(ImagePair(**base)) == []


# -- batched patching equals hand-written hooks ---------------------------------------------------------------


def _hand_patch(vlm, pair, module_of, positions, prompt=None):
    """Clean output of `module_of(vlm)` copied into the edited run at `positions` with plain forward hooks, through
    the full model (vision tower included): returns log p(yes) - log p(no) at the last position."""
    prompt = prompt or build_prompt(vlm, pair.question)
    enc = encode(vlm, [prompt], [_open(pair.clean_image)])
    enc_e = encode(vlm, [prompt], [_open(pair.edited_image)])
    module = module_of(vlm)
    saved = {}

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    def save(m, a, out) -> None:
        saved["x"] = first(out).detach().clone()

    h = module.register_forward_hook(save)
    with torch.no_grad():
        vlm.model(**enc.inputs)
    h.remove()

    def patch(m, a, out):
        x = first(out).clone()
        x[:, positions] = saved["x"][:, positions]
        return (x, *out[1:]) if isinstance(out, tuple) else x

    h = module.register_forward_hook(patch)
    with torch.no_grad():
        logp = torch.log_softmax(vlm.model(**enc_e.inputs).logits[0, -1].float(), -1)
    h.remove()
    yes, no = (vlm.tokenizer.convert_tokens_to_ids(t) for t in ("yes", "no"))
    ld = logp[yes] - logp[no]
    return float(ld if pair.answer == "yes" else -ld)


def _open(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


@pytest.mark.parametrize("family", ["llava", "blip"])
def test_batched_patches_equal_hand_written_single_patches(request, family, pairs):
    vlm = request.getfixturevalue(family)
    pair = pairs[1]  # "Is the car red?", concept "red"
    tp = trace_pair(vlm, pair, ("resid", "attn", "mlp"))
    assert abs(tp.ld_clean - tp.ld_edited) > 1e-4, (
        "the images must change the answer for this test to mean anything"
    )
    layers = layer_patching(vlm, tp, batch_size=3)  # several batches, layer-sorted, mixed groups
    tokens, labels = token_patching(vlm, tp, batch_size=5)
    concept = labels["positions"].index(tp.groups.concept[0])
    final = labels["positions"].index(tp.groups.final)
    for layer in (1,):
        hand_img = _hand_patch(vlm, pair, lambda v, layer=layer: v.layers[layer], tp.groups.image)
        hand_txt = _hand_patch(vlm, pair, lambda v, layer=layer: v.layers[layer], tp.groups.text)
        hand_attn = _hand_patch(
            vlm, pair, lambda v, layer=layer: v.layers[layer].self_attn, [tp.groups.concept[0]]
        )
        hand_mlp = _hand_patch(vlm, pair, lambda v, layer=layer: v.layers[layer].mlp, [tp.groups.final])
        assert layers["ld"][0, layer] == pytest.approx(hand_img, abs=1e-5)
        assert layers["ld"][1, layer] == pytest.approx(hand_txt, abs=1e-5)
        assert tokens["ld"][SITES.index("attn"), layer, concept] == pytest.approx(hand_attn, abs=1e-5)
        assert tokens["ld"][SITES.index("mlp"), layer, final] == pytest.approx(hand_mlp, abs=1e-5)
    # recovery is the normalised logit difference of the same numbers
    expected = (layers["ld"] - tp.ld_edited) / (tp.ld_clean - tp.ld_edited)
    torch.testing.assert_close(layers["recovery"], expected)


def test_patching_identities_at_the_last_layer(llava, pairs):
    """After the last layer only the final position is read: text patching there restores the clean answer
    exactly, image patching there changes nothing."""
    for pair in pairs:
        tp = trace_pair(llava, pair)
        ld = layer_patching(llava, tp)["ld"]
        assert ld[1, -1] == pytest.approx(tp.ld_clean, abs=1e-5)
        assert ld[0, -1] == pytest.approx(tp.ld_edited, abs=1e-5)


def test_patching_a_clean_copy_of_the_edited_run_changes_nothing(llava, pairs):
    same = ImagePair("same", pairs[0].question, pairs[0].clean_image, pairs[0].clean_image, "yes", "no")
    tp = trace_pair(llava, same)
    out = layer_patching(llava, tp)
    torch.testing.assert_close(out["ld"], torch.full_like(out["ld"], tp.ld_edited), atol=1e-5, rtol=0)
    assert torch.isnan(out["recovery"]).all()  # LD_clean == LD_edited: recovery undefined, not invented


# -- planted mechanisms ---------------------------------------------------------------------------------------

PLANT = 2  # the planted layer (of 4)


def _zero_at(positions):
    def hook(module, args, out):
        if isinstance(out, tuple):
            x = out[0].clone()
            x[:, positions] = 0
            return (x, *out[1:])
        x = out.clone()
        x[:, positions] = 0
        return x

    return hook


def test_planted_attention_output_zeroed_at_image_positions(llava, pairs):
    """Plant: layer P's `self_attn` output is zeroed at the image positions, so attention writes nothing into the
    image tokens' residual stream at P. Consequence: patching the attention output at the image positions of
    layer P is overwritten by the plant and cannot change the answer; at the other layers it does. (Text
    positions still read the image tokens' keys/values at P, so this plant does not cut the image -> text route;
    the next test plants that.)"""
    pair = pairs[0]
    tp0 = trace_pair(llava, pair, ("attn",))
    image = tp0.groups.image
    specs = [Site("attn", layer, positions=tuple(image)) for layer in range(llava.num_layers)]
    free = run_patches(llava, tp0.run, tp0.clean, specs, tp0.answers).ld
    handle = llava.layers[PLANT].self_attn.register_forward_hook(_zero_at(image))
    try:
        tp = trace_pair(llava, pair, ("attn",))
        planted = run_patches(llava, tp.run, tp.clean, specs, tp.answers, batch_size=2).ld
        hand = _hand_patch(llava, pair, lambda v: v.layers[PLANT].self_attn, image)
    finally:
        handle.remove()
    assert planted[PLANT] == pytest.approx(tp.ld_edited, abs=1e-6)  # inert at the planted layer
    assert hand == pytest.approx(tp.ld_edited, abs=1e-5)
    assert abs(float(free[PLANT]) - tp0.ld_edited) > 1e-4  # ...but not without the plant
    for layer in range(PLANT):
        assert abs(float(planted[layer]) - tp.ld_edited) > 1e-4


def test_planted_image_read_block_makes_the_image_profile_flat_across_the_layer(llava, pairs):
    """Plant: at layer P the image positions' keys and values are zeroed, so no position can read image content
    through attention at P (an image key scores 0 and carries a zero value, whatever the image).

    Patching the clean image residual after layer P-1 then yields exactly the state patching it after layer P
    yields: layer P's image outputs are a function of the image inputs and the (identical) prefix only, and its
    text outputs cannot see the image. So the image-group profile must satisfy LD(P-1) == LD(P), which fails
    without the plant; and, with or without it, image patching after the last layer is inert."""
    pair = pairs[2]
    free = layer_patching(llava, trace_pair(llava, pair))["ld"][0]
    image = trace_pair(llava, pair).groups.image
    attn = llava.layers[PLANT].self_attn
    handles = [
        attn.k_proj.register_forward_hook(_zero_at(image)),
        attn.v_proj.register_forward_hook(_zero_at(image)),
    ]
    try:
        tp = trace_pair(llava, pair)
        planted = layer_patching(llava, tp, batch_size=3)["ld"][0]
        hand = [
            _hand_patch(llava, pair, lambda v, layer=layer: v.layers[layer], image)
            for layer in (PLANT - 1, PLANT)
        ]
    finally:
        for h in handles:
            h.remove()
    assert planted[PLANT - 1] == pytest.approx(float(planted[PLANT]), abs=1e-5)
    assert hand == pytest.approx([float(planted[PLANT - 1]), float(planted[PLANT])], abs=1e-5)
    assert abs(float(free[PLANT - 1] - free[PLANT])) > 1e-4
    assert planted[-1] == pytest.approx(tp.ld_edited, abs=1e-5)


# -- logit lens -----------------------------------------------------------------------------------------------


def test_logit_lens_last_layer_is_the_model_output(llava, blip, pairs):
    for vlm in (llava, blip):
        tp = trace_pair(vlm, pairs[0])
        lens = logit_lens(vlm, tp)
        assert lens["p_clean"].shape == (2, vlm.num_layers)
        torch.testing.assert_close(lens["ld"][:, -1], tp.baseline.ld, atol=1e-5, rtol=0)
        torch.testing.assert_close(lens["p_clean"][:, -1], tp.baseline.p_clean, atol=1e-6, rtol=1e-4)
        full = vlm.model(**{k: v for k, v in _enc(vlm, pairs[0]).inputs.items()}).logits[:, -1].float()
        yes = vlm.tokenizer.convert_tokens_to_ids("yes")
        expected_rank = (full > full[:, yes : yes + 1]).sum(-1) + 1
        assert lens["rank_clean"][:, -1].tolist() == expected_rank.tolist()
        assert (lens["rank_clean"] >= 1).all() and (lens["p_clean"] <= 1).all()


def _enc(vlm, pair):
    prompt = build_prompt(vlm, pair.question)
    return encode(vlm, [prompt, prompt], [_open(pair.clean_image), _open(pair.edited_image)])


def test_pair_without_an_edited_answer_is_untraceable(llava, pairs):
    p = pairs[0]
    open_pair = ImagePair(
        "o", p.question, p.clean_image, p.edited_image, "dog", None, candidates=None, source="m:7"
    )
    with pytest.raises(UntraceablePairError, match="m:7"):
        trace_pair(llava, open_pair)


def test_manifest_pairs_with_missing_image_name_the_line(llava, tmp_path, pairs):
    from vseam_pl.pairs import read_pairs

    bad = ImagePair("b", pairs[0].question, str(tmp_path / "nope.png"), pairs[0].edited_image, "yes", "no")
    write_pairs(tmp_path / "pairs.jsonl", [bad])
    (loaded,) = read_pairs(tmp_path / "pairs.jsonl")
    with pytest.raises(ValueError, match=r"pairs.jsonl:1.*clean_image.*not found"):
        trace_pair(llava, loaded)


# -- aggregation ----------------------------------------------------------------------------------------------


def test_t_band_matches_scipy_and_ignores_missing_cells():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    x[0, 2] = np.nan
    band = mean_band(torch.tensor(x), ci="t", confidence=0.9)
    for j in range(3):
        col = x[:, j][~np.isnan(x[:, j])]
        lo, hi = stats.t.interval(0.9, len(col) - 1, loc=col.mean(), scale=stats.sem(col))
        assert band.mean[j] == pytest.approx(col.mean(), abs=1e-6)
        assert (float(band.lo[j]), float(band.hi[j])) == pytest.approx((lo, hi), abs=1e-5)
    assert band.n.tolist() == [12, 12, 11]


def test_bootstrap_band_is_deterministic_and_covers_the_mean():
    x = torch.tensor(np.random.default_rng(1).normal(2.0, 1.0, size=(40, 2)))
    a, b = mean_band(x, ci="bootstrap"), mean_band(x, ci="bootstrap")
    torch.testing.assert_close(a.lo, b.lo)
    assert (a.lo < a.mean).all() and (a.mean < a.hi).all()
    t = mean_band(x, ci="t")
    assert torch.allclose(a.hi - a.lo, t.hi - t.lo, rtol=0.25)  # both ~ 2 * 1.96 * sd / sqrt(n)
    with pytest.raises(ValueError, match="unknown ci"):
        mean_band(x, ci="jackknife")


def test_aggregate_groups_by_level_and_role():
    items = [
        ({"level": lv}, {"v": torch.tensor([float(i), 1.0])})
        for i, lv in enumerate(["object", "relation", "object"])
    ]
    items.append(({"category": "Color"}, {"v": torch.tensor([9.0, 1.0])}))  # level from the category
    agg = aggregate(items, ["v"])
    assert list(agg) == ["all", "object", "attribute", "relation"]
    assert agg["object"]["v"].mean.tolist() == [1.0, 1.0] and agg["attribute"]["v"].n.tolist() == [1, 1]
    assert agg["all"]["v"].mean[0] == pytest.approx(3.0)
    roles = by_role(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), ["question", "concept", "question", "final"])
    assert roles.tolist() == [[2.0, 2.0, 4.0]]
    assert torch.isnan(by_role(torch.ones(1, 2), ["question", "final"])[0, 1])  # no concept token: NaN, not 0


def test_edited_answer_defaults_to_the_other_candidate(llava, pairs):
    p = pairs[0]
    implicit = ImagePair(
        "i", p.question, p.clean_image, p.edited_image, "Yes", None, candidates=("yes", "no")
    )
    tp, explicit = trace_pair(llava, implicit), trace_pair(llava, p)
    summary = json.loads(json.dumps(tp.summary()))
    assert summary["edited_answer"] == "no" and summary["image_span"] == [
        tp.groups.image[0],
        tp.groups.image[-1],
    ]
    assert tp.ld_clean == pytest.approx(explicit.ld_clean, abs=1e-6)
