"""Tiny random-weight instances of the real `transformers` VLM classes, one per family vseam-pl claims to support.

Each builder shrinks the family's real config in depth and width, keeps its real image processor (and the
processor's image-token expansion), grouped-query attention where the family has it, and a chat template shaped
like the released checkpoint's. Tokenizers are byte-level BPEs trained here with `tokenizers`, so that `" yes"` and
`"yes"` are different tokens, as in the released vocabularies. Decoder weights are redrawn large
(:func:`sharpen_decoder`) so that a wrong position id or attention mask visibly changes the logits.

Families whose processors need `torchvision` (transformers 5.x builds their video processors with it) are listed in
:data:`NEEDS_TORCHVISION`; the matrix skips them, naming the reason, only when torchvision is absent.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn
from transformers import PreTrainedTokenizerFast

WORDS = (
    "is there a dog cat bird car bus in the image yes no red blue green what color left right of to".split()
)
CORPUS = [
    "Is there a dog in the image? Answer the question using a single word or phrase. yes no Yes No",
    "What color is the car? red blue green Red Blue Green. Is the cat to the left of the bus? left right",
    "user assistant system model You are a helpful assistant. answer en",
] * 4 + [" ".join(WORDS)]

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
#: Families whose transformers 5.x processor cannot be built without torchvision (their video processor needs it).
NEEDS_TORCHVISION = frozenset({"llava_onevision", "qwen2_vl", "qwen2_5_vl", "smolvlm", "internvl"})


def bpe_tokenizer(
    specials: list[str],
    bos: str | None,
    eos: str,
    pad: str,
    add_bos: bool = False,
    extra: dict[str, str] | None = None,
    unk: str | None = None,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE over the test corpus with the family's special tokens (ids 0.. in the order given)."""
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(CORPUS, trainer)
    kwargs: dict[str, Any] = {
        "eos_token": eos,
        "pad_token": pad,
        "add_bos_token": add_bos,
        "model_max_length": 4096,
    }
    if bos:
        kwargs["bos_token"] = bos
    if unk:
        kwargs["unk_token"] = unk
    if extra:
        kwargs["extra_special_tokens"] = extra
    return PreTrainedTokenizerFast(tokenizer_object=tk, **kwargs)


def sharpen_decoder(decoder: nn.Module, gain: float = 1.5, seed: int = 0) -> None:
    """Redraw every decoder Linear as N(0, gain^2 / fan_in): attention is then far from uniform, so a wrong rotary
    position or mask changes the output (the default 0.02 init leaves attention almost position-blind)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in decoder.modules():
            if isinstance(module, nn.Linear):
                w = torch.randn(module.weight.shape, generator=g) * gain / module.in_features**0.5
                module.weight.copy_(w.to(module.weight.dtype))


def _ids(tok: PreTrainedTokenizerFast, *tokens: str) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


# ---------------------------------------------------------------------------------------------------- builders
def build_llava(seed: int) -> tuple[nn.Module, Any]:
    """LLaVA-1.5: CLIP (feature layer -2, CLS dropped), Llama decoder with GQA, `USER: <image>\n... ASSISTANT:`."""
    from transformers import (
        CLIPImageProcessor,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from vseam_pl.tiny import LLAVA_CHAT_TEMPLATE

    tok = bpe_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        "<s>",
        "</s>",
        "<pad>",
        add_bos=True,
        extra={"image_token": "<image>"},
        unk="<unk>",
    )
    cfg = LlavaConfig(
        vision_config=_clip(),
        text_config=_llama_like(LlamaConfig, len(tok), pad_token_id=3),
        image_token_index=_ids(tok, "<image>")[0],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=16,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, proc


def build_instructblip(seed: int) -> tuple[nn.Module, Any]:
    """InstructBLIP (Vicuna): Q-Former query tokens under the image token id, no chat template."""
    from transformers import (
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        LlamaConfig,
    )

    def tokenizer():  # like the Vicuna checkpoints: "<image>" is in the vocabulary, the processor names it
        return bpe_tokenizer(
            ["<unk>", "<s>", "</s>", "<pad>", "<image>"], "<s>", "</s>", "<pad>", add_bos=True, unk="<unk>"
        )

    tok, qtok = tokenizer(), tokenizer()
    cfg = InstructBlipConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            initializer_range=0.02,
        ),
        qformer_config=dict(
            vocab_size=len(qtok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            encoder_hidden_size=32,
            pad_token_id=3,
            max_position_embeddings=512,
        ),
        text_config=_llama_like(LlamaConfig, len(tok), pad_token_id=3).to_dict(),
        num_query_tokens=4,
        image_token_index=_ids(tok, "<image>")[0],
    )
    torch.manual_seed(seed)
    model = InstructBlipForConditionalGeneration(cfg)
    with torch.no_grad():
        model.query_tokens.normal_(0.0, 0.02)
    ip = BlipImageProcessor(size={"height": 32, "width": 32})
    return model, InstructBlipProcessor(
        image_processor=ip, tokenizer=tok, qformer_tokenizer=qtok, num_query_tokens=4
    )


def _llama_like(cls, vocab: int, **kw) -> Any:
    base = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    base.update(kw)
    return cls(**base)


def _clip(image_size: int = 32, patch: int = 8):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )


def _siglip(image_size: int = 32, patch: int = 8):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
    )


MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ ' [/INST]' }}{% endif %}{% endfor %}"
)


def build_llava_next(seed: int) -> tuple[nn.Module, Any]:
    """LLaVA-NeXT (v1.6-mistral): CLIP, anyres grid pinpoints, Mistral decoder, `[INST] ... [/INST]`."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )

    tok = bpe_tokenizer(
        ["<unk>", "<s>", "</s>", "<image>"],
        "<s>",
        "</s>",
        "<unk>",
        add_bos=False,
        extra={"image_token": "<image>"},
        unk="<unk>",
    )
    pins = [[32, 64], [64, 32], [64, 64]]
    cfg = LlavaNextConfig(
        vision_config=_clip(),
        text_config=_llama_like(
            MistralConfig, len(tok), pad_token_id=0, bos_token_id=1, eos_token_id=2, sliding_window=None
        ),
        image_token_index=_ids(tok, "<image>")[0],
        image_grid_pinpoints=pins,
        image_seq_length=16,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(cfg)
    ip = LlavaNextImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pins
    )
    proc = LlavaNextProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=MISTRAL_TEMPLATE,
    )
    return model, proc


CHATML_IMAGE_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ IMAGE }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _chatml(image: str, system: str | None = None) -> str:
    tpl = CHATML_IMAGE_TEMPLATE.replace("IMAGE", repr(image))
    if system:
        tpl = "{{ '<|im_start|>system\n" + system + "<|im_end|>\n' }}" + tpl
    return tpl


def build_llava_onevision(seed: int) -> tuple[nn.Module, Any]:
    """LLaVA-OneVision (Qwen2 decoder, SigLIP, anyres_max_9) with its ChatML template."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
    )

    tok = bpe_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
        None,
        "<|im_end|>",
        "<|endoftext|>",
        extra={"image_token": "<image>", "video_token": "<video>"},
    )
    pins = [[32, 64], [64, 32], [64, 64]]
    cfg = LlavaOnevisionConfig(
        vision_config=_siglip(),
        text_config=_llama_like(Qwen2Config, len(tok), eos_token_id=2, pad_token_id=0),
        image_token_index=_ids(tok, "<image>")[0],
        video_token_index=_ids(tok, "<video>")[0],
        image_grid_pinpoints=pins,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(cfg)
    ip = LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, image_grid_pinpoints=pins)
    vp = LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32})
    proc = LlavaOnevisionProcessor(
        image_processor=ip,
        tokenizer=tok,
        video_processor=vp,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=_chatml("<image>\n"),
    )
    return model, proc


def _qwen_tokenizer() -> PreTrainedTokenizerFast:
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    return bpe_tokenizer(
        specials,
        None,
        "<|im_end|>",
        "<|endoftext|>",
        extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def _qwen_ids(tok) -> dict[str, int]:
    img, vid, vs, ve = _ids(tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    return dict(image_token_id=img, video_token_id=vid, vision_start_token_id=vs, vision_end_token_id=ve)


QWEN_SYSTEM = "You are a helpful assistant."


def _qwen_processor(cls, tok):
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    px = dict(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16, max_pixels=48 * 48)
    ip = Qwen2VLImageProcessor(**px)
    vp = Qwen2VLVideoProcessor(**px)
    return cls(
        image_processor=ip,
        tokenizer=tok,
        video_processor=vp,
        chat_template=_chatml("<|vision_start|><|image_pad|><|vision_end|>", QWEN_SYSTEM),
    )


def _qwen_text(tok: Any) -> dict[str, Any]:
    """The shrunk Qwen2 decoder both Qwen-VL generations share: GQA and M-RoPE sections."""
    return dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=2,
        pad_token_id=0,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
    )


def build_qwen2_vl(seed: int) -> tuple[nn.Module, Any]:
    """Qwen2-VL: dynamic-resolution patches, M-RoPE (3-D rotary positions), GQA."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tok = _qwen_tokenizer()
    text = _qwen_text(tok)
    vision = dict(
        depth=2,
        embed_dim=32,
        hidden_size=64,
        num_heads=2,
        patch_size=4,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    cfg = Qwen2VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
    torch.manual_seed(seed)
    return Qwen2VLForConditionalGeneration(cfg), _qwen_processor(Qwen2VLProcessor, tok)


def build_qwen2_5_vl(seed: int) -> tuple[nn.Module, Any]:
    """Qwen2.5-VL: windowed vision attention, M-RoPE, GQA."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tok = _qwen_tokenizer()
    text = _qwen_text(tok)
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=4,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=64,
        window_size=16,
        fullatt_block_indexes=[1],
    )
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(cfg), _qwen_processor(Qwen2_5_VLProcessor, tok)


IDEFICS3_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% else %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _idefics_tokens(bos: str) -> list[str]:
    rows = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    return [
        bos,
        "<|end_of_text|>",
        "<pad>",
        "<image>",
        "<fake_token_around_image>",
        "<global-img>",
        "<end_of_utterance>",
        *rows,
    ]


def _idefics3_layout(tok: PreTrainedTokenizerFast) -> dict[str, Any]:
    """The geometry Idefics3 and SmolVLM share (SmolVLM is Idefics3's layout): a SigLIP-sized vision tower, a Llama
    decoder and a 2x2 pixel-shuffle connector."""
    return dict(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=2,
            max_position_embeddings=4096,
        ),
        image_token_id=_ids(tok, "<image>")[0],
        scale_factor=2,
    )


def build_idefics3(seed: int) -> tuple[nn.Module, Any]:
    """Idefics3 (Llama 3 decoder, SigLIP, pixel-shuffle connector, image splitting with row/col wrapper tokens)."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    tok = bpe_tokenizer(
        _idefics_tokens("<|begin_of_text|>"),
        "<|begin_of_text|>",
        "<end_of_utterance>",
        "<pad>",
        extra={"image_token": "<image>"},
    )
    cfg = Idefics3Config(**_idefics3_layout(tok))
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(cfg)
    ip = Idefics3ImageProcessor(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    proc = Idefics3Processor(
        image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=IDEFICS3_TEMPLATE
    )
    return model, proc


def build_smolvlm(seed: int) -> tuple[nn.Module, Any]:
    """SmolVLM (Idefics3 layout, SmolLM2 decoder, ChatML-free `User:` template, video processor)."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    tok = bpe_tokenizer(
        _idefics_tokens("<|im_start|>"),
        "<|im_start|>",
        "<end_of_utterance>",
        "<pad>",
        extra={
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )
    cfg = SmolVLMConfig(**_idefics3_layout(tok))
    torch.manual_seed(seed)
    model = SmolVLMForConditionalGeneration(cfg)
    ip = SmolVLMImageProcessor(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    vp = SmolVLMVideoProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    proc = SmolVLMProcessor(
        image_processor=ip,
        tokenizer=tok,
        video_processor=vp,
        image_seq_len=4,
        chat_template=IDEFICS3_TEMPLATE.replace("<|begin_of_text|>", "<|im_start|>"),
    )
    return model, proc


def build_paligemma(seed: int) -> tuple[nn.Module, Any]:
    """PaliGemma: SigLIP, Gemma decoder with a bidirectional prefix, no chat template (`answer en <question>`)."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tok = bpe_tokenizer(
        ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"],
        "<bos>",
        "<eos>",
        "<pad>",
        unk="<unk>",
        extra={"image_token": "<image>"},
    )
    text = _llama_like(
        GemmaConfig,
        len(tok),
        num_key_value_heads=1,
        head_dim=16,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    cfg = PaliGemmaConfig(
        vision_config=_siglip(),
        text_config=text,
        image_token_index=_ids(tok, "<image>")[0],
        vocab_size=len(tok),
        projection_dim=64,
        hidden_size=64,
    )
    cfg.vision_config.projection_dim = 64
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(cfg)
    ip = SiglipImageProcessor(size={"height": 32, "width": 32})
    ip.image_seq_length = 16
    return model, PaliGemmaProcessor(image_processor=ip, tokenizer=tok)


GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' "
    "else message['role']) + '\n' }}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "{{ '<start_of_image>' }}{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def build_gemma3(seed: int) -> tuple[nn.Module, Any]:
    """Gemma 3: SigLIP + pooled projector, sliding-window and global layers (a dict of masks), bidirectional
    attention inside each image, `<start_of_image>` wrapper tokens."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    tok = bpe_tokenizer(
        [
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            "<start_of_turn>",
            "<end_of_turn>",
            "<start_of_image>",
            "<end_of_image>",
            "<image_soft_token>",
        ],
        "<bos>",
        "<eos>",
        "<pad>",
        unk="<unk>",
        extra={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )
    boi, eoi, img = _ids(tok, "<start_of_image>", "<end_of_image>", "<image_soft_token>")
    text = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    cfg = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=boi,
        eoi_token_index=eoi,
        image_token_index=img,
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(cfg)
    with (
        torch.no_grad()
    ):  # transformers initialises the projection to zeros (pretrained weights overwrite it)
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.2)
    ip = Gemma3ImageProcessor(size={"height": 32, "width": 32})
    return model, Gemma3Processor(
        image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=GEMMA3_TEMPLATE
    )


def build_internvl(seed: int) -> tuple[nn.Module, Any]:
    """InternVL 3 (InternViT, pixel-shuffle, Qwen2 decoder, `<img>...</img>` wrapper, tiles)."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        Qwen2Config,
    )

    tok = bpe_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"],
        None,
        "<|im_end|>",
        "<|endoftext|>",
        extra={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    cfg = InternVLConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=[32, 32],
            patch_size=[8, 8],
        ),
        text_config=_llama_like(Qwen2Config, len(tok), eos_token_id=2, pad_token_id=0).to_dict(),
        image_token_id=_ids(tok, "<IMG_CONTEXT>")[0],
        image_seq_length=4,
        downsample_ratio=0.5,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(cfg)
    ip = GotOcr2ImageProcessor(
        size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=4
    )
    vp = InternVLVideoProcessor(size={"height": 32, "width": 32})
    proc = InternVLProcessor(
        image_processor=ip,
        tokenizer=tok,
        video_processor=vp,
        image_seq_length=4,
        chat_template=_chatml("<IMG_CONTEXT>\n"),
    )
    return model, proc


MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<|image|>' }}{% elif c['type'] == 'text' %}"
    "{{ c['text'] }}{% endif %}{% endfor %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def build_mllama(seed: int) -> tuple[nn.Module, Any]:
    """Llama 3.2 Vision: tiled vision encoder and cross-attention layers interleaved in the decoder."""
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessor,
        MllamaProcessor,
    )

    tok = bpe_tokenizer(
        [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|finetune_right_pad_id|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|python_tag|>",
            "<|image|>",
        ],
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|finetune_right_pad_id|>",
        extra={"image_token": "<|image|>"},
    )
    vision = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_global_layers=1,
        attention_heads=2,
        intermediate_size=64,
        vision_output_dim=64,
        image_size=32,
        patch_size=8,
        max_num_tiles=2,
        intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
    )
    text = dict(
        vocab_size=len(tok) + 8,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        cross_attention_layers=[1],
        pad_token_id=2,
        bos_token_id=0,
        eos_token_id=5,
    )
    cfg = MllamaConfig(vision_config=vision, text_config=text, image_token_index=_ids(tok, "<|image|>")[0])
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(cfg)
    ip = MllamaImageProcessor(size={"height": 32, "width": 32}, max_image_tiles=2)
    return model, MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=MLLAMA_TEMPLATE)


@dataclass(frozen=True)
class Family:
    """One row of the support matrix."""

    name: str
    model_class: str
    build: Callable[[int], tuple[nn.Module, Any]]
    refused: str | None = None  # the load_vlm error (regex) when the family is refused, else None

    @property
    def needs_torchvision(self) -> bool:
        return self.name in NEEDS_TORCHVISION


FAMILIES: tuple[Family, ...] = (
    Family("llava", "LlavaForConditionalGeneration", build_llava),
    Family("instructblip", "InstructBlipForConditionalGeneration", build_instructblip),
    Family("llava_next", "LlavaNextForConditionalGeneration", build_llava_next),
    Family("llava_onevision", "LlavaOnevisionForConditionalGeneration", build_llava_onevision),
    Family("qwen2_vl", "Qwen2VLForConditionalGeneration", build_qwen2_vl),
    Family("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", build_qwen2_5_vl),
    Family("idefics3", "Idefics3ForConditionalGeneration", build_idefics3),
    Family("smolvlm", "SmolVLMForConditionalGeneration", build_smolvlm),
    Family("paligemma", "PaliGemmaForConditionalGeneration", build_paligemma),
    Family("gemma3", "Gemma3ForConditionalGeneration", build_gemma3),
    Family("internvl", "InternVLForConditionalGeneration", build_internvl),
    Family("mllama", "MllamaForConditionalGeneration", build_mllama, refused=r"cross-attention"),
)
BY_NAME = {f.name: f for f in FAMILIES}


def save_family(family: Family, root: Path, seed: int = 0) -> Path:
    """Build `family` (decoder sharpened), save model + processor as an ordinary HF folder under `root`."""
    from vseam_pl.vlm import find_decoder

    model, processor = family.build(seed)
    sharpen_decoder(find_decoder(model), seed=seed)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root
