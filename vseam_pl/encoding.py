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
    """Set the tokenizer's padding side for the block (processors are also called with `padding_side=`, because
    some, like InternVL's, carry their own default that wins over the tokenizer's)."""
    tok = vlm.tokenizer
    old = tok.padding_side
    tok.padding_side = side
    try:
        yield
    finally:
        tok.padding_side = old


def suffix_convention(vlm: VLM) -> bool:
    """PaliGemma-style processors take the answer as `suffix=` (encoded after the prompt's `\n` with eos appended,
    causal while the prompt prefix is bidirectional) instead of as text appended to the prompt."""
    return vlm.family == "paligemma"


def join_continuation(prompt: str, continuation: str, add_eos: bool = False, eos: str | None = None) -> str:
    """`prompt` followed by the answer as the model would write it: after a template that ends in whitespace
    (`assistant\n`, `model\n`) the answer starts with no space, otherwise with one (`ASSISTANT: yes`)."""
    text = continuation.strip()
    if text and not prompt[-1:].isspace():
        text = " " + text
    text = prompt + text
    return text + (eos or "") if add_eos else text


def image_batch(images: Sequence[Image.Image]) -> list[list[Image.Image]]:
    """One image list per prompt: Gemma 3, SmolVLM, Idefics3 and Mllama read a flat list as all images of the
    first prompt."""
    return [[im] for im in images]


def check_padding(mask: torch.Tensor, side: str, name: str) -> None:
    """Raise unless the rows are padded on `side`. Right: each row's real tokens are one block from position 0
    (answer spans and last prompt positions are counted from there). Left: every row ends in a real token, where
    generation continues (InstructBLIP puts its query tokens before the left padding, which is fine there)."""
    m = mask.long()
    ok = bool((m[:, 1:] <= m[:, :-1]).all()) if side == "right" else bool((m[:, -1] == 1).all())
    if not ok:
        raise ValueError(
            f"{name}: the processor did not pad on the {side} although asked to; answer positions would "
            "be read from padding"
        )


def run_processor(
    vlm: VLM, prompts: Sequence[str], images: Sequence[Image.Image], side: str, **kwargs
) -> dict:
    """The processor's own encoding of `prompts` with one image each, padded on `side` (checked)."""
    with padding_side(vlm, side):
        batch = vlm.processor(
            images=image_batch(images),
            text=list(prompts),
            padding=True,
            padding_side=side,
            return_tensors="pt",
            **kwargs,
        )
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "labels"}
    check_padding(inputs["attention_mask"], side, vlm.name)
    return inputs


def encode(
    vlm: VLM,
    prompts: Sequence[str],
    images: Sequence[Image.Image],
    continuations: Sequence[str] | None = None,
    add_eos: bool = False,
) -> Encoded:
    """Encode each prompt (+ its continuation [+ eos]) with its image, right-padded, on the CPU.

    The continuation's span is taken from the processor's own joint encoding: the prompt is encoded alone too and
    must be an exact prefix of the joint row, so a template's newline, PaliGemma's `\n` + suffix, or wrapper tokens
    around the image can never shift the span.
    """
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    if continuations is not None and len(continuations) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    if continuations is None:
        inputs = run_processor(vlm, prompts, images, "right")
        lengths = inputs["attention_mask"].sum(dim=1)
        check_context(
            vlm, lengths, list(prompts)
        )  # before any forward; callers holding the records name the record
        return Encoded(inputs, lengths.clone(), lengths)
    eos = vlm.tokenizer.eos_token
    if suffix_convention(
        vlm
    ):  # the processor appends eos to every suffix; it is dropped below when not wanted
        inputs = run_processor(vlm, prompts, images, "right", suffix=[c.strip() for c in continuations])
    else:
        texts = [join_continuation(p, c, add_eos, eos) for p, c in zip(prompts, continuations, strict=True)]
        inputs = run_processor(vlm, texts, images, "right")
    lengths = inputs["attention_mask"].sum(dim=1)
    check_context(vlm, lengths, list(prompts))
    prompt_ids = run_processor(vlm, prompts, images, "right")
    prompt_lengths = prompt_ids["attention_mask"].sum(dim=1)
    for row in range(len(prompts)):
        n = int(prompt_lengths[row])
        if n >= int(lengths[row]) or not torch.equal(
            inputs["input_ids"][row, :n], prompt_ids["input_ids"][row, :n]
        ):
            raise ValueError(
                f"{vlm.name}: row {row}: the prompt's encoding is not a prefix of prompt + answer "
                f"{continuations[row]!r} (the answer merged into the prompt's last token); prompt {prompts[row]!r}"
            )
    if suffix_convention(vlm) and not add_eos:
        last = inputs["input_ids"][torch.arange(len(prompts)), lengths - 1]
        if (last != vlm.tokenizer.eos_token_id).any():
            raise ValueError(f"{vlm.name}: the processor's suffix did not end in eos")
        lengths = lengths - 1
    if "qformer_input_ids" in inputs:
        # InstructBLIP's Q-Former reads the text too: it must see the prompt only, never the answer it is scored on.
        inputs["qformer_input_ids"] = prompt_ids["qformer_input_ids"]
        inputs["qformer_attention_mask"] = prompt_ids["qformer_attention_mask"]
    return Encoded(inputs, prompt_lengths, lengths)
