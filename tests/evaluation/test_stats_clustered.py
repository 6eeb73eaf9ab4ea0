"""Image-clustered statistics: the permutation test and bootstrap CI that resample images, checked against
hand-worked and brute-force references, and the `n_images` / `p_test` fields of the report rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vseam_pl.report import compare_rows, pope_rows, validate_report
from vseam_pl.stats import (
    EXACT_MAX_FLIPS,
    bootstrap_ci,
    cluster_bootstrap_ci,
    cluster_permutation_test,
    exact_sign_flip_p,
    mcnemar_exact,
)


def test_exhaustive_cluster_permutation_by_hand():
    # image x: two questions A-only (+2), image y: one A-only (+1), image z: one B-only (-1). Cluster sums 2, 1, -1.
    # Sign patterns of (2, 1, -1): |sum| = 2,4,0,2,2,0,4,2 -> 6 of 8 reach the observed |2| -> p = 0.75.
    a, b, images = [1, 1, 1, 0], [0, 0, 0, 1], ["x", "x", "y", "z"]
    assert cluster_permutation_test(a, b, images) == pytest.approx(0.75)
    # Per question the same data look stronger: differences +1,+1,+1,-1 -> 2*P(Bin(4, .5) <= 1) = 0.625.
    assert mcnemar_exact(a, b) == pytest.approx(0.625)


def test_cluster_permutation_matches_brute_force_and_mcnemar():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    images = rng.integers(0, 9, 40).astype(str)
    sums = {
        g: sum(int(x) - int(y) for x, y, i in zip(a, b, images, strict=True) if i == g) for g in set(images)
    }
    d = [v for v in sums.values() if v != 0]
    obs = abs(sum(d))
    hits = sum(
        abs(sum(s * v for s, v in zip(signs, d, strict=True))) >= obs
        for signs in itertools.product((1, -1), repeat=len(d))
    )
    assert cluster_permutation_test(a, b, images) == pytest.approx(hits / 2 ** len(d))
    # One question per image: the sign-flip test of +-1 differences is the exact two-sided binomial (McNemar).
    a2, b2 = rng.integers(0, 2, 25), rng.integers(0, 2, 25)
    singles = [str(i) for i in range(25)]
    assert cluster_permutation_test(a2, b2, singles, n_resamples=2**25) == pytest.approx(
        mcnemar_exact(a2, b2)
    )


def test_random_permutation_p_value_is_close_to_exact():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    b[:40] = 0
    a[:40] = 1
    images = (np.arange(300) // 6).astype(str)  # 50 images: too many patterns to enumerate
    p = cluster_permutation_test(a, b, images, n_resamples=20_000, seed=1)
    sums = np.bincount(np.arange(300) // 6, weights=a - b)
    # Reference: normal approximation of the sign-flip distribution, sd = sqrt(sum D_g^2).
    from scipy.stats import norm

    z = abs(sums.sum()) / np.sqrt((sums**2).sum())
    assert p == pytest.approx(2 * norm.sf(z), abs=0.02)


def test_cluster_bootstrap_matches_a_naive_loop():
    rng = np.random.default_rng(2)
    sizes = rng.integers(1, 8, 30)
    images = np.repeat(np.arange(30), sizes).astype(str)
    a, b = rng.integers(0, 2, images.size), rng.integers(0, 2, images.size)
    groups = [np.flatnonzero(images == str(g)) for g in range(30)]
    loop = np.random.default_rng(99)
    means = []
    for _ in range(4000):
        idx = np.concatenate([groups[g] for g in loop.integers(0, 30, 30)])
        means.append(a[idx].mean() - b[idx].mean())
    ref = np.quantile(means, [0.025, 0.975])
    got = cluster_bootstrap_ci(a, b, images, n_resamples=4000, seed=3)
    assert got == pytest.approx(tuple(ref), abs=0.02)


def test_clustered_ci_widens_when_an_image_answers_as_one():
    rng = np.random.default_rng(4)
    per_image = rng.choice([-1, 0, 0, 1, 1], size=60)  # difference of each image, repeated on its 5 questions
    d = np.repeat(per_image, 5)
    a, b = (d > 0).astype(int), (d < 0).astype(int)
    images = np.repeat(np.arange(60), 5).astype(str)
    lo_q, hi_q = bootstrap_ci(a, b, n_resamples=4000)
    lo_c, hi_c = cluster_bootstrap_ci(a, b, images, n_resamples=4000)
    ratio = (hi_c - lo_c) / (hi_q - lo_q)
    assert 1.8 < ratio < 2.8  # sqrt(5) = 2.24: 300 questions carry the information of 60
    # Independent questions, one per image: the clustered interval is the ordinary one.
    singles = np.arange(300).astype(str)
    lo_s, hi_s = cluster_bootstrap_ci(a, b, singles, n_resamples=4000)
    assert (hi_s - lo_s) / (hi_q - lo_q) == pytest.approx(1.0, abs=0.12)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="3 cluster labels for 2 paired scores"):
        cluster_bootstrap_ci([1, 0], [0, 0], ["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        cluster_permutation_test([1, float("nan")], [0, 0], ["a", "b"])


def test_report_rows_count_images_and_name_the_test():
    base = [1, 0, 0, 1, 0, 1]
    mod = [1, 1, 1, 1, 0, 1]
    images = ["i1", "i1", "i2", "i2", "i3", "i3"]
    rows = compare_rows("gqa", "test", base, mod, groups=["A", "B"] * 3, images=images, n_resamples=200)
    assert [(r["split"], r["n"], r["n_images"]) for r in rows] == [
        ("test", 6, 3),
        ("test/A", 3, 3),
        ("test/B", 3, 3),
    ]
    assert rows[0]["p_test"] == "image_permutation"
    # cluster sums: i1 +1, i2 +1, i3 0 -> patterns of (1, 1): |2|,0,0,|2| -> p = 0.5 (McNemar on 2 discordant: 0.5)
    assert rows[0]["p_value"] == pytest.approx(0.5)
    per_q = compare_rows("gqa", "test", base, mod, images=images, statistics="per_question", n_resamples=200)
    assert per_q[0]["p_test"] == "mcnemar_exact" and per_q[0]["n_images"] == 3
    assert compare_rows("gqa", "test", base, mod)[0]["n_images"] is None  # unknown, not guessed
    with pytest.raises(ValueError, match="statistics must be one of"):
        compare_rows("gqa", "test", base, mod, images=images, statistics="clustered")

    pope = pope_rows(
        ["yes", "no", "yes", "no"],
        ["yes", "yes", "no", "no"],
        ["yes", "no", "yes", "no"],
        splits=["random", "random", "popular", "popular"],
        images=["a", "a", "b", "c"],
        n_resamples=50,
    )
    n_images = {(r["split"], r["metric"]): r["n_images"] for r in pope}
    assert (
        n_images["random", "accuracy"] == 1 and n_images["popular", "f1"] == 2 and n_images["avg", "f1"] == 3
    )

    report = {"model": "m", "scales": None, "rows": [dict(rows[0], n_images=7)]}
    with pytest.raises(ValueError, match=r"rows\[0\]\.n_images: expected null or an integer in \[1, n=6\]"):
        validate_report(report)


def _brute_force_sign_flip(d) -> float:
    d = [v for v in d if v != 0]
    obs = abs(sum(d))
    hits = sum(
        abs(sum(s * v for s, v in zip(signs, d, strict=True))) >= obs - 1e-9
        for signs in itertools.product((1, -1), repeat=len(d))
    )
    return hits / 2 ** len(d)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 11, 12])
def test_exact_sign_flip_matches_brute_force(n):
    rng = np.random.default_rng(n)
    ints = rng.integers(-3, 4, n).astype(float)  # ties between patterns are common with small integers
    reals = rng.normal(size=n)
    for d in (ints, reals, np.r_[ints, 0.0, 0.0]):
        assert exact_sign_flip_p(d) == pytest.approx(_brute_force_sign_flip(d), abs=1e-12)


def _sign_flip_p_by_convolution(d) -> float:
    """Reference for integer differences: the exact null distribution of sum(s * d) by polynomial convolution."""
    d = [int(v) for v in d if v != 0]
    offset = sum(abs(v) for v in d)
    dist = np.zeros(2 * offset + 1)
    dist[offset] = 1.0
    for v in d:
        dist = 0.5 * (np.roll(dist, v) + np.roll(dist, -v))
    obs = abs(sum(d))
    values = np.arange(-offset, offset + 1)
    return float(dist[np.abs(values) >= obs].sum())


def test_exact_cluster_permutation_up_to_thirty_clusters_by_default():
    # 20 images, each with one more question right under A: the only patterns as extreme are all-+ and all--.
    images = [str(i) for i in range(20)]
    p = cluster_permutation_test([1] * 20, [0] * 20, images)  # default n_resamples=10_000 < 2^20
    assert p == 2 / 2**20  # Monte Carlo could not go below 1 / 10_001
    rng = np.random.default_rng(11)
    for n in (17, 24, 30):
        sums = rng.integers(-4, 6, n)
        sums[sums == 0] = 1
        images = np.repeat(np.arange(n), np.abs(sums)).astype(str)
        a = np.repeat((sums > 0).astype(int), np.abs(sums))
        b = 1 - a
        assert cluster_permutation_test(a, b, images) == pytest.approx(
            _sign_flip_p_by_convolution(sums), rel=1e-9
        )
    # +-1 differences: the exact sign-flip test is the exact binomial (McNemar) test, here at 20 discordant pairs.
    a2, b2 = np.r_[np.ones(18), np.zeros(2)], np.r_[np.zeros(18), np.ones(2)]
    singles = [str(i) for i in range(20)]
    assert cluster_permutation_test(a2, b2, singles) == pytest.approx(mcnemar_exact(a2, b2), rel=1e-12)
    assert mcnemar_exact(a2, b2) == pytest.approx(2 * (1 + 20 + 190) / 2**20)  # 4.02e-4, by hand


def test_exact_sign_flip_limits():
    assert exact_sign_flip_p([0.0, 0.0]) == 1.0
    assert exact_sign_flip_p([1.0, -1.0]) == 1.0  # observed sum 0: every pattern reaches it
    with pytest.raises(ValueError, match="limited to 40"):
        exact_sign_flip_p(np.ones(41))
    # Beyond EXACT_MAX_FLIPS the test is Monte Carlo: never below 1 / (1 + n_resamples).
    n = EXACT_MAX_FLIPS + 1
    assert cluster_permutation_test([1] * n, [0] * n, [str(i) for i in range(n)], n_resamples=999) == 1 / 1000
