"""The family matrix: every VLM family vseam-pl claims, on tiny random-weight instances of its real class, checked step
by step (a-f of issue 13) against hand-written references that run the model directly, never the package's code.

a. `load_vlm`: the head grid is the text config's, every weight frozen, every counted layer has the hooked attention
   (families that cannot be supported are refused with a reason).
b. candidate scoring, batched (right-padded, different image sizes) = each row alone, unpadded; the answer tokens are
   the ones the family's processor writes after the prompt (no space after a newline-ending template, PaliGemma's
   suffix).
c. `HeadModulation` attach = a hand-written pre-hook on every decoder `o_proj`; fold = attach; unfold restores the
   weights bit for bit.
d. discovery (ablation, patching, attribution) on pairs of different image sizes: per-example effects = the same
   intervention through the full model, one example at a time.
e. tracing: image positions = where the model merges image features; layer/token patching and the lens run.
f. two training steps: loss = a hand-computed cross-entropy, finite; only the scales change; the trained span is
   exactly the answer's tokens + eos.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vseam_pl.encoding import encode
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.prompts import build_prompt
from vseam_pl.scoring import answer_loss, predict, score_candidates
from vseam_pl.tiny.families import FAMILIES, HAS_TORCHVISION, Family, save_family
from vseam_pl.vlm import VLM, UnsupportedModelError, load_vlm

#: What each family's processor writes between the prompt and the answer (hand-written from the chat templates:
#: "ASSISTANT:" / "[/INST]" / "Assistant:" take a space, templates ending in "\n" take none). None: PaliGemma's
#: suffix, encoded as its own sequence after the processor's "\n".
SEPARATOR = {
    "llava": " ",
    "instructblip": " ",
    "llava_next": " ",
    "llava_onevision": "",
    "qwen2_vl": "",
    "qwen2_5_vl": "",
    "idefics3": " ",
    "smolvlm": " ",
    "paligemma": None,
    "gemma3": "",
    "internvl": "",
}


#: Set in CI's families step: there a missing torchvision must fail the run, not skip (a skip is not a pass).
REQUIRE_ALL = os.environ.get("VSEAM_REQUIRE_ALL_FAMILIES") == "1"


def _param(f: Family):
    marks = []
    if f.needs_torchvision and not HAS_TORCHVISION and not REQUIRE_ALL:
        marks.append(
            pytest.mark.skip(
                reason=f"{f.name}: transformers 5.x builds its processor with torchvision, "
                "which is not installed: pip install torch==2.14.1 torchvision==0.29.1 (a matching pair, "
                "docs/families.md), then pip install 'vseam-pl[families]'"
            )
        )
    return pytest.param(f, id=f.name, marks=marks)


ALL = [_param(f) for f in FAMILIES]
SUPPORTED = [_param(f) for f in FAMILIES if f.refused is None]
#: (family, name) pairs for tests that take the loaded `vlm` (indirect) and the family's name; marks kept.
WITH_NAME = [pytest.param(p.values[0], p.values[0].name, id=p.id, marks=p.marks) for p in SUPPORTED]


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """Build and save each family once per session."""
    cache: dict[str, Path] = {}

    def get(family: Family) -> Path:
        if family.name not in cache:
            cache[family.name] = save_family(family, tmp_path_factory.mktemp(family.name))
        return cache[family.name]

    return get


@pytest.fixture()
def vlm(family_dir, request) -> VLM:
    return load_vlm(str(family_dir(request.param)))


def image(h: int, w: int, seed: int):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy(), "RGB")


SIZES = [
    (40, 56),
    (64, 32),
]  # two aspect ratios: different image-token counts for the dynamic-resolution families


# ------------------------------------------------------------------------------------------ hand-written references
def single_inputs(vlm: VLM, prompt: str, img, suffix: str | None = None) -> dict[str, torch.Tensor]:
    """The processor's encoding of one example, unpadded."""
    extra = {"suffix": [suffix]} if suffix is not None else {}
    batch = vlm.processor(images=[[img]], text=[prompt], return_tensors="pt", **extra)
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "labels"}


def answer_ids(
    vlm: VLM, family: str, prompt: str, img, answer: str, eos: bool = False
) -> tuple[int, list[int], dict]:
    """(prompt length, answer token ids, joint inputs) of one example, from the processor's own joint encoding."""
    n = single_inputs(vlm, prompt, img)["input_ids"].shape[1]
    sep = SEPARATOR[family]
    if sep is None:
        joint = single_inputs(vlm, prompt, img, suffix=answer)
        ids = joint["input_ids"][0, n:].tolist()
        assert ids[-1] == vlm.tokenizer.eos_token_id
        if not eos:
            ids = ids[:-1]
        expected_text = answer
    else:
        joint = single_inputs(vlm, prompt + sep + answer + (vlm.tokenizer.eos_token if eos else ""), img)
        ids = joint["input_ids"][0, n:].tolist()
        expected_text = sep + answer
    body = ids[:-1] if eos else ids
    assert vlm.tokenizer.decode(body) == expected_text, (family, vlm.tokenizer.decode(body))
    return n, ids, joint


def ref_candidate_score(vlm: VLM, family: str, prompt: str, img, cand: str) -> torch.Tensor:
    """log p(answer tokens | prompt, image) of one unpadded row, pooled (logsumexp) over the case variants of
    `cand` that are distinct token sequences."""
    seen, scores = set(), []
    for v in dict.fromkeys([cand.lower(), cand[:1].upper() + cand[1:].lower(), cand.upper()]):
        n, ids, joint = answer_ids(vlm, family, prompt, img, v)
        if tuple(ids) in seen:
            continue
        seen.add(tuple(ids))
        with torch.no_grad():
            logp = vlm.model(**joint).logits[0].float().log_softmax(-1)
        scores.append(sum(logp[n - 1 + k, t] for k, t in enumerate(ids)))
    return torch.logsumexp(torch.stack(scores), 0)


def hooked(vlm: VLM, fn):
    """Hand-written pre-hooks on every decoder layer's `o_proj`: `fn(layer, z [..., H, D]) -> z`."""
    handles = []
    for i, layer in enumerate(vlm.decoder.layers):

        def pre(_m, args, i=i):
            x = args[0]
            return (fn(i, x.view(*x.shape[:-1], vlm.num_heads, vlm.head_dim)).reshape(x.shape),)

        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(pre))
    return handles


def last_logits(vlm: VLM, prompt: str, img, fn=None) -> torch.Tensor:
    handles = hooked(vlm, fn) if fn else []
    try:
        return vlm.model(**single_inputs(vlm, prompt, img)).logits[0, -1].float()
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------------------------------------------ a. loading
@pytest.mark.parametrize("family", ALL)
def test_a_load_vlm_head_grid_frozen_every_layer(family, family_dir):
    path = str(family_dir(family))
    if family.refused:
        with pytest.raises(UnsupportedModelError, match=family.refused):
            load_vlm(path)
        return
    vlm = load_vlm(path)
    cfg = vlm.model.config.get_text_config()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    assert (vlm.num_layers, vlm.num_heads, vlm.head_dim) == (
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        head_dim,
    )
    assert vlm.num_kv_heads == cfg.num_key_value_heads
    assert not any(p.requires_grad for p in vlm.model.parameters()) and not vlm.model.training
    assert len(vlm.decoder.layers) == cfg.num_hidden_layers
    for layer in vlm.decoder.layers:
        assert layer.self_attn.o_proj.in_features == cfg.num_attention_heads * head_dim
    assert type(vlm.model).__name__ == family.model_class


# ------------------------------------------------------------------------------------------------------ b. scoring
QUESTIONS = ["Is there a dog?", "What color is the car to the left of the bus?"]


@pytest.mark.parametrize("vlm,family", WITH_NAME, indirect=["vlm"])
def test_b_batched_scores_equal_single_unpadded_rows(vlm, family):
    imgs = [image(*SIZES[0], 1), image(*SIZES[1], 2)]
    prompts = [build_prompt(vlm, q) for q in QUESTIONS]
    refs = []
    for cands in (["yes", "no"], ["red car", "blue bus"]):  # one-token fast path, then teacher-forced rows
        got = score_candidates(vlm, prompts, imgs, [cands, cands])
        for row in range(2):
            ref = torch.stack([ref_candidate_score(vlm, family, prompts[row], imgs[row], c) for c in cands])
            torch.testing.assert_close(got[row], ref, atol=1e-4, rtol=1e-4)
            refs.append((row, cands, ref))
    answers = predict(vlm, QUESTIONS, imgs, [["yes", "no"], ["yes", "no"]], batch_size=2)
    assert answers == [cands[int(ref.argmax())] for row, cands, ref in refs[:2]]
    # open questions: greedy generation of the left-padded batch = each row generated alone
    generated = predict(vlm, QUESTIONS, imgs, [None, None], batch_size=2, max_new_tokens=3)
    tok = vlm.tokenizer
    for row in range(2):
        inputs = single_inputs(vlm, prompts[row], imgs[row])
        out = vlm.model.generate(
            **inputs,
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        text = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        assert generated[row] == text.strip().split("\n")[0].strip()


# ------------------------------------------------------------------------------------------------------ c. modulation
@pytest.mark.parametrize("vlm", SUPPORTED, indirect=True)
def test_c_modulation_attach_fold_unfold(vlm):
    prompt, img = build_prompt(vlm, QUESTIONS[0]), image(*SIZES[0], 3)
    scales = 0.5 + torch.rand(vlm.num_layers, vlm.num_heads, generator=torch.Generator().manual_seed(0))
    calls: list[int] = []

    def scale(i, z):
        calls.append(i)
        return z * scales[i][:, None]

    with torch.no_grad():
        ref = last_logits(vlm, prompt, img, scale)
        assert sorted(set(calls)) == list(range(vlm.num_layers))
        base = last_logits(vlm, prompt, img)
        assert not torch.allclose(ref, base, atol=1e-3)
        mod = HeadModulation.for_vlm(vlm)
        mod.scales.data.copy_(scales)
        mod.attach(vlm)
        torch.testing.assert_close(last_logits(vlm, prompt, img), ref, atol=1e-4, rtol=1e-4)
        mod.detach()
        originals = [vlm.o_proj(i).weight.clone() for i in range(vlm.num_layers)]
        mod.fold(vlm)
        torch.testing.assert_close(last_logits(vlm, prompt, img), ref, atol=1e-4, rtol=1e-4)
        mod.unfold()
        assert all(torch.equal(vlm.o_proj(i).weight, w) for i, w in enumerate(originals))


# ------------------------------------------------------------------------------------------------------ d. discovery
def make_pairs(vlm: VLM, root: Path):
    from vseam_pl.pairs import prepare_pairs
    from vseam_pl.records import ImagePair

    pairs = []
    for i, (h, w) in enumerate(SIZES):
        clean, edited = root / f"clean{i}.png", root / f"edited{i}.png"
        image(h, w, 10 + i).save(clean)
        image(h, w, 20 + i).save(edited)
        pairs.append(
            ImagePair(
                f"p{i}",
                QUESTIONS[0] if i == 0 else "Is there a red car?",
                str(clean),
                str(edited),
                "yes",
                edited_answer="no",
                candidates=("yes", "no"),
                edit={"from": "dog", "to": "cat"},
                source=f"pairs.jsonl:{i + 1}",
            )
        )
    return prepare_pairs(vlm, pairs)


def CHECKED_HEADS(num_layers: int, num_heads: int) -> list[tuple[int, int]]:
    """A head in every layer, different head indices (the full grid through the full model is too slow for CI)."""
    return [(layer, (2 * layer + 1) % num_heads) for layer in range(num_layers)]


def cand_logp(logits: torch.Tensor, item) -> torch.Tensor:
    """Candidate-normalised log-probs from first-token ids (variants pooled)."""
    lp = logits.log_softmax(-1)
    per = torch.stack([torch.logsumexp(lp[list(ids)], 0) for ids in item.candidate_tokens])
    return per - torch.logsumexp(per, 0)


def replace_head(layer: int, head: int, value=None):
    """A head function that sets head (layer, head) to `value(z)` (zero when None) and leaves the rest alone."""

    def fn(i: int, z: torch.Tensor) -> torch.Tensor:
        if i != layer:
            return z
        z = z.clone()
        z[..., head, :] = 0 if value is None else value(i)[..., head, :]
        return z

    return fn


def reference_effects(vlm: VLM, item) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-ablation, clean->edited patching and attribution effects `[L, H]` of one example, through the full
    model run on that example alone (ablation/patching only at :func:`CHECKED_HEADS`)."""
    from vseam_pl.pairs import images_of

    L, H = vlm.num_layers, vlm.num_heads
    abl, patch, attr = (torch.zeros(L, H, dtype=torch.float64) for _ in range(3))
    clean_img, edited_img = images_of([item], "clean")[0], images_of([item], "edited")[0]

    def ld(logits: torch.Tensor) -> float:
        lp = cand_logp(logits, item)
        return float(lp[0] - lp[1])

    acts: dict[int, torch.Tensor] = {}

    def record(i: int, z: torch.Tensor) -> torch.Tensor:
        acts[i] = z.clone()
        return z

    with torch.no_grad():
        p_base = cand_logp(last_logits(vlm, item.prompt, clean_img, record), item)[0].exp()
        ld_e = ld(last_logits(vlm, item.prompt, edited_img))
        for layer, head in CHECKED_HEADS(L, H):
            ablated = last_logits(vlm, item.prompt, clean_img, replace_head(layer, head))
            abl[layer, head] = float(p_base - cand_logp(ablated, item)[0].exp())
            patched = last_logits(vlm, item.prompt, edited_img, replace_head(layer, head, acts.__getitem__))
            patch[layer, head] = ld(patched) - ld_e
    leaves: dict[int, torch.Tensor] = {}
    edited_acts: dict[int, torch.Tensor] = {}

    def add_leaf(i: int, z: torch.Tensor) -> torch.Tensor:
        edited_acts[i] = z.detach().clone()
        leaves[i] = torch.zeros_like(z, requires_grad=True)
        return z + leaves[i]

    with torch.enable_grad():
        lp = cand_logp(last_logits(vlm, item.prompt, edited_img, add_leaf), item)
        grads = torch.autograd.grad(lp[0] - lp[1], [leaves[i] for i in range(L)])
    for layer in range(L):
        attr[layer] = ((acts[layer] - edited_acts[layer]) * grads[layer]).sum(dim=(0, 1, 3)).double()
    return abl, patch, attr


@pytest.mark.parametrize("vlm", SUPPORTED, indirect=True)
def test_d_discovery_effects_equal_full_model_references(vlm, tmp_path):
    from vseam_pl.discovery.ablation import ablation_stats
    from vseam_pl.discovery.attribution import attribution_stats
    from vseam_pl.discovery.patching import patching_stats

    items = make_pairs(vlm, tmp_path)
    refs = [reference_effects(vlm, it) for it in items]
    ref_abl, ref_patch, ref_attr = (torch.stack([r[k] for r in refs]) for k in range(3))
    heads = CHECKED_HEADS(vlm.num_layers, vlm.num_heads)
    sel = (slice(None), [lh[0] for lh in heads], [lh[1] for lh in heads])
    assert (
        ref_abl[sel].abs().max() > 1e-4 and ref_patch[sel].abs().max() > 1e-4
    )  # references are not trivially 0
    for prefix in (True, False):
        d = ablation_stats(vlm, items, mode="zero", prefix=prefix)["signed"][0]
        torch.testing.assert_close(d[sel], ref_abl[sel], atol=2e-5, rtol=1e-3)
        p = patching_stats(vlm, items, prefix=prefix)["signed"][0]
        torch.testing.assert_close(p[sel], ref_patch[sel], atol=2e-4, rtol=1e-3)
    a = attribution_stats(vlm, items)["signed"][0]
    torch.testing.assert_close(a, ref_attr, atol=2e-4, rtol=1e-3)


# ------------------------------------------------------------------------------------------------------ e. tracing
@pytest.mark.parametrize("vlm", SUPPORTED, indirect=True)
def test_e_tracing_positions_are_where_image_features_merge(vlm, tmp_path):
    from vseam_pl.pairs import images_of
    from vseam_pl.tracing import layer_patching, logit_lens, token_patching
    from vseam_pl.tracing.pair import trace_pair

    item = make_pairs(vlm, tmp_path)[0]
    tp = trace_pair(vlm, item.pair, sites=("resid", "attn", "mlp"))
    inputs = single_inputs(vlm, item.prompt, images_of([item], "clean")[0])
    seen = {}

    def grab(_m, _args, kwargs):
        seen["e"] = kwargs["inputs_embeds"]

    h = vlm.decoder.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        vlm.model(**inputs)
    h.remove()
    plain = vlm.model.get_input_embeddings()(inputs["input_ids"])
    merged = (seen["e"][0] != plain[0]).any(-1).nonzero().flatten().tolist()
    assert merged and tp.groups.image == merged
    ids = inputs["input_ids"][0].tolist()
    q_tokens = vlm.tokenizer.decode([ids[p] for p in tp.groups.question])
    assert q_tokens.strip() == item.pair.question
    assert vlm.tokenizer.decode([ids[p] for p in tp.groups.concept]).strip() == "dog"
    assert tp.groups.final == len(ids) - 1
    for result in (layer_patching(vlm, tp), token_patching(vlm, tp)[0], logit_lens(vlm, tp)):
        assert all(torch.isfinite(v).all() for v in result.values())


# ------------------------------------------------------------------------------------------------------ f. training
@pytest.mark.slow
@pytest.mark.parametrize("vlm,family", WITH_NAME, indirect=["vlm"])
def test_f_two_training_steps_train_only_scales_on_the_answer_span(vlm, family):
    imgs = [image(*SIZES[0], 5), image(*SIZES[1], 6)]
    prompts = [build_prompt(vlm, q) for q in QUESTIONS]
    answers = ["yes", "blue car"]
    enc = encode(vlm, prompts, imgs, answers, add_eos=True)
    nll, count = torch.zeros(()), 0
    for row in range(2):
        n, ids, joint = answer_ids(vlm, family, prompts[row], imgs[row], answers[row], eos=True)
        assert ids[-1] == vlm.tokenizer.eos_token_id
        span = enc.input_ids[row, int(enc.prompt_lengths[row]) : int(enc.lengths[row])].tolist()
        assert span == ids
        with torch.no_grad():
            logp = vlm.model(**joint).logits[0].float().log_softmax(-1)
        nll = nll - sum(logp[n - 1 + k, t] for k, t in enumerate(ids))
        count += len(ids)
    mod = HeadModulation.for_vlm(vlm).attach(vlm)
    frozen = {k: v.clone() for k, v in vlm.model.state_dict().items()}
    opt = torch.optim.Adam(mod.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        loss = answer_loss(vlm, prompts, imgs, answers)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    mod.detach()
    assert losses[0] == pytest.approx(float(nll) / count, rel=1e-4)
    assert not torch.allclose(mod.scales, torch.ones_like(mod.scales))
    assert all(torch.equal(v, frozen[k]) for k, v in vlm.model.state_dict().items())
    assert [n for n, p in mod.named_parameters() if p.requires_grad] == ["scales"]
    assert F.mse_loss(mod.scales, torch.ones_like(mod.scales)) > 0


def test_padding_side_is_checked_not_assumed():
    from vseam_pl.encoding import check_padding

    right = torch.tensor([[1, 1, 1], [1, 1, 0]])
    left = torch.tensor([[1, 1, 1], [0, 1, 1]])
    check_padding(right, "right", "m")
    check_padding(left, "left", "m")
    with pytest.raises(ValueError, match="did not pad on the right"):
        check_padding(left, "right", "m")  # InternVL's processor default: left padding despite the tokenizer
    with pytest.raises(ValueError, match="did not pad on the left"):
        check_padding(right, "left", "m")
