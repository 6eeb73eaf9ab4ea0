"""Ranking the heads of a `[layers, heads]` score grid: the one ranking every caller uses (discovery's positive and
negative head lists and fixed-size head sets, top-K initial scales, AtP*'s heads to verify, ITI's and LoFiT's head
selection), so that a head's place never depends on which caller asked.

The rules, the same for every caller:

- `order`: `largest` (descending score), `smallest` (ascending) or `abs` (descending |score|);
- ties keep grid order (row-major: the earlier layer, then the earlier head, first);
- NaN means "no score": a NaN head ranks after every head that has a number, in every order, and has no sign;
- `signed=True` keeps only heads whose score has the order's sign (> 0 for `largest`, < 0 for `smallest`): a list
  of positive heads never holds a zero, negative or NaN one, so it can be shorter than K;
- at most K heads are returned (all of them when the grid is smaller).
"""

from __future__ import annotations

import torch

ORDERS: tuple[str, ...] = ("largest", "smallest", "abs")
#: (layer, head, score) as ranked; the score is the head's own value (NaN stays NaN).
RankedHead = tuple[int, int, float]


def rank_heads(score: torch.Tensor, k: int, order: str = "largest", signed: bool = False) -> list[RankedHead]:
    """The first `k` heads of `score [L, H]` in `order`, `(layer, head, score)`, best first (module docstring)."""
    if score.dim() != 2:
        raise ValueError(f"head scores must be [layers, heads], got shape {tuple(score.shape)}")
    if order not in ORDERS:
        raise ValueError(f"unknown ranking order {order!r}; expected one of {ORDERS}")
    if signed and order == "abs":
        raise ValueError("signed=True keeps scores of the order's sign; order 'abs' has none")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    flat = score.detach().flatten().cpu()
    key = flat.abs() if order == "abs" else flat
    ranked = torch.argsort(key, descending=order != "smallest", stable=True)
    nan = torch.isnan(flat[ranked])
    ranked = torch.cat([ranked[~nan], ranked[nan]])  # NaN after every number, in grid order
    width = score.shape[1]
    out: list[RankedHead] = []
    for idx in ranked.tolist():
        value = float(flat[idx])
        if len(out) >= k or (signed and not (value > 0 if order == "largest" else value < 0)):
            break
        out.append((idx // width, idx % width, value))
    return out
