"""Averaging per-pair tracing results over many pairs: a mean and a confidence band per cell, per semantic level.

Cells may be missing for some pairs (NaN: e.g. a question without a located concept word), so every statistic
counts only the pairs present in that cell. Bands are Student-t intervals (default) or percentile bootstraps that
resample pairs jointly across all cells.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import t as student_t

from ..levels import LEVELS, level_of

CI_METHODS: tuple[str, ...] = ("t", "bootstrap")
ALL = "all"


@dataclass
class Band:
    """Mean over pairs with a `confidence` interval [lo, hi] and the number of pairs `n`, per cell."""

    mean: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    n: torch.Tensor

    def to_dict(self) -> dict[str, list]:
        return {k: getattr(self, k).tolist() for k in ("mean", "lo", "hi", "n")}


def mean_band(
    values: torch.Tensor, ci: str = "t", confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> Band:
    """Mean and interval over the first dimension (pairs) of `values` [N, ...], ignoring NaN cells."""
    if ci not in CI_METHODS:
        raise ValueError(f"unknown ci {ci!r}; expected one of {CI_METHODS}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = values.double().numpy()
    present = ~np.isnan(v)
    n = present.sum(0)
    filled = np.where(present, v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(0) / n
        if ci == "t":
            var = (np.where(present, v - mean, 0.0) ** 2).sum(0) / (n - 1)
            half = student_t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * np.sqrt(var / n)
            half = np.where(n > 1, half, np.nan)
            lo, hi = mean - half, mean + half
        else:
            rng = np.random.default_rng(seed)
            counts = rng.multinomial(v.shape[0], np.full(v.shape[0], 1 / v.shape[0]), size=n_boot)  # [R, N]
            flat_v, flat_p = filled.reshape(v.shape[0], -1), present.reshape(v.shape[0], -1)
            means = (counts @ flat_v) / (counts @ flat_p)  # [R, cells]
            with warnings.catch_warnings():  # an all-missing cell has no band: NaN, silently
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, hi = (
                    np.nanquantile(means, q, axis=0).reshape(v.shape[1:])
                    for q in ((1 - confidence) / 2, (1 + confidence) / 2)
                )
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return Band(as_t(mean), as_t(lo), as_t(hi), torch.as_tensor(n))


def level_key(info: dict) -> str:
    """A pair's semantic level: its `level`, else its category's, else `unknown`."""
    return info.get("level") or level_of(info.get("category")) or "unknown"


def level_order(levels: Sequence[str]) -> list[str]:
    """`all` first, then V-SEAM's level order, then anything else alphabetically."""
    known = [lv for lv in LEVELS if lv in levels]
    return [ALL, *known, *sorted(set(levels) - set(known) - {ALL})]


def aggregate(
    items: Sequence[tuple[dict, dict[str, torch.Tensor]]],
    metrics: Sequence[str],
    ci: str = "t",
    confidence: float = 0.95,
) -> dict[str, dict[str, Band]]:
    """`{level: {metric: Band}}` over `items` = (pair info with `level`/`category`, tensors), plus `all`."""
    by_level: dict[str, list[int]] = {}
    for i, (info, _) in enumerate(items):
        by_level.setdefault(level_key(info), []).append(i)
    groups = {ALL: list(range(len(items))), **by_level}
    out: dict[str, dict[str, Band]] = {}
    for name in level_order(list(by_level)):
        idx = groups[name]
        if not idx:
            continue
        out[name] = {
            m: mean_band(torch.stack([items[i][1][m].float() for i in idx]), ci, confidence) for m in metrics
        }
    return out
