"""Paired significance tests for comparing a modulated model with its baseline on the same examples.

All functions take two equal-length per-example score arrays (0/1 correctness or real scores) for systems A and B,
are vectorised with numpy, and are deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binom

_CHUNK_CELLS = 4_000_000  # resamples x examples drawn at once, bounding memory (~32 MB of float64)
EXACT_MAX_FLIPS = (
    30  # sign-flip tests enumerate all 2^n patterns up to this many non-zero differences/clusters
)
_EXACT_HARD_MAX = 40  # beyond this even a large n_resamples does not buy enumeration (2 x 1M sums)


def _paired(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have the same length, got {a.size} and {b.size}")
    if a.size == 0:
        raise ValueError("paired scores are empty")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired scores contain NaN or infinity")
    return a, b


def _chunks(total: int, width: int) -> Iterator[int]:
    step = max(1, _CHUNK_CELLS // max(width, 1))
    for start in range(0, total, step):
        yield min(step, total - start)


def mcnemar_exact(a_correct: ArrayLike, b_correct: ArrayLike) -> float:
    """Two-sided exact McNemar test: binomial(0.5) on the discordant pairs; 1.0 when there are none.

    Equals ``scipy.stats.binomtest(n_a_only, n_discordant, 0.5).pvalue`` (symmetric null, so doubling the smaller
    tail is exact).
    """
    a, b = _paired(a_correct, b_correct)
    for name, x in (("a_correct", a), ("b_correct", b)):
        if not np.isin(x, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be 0/1 (or bool) correctness")
    a_only = int(np.sum((a == 1) & (b == 0)))
    b_only = int(np.sum((a == 0) & (b == 1)))
    n = a_only + b_only
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(a_only, b_only), n, 0.5)))


def paired_permutation_test(a: ArrayLike, b: ArrayLike, n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation test of mean(a - b) = 0.

    Under the null each per-example difference is equally likely to have either sign. With at most
    `EXACT_MAX_FLIPS` non-zero differences (or ``2^n <= n_resamples``) every sign pattern is enumerated and the
    p-value is exact (`exact_sign_flip_p`); otherwise `n_resamples` random patterns give
    ``(1 + #{|resampled| >= |observed|}) / (1 + n_resamples)``, never 0. Exactly 1.0 when the systems agree on
    every example.
    """
    a, b = _paired(a, b)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    return _sign_flip_p(a - b, n_resamples, seed)


def _sign_flip_p(d: np.ndarray, n_resamples: int, seed: int) -> float:
    """Sign-flip p-value of |sum(d)|: exact up to `EXACT_MAX_FLIPS` non-zero terms, Monte Carlo beyond."""
    d = d[d != 0]  # zero differences do not change under a sign flip
    if d.size == 0:
        return 1.0
    if d.size <= EXACT_MAX_FLIPS or (d.size <= _EXACT_HARD_MAX and 2**d.size <= n_resamples):
        return exact_sign_flip_p(d)
    observed = abs(d.sum())
    tol = 1e-9 * np.abs(d).sum()  # float round-off must not turn a tie into a miss
    rng = np.random.default_rng(seed)
    hits = 0
    for size in _chunks(n_resamples, d.size):
        signs = rng.integers(0, 2, size=(size, d.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
    return (1 + hits) / (1 + n_resamples)


def _half_sums(d: np.ndarray) -> np.ndarray:
    """All 2^len(d) signed sums of `d`, built by doubling (len(d) <= 20 here: at most 1M values)."""
    sums = np.zeros(1)
    for x in d:
        sums = np.concatenate([sums + x, sums - x])
    return sums


def exact_sign_flip_p(d: ArrayLike) -> float:
    """Exact two-sided sign-flip p-value: the share of all 2^n sign patterns s with |s . d| >= |sum(d)|.

    Meet in the middle: the signed sums of each half of `d` are enumerated (2^(n/2) each), one half sorted, and for
    each sum x of the other half the matching partners y with |x + y| >= observed are counted by binary search, so
    30 clusters cost ~2 x 32k values instead of 2^30 patterns. Ties within 1e-9 of the total |d| count as hits, so
    float round-off cannot turn a tie into a miss. The observed pattern (all +1) is one of the 2^n, so p >= 2^-n.
    """
    d = np.asarray(d, dtype=np.float64).ravel()
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    if d.size > _EXACT_HARD_MAX:
        raise ValueError(f"exact enumeration is limited to {_EXACT_HARD_MAX} non-zero terms, got {d.size}")
    observed = abs(d.sum())
    tol = 1e-9 * np.abs(d).sum()
    threshold = observed - tol
    if threshold <= 0:  # observed sum is 0: every pattern reaches it
        return 1.0
    left, right = _half_sums(d[: d.size // 2]), np.sort(_half_sums(d[d.size // 2 :]))
    # |x + y| >= t  <=>  y >= t - x  or  y <= -t - x (disjoint since t > 0)
    upper = right.size - np.searchsorted(right, threshold - left, side="left")
    lower = np.searchsorted(right, -threshold - left, side="right")
    hits = int(upper.sum() + lower.sum())
    return hits / 2.0**d.size


def bootstrap_ci(
    a: ArrayLike, b: ArrayLike, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval for mean(a) - mean(b), resampling examples jointly (keeps the pairing).

    A resample's mean difference depends only on how often each *distinct* difference is drawn, so we draw those
    counts from a multinomial: the same distribution as resampling indices, but cheap for 0/1 scores (3 values).
    """
    a, b = _paired(a, b)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    values, counts = np.unique(a - b, return_counts=True)
    n = counts.sum()
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [rng.multinomial(n, counts / n, size=size) @ values / n for size in _chunks(n_resamples, values.size)]
    )
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


# ---------------------------------------------------------------- image-clustered (questions grouped by image)


def _cluster_sums(a: ArrayLike, b: ArrayLike, clusters: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sum of the differences a - b and per-cluster question count (clusters in sorted order)."""
    a, b = _paired(a, b)
    labels = np.asarray(clusters, dtype=object).ravel()
    if labels.size != a.size:
        raise ValueError(f"got {labels.size} cluster labels for {a.size} paired scores")
    _, index = np.unique(labels.astype(str), return_inverse=True)
    return np.bincount(index, weights=a - b), np.bincount(index).astype(np.float64)


def cluster_count(clusters: ArrayLike) -> int:
    """Number of distinct clusters (images)."""
    return int(np.unique(np.asarray(clusters, dtype=object).ravel().astype(str)).size)


def cluster_permutation_test(
    a: ArrayLike, b: ArrayLike, clusters: ArrayLike, n_resamples: int = 10_000, seed: int = 0
) -> float:
    """Two-sided paired permutation test of mean(a - b) = 0 that swaps the systems' labels per *cluster*.

    Questions about the same image are not independent (POPE asks ~6 per image, GQA many more), so under the null
    the whole image's answers of A and B are exchangeable: each cluster's summed difference flips sign as a unit.
    With at most `EXACT_MAX_FLIPS` clusters whose sum is non-zero every one of the 2^clusters sign patterns is
    enumerated and the p-value is exact (`exact_sign_flip_p`); beyond, `n_resamples` random patterns give
    ``(1 + hits) / (1 + n_resamples)``. With one question per cluster this is the sign-flip test of
    `paired_permutation_test`.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    sums, _ = _cluster_sums(a, b, clusters)
    return _sign_flip_p(sums, n_resamples, seed)


def cluster_bootstrap_ci(
    a: ArrayLike,
    b: ArrayLike,
    clusters: ArrayLike,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval for mean(a) - mean(b) that resamples clusters (images) with replacement.

    Each resample draws as many images as there are, keeps all of a drawn image's questions (paired), and takes the
    difference of accuracies over the questions drawn: ``sum(count_g * D_g) / sum(count_g * n_g)`` with `D_g` the
    image's summed difference and `n_g` its number of questions. The counts come from a multinomial, the same
    distribution as drawing image indices.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    sums, sizes = _cluster_sums(a, b, clusters)
    g = sums.size
    rng = np.random.default_rng(seed)
    means = []
    for size in _chunks(n_resamples, g):
        counts = rng.multinomial(g, np.full(g, 1.0 / g), size=size)
        means.append((counts @ sums) / (counts @ sizes))
    alpha = (1 - level) / 2
    low, high = np.quantile(np.concatenate(means), [alpha, 1 - alpha])
    return float(low), float(high)
