"""Which token positions of an encoded prompt belong to which group: image, text, question, concept word, final.

Image positions are read from the actual `input_ids` (`== config.image_token_id`): the LLaVA processor expands
`<image>` into one token per patch wherever the template put it, and InstructBLIP prepends its query tokens under
the same id, so no position is ever assumed. Question and concept positions come from the tokenizer's character
offsets on the prompt, aligned with the non-image tokens the processor produced. Processors add wrapper tokens
around the image (Idefics3's `<fake_token_around_image>`/`<row_i_col_j>`, InternVL's `<img>`, Gemma 3's
`\n\n<start_of_image>`, PaliGemma's `<bos>` and `\n`), so the alignment is a longest-common-subsequence match;
every question token must be matched, else it is an error, not a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import torch

from ..records import ImagePair
from ..vlm import VLM

#: Keys of `ImagePair.edit` naming the edited concept: the synthetic world (`from`/`to`), the diffusion editor
#: (`target`/`substitute`), or an explicit `concept`.
CONCEPT_KEYS: tuple[str, ...] = ("concept", "from", "to", "target", "substitute")


class PositionError(ValueError):
    """The prompt's tokens cannot be located in the encoded input (the message says which and why)."""


def image_token_id(vlm: VLM) -> int:
    """The id the processor gives to image positions (LLaVA patches, InstructBLIP query tokens)."""
    cfg = vlm.model.config
    for key in ("image_token_id", "image_token_index"):
        value = getattr(cfg, key, None)
        if value is not None:
            return int(value)
    raise PositionError(
        f"{vlm.name}: config has no image_token_id/image_token_index; cannot find image positions"
    )


def image_positions(vlm: VLM, input_ids: torch.Tensor) -> torch.Tensor:
    """Indices of the image tokens in one row of `input_ids`."""
    pos = (input_ids == image_token_id(vlm)).nonzero().flatten()
    if pos.numel() == 0:
        raise PositionError(f"{vlm.name}: no image token (id {image_token_id(vlm)}) in the encoded prompt")
    return pos


def concept_words(pair: ImagePair) -> list[str]:
    """The edited concept's words as the edit record names them (both sides of the edit, deduplicated)."""
    words = [pair.edit.get(k) for k in CONCEPT_KEYS]
    return list(dict.fromkeys(w.strip() for w in words if isinstance(w, str) and w.strip()))


def _word_spans(text: str, words: Iterable[str]) -> list[tuple[int, int]]:
    spans = []
    for w in words:
        for m in re.finditer(rf"(?<!\w){re.escape(w)}(?!\w)", text, flags=re.IGNORECASE):
            spans.append(m.span())
    return spans


@dataclass
class TokenGroups:
    """Position groups of one encoded prompt (indices into its sequence)."""

    image: list[int]
    text: list[int]  # every non-image prompt position (template, question, instruction, final)
    question: list[int]
    concept: list[int]  # subset of `question`: tokens of the edited concept's word(s)
    final: int  # last prompt position: where the answer is predicted
    tokens: list[str] = field(default_factory=list)  # token strings of the whole prompt, for labels

    def token_positions(self) -> list[int]:
        """Positions for token-wise patching: the question tokens then the final position."""
        return [*dict.fromkeys([*self.question, self.final])]

    def role(self, position: int) -> str:
        """`final`, `concept` or `question` (priority in that order)."""
        if position == self.final:
            return "final"
        return "concept" if position in self.concept else "question"


def token_groups(
    vlm: VLM, prompt: str, question: str, input_ids: torch.Tensor, length: int, concepts: Iterable[str] = ()
) -> TokenGroups:
    """Locate the groups of one encoded row (`input_ids[:length]` are its real tokens).

    `prompt` must be the exact text the row was encoded from and contain `question`.
    """
    ids = input_ids[:length].tolist()
    img_id = image_token_id(vlm)
    image = [i for i, t in enumerate(ids) if t == img_id]
    if not image:
        raise PositionError(f"{vlm.name}: no image token (id {img_id}) in the encoded prompt {prompt!r}")
    text = [i for i, t in enumerate(ids) if t != img_id]
    tok = vlm.tokenizer
    if not getattr(tok, "is_fast", False):
        raise PositionError(f"{vlm.name}: token positions need a fast tokenizer (character offsets)")
    enc = tok(prompt, add_special_tokens=True, return_offsets_mapping=True)
    prompt_ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    start = prompt.find(question.strip())
    if start < 0:
        raise PositionError(f"question {question!r} does not occur in the prompt {prompt!r}")
    q_span = (start, start + len(question.strip()))
    spans = [(start + a, start + b) for a, b in _word_spans(question.strip(), concepts)]

    def overlaps(off: tuple[int, int], span: tuple[int, int]) -> bool:
        return off[1] > off[0] and off[0] < span[1] and off[1] > span[0]

    # prompt token index -> row position, through the processor's non-image tokens
    text_ids = [ids[i] for i in text]
    where: dict[int, int] = {}
    matcher = SequenceMatcher(None, prompt_ids, text_ids, autojunk=False)
    for a, b, n in matcher.get_matching_blocks():
        for k in range(n):
            where[a + k] = text[b + k]
    wanted = [k for k, off in enumerate(offsets) if overlaps(off, q_span)]
    missing = [k for k in wanted if k not in where]
    if not wanted or missing:
        raise PositionError(
            f"{vlm.name}: {len(missing)} of the question's {len(wanted)} tokens are not among the processor's "
            f"non-image tokens (the processor tokenized the question differently); prompt {prompt!r}"
        )
    q_pos = sorted(where[k] for k in wanted)
    c_pos = sorted(where[k] for k in wanted if any(overlaps(offsets[k], sp) for sp in spans))
    return TokenGroups(
        image=image,
        text=text,
        question=q_pos,
        concept=c_pos,
        final=length - 1,
        tokens=tok.convert_ids_to_tokens(ids),
    )
