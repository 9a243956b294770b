"""lmcollapse.uncertainty on fixed numbers: intervals and tests against scipy, a permutation p-value
and Holm's correction by hand, the onset rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from lmcollapse.uncertainty import (
    AUTO_BOOTSTRAP_AT,
    bootstrap_interval,
    difference,
    holm,
    interval,
    onset,
    permutation_p,
    t_interval,
    welch,
)

A = [9.1, 10.4, 8.7, 11.9, 10.2]
B = [7.9, 8.3, 8.1, 7.6, 8.8, 8.0]


def test_the_t_interval_is_scipys() -> None:
    m, lo, hi = t_interval(A, 0.95)
    want = sp.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sp.sem(A))
    assert m == pytest.approx(np.mean(A), abs=1e-12)
    assert (lo, hi) == pytest.approx(want, abs=1e-12)
    m, lo, hi = t_interval(A, 0.9)
    assert (lo, hi) == pytest.approx(sp.t.interval(0.9, 4, loc=m, scale=sp.sem(A)), abs=1e-12)


def test_the_bootstrap_interval_is_the_percentile_one() -> None:
    """The same resamples by hand, and scipy's percentile bootstrap to its Monte Carlo error."""
    m, lo, hi = bootstrap_interval(A, 0.95, 4000, seed=3)
    rng = np.random.default_rng(3)
    means = np.asarray(A)[rng.integers(0, 5, size=(4000, 5))].mean(axis=1)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)
    ref = sp.bootstrap(
        (np.asarray(A),), np.mean, method="percentile", n_resamples=20000, random_state=1
    ).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.1) and hi == pytest.approx(ref.high, abs=0.1)
    assert m == pytest.approx(np.mean(A))


def test_auto_takes_t_below_twenty_values_and_drops_what_is_not_finite() -> None:
    small = interval([*A, None, math.inf, math.nan], "auto")
    assert (small.n, small.method) == (5, "t")
    assert (small.lo, small.hi) == pytest.approx(t_interval(A)[1:])
    x = np.linspace(1, 2, AUTO_BOOTSTRAP_AT)
    assert interval(x, "auto").method == "bootstrap"
    assert interval(x[:-1], "auto").method == "t"
    one = interval([4.0])
    assert (one.mean, one.lo, one.hi, one.n, one.method) == (4.0, 4.0, 4.0, 1, "")
    assert interval([None]).mean is None


def test_welch_is_scipys_test_and_interval() -> None:
    d = welch(A, B)
    ref = sp.ttest_ind(A, B, equal_var=False)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (d.lo, d.hi) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert d.diff == pytest.approx(np.mean(A) - np.mean(B))
    assert welch([1.0, 1.0], [2.0, 2.0]).p == 0.0 and welch([1.0, 1.0], [1.0, 1.0]).p == 1.0


def test_a_permutation_p_value_by_hand() -> None:
    """a = (1, 2), b = (3, 5): of the 6 splits of {1, 2, 3, 5} into pairs, |mean difference|
    is 2.5, 1.5, 0.5, 0.5, 1.5, 2.5; the observed 2.5 is reached by 2, so p = 1/3."""
    assert permutation_p([1, 2], [3, 5]) == pytest.approx(1 / 3)
    assert permutation_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)  # only the extremes
    assert permutation_p([1, 2, 3], [1, 2, 3]) == 1.0
    exact = sp.permutation_test(  # |difference| as the statistic: scipy's two-sided doubles a tail
        (A, B),
        lambda x, y: abs(np.mean(x) - np.mean(y)),
        permutation_type="independent",
        n_resamples=math.inf,
        alternative="greater",
    ).pvalue
    assert permutation_p(A, B) == pytest.approx(exact, rel=1e-10)


def test_a_permutation_test_past_the_exact_limit_samples_splits() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 15), rng.normal(0.8, 1, 15)  # C(30, 15) ≈ 1.6e8 splits
    p = permutation_p(a, b, resamples=4000, seed=1)
    assert p == permutation_p(a, b, resamples=4000, seed=1)  # seeded
    assert p == pytest.approx(sp.ttest_ind(a, b).pvalue, abs=0.02)  # normal data: close to t
    d = difference(a, b, "permutation", resamples=4000, seed=1)
    assert d.test == "permutation" and d.p == p and d.diff == pytest.approx(a.mean() - b.mean())
    with pytest.raises(ValueError, match="at least 2"):
        difference([1.0], [2.0, 3.0])


def test_holm_by_hand() -> None:
    """Sorted 0.005, 0.01, 0.03, 0.04 → × 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 → running
    maximum 0.02, 0.03, 0.06, 0.06."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_onset_is_the_first_generation_past_the_threshold() -> None:
    ppl = [(1, 10.0), (2, 12.0), (3, 15.5), (4, 14.0), (5, 30.0)]
    assert onset(ppl, 0.5) == 3  # 15.5 > 15
    assert onset(ppl, 1.0) == 5
    assert onset(ppl, 3.0) is None
    assert onset([(2, 50.0)], 0.5) is None  # no generation 1 to compare with
    assert onset([(1, 10.0), (2, None), (3, math.inf)], 0.5) == 3
