"""Head scores: accumulating per-example effects into per-group `[L, H]` scores, saving/loading them, top-K head
lists, and turning scores into initial modulation scales.

Every score is a ratio of sums, `score = sum_i num_i / sum_i den_i` over the examples of a group (den = 1 per example
for ablation means, the edit effect for patching), so partial results from DDP shards or from before a restart add up
exactly.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..distributed import all_reduce_sum, dist_info
from ..io import write_atomic, write_json
from ..ranking import RankedHead, rank_heads
from .methods import METHODS

#: stat name -> (num [E, L, H], den [E], include [E] bool) for one chunk of examples.
ChunkStats = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

SCORES_FORMAT = "vseam-head-scores/1"
#: heads per sign when no one says how many: the one default of every `k` / `top_k` of discovery
TOP_K: int = 10
SCORES_FILE = "head_scores.safetensors"
SCORES_JSON = "head_scores.json"

#: Which statistic ranks the positive / negative heads: the signed effect over all examples (positive: the heads
#: the answer relies on; negative: the heads whose removal helps it), so the two lists are disjoint by construction.
#: The release's ablation lists are the exception (`RELEASE_RANKING`): its `positive` averages the gain of ablating
#: over correctly answered examples and its `negative` over wrongly answered ones, so an important head can be on
#: both (docs/fidelity.md). Falls back to `signed` when a statistic has no examples.
RANKING: tuple[str, str] = ("signed", "signed")
RELEASE_RANKING: tuple[str, str] = ("positive", "negative")


def ranking_stats(method: str, protocol: str) -> tuple[str, str]:
    """The statistics that rank (positive, negative) heads for a method under a protocol."""
    return RELEASE_RANKING if gain_negative(method, protocol) else RANKING


#: Closed-form scale constants per protocol: the release's (`Attention_Head_Rescaling.py`: raw score, lambda 1, clip
#: [0, 2], no threshold) and vseam-pl's default (score divided by max|score| so that methods on different scales
#: give comparable scales, lambda 0.5, clip [0.5, 1.5]).
CLOSED_FORM_DEFAULTS: dict[str, dict[str, Any]] = {
    "default": {"lam": 0.5, "clip": (0.5, 1.5), "eps": 0.0, "normalize": True},
    "release": {"lam": 1.0, "clip": (0.0, 2.0), "eps": 0.0, "normalize": False},
}


def gain_negative(method: str, protocol: str) -> bool:
    """Whether the `negative` statistic is a non-negative gain (the release protocol of a method that runs under
    it, i.e. ablation: larger = more negative head) rather than a signed effect (more negative = more negative
    head)."""
    return protocol == "release" and method in METHODS and METHODS[method].release


class Accumulator:
    """Running sums `num [G, S, L, H]`, `den [G, S]`, `n [G, S]` over groups G and statistics S (float64), and per
    group the edit effects `edit [G, 4]` (sum, count, count <= 0, count below `small`) that patching normalises by."""

    EDIT_FIELDS = ("sum", "n", "nonpositive", "small")

    def __init__(
        self, groups: Sequence[str], stats: Sequence[str], num_layers: int, num_heads: int, small: float = 0.0
    ):
        self.groups, self.stats, self.small = list(groups), list(stats), small
        self.num = torch.zeros(len(groups), len(stats), num_layers, num_heads, dtype=torch.float64)
        self.den = torch.zeros(len(groups), len(stats), dtype=torch.float64)
        self.n = torch.zeros(len(groups), len(stats), dtype=torch.float64)
        self.edit = torch.zeros(len(groups), len(self.EDIT_FIELDS), dtype=torch.float64)

    def add(
        self, item_groups: Sequence[Sequence[str]], chunk: ChunkStats, edits: torch.Tensor | None = None
    ) -> None:
        """Add a chunk: `item_groups[e]` are the groups of example e; `edits [E]`: LD_clean - LD_edited per example."""
        if edits is not None:
            for e, keys in enumerate(item_groups):
                v = float(edits[e])
                row = torch.tensor([v, 1.0, float(v <= 0), float(abs(v) < self.small)], dtype=torch.float64)
                for key in keys:
                    self.edit[self.groups.index(key)] += row
        for s, stat in enumerate(self.stats):
            num, den, include = chunk[stat]
            for e, keys in enumerate(item_groups):
                if not bool(include[e]):
                    continue
                for key in keys:
                    g = self.groups.index(key)
                    self.num[g, s] += num[e].double()
                    self.den[g, s] += float(den[e])
                    self.n[g, s] += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"num": self.num, "den": self.den, "n": self.n, "edit": self.edit}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in ("num", "den", "n", "edit"):
            if getattr(self, k).shape != state[k].shape:
                raise ValueError(
                    f"partial results have {k} of shape {tuple(state[k].shape)}, expected "
                    f"{tuple(getattr(self, k).shape)}"
                )
            getattr(self, k).copy_(state[k])

    def all_reduce(self) -> None:
        """Sum over DDP ranks (no-op without an initialised process group)."""
        if dist_info()[1] == 1:
            return
        flat = torch.cat([self.num.flatten(), self.den.flatten(), self.n.flatten(), self.edit.flatten()])
        flat = all_reduce_sum(flat)
        offset = 0
        for t in (self.num, self.den, self.n, self.edit):
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def scores(
        self, method: str, meta: dict[str, Any] | None = None, protocol: str = "default"
    ) -> HeadScores:
        """`num / den` per group and stat (NaN where a group/stat has no examples); the edit-effect sums of groups
        that have them go to `counts[group]["edit"]`."""
        scores: dict[str, dict[str, torch.Tensor]] = {}
        counts: dict[str, dict[str, dict[str, float]]] = {}
        for g, group in enumerate(self.groups):
            scores[group], counts[group] = {}, {}
            for s, stat in enumerate(self.stats):
                den = float(self.den[g, s])
                value = self.num[g, s] / den if den != 0 else torch.full_like(self.num[g, s], float("nan"))
                scores[group][stat] = value.float()
                counts[group][stat] = {"n": float(self.n[g, s]), "den": den}
            if self.edit[g, 1] > 0:
                counts[group]["edit"] = dict(zip(self.EDIT_FIELDS, self.edit[g].tolist(), strict=True))
        return HeadScores(
            method=method, scores=scores, counts=counts, meta=dict(meta or {}), protocol=protocol
        )


@dataclass
class HeadScores:
    """`[L, H]` scores per group (`all`, `level:<level>`, `category:<category>`) and statistic, and the protocol
    they were computed under (`default` or `release`; it decides which sign the `negative` statistic has)."""

    method: str
    scores: dict[str, dict[str, torch.Tensor]]
    counts: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    protocol: str = "default"

    @property
    def groups(self) -> list[str]:
        return list(self.scores)

    @property
    def shape(self) -> tuple[int, int]:
        first = next(iter(next(iter(self.scores.values())).values()))
        return tuple(first.shape)  # type: ignore[return-value]

    def levels(self) -> list[str]:
        return [g for g in self.groups if g.startswith("level:")]

    def categories(self) -> list[str]:
        return [g for g in self.groups if g.startswith("category:")]

    def get(self, group: str = "all", stat: str = "signed") -> torch.Tensor:
        if group not in self.scores:
            raise KeyError(f"no scores for group {group!r}; have {self.groups}")
        if stat not in self.scores[group]:
            raise KeyError(f"no statistic {stat!r} for group {group!r}; have {list(self.scores[group])}")
        return self.scores[group][stat]

    def signed(self, group: str = "all") -> torch.Tensor:
        return self.get(group, "signed")

    def _ranking(self, group: str, which: int) -> tuple[torch.Tensor, bool]:
        """The score ranking positive (which=0) or negative (1) heads, and whether larger means more negative
        (the release's `negative` gain; falls back to `signed`, where smaller is, when the stat has no examples)."""
        stat = ranking_stats(self.method, self.protocol)[which]
        if stat in self.scores[group] and not torch.isnan(self.scores[group][stat]).all():
            return self.scores[group][stat], which == 1 and stat == "negative" and self.negative_is_gain
        return self.signed(group), False

    def positive_heads(self, group: str = "all", k: int = TOP_K) -> list[RankedHead]:
        """The K heads with the largest positive scores, `(layer, head, score)`, best first."""
        return rank_heads(self._ranking(group, 0)[0], k, "largest", signed=True)

    def negative_heads(self, group: str = "all", k: int = TOP_K) -> list[RankedHead]:
        """The K most negative heads, most negative first: the most negative signed scores, or under the release
        protocol's ablation the largest `negative` gains (reported as those non-negative gains)."""
        score, gain = self._ranking(group, 1)
        return rank_heads(score, k, "largest" if gain else "smallest", signed=True)

    @property
    def negative_is_gain(self) -> bool:
        return gain_negative(self.method, self.protocol)

    def ranked_heads(self, group: str = "all", kind: str = "positive", k: int = TOP_K) -> list[RankedHead]:
        """Exactly K heads (fewer only when the grid is smaller) in ranking order, whatever their score's sign
        (for fixed-size head sets; `positive_heads` / `negative_heads` stop at the first score of the wrong sign).
        Ties and NaN scores rank as :mod:`vseam_pl.ranking` says."""
        if kind not in ("positive", "negative"):
            raise ValueError(f"kind must be 'positive' or 'negative', got {kind!r}")
        score, gain = self._ranking(group, 0 if kind == "positive" else 1)
        return rank_heads(score, k, "largest" if kind == "positive" or gain else "smallest")

    # -- persistence -----------------------------------------------------------------------------------------
    def summary(self, k: int = TOP_K) -> dict[str, Any]:
        """The JSON side: method, metadata, counts and the top-K positive/negative heads per group."""
        return {
            "format": SCORES_FORMAT,
            "method": self.method,
            "protocol": self.protocol,
            "negative_sign": "gain (>= 0, larger = more negative)"
            if self.negative_is_gain
            else "signed (< 0)",
            "num_layers": self.shape[0],
            "num_heads": self.shape[1],
            "top_k": k,
            "meta": self.meta,
            "counts": self.counts,
            "heads": {
                g: {"positive": self.positive_heads(g, k), "negative": self.negative_heads(g, k)}
                for g in self.groups
            },
        }

    def save(self, out_dir: str | os.PathLike, k: int = TOP_K) -> tuple[Path, Path]:
        """Write `head_scores.safetensors` (tensors `<group>/<stat>`) and `head_scores.json`, atomically."""
        out = Path(out_dir)
        tensors = {
            f"{g}/{s}": t.contiguous().float() for g, stats in self.scores.items() for s, t in stats.items()
        }
        metadata = {
            "format": SCORES_FORMAT,
            "method": self.method,
            "protocol": self.protocol,
            "groups": json.dumps(self.groups),
            "summary": json.dumps(self.summary(k)),
        }
        st = write_atomic(out / SCORES_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        js = write_json(out / SCORES_JSON, self.summary(k))
        return st, js

    @classmethod
    def load(cls, path: str | os.PathLike) -> HeadScores:
        """Read a `head_scores.safetensors` (or the run folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / SCORES_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no head scores file (written by vseam_pl.discover)")
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != SCORES_FORMAT:
                raise ValueError(
                    f"{path}: metadata format {meta.get('format')!r}, expected {SCORES_FORMAT!r}"
                )
            scores: dict[str, dict[str, torch.Tensor]] = {g: {} for g in json.loads(meta.get("groups", "[]"))}
            for key in fh.keys():
                group, _, stat = key.rpartition("/")
                scores.setdefault(group, {})[stat] = fh.get_tensor(key)
        summary = json.loads(meta.get("summary", "{}"))
        return cls(
            meta["method"],
            scores,
            summary.get("counts", {}),
            summary.get("meta", {}),
            meta.get("protocol", "default"),
        )


def closed_form_settings(
    protocol: str = "default",
    lam: float | None = None,
    clip: Sequence[float] | None = None,
    eps: float | None = None,
    normalize: bool | None = None,
) -> dict[str, Any]:
    """The closed-form constants: the protocol's defaults (`CLOSED_FORM_DEFAULTS`), each overridable."""
    if protocol not in CLOSED_FORM_DEFAULTS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(CLOSED_FORM_DEFAULTS)}")
    given = {
        "lam": lam,
        "clip": None if clip is None else tuple(float(c) for c in clip),
        "eps": eps,
        "normalize": normalize,
    }
    out = {k: v if given[k] is None else given[k] for k, v in CLOSED_FORM_DEFAULTS[protocol].items()}
    lo, hi = out["clip"]
    if lo > hi:
        raise ValueError(f"clip must be (lo, hi) with lo <= hi, got {out['clip']}")
    if out["eps"] < 0:
        raise ValueError(f"eps must be >= 0, got {out['eps']}")
    return out


def init_scales_from_scores(
    scores: HeadScores | torch.Tensor,
    rule: str = "closed_form",
    group: str = "all",
    lam: float | None = None,
    clip: Sequence[float] | None = None,
    eps: float | None = None,
    normalize: bool | None = None,
    k: int = TOP_K,
    up: float = 1.5,
    down: float = 0.5,
    protocol: str | None = None,
) -> torch.Tensor:
    """Initial modulation scales `[L, H]` from head scores.

    - `closed_form`: `scale = clip(1 + lam * s, lo, hi)` on the `signed` score, where heads with |score| < `eps` keep
      scale 1 and `s = score / max|score|` when `normalize`, else the raw score. Constants left at None take the
      protocol's defaults (`CLOSED_FORM_DEFAULTS`; `protocol` defaults to the scores' own): under `release` the
      release's rule (raw score, lam 1, clip (0, 2), eps 0); under `default` lam 0.5, clip (0.5, 1.5), normalised.
    - `topk`: 1 everywhere, `up` for the top-K positive heads, `down` for the top-K negative heads.
    """
    if isinstance(scores, HeadScores):
        protocol = protocol or scores.protocol
        score = scores.signed(group)
        pos = scores.positive_heads(group, k)
        neg = scores.negative_heads(group, k)
    else:
        score = scores
        pos = rank_heads(score, k, "largest", signed=True)
        neg = rank_heads(score, k, "smallest", signed=True)
    score = score.float().nan_to_num(0.0)
    if rule == "closed_form":
        c = closed_form_settings(protocol or "default", lam, clip, eps, normalize)
        score = torch.where(score.abs() < c["eps"], torch.zeros_like(score), score)
        peak = float(score.abs().max())
        s = score / peak if c["normalize"] and peak > 0 else score
        lo, hi = c["clip"]
        return (1.0 + c["lam"] * s).clamp(lo, hi)
    if rule == "topk":
        scales = torch.ones_like(score)
        for layer, head, _ in pos:
            scales[layer, head] = up
        for layer, head, _ in neg:
            scales[layer, head] = down
        return scales
    raise ValueError(f"unknown init rule {rule!r}; expected 'closed_form' or 'topk'")


@torch.no_grad()
def apply_init_scales(modulation: torch.nn.Module, scales: torch.Tensor) -> None:
    """Write `scales [L, H]` into `modulation.scales` in place (keeps the Parameter and its optimizer state)."""
    target = modulation.scales
    if tuple(target.shape) != tuple(scales.shape):
        raise ValueError(
            f"initial scales have shape {tuple(scales.shape)}, the modulation has {tuple(target.shape)}"
        )
    if not math.isfinite(float(scales.abs().max())):
        raise ValueError("initial scales contain NaN or inf")
    target.copy_(scales.to(target))
