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

from ..io import write_atomic, write_json

#: stat name -> (num [E, L, H], den [E], include [E] bool) for one chunk of examples.
ChunkStats = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

SCORES_FORMAT = "vseam-head-scores/1"
SCORES_FILE = "head_scores.safetensors"
SCORES_JSON = "head_scores.json"

#: Which statistic ranks the positive / negative heads, per method (falls back to `signed` when it has no examples).
RANKING: dict[str, tuple[str, str]] = {
    "ablation": ("positive", "negative"),
    "patching": ("signed", "signed"),
    "attribution": ("signed", "signed"),
    "atp_star": ("signed", "signed"),
}


class Accumulator:
    """Running sums `num [G, S, L, H]`, `den [G, S]`, `n [G, S]` over groups G and statistics S (float64)."""

    def __init__(self, groups: Sequence[str], stats: Sequence[str], num_layers: int, num_heads: int):
        self.groups, self.stats = list(groups), list(stats)
        self.num = torch.zeros(len(groups), len(stats), num_layers, num_heads, dtype=torch.float64)
        self.den = torch.zeros(len(groups), len(stats), dtype=torch.float64)
        self.n = torch.zeros(len(groups), len(stats), dtype=torch.float64)

    def add(self, item_groups: Sequence[Sequence[str]], chunk: ChunkStats) -> None:
        """Add a chunk: `item_groups[e]` are the groups of example e."""
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
        return {"num": self.num, "den": self.den, "n": self.n}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in ("num", "den", "n"):
            if getattr(self, k).shape != state[k].shape:
                raise ValueError(f"partial results have {k} of shape {tuple(state[k].shape)}, expected "
                                 f"{tuple(getattr(self, k).shape)}")  # fmt: skip
            getattr(self, k).copy_(state[k])

    def all_reduce(self) -> None:
        """Sum over DDP ranks (no-op without an initialised process group)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        flat = torch.cat([self.num.flatten(), self.den.flatten(), self.n.flatten()])
        backend = dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        flat = flat.to(device)
        dist.all_reduce(flat)
        flat = flat.cpu()
        a, b = self.num.numel(), self.den.numel()
        self.num.copy_(flat[:a].view_as(self.num))
        self.den.copy_(flat[a : a + b].view_as(self.den))
        self.n.copy_(flat[a + b :].view_as(self.n))

    def scores(self, method: str, meta: dict[str, Any] | None = None) -> HeadScores:
        """`num / den` per group and stat (NaN where a group/stat has no examples)."""
        scores: dict[str, dict[str, torch.Tensor]] = {}
        counts: dict[str, dict[str, dict[str, float]]] = {}
        for g, group in enumerate(self.groups):
            scores[group], counts[group] = {}, {}
            for s, stat in enumerate(self.stats):
                den = float(self.den[g, s])
                value = self.num[g, s] / den if den != 0 else torch.full_like(self.num[g, s], float("nan"))
                scores[group][stat] = value.float()
                counts[group][stat] = {"n": float(self.n[g, s]), "den": den}
        return HeadScores(method=method, scores=scores, counts=counts, meta=dict(meta or {}))


@dataclass
class HeadScores:
    """Signed `[L, H]` scores per group (`all`, `level:<level>`, `category:<category>`) and statistic."""

    method: str
    scores: dict[str, dict[str, torch.Tensor]]
    counts: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

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

    def _ranking(self, group: str, which: int) -> torch.Tensor:
        stat = RANKING.get(self.method, ("signed", "signed"))[which]
        if stat in self.scores[group] and not torch.isnan(self.scores[group][stat]).all():
            return self.scores[group][stat]
        return self.signed(group)

    def positive_heads(self, group: str = "all", k: int = 10) -> list[tuple[int, int, float]]:
        """The K heads with the largest positive scores, `(layer, head, score)`, best first."""
        return _top(self._ranking(group, 0), k, largest=True)

    def negative_heads(self, group: str = "all", k: int = 10) -> list[tuple[int, int, float]]:
        """The K heads with the most negative scores, most negative first."""
        return _top(self._ranking(group, 1), k, largest=False)

    # -- persistence -----------------------------------------------------------------------------------------
    def summary(self, k: int = 10) -> dict[str, Any]:
        """The JSON side: method, metadata, counts and the top-K positive/negative heads per group."""
        return {
            "format": SCORES_FORMAT,
            "method": self.method,
            "num_layers": self.shape[0],
            "num_heads": self.shape[1],
            "top_k": k,
            "meta": self.meta,
            "counts": self.counts,
            "heads": {
                g: {"positive": self.positive_heads(g, k), "negative": self.negative_heads(g, k)} for g in self.groups
            },
        }

    def save(self, out_dir: str | os.PathLike, k: int = 10) -> tuple[Path, Path]:
        """Write `head_scores.safetensors` (tensors `<group>/<stat>`) and `head_scores.json`, atomically."""
        out = Path(out_dir)
        tensors = {f"{g}/{s}": t.contiguous().float() for g, stats in self.scores.items() for s, t in stats.items()}
        metadata = {"format": SCORES_FORMAT, "method": self.method, "groups": json.dumps(self.groups),
                    "summary": json.dumps(self.summary(k))}  # fmt: skip
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
                raise ValueError(f"{path}: metadata format {meta.get('format')!r}, expected {SCORES_FORMAT!r}")
            scores: dict[str, dict[str, torch.Tensor]] = {g: {} for g in json.loads(meta.get("groups", "[]"))}
            for key in fh.keys():
                group, _, stat = key.rpartition("/")
                scores.setdefault(group, {})[stat] = fh.get_tensor(key)
        summary = json.loads(meta.get("summary", "{}"))
        return cls(meta["method"], scores, summary.get("counts", {}), summary.get("meta", {}))


def _top(score: torch.Tensor, k: int, largest: bool) -> list[tuple[int, int, float]]:
    flat = score.flatten().nan_to_num(0.0)
    order = torch.argsort(flat, descending=largest, stable=True)
    out = []
    for idx in order.tolist():
        v = float(flat[idx])
        if len(out) >= k or (v <= 0 if largest else v >= 0):
            break
        out.append((idx // score.shape[1], idx % score.shape[1], v))
    return out


def init_scales_from_scores(
    scores: HeadScores | torch.Tensor,
    rule: str = "closed_form",
    group: str = "all",
    lam: float = 0.5,
    clip: tuple[float, float] = (0.5, 1.5),
    eps: float = 1e-8,
    normalize: bool = True,
    k: int = 10,
    up: float = 1.5,
    down: float = 0.5,
) -> torch.Tensor:
    """Initial modulation scales `[L, H]` from head scores.

    - `closed_form` (the release's rule): `scale = clip(1 + lam * s, lo, hi)` with `s = score / (max|score| + eps)`
      when `normalize` (scores of different methods live on different scales), else the raw score.
    - `topk`: 1 everywhere, `up` for the top-K positive heads, `down` for the top-K negative heads.
    """
    if isinstance(scores, HeadScores):
        score = scores.signed(group)
        pos = scores.positive_heads(group, k)
        neg = scores.negative_heads(group, k)
    else:
        score = scores
        pos, neg = _top(score, k, True), _top(score, k, False)
    score = score.float().nan_to_num(0.0)
    if rule == "closed_form":
        s = score / (score.abs().max() + eps) if normalize else score
        lo, hi = clip
        if lo > hi:
            raise ValueError(f"clip must be (lo, hi) with lo <= hi, got {clip}")
        return (1.0 + lam * s).clamp(lo, hi)
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
        raise ValueError(f"initial scales have shape {tuple(scales.shape)}, the modulation has {tuple(target.shape)}")
    if not math.isfinite(float(scales.abs().max())):
        raise ValueError("initial scales contain NaN or inf")
    target.copy_(scales.to(target))
