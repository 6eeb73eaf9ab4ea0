"""Loading frozen VLMs through the ordinary from_pretrained path and finding their decoder heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vseam_pl.prompts import DEFAULT_INSTRUCTION, build_prompt
from vseam_pl.vlm import UnsupportedModelError, find_decoder, load_vlm, resolve_dtype


@pytest.mark.parametrize(
    "fixture,family", [("tiny_llava_dir", "llava"), ("tiny_instructblip_dir", "instructblip")]
)
def test_load_vlm_freezes_and_reports_head_grid(request, fixture, family):
    vlm = load_vlm(str(request.getfixturevalue(fixture)))
    assert vlm.family == family
    assert (vlm.num_layers, vlm.num_heads, vlm.head_dim) == (4, 4, 16)
    assert not any(p.requires_grad for p in vlm.model.parameters())
    assert not vlm.model.training
    assert vlm.o_proj(0) is vlm.layers[0].self_attn.o_proj


def test_grouped_query_attention_heads_are_query_heads(tiny_llava_gqa_dir):
    vlm = load_vlm(str(tiny_llava_gqa_dir))
    assert vlm.num_heads == 4 and vlm.num_kv_heads == 2
    assert vlm.o_proj(0).in_features == vlm.num_heads * vlm.head_dim


def test_decoder_found_in_new_and_old_layouts(tiny_vlm):
    new_layout = tiny_vlm.model  # LlavaForConditionalGeneration.model.language_model
    assert find_decoder(new_layout) is new_layout.model.language_model

    class OldLayout(
        nn.Module
    ):  # transformers<4.52 kept the causal LM at `.language_model` with `.model` inside
        def __init__(self, decoder):
            super().__init__()
            self.language_model = nn.Module()
            self.language_model.model = decoder

    old = OldLayout(new_layout.model.language_model)
    assert find_decoder(old) is new_layout.model.language_model


def test_unsupported_model_names_expected_path():
    with pytest.raises(UnsupportedModelError, match=r"self_attn.o_proj"):
        find_decoder(nn.Sequential(nn.Linear(2, 2)))


def test_dtype_loading_keeps_model_in_bf16(tiny_llava_dir):
    vlm = load_vlm(str(tiny_llava_dir), dtype="bf16")
    assert vlm.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float13")


def test_chat_template_and_fallback_prompts(tiny_llava_dir, tiny_instructblip_dir):
    llava = load_vlm(str(tiny_llava_dir))
    assert (
        build_prompt(llava, "Is there a dog?")
        == f"USER: <image>\nIs there a dog?\n{DEFAULT_INSTRUCTION} ASSISTANT:"
    )
    assert (
        build_prompt(llava, "Is there a dog?", instruction=None)
        == "USER: <image>\nIs there a dog? ASSISTANT:"
    )
    blip = load_vlm(str(tiny_instructblip_dir))
    assert blip.processor.chat_template is None
    assert (
        build_prompt(blip, "Is there a dog?", instruction="Short answer.") == "Is there a dog?\nShort answer."
    )


def test_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(OSError):
        load_vlm(str(tmp_path / "nope"))


def test_tiny_builders_initialise_vision_towers_trainably():
    """InstructBlipVisionConfig defaults to initializer_range=1e-10: a from-scratch tower would start numerically dead."""
    from vseam_pl.tiny import TinySizes, build_tiny_instructblip, build_tiny_llava

    sizes = TinySizes(vision_layers=1, text_layers=1, text_heads=2, text_kv_heads=2)
    for build, tower in ((build_tiny_llava, "vision_tower"), (build_tiny_instructblip, "vision_model")):
        model, _ = build(["cat"], sizes)
        weights = [
            p for n, p in model.named_parameters() if tower in n and n.endswith("weight") and p.dim() > 1
        ]
        assert weights and min(float(w.detach().std()) for w in weights) > 1e-3, build.__name__


def test_tiny_instructblip_starts_with_distinct_queries_and_no_qformer_dropout():
    """transformers zero-initialises query_tokens: from scratch every query would be the same image token, told apart
    only by dropout noise."""
    from vseam_pl.tiny import TinySizes, build_tiny_instructblip

    model, _ = build_tiny_instructblip(
        ["cat"], TinySizes(vision_layers=1, text_layers=1, text_heads=2, text_kv_heads=2)
    )
    queries = model.query_tokens.detach()[0]  # [num_query_tokens, hidden]
    assert queries.shape[0] == 16
    assert float(torch.cdist(queries, queries).fill_diagonal_(float("inf")).min()) > 0.05
    assert [m.p for m in model.qformer.modules() if isinstance(m, nn.Dropout)] and all(
        m.p == 0.0 for m in model.qformer.modules() if isinstance(m, nn.Dropout)
    )


def test_builder_geometry_fields_reach_the_weights_on_the_requested_device():
    """The fields bench/scale.py's full-size presets set (separate MLP, Q-Former and vocabulary sizes) shape the
    weights; built on the meta device in bf16 with the asked attention, as the presets are."""
    from vseam_pl.tiny import TinySizes, build_tiny_instructblip

    sizes = TinySizes(
        vision_layers=1,
        vision_intermediate=96,
        text_layers=1,
        text_heads=2,
        text_kv_heads=2,
        text_vocab=300,
        num_query_tokens=4,
        qformer_layers=1,
        qformer_hidden=32,
        qformer_heads=2,
        qformer_intermediate=40,
        qformer_vocab=200,
    )
    model, processor = build_tiny_instructblip(
        ["cat"], sizes, device="meta", dtype=torch.bfloat16, attn_implementation="eager"
    )
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes["vision_model.encoder.layers.0.mlp.fc1.weight"] == (96, 64)
    assert shapes["qformer.embeddings.word_embeddings.weight"] == (200, 32)
    assert shapes["qformer.encoder.layer.0.intermediate_query.dense.weight"] == (40, 32)
    assert shapes["query_tokens"] == (1, 4, 32)
    assert shapes["language_model.model.embed_tokens.weight"] == (300, 128)
    assert model.device.type == "meta" and model.dtype == torch.bfloat16
    assert model.config.text_config._attn_implementation == "eager" and processor.num_query_tokens == 4


@pytest.mark.parametrize("field", ["text_vocab", "qformer_vocab"])
def test_a_vocabulary_smaller_than_the_tokenizer_is_refused(field):
    from vseam_pl.tiny import TinySizes, build_tiny_instructblip

    with pytest.raises(ValueError, match=rf"TinySizes\.{field}=3 is smaller than the tokenizer's \d+ tokens"):
        build_tiny_instructblip(["cat"], TinySizes(**{field: 3}), device="meta")
