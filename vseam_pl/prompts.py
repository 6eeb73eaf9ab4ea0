"""Turning a question into the model's prompt: the processor's chat template where there is one, else a per-family
fallback (InstructBLIP checkpoints ship none); and the V-SEAM release's hard-coded prompts (`release_prompt`)."""

from __future__ import annotations

from .vlm import VLM

DEFAULT_INSTRUCTION = "Answer the question using a single word or phrase."

#: Used when the processor has no chat template. `{text}` is the question plus the instruction.
FALLBACK_TEMPLATES: dict[str, str] = {
    "llava": "USER: <image>\n{text} ASSISTANT:",
    "instructblip": "{text}",  # the processor prepends the query tokens itself
    "paligemma": "answer en {text}",  # PaliGemma's task prefix; the processor prepends image tokens + <bos>, appends \n
    "generic": "<image>\n{text}",
}


def user_text(question: str, instruction: str | None = DEFAULT_INSTRUCTION) -> str:
    question = question.strip()
    return f"{question}\n{instruction}" if instruction else question


def build_prompt(vlm: VLM, question: str, instruction: str | None = DEFAULT_INSTRUCTION) -> str:
    """The full prompt text up to where the answer starts."""
    text = user_text(question, instruction)
    if getattr(vlm.processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return vlm.processor.apply_chat_template(messages, add_generation_prompt=True)
    template = FALLBACK_TEMPLATES.get(vlm.family, FALLBACK_TEMPLATES["generic"])
    return template.format(text=text)


def build_prompts(vlm: VLM, questions: list[str], instruction: str | None = DEFAULT_INSTRUCTION) -> list[str]:
    return [build_prompt(vlm, q, instruction) for q in questions]


#: The V-SEAM release's hard-coded prompts (`Attention_Head_Analysis.py`), per model family: (template, instruction).
#: `{text}` is the question as written, a space, and the instruction.
RELEASE_PROMPTS: dict[str, tuple[str, str]] = {
    "llava": ("USER: <image>\n{text}\nASSISTANT:", "Please answer with a single word."),
    "instructblip": ("Question: {text}", "Answer using a single word."),
}


def release_prompt(vlm: VLM, question: str, instruction: str | None = None) -> str:
    """The release's prompt for `vlm`'s family; `instruction` replaces the release's own (None: keep it, "": none).

    The question is used exactly as written (no stripping, no chat template), as the release does.
    """
    if vlm.family not in RELEASE_PROMPTS:
        raise ValueError(
            f"{vlm.name}: the V-SEAM release has prompts for the {sorted(RELEASE_PROMPTS)} families "
            f"only, not {vlm.family!r}; use the default protocol"
        )
    template, own = RELEASE_PROMPTS[vlm.family]
    instruction = own if instruction is None else instruction
    return template.format(text=f"{question} {instruction}" if instruction else question)
