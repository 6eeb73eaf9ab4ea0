"""The model's context length, and the check that an encoded prompt fits it.

A prompt longer than the positions a model was trained on does not fail: the tokenizer warns, and the forward
runs for minutes on positions the model has never seen, then answers. `check_context` refuses it before the
forward; the caller that knows the records names the one at fault (`PromptTooLongError.text` holds the prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

_UNSET = 10**9  # tokenizers without a real limit report ~1e30


class PromptTooLongError(ValueError):
    """An encoded prompt (image tokens included) longer than the model's context; `text` is that prompt."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(reason)
        self.reason, self.text = reason, text

    def naming(self, source: str) -> PromptTooLongError:
        """The same error, naming the record (``file:line``) it came from."""
        return PromptTooLongError(f"{source}: {self.reason}", self.text)


def max_context(vlm: Any) -> int | None:
    """The fewest positions the language model or its tokenizer allow (None when neither says)."""
    limits = []
    config = vlm.model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if isinstance(getattr(text, "max_position_embeddings", None), int):
        limits.append(text.max_position_embeddings)
    tok_max = getattr(vlm.tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < _UNSET:
        limits.append(tok_max)
    return min(limits) if limits else None


def check_context(vlm: Any, lengths: torch.Tensor, texts: Sequence[str], extra: int = 0) -> None:
    """Raise `PromptTooLongError` for the first row whose token count (`lengths [B]`, plus `extra` tokens to be
    generated) exceeds `max_context`; `texts` are the rows' prompts."""
    limit = max_context(vlm)
    if limit is None:
        return
    over = (lengths + extra > limit).nonzero()
    if len(over):
        row = int(over[0])
        plus = f" + {extra} to generate" if extra else ""
        raise PromptTooLongError(
            f"prompt is {int(lengths[row])} tokens (image tokens included){plus}, longer than "
            f"the {limit}-token context of {vlm.name}; shorten the question or the instruction "
            f"(prompt starts {texts[row][:60]!r})",
            texts[row],
        )
