"""Cross-level analysis: how much the top-K positive (negative) heads of categories and levels overlap.

V-SEAM reports that positive heads are shared within a semantic level while negative heads generalise across
levels; the Jaccard matrices below, with their within-level / across-level means, let a user check that claim on
their own model and pairs.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from ..levels import level_of
from .scores import TOP_K, HeadScores


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets: nothing to disagree about)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def top_sets(scores: HeadScores, k: int, kind: str, groups: list[str]) -> dict[str, set[tuple[int, int]]]:
    pick = scores.positive_heads if kind == "positive" else scores.negative_heads
    return {g: {(layer, head) for layer, head, _ in pick(g, k)} for g in groups}


def _level(group: str) -> str | None:
    kind, _, name = group.partition(":")
    return name if kind == "level" else level_of(name)


def overlap_analysis(scores: HeadScores, k: int = TOP_K) -> dict[str, Any]:
    """Jaccard matrices over levels and categories for the top-K positive and negative heads, plus summaries."""
    groups = scores.levels() + scores.categories()
    out: dict[str, Any] = {"k": k, "groups": groups}
    for kind in ("positive", "negative"):
        sets = top_sets(scores, k, kind, groups)
        matrix = [[jaccard(sets[a], sets[b]) for b in groups] for a in groups]
        cats = scores.categories()
        within = [jaccard(sets[a], sets[b]) for a, b in combinations(cats, 2) if _level(a) == _level(b)]
        across = [jaccard(sets[a], sets[b]) for a, b in combinations(cats, 2) if _level(a) != _level(b)]
        levels = scores.levels()
        out[kind] = {
            "matrix": matrix,
            "heads": {g: sorted(s) for g, s in sets.items()},
            "within_level_category_mean": sum(within) / len(within) if within else None,
            "across_level_category_mean": sum(across) / len(across) if across else None,
            "across_levels_mean": (
                sum(jaccard(sets[a], sets[b]) for a, b in combinations(levels, 2))
                / (len(levels) * (len(levels) - 1) / 2)
                if len(levels) > 1
                else None
            ),
        }
    return out
