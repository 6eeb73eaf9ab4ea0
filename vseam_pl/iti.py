"""Inference-Time Intervention (Li et al., 2023) as honest_llama implements it, on a VLM's attention heads.

Each step follows a function of honest_llama (github.com/likenneth/honest_llama, ``utils.py`` and
``validation/validate_2fold.py``):

* **activations** (``get_activations/get_activations.py``): every (question, answer) pair is one row, the
  question's prompt with the answer appended, and the head outputs (``o_proj`` inputs) are read at its *last*
  token; the label is whether that answer is the true one (`answer_activations`: every candidate of a closed
  question, 1 for the gold answer, 0 for the others, so each question gives one true and one false row);
* **head selection** (``train_probes`` / ``get_top_heads``): a logistic-regression probe per head (scikit-learn's
  ``LogisticRegression(random_state=seed, max_iter=1000)``: L2 penalty with C = 1, unpenalised intercept) trained on
  the train questions, scored by its accuracy on held-out validation questions (``val_ratio`` 0.2, split by
  question); the K heads of highest validation accuracy are intervened on — also with ``--use_center_of_mass``,
  the mode the released models use (`probe_accuracies`, `top_probe_heads`);
* **direction** (``get_com_directions``): mean activation of true rows minus mean of false rows, over the train and
  validation questions (`com_directions`);
* **strength** (``validate_2fold.py``): the unit direction times the standard deviation of all tuning activations
  projected on it (``torch.std``, unbiased), times ``alpha`` (`iti_vectors`); defaults K = 48 heads, alpha = 15,
  which honest_llama sweeps (``validation/sweeping``) and we choose on the validation split;
* **where** (``interveners.py``, ``ITI_Intervener``): added to the head output at the *last* token of every forward
  (``b[0, -1] += ...``, batch size 1): the position that predicts the next token, i.e. the answer when the prompt is
  scored, and each new token during generation (`vseam_pl.baselines.HeadShift` with ``positions="last"``).

Differences, named: scikit-learn is not a dependency, so the probes are the same L2-regularised logistic
regression fitted by `torch.optim.LBFGS` (same objective, solver tolerances differ); heads of equal validation
accuracy are ordered by position (honest_llama's reversed ``argsort`` puts the later one first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from .encoding import encode
from .interventions import cache, forward_logits
from .prompts import DEFAULT_INSTRUCTION, build_prompts
from .ranking import rank_heads
from .text import normalize_answer
from .vlm import VLM

#: honest_llama's defaults (``validate_2fold.py``: ``--num_heads 48 --alpha 15``, ``--val_ratio 0.2``).
DEFAULT_K, DEFAULT_ALPHA, VAL_RATIO = 48, 15.0, 0.2


@dataclass(frozen=True)
class AnswerActivations:
    """Head outputs `acts [N, L, H, D]` at the last token of each (question, answer) row, `labels [N]` (1: the
    answer is true) and `questions [N]` (the row's question index, for splitting by question)."""

    acts: torch.Tensor
    labels: torch.Tensor
    questions: torch.Tensor


@torch.no_grad()
def answer_activations(
    vlm: VLM,
    questions: Sequence[str],
    images: Sequence[Image.Image],
    candidates: Sequence[Sequence[str]],
    answers: Sequence[str],
    instruction: str | None = DEFAULT_INSTRUCTION,
    batch_size: int = 16,
) -> AnswerActivations:
    """One row per (question, candidate answer): the head outputs at the answer's last token, labelled by whether
    the candidate is the gold answer (`normalize_answer` on both sides). Questions whose candidates do not contain
    the gold answer are refused (they would give only false rows)."""
    prompts = build_prompts(vlm, list(questions), instruction)
    rows: list[tuple[int, str, int]] = []
    for q, (cands, gold) in enumerate(zip(candidates, answers, strict=True)):
        truth = [normalize_answer(c) == normalize_answer(gold) for c in cands]
        if not any(truth):
            raise ValueError(
                f"question {q} ({questions[q]!r}): gold answer {gold!r} is not among {list(cands)}"
            )
        rows += [(q, c, int(t)) for c, t in zip(cands, truth, strict=True)]
    acts = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        enc = encode(
            vlm, [prompts[q] for q, _, _ in chunk], [images[q] for q, _, _ in chunk], [c for _, c, _ in chunk]
        )
        with cache(vlm, ("head",)) as store:
            forward_logits(vlm, enc)
        last = (enc.lengths - 1).clamp(min=0)
        rows_idx = torch.arange(enc.batch_size)
        acts.append(
            torch.stack(
                [
                    store["head"][layer][rows_idx, last.to(store["head"][layer].device)].float().cpu()
                    for layer in sorted(store["head"])
                ],
                1,
            )
        )
    return AnswerActivations(
        torch.cat(acts),
        torch.tensor([t for _, _, t in rows]),
        torch.tensor([q for q, _, _ in rows]),
    )


def split_questions(
    n_questions: int, val_ratio: float = VAL_RATIO, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """honest_llama's split: a random (1 - val_ratio) of the questions train the probes, the rest validate them."""
    if n_questions < 2:
        raise ValueError(f"ITI needs at least 2 questions to hold some out for validation, got {n_questions}")
    order = torch.randperm(n_questions, generator=torch.Generator().manual_seed(seed))
    n_train = min(max(int(n_questions * (1 - val_ratio)), 1), n_questions - 1)
    return order[:n_train].sort().values, order[n_train:].sort().values


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, c: float = 1.0, max_iter: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularised logistic regression per probe, all probes at once: `x [P, N, D]`, `y [N]` in {0, 1} ->
    `(w [P, D], b [P])` minimising ``0.5 |w|^2 + c * sum_i logloss_i`` (scikit-learn's objective; the intercept is
    not penalised). The probes are independent, so one LBFGS on the sum of their objectives solves each."""
    x = x.double()
    target = y.double().expand(x.shape[0], -1)
    w = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(x.shape[0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], max_iter=max_iter, tolerance_grad=1e-8, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = torch.einsum("pnd,pd->pn", x, w) + b[:, None]
        loss = 0.5 * (w**2).sum() + c * torch.nn.functional.binary_cross_entropy_with_logits(
            logits, target, reduction="sum"
        )
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def probe_accuracies(data: AnswerActivations, train_q: torch.Tensor, val_q: torch.Tensor) -> torch.Tensor:
    """`[L, H]` validation accuracy of each head's probe (honest_llama's ``train_probes``): fitted on the rows of the
    train questions, scored on the rows of the validation questions."""
    train = torch.isin(data.questions, train_q)
    val = torch.isin(data.questions, val_q)
    n, layers, heads, dim = data.acts.shape
    flat = data.acts.reshape(n, layers * heads, dim).transpose(0, 1)  # [P, N, D]
    w, b = fit_logistic(flat[:, train], data.labels[train])
    pred = (torch.einsum("pnd,pd->pn", flat[:, val].double(), w) + b[:, None]) > 0
    return (pred == data.labels[val].bool()).double().mean(1).float().view(layers, heads)


def top_probe_heads(accuracy: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """``get_top_heads``: the `k` heads of highest probe validation accuracy (ties: earlier position first)."""
    return [(layer, head) for layer, head, _ in rank_heads(accuracy, k)]


def com_directions(data: AnswerActivations) -> torch.Tensor:
    """``get_com_directions``: `[L, H, D]` mean of true rows minus mean of false rows (train + validation)."""
    true, false = data.labels == 1, data.labels == 0
    if not true.any() or not false.any():
        raise ValueError("center-of-mass directions need both true and false answers")
    return data.acts[true].mean(0) - data.acts[false].mean(0)


def iti_vectors(
    data: AnswerActivations, directions: torch.Tensor, heads: Sequence[tuple[int, int]], alpha: float
) -> torch.Tensor:
    """`[K, D]` shifts ``alpha * std(acts . unit) * unit`` of `heads` (``validate_2fold.py``: the std of all tuning
    activations projected on the unit direction, ``torch.std``), added at the last token."""
    out = []
    for layer, head in heads:
        unit = directions[layer, head] / directions[layer, head].norm().clamp(min=1e-12)
        std = (data.acts[:, layer, head] @ unit).std()
        out.append(alpha * std * unit)
    return torch.stack(out)


@dataclass(frozen=True)
class ITISelection:
    """What ITI learns once per model: heads ranked by probe validation accuracy, their center-of-mass directions and
    the activations their strengths are measured on; `shifts(k, alpha)` gives one (heads, vectors) setting."""

    ranked: list[tuple[int, int]]
    accuracy: torch.Tensor
    directions: torch.Tensor
    data: AnswerActivations

    def shifts(self, k: int, alpha: float) -> tuple[list[tuple[int, int]], torch.Tensor]:
        heads = self.ranked[: min(k, len(self.ranked))]
        return heads, iti_vectors(self.data, self.directions, heads, alpha)


def select_iti(data: AnswerActivations, seed: int = 0, val_ratio: float = VAL_RATIO) -> ITISelection:
    """Probe every head on a question-level train/validation split and rank them (honest_llama, one fold)."""
    n_questions = int(data.questions.max()) + 1
    train_q, val_q = split_questions(n_questions, val_ratio, seed)
    accuracy = probe_accuracies(data, train_q, val_q)
    return ITISelection(top_probe_heads(accuracy, accuracy.numel()), accuracy, com_directions(data), data)


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_K",
    "VAL_RATIO",
    "AnswerActivations",
    "ITISelection",
    "answer_activations",
    "com_directions",
    "fit_logistic",
    "iti_vectors",
    "probe_accuracies",
    "select_iti",
    "split_questions",
    "top_probe_heads",
]
