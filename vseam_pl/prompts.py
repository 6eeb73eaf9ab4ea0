"""Turning a question into the model's prompt: the processor's chat template where there is one, else a per-family
fallback (InstructBLIP checkpoints ship none)."""

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
