"""Statistics across replicates (issue 14): intervals for every curve, tests for every comparison,
and the generation collapse starts.

Intervals of a mean over the replicates that reached a generation (n of them):

    t          mean ± t_{(1+level)/2, n−1} · s/√n — exact when replicates are normal, and the
               right choice for the few replicates a GPU run affords (a percentile bootstrap of
               n < 20 values undercovers: it cannot reach past the values it resamples)
    bootstrap  the percentile interval of `resamples` means of n values drawn with replacement
               (seeded): follows a skewed metric (perplexity under Replace) once n is large
    auto       t when n < AUTO_BOOTSTRAP_AT, bootstrap from there; every row says which

Comparisons of two runs, per generation: the difference of means with Welch's interval, and a
two-sided p-value — Welch's t-test (unequal variances), or an exact permutation test of the
difference of means (every split of the pooled replicates when there are at most EXACT_SPLITS,
else `resamples` random ones with the +1 correction). Holm's step-down correction runs across
the generations compared. A permutation p-value with n_a + n_b replicates is at least
2/C(n_a + n_b, n_a): 4 against 4 cannot go below 0.029, which Holm multiplies by the number of
generations; Welch's test has no such floor.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

AUTO_BOOTSTRAP_AT = 20  # replicates from which `auto` takes the percentile bootstrap
EXACT_SPLITS = 20_000  # a permutation test enumerates every split up to this many

IntervalMethod = Literal["auto", "t", "bootstrap"]
TestMethod = Literal["welch", "permutation"]


@dataclass(frozen=True)
class Interval:
    """A mean with its interval (lo = hi = mean for one value; None for none)."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    method: str  # "t", "bootstrap" or "" (fewer than 2 values: no interval)


def _finite(values: ArrayLike) -> NDArray[np.float64]:
    x = np.asarray([np.nan if v is None else v for v in np.ravel(values)], dtype=np.float64)
    return x[np.isfinite(x)]


def t_interval(values: ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): Student's t interval of the mean of at least 2 values."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    m, n = float(x.mean()), x.size
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return m, m - half, m + half


def bootstrap_interval(
    values: ArrayLike, level: float = 0.95, resamples: int = 10_000, seed: Any = 0
) -> tuple[float, float, float]:
    """(mean, lo, hi): the percentile bootstrap interval of the mean (seeded)."""
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def interval(
    values: ArrayLike,
    method: IntervalMethod = "auto",
    level: float = 0.95,
    resamples: int = 10_000,
    seed: Any = 0,
) -> Interval:
    """The interval of the mean of the finite values (None and inf/nan are not counted)."""
    x = _finite(values)
    if x.size == 0:
        return Interval(None, None, None, 0, "")
    if x.size == 1:
        return Interval(float(x[0]), float(x[0]), float(x[0]), 1, "")
    use = ("t" if x.size < AUTO_BOOTSTRAP_AT else "bootstrap") if method == "auto" else method
    if use == "t":
        m, lo, hi = t_interval(x, level)
    elif use == "bootstrap":
        m, lo, hi = bootstrap_interval(x, level, resamples, seed)
    else:
        raise ValueError(f"unknown interval method {method!r}")
    return Interval(m, lo, hi, int(x.size), use)


@dataclass(frozen=True)
class Difference:
    """mean(a) − mean(b) with Welch's interval and a two-sided p-value."""

    diff: float
    lo: float
    hi: float
    p: float
    n_a: int
    n_b: int
    test: str


def welch(a: ArrayLike, b: ArrayLike, level: float = 0.95) -> Difference:
    """Welch's t-test and interval of mean(a) − mean(b) (Welch–Satterthwaite degrees of
    freedom). Two groups without spread: p = 0 if their means differ, else 1."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = float(x.mean() - y.mean())
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(d, d, d, 0.0 if d != 0 else 1.0, x.size, y.size, "welch")
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    p = float(2 * stats.t.sf(abs(d) / se, df))
    half = float(stats.t.ppf((1 + level) / 2, df)) * se
    return Difference(d, d - half, d + half, p, x.size, y.size, "welch")


def permutation_p(a: ArrayLike, b: ArrayLike, resamples: int = 10_000, seed: Any = 0) -> float:
    """Two-sided permutation p-value of mean(a) − mean(b): the share of splits of the pooled
    values into groups of a's and b's sizes whose |difference| is at least the observed one —
    every split (the observed one among them) when there are at most EXACT_SPLITS, else
    (1 + hits)/(1 + resamples) over random splits."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled, na = np.concatenate([x, y]), x.size
    total = pooled.sum()
    observed = abs(x.mean() - y.mean())
    tol = 1e-12 * max(1.0, float(np.abs(pooled).max()))

    def diffs(sums: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.abs(sums / na - (total - sums) / (pooled.size - na))

    if math.comb(pooled.size, na) <= EXACT_SPLITS:
        idx = np.array(list(itertools.combinations(range(pooled.size), na)), dtype=np.int64)
        return float(np.mean(diffs(pooled[idx].sum(axis=1)) >= observed - tol))
    rng = np.random.default_rng(seed)
    keys = rng.random((resamples, pooled.size))
    picks = np.argsort(keys, axis=1)[:, :na]
    hits = int(np.sum(diffs(pooled[picks].sum(axis=1)) >= observed - tol))
    return (1 + hits) / (1 + resamples)


def difference(
    a: ArrayLike,
    b: ArrayLike,
    test: TestMethod = "welch",
    level: float = 0.95,
    resamples: int = 10_000,
    seed: Any = 0,
) -> Difference:
    """mean(a) − mean(b) with Welch's interval, and the p-value of `test` (at least 2 finite
    values in each group)."""
    x, y = _finite(a), _finite(b)
    if min(x.size, y.size) < 2:
        raise ValueError("a difference needs at least 2 values in each group")
    w = welch(x, y, level)
    if test == "welch":
        return w
    if test == "permutation":
        p = permutation_p(x, y, resamples, seed)
        return Difference(w.diff, w.lo, w.hi, p, w.n_a, w.n_b, "permutation")
    raise ValueError(f"unknown test {test!r}")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error across the tests), in the given
    order: the i-th smallest is multiplied by (m − i), running maxima kept, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (p.size - np.arange(p.size))))
    out = np.empty_like(p)
    out[order] = adjusted
    return out.tolist()


def onset(perplexity: Sequence[tuple[int, float | None]], tau: float) -> int | None:
    """The first generation n >= 2 whose perplexity exceeds (1 + tau) × generation 1's (None:
    none did, or generation 1 has none)."""
    by_gen = {g: v for g, v in perplexity if v is not None}
    first = by_gen.get(1)
    if first is None or not math.isfinite(first):
        return None
    for g in sorted(by_gen):
        if g >= 2 and by_gen[g] > (1 + tau) * first:
            return g
    return None


__all__ = [
    "Difference",
    "Interval",
    "bootstrap_interval",
    "difference",
    "holm",
    "interval",
    "onset",
    "permutation_p",
    "t_interval",
    "welch",
]
