"""VLMs of the real architectures (LLaVA, InstructBLIP), built from scratch with a word-level tokenizer.

`scripts/pretrain_tiny.py` trains tiny ones on the synthetic world and saves ordinary Hugging Face folders under
`checkpoints/`; tests build random-weight ones (including grouped-query attention variants) the same way, and
`bench/scale.py` builds the full-size geometries (LLaVA-1.5-7B/13B, InstructBLIP-Vicuna-7B) with random weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import (
    BlipImageProcessor,
    CLIPImageProcessor,
    CLIPVisionConfig,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from ..prompts import DEFAULT_INSTRUCTION

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
PAD, BOS, EOS, UNK, IMAGE = range(5)

#: The llava-hf chat template, reduced to what single-turn VQA needs (same rendering as llava-1.5-7b-hf).
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

PROMPT_WORDS = ["user", "assistant", ":", "?", ".", ",", "!", "'", "-"] + DEFAULT_INSTRUCTION.lower().replace(
    ".", ""
).split()


def build_tokenizer(words: Iterable[str], image_token: bool = True) -> PreTrainedTokenizerFast:
    """A lowercase word-level tokenizer over `words` (+ prompt words, digits and special tokens)."""
    vocab_words = list(
        dict.fromkeys(
            SPECIAL_TOKENS + PROMPT_WORDS + [str(d) for d in range(10)] + [w.lower() for w in words]
        )
    )
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab_words)}, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    extra = {"image_token": "<image>"} if image_token else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=extra,
        model_max_length=512,
    )


@dataclass
class TinySizes:
    """Geometry of a VLM the builders make (tiny by default). The decoder grid (layers x heads) is what discovery
    and modulation see. `None` fields follow the others: MLPs 4x their hidden size, the Q-Former as wide as the
    vision tower, vocabularies the tokenizers' sizes (a larger table gives a real checkpoint's embedding shapes)."""

    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 64
    vision_layers: int = 4
    vision_heads: int = 4
    vision_intermediate: int | None = None
    text_hidden: int = 128
    text_layers: int = 8
    text_heads: int = 8
    text_kv_heads: int = 8
    text_intermediate: int = 384
    text_vocab: int | None = None
    text_max_positions: int = 512
    num_query_tokens: int = 16  # InstructBLIP
    qformer_layers: int = 2
    qformer_hidden: int | None = None
    qformer_heads: int | None = None
    qformer_intermediate: int | None = None
    qformer_vocab: int | None = None


def _vocab(size: int | None, tokenizer: PreTrainedTokenizerFast, field: str) -> int:
    """`size`, or the tokenizer's when None; a table smaller than the tokenizer is refused (ids would overflow)."""
    if size is None:
        return len(tokenizer)
    if size < len(tokenizer):
        raise ValueError(f"TinySizes.{field}={size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    return size


def _vision_geometry(s: TinySizes) -> dict[str, int]:
    """The vision tower's shape, the same for the CLIP (LLaVA) and the InstructBLIP tower."""
    return dict(
        hidden_size=s.vision_hidden,
        intermediate_size=s.vision_intermediate or 4 * s.vision_hidden,
        num_hidden_layers=s.vision_layers,
        num_attention_heads=s.vision_heads,
        image_size=s.image_size,
        patch_size=s.patch_size,
    )


def _llama_config(vocab_size: int, s: TinySizes) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=s.text_hidden,
        intermediate_size=s.text_intermediate,
        num_hidden_layers=s.text_layers,
        num_attention_heads=s.text_heads,
        num_key_value_heads=s.text_kv_heads,
        max_position_embeddings=s.text_max_positions,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        tie_word_embeddings=False,
    )


def _instantiate(
    cls: type[PreTrainedModel],
    config: PretrainedConfig,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    attn_implementation: str | None,
) -> PreTrainedModel:
    """Random weights created directly on `device` (the meta device builds a 7B geometry without memory)."""
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return cls._from_config(config, dtype=dtype, attn_implementation=attn_implementation)


def build_tiny_llava(
    words: Iterable[str],
    sizes: TinySizes | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A randomly initialised LLaVA-1.5-style model (CLIP tower, feature layer -2, CLS dropped) and its processor;
    `device`, `dtype` and `attn_implementation` as `from_pretrained` takes them (None: CPU, float32, default)."""
    s = sizes or TinySizes()
    tokenizer = build_tokenizer(words)
    vision = CLIPVisionConfig(**_vision_geometry(s), projection_dim=s.vision_hidden)
    n_patches = (s.image_size // s.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision,
        text_config=_llama_config(_vocab(s.text_vocab, tokenizer, "text_vocab"), s),
        image_token_index=IMAGE,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=n_patches,
        projector_hidden_act="gelu",
    )
    model = _instantiate(LlavaForConditionalGeneration, config, device, dtype, attn_implementation)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": s.image_size},
        crop_size={"height": s.image_size, "width": s.image_size},
        do_center_crop=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=s.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, processor


def build_tiny_instructblip(
    words: Iterable[str],
    sizes: TinySizes | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
) -> tuple[InstructBlipForConditionalGeneration, InstructBlipProcessor]:
    """A randomly initialised InstructBLIP (vision tower, Q-Former, Llama decoder) and its processor; `device`,
    `dtype` and `attn_implementation` as in :func:`build_tiny_llava`.

    Like the Vicuna InstructBLIP checkpoints it ships no chat template: prompts use vseam-pl's fallback.
    """
    s = sizes or TinySizes()
    tokenizer = build_tokenizer(words, image_token=False)
    qformer_tokenizer = build_tokenizer(words, image_token=False)
    qformer_hidden = s.qformer_hidden or s.vision_hidden
    vision = InstructBlipVisionConfig(
        **_vision_geometry(s),
        initializer_range=0.02,  # the config's default (1e-10) leaves a from-scratch tower numerically dead
    )
    qformer = InstructBlipQFormerConfig(
        vocab_size=_vocab(s.qformer_vocab, qformer_tokenizer, "qformer_vocab"),
        hidden_size=qformer_hidden,
        num_hidden_layers=s.qformer_layers,
        num_attention_heads=s.qformer_heads or s.vision_heads,
        intermediate_size=s.qformer_intermediate or 4 * qformer_hidden,
        encoder_hidden_size=s.vision_hidden,
        pad_token_id=PAD,
        max_position_embeddings=512,
        # The synthetic stream never repeats an example, so dropout only slows learning; LLaVA's projector has none.
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config = InstructBlipConfig(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=_llama_config(_vocab(s.text_vocab, tokenizer, "text_vocab"), s).to_dict(),
        num_query_tokens=s.num_query_tokens,
        image_token_index=IMAGE,
    )
    model = _instantiate(InstructBlipForConditionalGeneration, config, device, dtype, attn_implementation)
    # transformers zero-initialises the query tokens (pretrained ones overwrite them). From scratch, 16 identical
    # queries stay identical up to dropout noise, so the Q-Former hands the decoder one image token 16 times; BLIP-2
    # (LAVIS) draws them from N(0, initializer_range).
    with torch.no_grad():
        model.query_tokens.normal_(0.0, config.initializer_range)
    image_processor = BlipImageProcessor(
        size={"height": s.image_size, "width": s.image_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor = InstructBlipProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=s.num_query_tokens,
    )
    return model, processor
