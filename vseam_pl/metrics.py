"""DDP-safe evaluation metrics (torchmetrics): VQA exact-match accuracy, POPE, and the paired per-example outcomes
the LightningModule updates in validation and test and the report is built from.

Strings cannot be metric states, so group and split names are fixed at construction and stored as indices (or, for
`PairedOutcomes`, carried as bytes); every state has a `dist_reduce_fx`, so `compute()` gives the same numbers on 1
or N processes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from .evaluation import SYSTEMS, Outcome, make_outcomes
from .records import QARecord
from .text import answers_match, check_parser, normalize_answer, parse_yes_no

POPE_SPLITS: tuple[str, ...] = ("random", "popular", "adversarial")
POPE_METRICS: tuple[str, ...] = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "yes_ratio",
    "gt_yes_ratio",
    "unanswered",
)

# Columns of a POPE confusion count: prediction x ground truth, with "unanswered" (reply not starting with yes/no).
TP, FP, TN, FN, UNANSWERED_YES, UNANSWERED_NO = range(6)


def _group_indices(
    names: Sequence[str] | str | None, n: int, known: dict[str, int], what: str
) -> Tensor | None:
    """Map per-example names (or one name for the whole batch) to the indices fixed at construction."""
    if names is None:
        if known:
            raise ValueError(f"{what} names are required: this metric was built with {what}s={list(known)}")
        return None
    if not known:
        raise ValueError(f"got {what} names but this metric was built without {what}s=[...]")
    if isinstance(names, str):
        names = [names] * n
    if len(names) != n:
        raise ValueError(f"got {len(names)} {what} names for {n} predictions")
    unknown = sorted({g for g in names if g not in known})
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; expected one of {list(known)}")
    return torch.tensor([known[g] for g in names], dtype=torch.long)


def _check_lengths(preds: Sequence[str], targets: Sequence[str]) -> None:
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")


class VQAAccuracy(Metric):
    """Exact-match accuracy of open answers under `parser` (`vseam_pl.text.answers_match`; `benchmark` tells the
    vlmevalkit parser which of its scoring rules applies), overall and per group.

    `compute()` returns ``{"accuracy": ..., "accuracy/<group>": ...}`` (NaN for a group with no examples, so the
    keys are stable for logging). Groups are e.g. GQA categories or levels, or COCO-QA types.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        groups: Sequence[str] | None = None,
        parser: str = "vseam",
        benchmark: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.parser = check_parser(parser)
        self.benchmark = benchmark  # the vlmevalkit parser scores each benchmark its own way
        self.groups = tuple(groups or ())
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"duplicate group names in {list(self.groups)}")
        self._group_index = {g: i for i, g in enumerate(self.groups)}
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        g = len(self.groups)
        self.add_state("group_correct", torch.zeros(g, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("group_total", torch.zeros(g, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, preds: Sequence[str], targets: Sequence[str], groups: Sequence[str] | str | None = None
    ) -> None:
        _check_lengths(preds, targets)
        idx = _group_indices(groups, len(preds), self._group_index, "group")
        correct = torch.tensor(
            [answers_match(p, t, self.parser, self.benchmark) for p, t in zip(preds, targets, strict=True)],
            dtype=torch.long,
        )
        self.correct += correct.sum().to(self.correct.device)
        self.total += len(preds)
        if idx is not None:
            n = len(self.groups)
            self.group_correct += (
                torch.bincount(idx, weights=correct, minlength=n).long().to(self.correct.device)
            )
            self.group_total += torch.bincount(idx, minlength=n).to(self.correct.device)

    def compute(self) -> dict[str, Tensor]:
        out = {"accuracy": self.correct / self.total if self.total > 0 else torch.tensor(float("nan"))}
        for i, g in enumerate(self.groups):
            out[f"accuracy/{g}"] = self.group_correct[i] / self.group_total[i]  # 0/0 = NaN
        return out


def pope_scores(counts: Tensor, unanswered_in_recall: bool = True) -> dict[str, Tensor]:
    """POPE metrics from confusion counts ``(..., 6)`` in the order TP, FP, TN, FN, UNANSWERED_YES, UNANSWERED_NO.

    Positive class is "yes". Conventions (stated because they change numbers on degenerate runs):

    * unanswered replies are wrong for accuracy, never a predicted yes, and count as misses for recall (as in
      VLMEvalKit); ``unanswered_in_recall=False`` drops them from recall's denominator instead (lmms-eval's rule,
      used with its parser); with a closed yes/no scorer there are none, so both agree;
    * precision is 0 when nothing is predicted "yes" (lmms-eval's convention), recall is 0 when there is no
      ground-truth "yes", and F1 is 0 when precision + recall is 0;
    * ``yes_ratio`` is the share of **predicted** "yes" (the bias POPE papers report), ``gt_yes_ratio`` the share of
      ground-truth "yes" (what lmms-eval logs as ``pope_yes_ratio``, a property of the data, not the model);
    * every metric is NaN when there are no examples.
    """
    c = counts.double()
    tp, fp, tn, fn, u_yes, u_no = c.unbind(-1)
    n = c.sum(-1)
    pred_yes, gt_yes = tp + fp, tp + fn + u_yes
    recall_den = gt_yes if unanswered_in_recall else tp + fn
    precision = torch.where(pred_yes > 0, tp / pred_yes.clamp(min=1), 0.0)
    recall = torch.where(recall_den > 0, tp / recall_den.clamp(min=1), 0.0)
    pr = precision + recall
    f1 = torch.where(pr > 0, 2 * precision * recall / pr.clamp(min=1e-12), 0.0)
    scores = {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": pred_yes / n,
        "gt_yes_ratio": gt_yes / n,
        "unanswered": (u_yes + u_no) / n,
    }
    return {k: torch.where(n > 0, v, float("nan")) for k, v in scores.items()}


class POPEMetrics(Metric):
    """POPE accuracy, precision, recall, F1 ("yes" positive) and yes-ratios, per split and averaged over splits.

    Predictions are free-form replies or candidate strings, read with `vseam_pl.text.parse_yes_no` under `parser`
    (which also picks the recall convention: lmms-eval's leaves unparsed replies out of it); targets must be
    "yes"/"no". `compute()` returns ``{"<split>/<metric>": ..., "avg/<metric>": ..., "<split>/n": ...}`` for every
    metric in `POPE_METRICS` (see `pope_scores` for the conventions); ``avg`` is the unweighted mean over the splits
    that have examples, as POPE tables report it. Splits with no examples give NaN.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, splits: Sequence[str] = POPE_SPLITS, parser: str = "vseam", **kwargs) -> None:
        super().__init__(**kwargs)
        self.parser = check_parser(parser)
        self.splits = tuple(splits)
        if not self.splits or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"splits must be non-empty and unique, got {list(self.splits)}")
        self._split_index = {s: i for i, s in enumerate(self.splits)}
        self.add_state("counts", torch.zeros(len(self.splits), 6, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], targets: Sequence[str], splits: Sequence[str] | str) -> None:
        cells = pope_cells(preds, targets, self.parser)
        idx = _group_indices(splits, len(preds), self._split_index, "split")
        flat = torch.bincount(idx * 6 + cells, minlength=len(self.splits) * 6)
        self.counts += flat.view(len(self.splits), 6).to(self.counts.device)

    def compute(self) -> dict[str, Tensor]:
        scores = pope_scores(self.counts, unanswered_in_recall=self.parser != "lmms_eval")
        n = self.counts.sum(-1)
        out: dict[str, Tensor] = {}
        for i, split in enumerate(self.splits):
            out[f"{split}/n"] = n[i]
            for m in POPE_METRICS:
                out[f"{split}/{m}"] = scores[m][i]
        has = n > 0
        for m in POPE_METRICS:
            out[f"avg/{m}"] = scores[m][has].mean() if has.any() else torch.tensor(float("nan"))
        return out


def pope_cells(preds: Sequence[str], targets: Sequence[str], parser: str = "vseam") -> Tensor:
    """Confusion cell (TP, FP, TN, FN, UNANSWERED_YES, UNANSWERED_NO) of each prediction; correct = TP or TN."""
    _check_lengths(preds, targets)
    check_parser(parser)
    return torch.tensor(
        [_pope_cell(p, t, parser) for p, t in zip(preds, targets, strict=True)], dtype=torch.long
    )


def _pope_cell(pred: str, target: str, parser: str = "vseam") -> int:
    gold = normalize_answer(target)
    if gold not in ("yes", "no"):
        raise ValueError(f"POPE target must be 'yes' or 'no', got {target!r}")
    answer = parse_yes_no(pred, parser)
    if answer is None:
        return UNANSWERED_YES if gold == "yes" else UNANSWERED_NO
    if answer == "yes":
        return TP if gold == "yes" else FP
    return FN if gold == "yes" else TN


#: States of `PairedOutcomes`, each a list concatenated across ranks, with the dtype an empty rank stands in with.
_OUTCOME_STATES: dict[str, torch.dtype] = {
    "key": torch.long,
    "baseline": torch.long,
    "modulated": torch.long,
    "text": torch.uint8,
    "text_len": torch.long,
}
#: The string fields of an `Outcome`, carried as JSON in the byte state.
_TEXT_FIELDS: tuple[str, ...] = (
    "benchmark",
    "question_id",
    "level",
    "group",
    "answer",
    "baseline",
    "modulated",
    "image_id",
    "source",
)
_NOT_RUN = -1  # a system's correctness when it was not evaluated


def _flags(values: Sequence[bool | None]) -> Tensor:
    return torch.tensor([_NOT_RUN if v is None else int(v) for v in values], dtype=torch.long)


class PairedOutcomes(Metric):
    """Per-example outcomes of a baseline and a modulated model on the same examples: what `HeadModulationModule`
    updates in validation and test, and what the paired report (`vseam_pl.report.outcome_rows`) is built from.

    Paired tests and image-clustered statistics need every example, not sums, so every state is a list
    concatenated across ranks (``dist_reduce_fx="cat"``): the example keys and each system's correctness (1/0, -1
    when that system was not run) as integer tensors, and each example's strings (benchmark, question id, level,
    group, gold answer, replies, image id, source) as JSON in UTF-8 bytes with one length per example.
    `compute()` returns one `vseam_pl.evaluation.Outcome` per example key, sorted by key: DistributedSampler repeats
    examples to even out ranks, and a repeat counts once.
    """

    full_state_update = False

    def __init__(self, parser: str = "vseam", **kwargs) -> None:
        super().__init__(**kwargs)
        self.parser = check_parser(parser)
        for name in _OUTCOME_STATES:
            self.add_state(name, [], dist_reduce_fx="cat")

    def update(
        self,
        records: Sequence[QARecord],
        baseline: Sequence[str] | None = None,
        modulated: Sequence[str] | None = None,
    ) -> None:
        """Score each system's replies to `records` under the metric's parser (None: that system was not run)."""
        outcomes = make_outcomes(records, baseline, modulated, self.parser)
        if not outcomes:
            return
        text = [json.dumps([getattr(o, f) for f in _TEXT_FIELDS]).encode() for o in outcomes]
        states = {
            "key": torch.tensor([o.key for o in outcomes], dtype=torch.long),
            "baseline": _flags([o.baseline_correct for o in outcomes]),
            "modulated": _flags([o.modulated_correct for o in outcomes]),
            "text": torch.frombuffer(bytearray(b"".join(text)), dtype=torch.uint8),
            "text_len": torch.tensor([len(t) for t in text], dtype=torch.long),
        }
        for name, value in states.items():
            getattr(self, name).append(value.to(self.device))

    def _sync_dist(self, *args, **kwargs) -> None:
        # torchmetrics stands in a float32 tensor for a rank that saw no examples; concatenated with the integer
        # states of the other ranks that aborts the gloo gather, so give empty ranks correctly typed empty states.
        for name, dtype in _OUTCOME_STATES.items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.empty(0, dtype=dtype, device=self.device)])
        super()._sync_dist(*args, **kwargs)

    def _state(self, name: str) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, list) and not value:
            return torch.empty(0, dtype=_OUTCOME_STATES[name])
        return dim_zero_cat(value).cpu()

    def compute(self) -> list[Outcome]:
        key, base, mod, text, lengths = (self._state(name) for name in _OUTCOME_STATES)
        blob = text.numpy().tobytes()
        ends = np.cumsum(lengths.numpy())
        starts = ends - lengths.numpy()
        unique: dict[int, Outcome] = {}
        for i, k in enumerate(key.tolist()):
            if k in unique:
                continue
            fields = json.loads(blob[starts[i] : ends[i]])
            unique[k] = Outcome(
                key=k,
                **dict(zip(_TEXT_FIELDS, fields, strict=True)),
                baseline_correct=None if base[i] == _NOT_RUN else bool(base[i]),
                modulated_correct=None if mod[i] == _NOT_RUN else bool(mod[i]),
            )
        outcomes = [unique[k] for k in sorted(unique)]
        for system in SYSTEMS:
            run = [getattr(o, f"{system}_correct") is not None for o in outcomes]
            if any(run) and not all(run):
                raise ValueError(
                    f"some updates had {system} replies and some did not; pass them always or never"
                )
        return outcomes
