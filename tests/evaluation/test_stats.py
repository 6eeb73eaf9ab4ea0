import numpy as np
import pytest
from scipy import stats as sps

from vseam_pl.stats import bootstrap_ci, mcnemar_exact, paired_permutation_test


def _pair(n: int, p_a: float, p_b: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n) < p_a, rng.random(n) < p_b


@pytest.mark.parametrize(
    ("n", "p_a", "p_b", "seed"), [(10, 0.5, 0.5, 0), (200, 0.6, 0.7, 1), (3000, 0.8, 0.81, 2)]
)
def test_mcnemar_equals_scipy_binomtest(n, p_a, p_b, seed):
    a, b = _pair(n, p_a, p_b, seed)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    expected = sps.binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert mcnemar_exact(a, b) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(b, a) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_edge_cases():
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == 1.0  # no discordant pairs
    assert mcnemar_exact([1] * 10, [0] * 10) == pytest.approx(2 * 0.5**10)
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact([1, 0], [1])
    with pytest.raises(ValueError, match="empty"):
        mcnemar_exact([], [])


def test_permutation_identical_systems_give_p_one():
    a, _ = _pair(500, 0.6, 0.6, 3)
    assert paired_permutation_test(a, a, n_resamples=999, seed=0) == 1.0


def test_permutation_is_deterministic_and_detects_a_better_system():
    a, b = _pair(1000, 0.55, 0.65, 4)
    p1 = paired_permutation_test(a, b, n_resamples=2000, seed=7)
    assert p1 == paired_permutation_test(a, b, n_resamples=2000, seed=7)
    assert p1 < 0.01
    assert p1 >= 1 / 2001  # never zero
    # with no real difference the p-value is large
    c, d = _pair(1000, 0.6, 0.6, 5)
    assert paired_permutation_test(c, d, n_resamples=2000, seed=0) > 0.05


def test_permutation_agrees_with_scipy_on_real_scores():
    rng = np.random.default_rng(6)
    a = rng.normal(size=60)
    b = a + rng.normal(0.2, 0.5, size=60)
    ours = paired_permutation_test(a, b, n_resamples=20_000, seed=0)
    ref = sps.permutation_test(
        (a, b),
        lambda x, y: np.mean(x - y),
        permutation_type="samples",
        n_resamples=20_000,
        alternative="two-sided",
        rng=np.random.default_rng(1),
    ).pvalue
    assert 0.001 < ref < 0.5  # a case where Monte-Carlo p-values are informative
    assert ours == pytest.approx(ref, abs=0.01)


def test_bootstrap_identical_systems_contain_zero():
    a, _ = _pair(300, 0.5, 0.5, 7)
    assert bootstrap_ci(a, a) == (0.0, 0.0)


def test_bootstrap_is_deterministic_and_excludes_zero_for_a_better_system():
    a, b = _pair(2000, 0.7, 0.6, 8)
    lo, hi = bootstrap_ci(a, b, seed=3)
    assert (lo, hi) == bootstrap_ci(a, b, seed=3)
    assert bootstrap_ci(a, b, seed=4) != (lo, hi)
    diff = a.mean() - b.mean()
    assert 0 < lo < diff < hi
    wide = bootstrap_ci(a, b, seed=3, level=0.99)
    assert wide[0] <= lo and wide[1] >= hi


def test_bootstrap_agrees_with_scipy_paired_percentile():
    rng = np.random.default_rng(9)
    a = rng.normal(size=400)
    b = a - 0.1 + rng.normal(0, 0.4, size=400)
    ours = bootstrap_ci(a, b, n_resamples=4000, seed=0)
    ref = sps.bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    se = np.std(a - b) / np.sqrt(a.size)
    assert ours[0] == pytest.approx(ref.low, abs=0.15 * se)
    assert ours[1] == pytest.approx(ref.high, abs=0.15 * se)


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1, 0], [0, 1], level=95)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")], [0, 1])
