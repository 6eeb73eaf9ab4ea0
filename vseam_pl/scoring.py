"""Answering questions with a VLM: log-probability scoring of closed answer sets, greedy generation for open
questions, and the teacher-forced answer loss used for training.

Closed sets are scored by the log-probability of each candidate's *full* token sequence after the prompt,
case-insensitively: the variants `yes`/`Yes`/`YES` of a candidate are pooled with logsumexp (variants that tokenize
identically count once).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from .context import check_context, max_context
from .encoding import Encoded, encode, join_continuation, run_processor, suffix_convention
from .interventions.replay import forward_logits
from .prompts import DEFAULT_INSTRUCTION, build_prompts
from .vlm import VLM


def continuation_logprobs(logits: torch.Tensor, enc: Encoded, reduce: str = "sum") -> torch.Tensor:
    """Per-row sum (or mean) of log p(continuation token | prefix) over positions [prompt_len, length)."""
    ids = enc.input_ids.to(logits.device)
    n_cont = (enc.lengths - enc.prompt_lengths).to(logits.device)
    width = int(n_cont.max().clamp(min=1))
    offsets = torch.arange(width, device=logits.device)
    target_pos = enc.prompt_lengths.to(logits.device)[:, None] + offsets[None, :]  # [B, K]
    valid = offsets[None, :] < n_cont[:, None]
    target_pos = torch.where(valid, target_pos, torch.zeros_like(target_pos)).clamp(max=ids.shape[1] - 1)
    pred_pos = (target_pos - 1).clamp(min=0)
    rows = torch.arange(ids.shape[0], device=logits.device)[:, None]
    logp = F.log_softmax(logits[rows, pred_pos].float(), dim=-1)  # [B, K, V]
    token_logp = logp.gather(-1, ids[rows, target_pos].unsqueeze(-1)).squeeze(-1)
    total = (token_logp * valid).sum(dim=1)
    if reduce == "mean":
        return total / n_cont.clamp(min=1)
    return total


def answer_loss(
    vlm: VLM,
    prompts: Sequence[str],
    images: Sequence[Image.Image],
    answers: Sequence[str],
    reduction: str = "token",
) -> torch.Tensor:
    """Cross-entropy of `answer + eos` after each prompt (the modulation training objective).

    `reduction="token"` averages over all answer tokens of the batch; `"example"` averages each example's tokens
    first, so long answers (captions) weigh no more than one-word ones.
    """
    if reduction == "token":
        return answer_token_losses(vlm, prompts, images, answers)[0].mean()
    if reduction == "example":
        enc = encode(vlm, prompts, images, answers, add_eos=True)
        return (-continuation_logprobs(forward_logits(vlm, enc), enc, reduce="mean")).mean()
    raise ValueError(f"reduction must be 'token' or 'example', got {reduction!r}")


def answer_token_losses(
    vlm: VLM,
    prompts: Sequence[str],
    images: Sequence[Image.Image],
    answers: Sequence[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy of every `answer + eos` token of the batch (`[N]`, float32) and which of them is the
    end-of-sequence token (`[N]` bool): training minimises the mean of all, and logs the answer tokens' alone."""
    enc = encode(vlm, prompts, images, answers, add_eos=True)
    logits = forward_logits(vlm, enc)
    ids = enc.input_ids.to(logits.device)
    positions = torch.arange(ids.shape[1], device=ids.device)[None, :]
    ends = enc.lengths.to(ids.device)[:, None]
    answer_span = (positions >= enc.prompt_lengths.to(ids.device)[:, None]) & (positions < ends)
    targets = answer_span[:, 1:]
    ce = F.cross_entropy(logits[:, :-1][targets].float(), ids[:, 1:][targets], reduction="none")
    eos_id = vlm.tokenizer.eos_token_id
    last = (positions == ends - 1) & (
        ids == eos_id if eos_id is not None else torch.zeros_like(ids, dtype=bool)
    )
    return ce, last[:, 1:][targets]


def case_variants(answer: str) -> list[str]:
    a = answer.strip()
    return list(dict.fromkeys([a.lower(), a[:1].upper() + a[1:].lower(), a.upper()]))


def variant_token_ids(vlm: VLM, prompt: str, variant: str) -> tuple[int, ...]:
    """The tokens `variant` is written with after `prompt`, joined as :func:`encode` joins them (no leading space
    after a template ending in a newline, PaliGemma's separately encoded suffix). Only the text after the image
    matters, so the tokenizer alone suffices; the family matrix checks it against the processor's joint encoding."""
    tok = vlm.tokenizer
    if suffix_convention(vlm):
        return tuple(tok(variant.strip(), add_special_tokens=False)["input_ids"])
    full = tok(join_continuation(prompt, variant), add_special_tokens=True)["input_ids"]
    head = tok(prompt, add_special_tokens=True)["input_ids"]
    if full[: len(head)] != head:
        raise ValueError(
            f"{vlm.name}: answer {variant!r} merges with the end of the prompt {prompt[-40:]!r} when "
            "tokenized; its tokens are not separable"
        )
    return tuple(full[len(head) :])


def score_candidates(
    vlm: VLM,
    prompts: Sequence[str],
    images: Sequence[Image.Image],
    candidates: Sequence[Sequence[str]],
) -> list[torch.Tensor]:
    """Log-probability of each candidate answer for each example: a list of [C_i] tensors.

    When every candidate variant is one token (yes/no with most tokenizers), a single prompt forward suffices;
    otherwise each (example, variant) is one row of a teacher-forced forward.
    """
    variants: list[
        list[tuple[int, str, tuple[int, ...]]]
    ] = []  # per example: (candidate index, text, token ids)
    for prompt, cands in zip(prompts, candidates, strict=True):
        seen: dict[tuple[int, ...], tuple[int, str]] = {}
        for ci, cand in enumerate(cands):
            for v in case_variants(cand):
                ids = variant_token_ids(vlm, prompt, v)
                if ids and ids not in seen:
                    seen[ids] = (ci, v)
        variants.append([(ci, v, ids) for ids, (ci, v) in seen.items()])

    if all(len(ids) == 1 for row in variants for _, _, ids in row):
        enc = encode(vlm, prompts, images)
        logits = forward_logits(vlm, enc)
        rows = torch.arange(enc.batch_size, device=logits.device)
        next_logp = F.log_softmax(logits[rows, enc.last_prompt_positions().to(logits.device)].float(), dim=-1)
        per_variant = [[next_logp[b, ids[0]] for _, _, ids in row] for b, row in enumerate(variants)]
    else:
        flat_prompts, flat_images, flat_cont, owner = [], [], [], []
        for b, row in enumerate(variants):
            for _, v, _ in row:
                flat_prompts.append(prompts[b])
                flat_images.append(images[b])
                flat_cont.append(v)
                owner.append(b)
        enc = encode(vlm, flat_prompts, flat_images, flat_cont)
        flat_scores = continuation_logprobs(forward_logits(vlm, enc), enc)
        per_variant = [[] for _ in variants]
        for score, b in zip(flat_scores, owner, strict=True):
            per_variant[b].append(score)

    out = []
    for row, scores, cands in zip(variants, per_variant, candidates, strict=True):
        result = torch.full((len(cands),), float("-inf"))
        for (ci, _, _), s in zip(row, scores, strict=True):
            result[ci] = torch.logaddexp(result[ci], s.detach().float().cpu())
        out.append(result)
    return out


@torch.no_grad()
def generate_answers(
    vlm: VLM,
    prompts: Sequence[str],
    images: Sequence[Image.Image],
    max_new_tokens: int = 8,
    first_line: bool = True,
    fit_context: bool = False,
) -> list[str]:
    """Greedy answers (left-padded batch), stripped; only the first line with `first_line` (vseam-pl's short
    answers), else the whole reply (what lmms-eval, LLaVA and VLMEvalKit parse). With `fit_context`,
    `max_new_tokens` is cut to what the model's context leaves after the longest prompt of the batch."""
    batch = run_processor(vlm, prompts, images, "left")
    inputs = {k: v.to(vlm.device) for k, v in batch.items()}
    lengths = inputs["attention_mask"].sum(dim=1).cpu()
    limit = max_context(vlm)
    if fit_context and limit is not None:
        max_new_tokens = max(1, min(max_new_tokens, limit - int(lengths.max())))
    check_context(vlm, lengths, list(prompts), extra=max_new_tokens)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(vlm.model.dtype)
    tok = vlm.tokenizer
    out = vlm.model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    new = out[:, inputs["input_ids"].shape[1] :]
    texts = [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return [t.split("\n")[0].strip() for t in texts] if first_line else texts


@torch.no_grad()
def predict(
    vlm: VLM,
    questions: Sequence[str],
    images: Sequence[Image.Image],
    candidates: Sequence[Sequence[str] | None],
    instruction: str | None = DEFAULT_INSTRUCTION,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    first_line: bool = True,
    fit_context: bool = False,
) -> list[str]:
    """One answer per question: the best candidate for closed sets, a greedy generation for open questions
    (`generate_answers`; `first_line` and `fit_context` as there)."""
    answers: list[str | None] = [None] * len(questions)
    prompts = build_prompts(vlm, list(questions), instruction)
    closed = [i for i, c in enumerate(candidates) if c]
    open_ = [i for i, c in enumerate(candidates) if not c]
    for start in range(0, len(closed), batch_size):
        idx = closed[start : start + batch_size]
        scores = score_candidates(
            vlm, [prompts[i] for i in idx], [images[i] for i in idx], [candidates[i] for i in idx]
        )
        for i, s in zip(idx, scores, strict=True):
            answers[i] = candidates[i][int(s.argmax())]
    for start in range(0, len(open_), batch_size):
        idx = open_[start : start + batch_size]
        gen = generate_answers(
            vlm, [prompts[i] for i in idx], [images[i] for i in idx], max_new_tokens, first_line, fit_context
        )
        for i, g in zip(idx, gen, strict=True):
            answers[i] = g
    return [a if a is not None else "" for a in answers]
