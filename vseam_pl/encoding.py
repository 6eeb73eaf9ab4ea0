"""Batching prompts, images and (optional) answer continuations into model inputs.

Rows are right-padded, so every position before the padding keeps its unpadded meaning; `prompt_lengths` says where
each row's continuation (answer) starts, counted in model tokens (image tokens included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from PIL import Image

from .context import check_context
from .vlm import VLM


@dataclass
class Encoded:
    """Model inputs plus the bookkeeping needed to score continuations."""

    inputs: dict[str, torch.Tensor]
    prompt_lengths: torch.Tensor  # [B] tokens before the continuation
    lengths: torch.Tensor  # [B] non-padding tokens

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Encoded:
        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device)

        return Encoded({k: move(v) for k, v in self.inputs.items()}, self.prompt_lengths, self.lengths)

    def last_prompt_positions(self) -> torch.Tensor:
        """Index of each row's last prompt token (where the first answer token is predicted)."""
        return self.prompt_lengths - 1


@contextmanager
def padding_side(vlm: VLM, side: str) -> Iterator[None]:
    tok = vlm.tokenizer
    old = tok.padding_side
    tok.padding_side = side
    try:
        yield
    finally:
        tok.padding_side = old


def _token_count(vlm: VLM, texts: list[str]) -> list[int]:
    return [len(ids) for ids in vlm.tokenizer(texts, add_special_tokens=True)["input_ids"]]


def join_continuation(prompt: str, continuation: str, add_eos: bool, eos: str | None) -> str:
    text = f"{prompt} {continuation.strip()}" if continuation else prompt
    return text + (eos or "") if add_eos else text


def encode(
    vlm: VLM,
    prompts: Sequence[str],
    images: Sequence[Image.Image],
    continuations: Sequence[str] | None = None,
    add_eos: bool = False,
) -> Encoded:
    """Encode `prompt (+ " " + continuation [+ eos])` with its image, right-padded, on the CPU."""
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    if continuations is not None and len(continuations) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    eos = vlm.tokenizer.eos_token
    texts = (
        list(prompts)
        if continuations is None
        else [join_continuation(p, c, add_eos, eos) for p, c in zip(prompts, continuations, strict=True)]
    )
    with padding_side(vlm, "right"):
        batch = vlm.processor(images=list(images), text=texts, padding=True, return_tensors="pt")
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    if continuations is not None and "qformer_input_ids" in inputs:
        # InstructBLIP's Q-Former reads the text too: it must see the prompt only, never the answer it is scored on.
        qformer = vlm.processor.qformer_tokenizer(list(prompts), padding=True, return_tensors="pt")
        inputs["qformer_input_ids"], inputs["qformer_attention_mask"] = qformer["input_ids"], qformer["attention_mask"]
    lengths = inputs["attention_mask"].sum(dim=1)
    check_context(vlm, lengths, texts)  # before any forward; callers that hold the records name the record
    if continuations is None:
        prompt_lengths = lengths.clone()
    else:
        # The continuation's token count does not depend on image-token expansion, so the tokenizer alone tells it.
        full, prompt_only = _token_count(vlm, texts), _token_count(vlm, list(prompts))
        cont = torch.tensor([f - p for f, p in zip(full, prompt_only, strict=True)])
        if (cont < 0).any():
            raise ValueError("a continuation shortened its prompt's tokenization; check the prompt template")
        prompt_lengths = lengths - cont
    return Encoded(inputs, prompt_lengths, lengths)
