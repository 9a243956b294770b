"""The theory of Section 2 of the paper, as plain numpy functions you can run and extend.

Everything is for one fixed context x over a vocabulary of V tokens (the paper drops the x
subscripts the same way; Sec. 2.1.2):

    counts  (V,)    N_{x;v_i}, the corpus counts of x followed by v_i; N_x = counts.sum()
    alpha   (G, V)  row n-1 holds α_i[n], the non-negative error of generation n; α[n] = row sum
    p_hat   (G, V)  row n-1 holds p̂_n(v_i|x), the next-token distribution of generation n

Paradigms (Sec. 2.1.1): "replace" (generation n trains only on generation n-1's output),
"accumulate-subsample" with rate k > 0 (a share 1/(1+(n-1)k) of D0, k/(1+(n-1)k) from each earlier
generation), and "mix" with real share λ (not in the paper; its Limitations case of a real-data
share that does not vanish — derived below in the same form).

Mix(λ) derivation. Generation n ≥ 2 trains on λ real data and 1-λ output of generation n-1, so in
the paper's count form p̂_n = (λN_i + (1-λ)y_i[n-1] + α_i[n]) / (λN + (1-λ)y[n-1] + α[n]), with
y_i[1] = N_i + α_i[1]. By induction y_i[n] = N_i + Σ_{j≤n} (1-λ)^{n-j} α_i[j]: the error mass is a
discounted sum, bounded for bounded errors (≤ sup α/λ), so the real-data weight N/y[n] stays
bounded away from 0 and p̂_n does not approach the error-only term. λ = 0 is Replace.

This module never imports torch: the theory must run anywhere numpy runs.
"""

from __future__ import annotations

import typing
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lmcollapse.errors import InvalidInput
from lmcollapse.paradigms import AccumulateSubsample, Mix, Paradigm, Replace, paradigm_of

TheoryParadigm = Literal["replace", "accumulate-subsample", "mix"]
PARADIGMS: tuple[str, ...] = typing.get_args(TheoryParadigm)

FloatArray = NDArray[np.float64]

_SUM_TOLERANCE = 1e-6  # how far a distribution's sum may stray from 1 (float32 softmax outputs)
_MIX_BLOCK = 256  # rows per block of the blocked discounted sum (memory O(block² + G·V))


# ----------------------------------------------------------------------------------------------
# Input checks: every public function validates its arguments and raises InvalidInput (a
# ValueError) that names the argument and what would fix it.


def _as_counts(counts: ArrayLike) -> FloatArray:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInput(f"counts must be a non-empty 1-D array (V,), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput("counts must be finite (no NaN or inf)")
    if np.any(arr < 0):
        raise InvalidInput(f"counts must be non-negative, got min {arr.min():g}")
    if arr.sum() <= 0:
        raise InvalidInput("counts must have a positive total N_x (the context must occur)")
    return arr


def _as_alpha(alpha: ArrayLike, vocab_size: int | None = None) -> FloatArray:
    arr = np.asarray(alpha, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidInput(f"alpha must be a 2-D array (G, V), got shape {arr.shape}")
    if arr.shape[0] < 1:
        raise InvalidInput("alpha must have at least one generation (G >= 1)")
    if vocab_size is not None and arr.shape[1] != vocab_size:
        raise InvalidInput(
            f"alpha has {arr.shape[1]} columns but counts has {vocab_size} tokens: "
            "shapes must be (G, V) and (V,)"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidInput("alpha must be finite (no NaN or inf)")
    if np.any(arr < 0):
        raise InvalidInput(f"alpha must be non-negative (errors are ≥ 0), got min {arr.min():g}")
    return arr


def _paradigm(paradigm: str, k: float, lam: float) -> Paradigm:
    """The paradigm object, checked by lmcollapse.paradigms (k for Accumulate-Subsample, λ for
    Mix: the parameters they use); the theory covers Replace, Accumulate-Subsample and Mix."""
    if paradigm not in PARADIGMS:
        raise InvalidInput(f"unknown paradigm {paradigm!r}: choose one of {', '.join(PARADIGMS)}")
    return paradigm_of(paradigm, k, lam)


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InvalidInput(f"seed must be an integer >= 0, got {seed!r}")


def _check_generations(generations: int) -> int:
    if isinstance(generations, bool) or not isinstance(generations, (int, np.integer)):
        raise InvalidInput(f"generations must be an integer, got {generations!r}")
    if generations < 1:
        raise InvalidInput(f"generations must be >= 1, got {generations}")
    return int(generations)


# ----------------------------------------------------------------------------------------------
# Prop. 2.3 / Remark B.1: the minimal error explaining a model's distribution.


def decompose(p_hat: ArrayLike, counts: ArrayLike) -> tuple[float, FloatArray]:
    """Minimal non-negative errors (α_x*, α_{x;v_i}*) with p̂(v_i|x) = (N_i + α_i)/(N_x + α_x).

    Prop. 2.3 proves such errors exist for any p̂ > 0; Remark B.1 gives the smallest:
    α_x* = max_i (N_i - p̂_i N_x)/p̂_i and α_i* = p̂_i (α_x* + N_x) - N_i ≥ 0. It is 0 exactly when
    p̂ is the corpus distribution. With `counts` = y[n-1] instead of corpus counts this is the
    per-generation error of Prop. 2.4 (the same algebra, Appendix B.2).
    """
    n_i = _as_counts(counts)
    p = np.asarray(p_hat, dtype=np.float64)
    if p.shape != n_i.shape:
        raise InvalidInput(
            f"p_hat has shape {p.shape} but counts has shape {n_i.shape}: both must be (V,)"
        )
    if not np.all(np.isfinite(p)):
        raise InvalidInput("p_hat must be finite (no NaN or inf)")
    if np.any(p <= 0):
        raise InvalidInput(
            f"p_hat must be > 0 everywhere (Sec. 2.1.2 assumes p̂ ≠ 0); "
            f"{int(np.sum(p <= 0))} entries are <= 0"
        )
    if abs(p.sum() - 1.0) > _SUM_TOLERANCE:
        raise InvalidInput(f"p_hat must sum to 1 (a distribution over V), it sums to {p.sum():.9g}")
    p = p / p.sum()  # within tolerance: renormalise, so that α_x = Σ α_i holds exactly (Eq. 1)
    n_x = n_i.sum()
    # A p̂-weighted average of the terms below is Σ(N_i - p̂_i N_x) = 0, so their max is ≥ 0.
    alpha_x = max(float(np.max((n_i - p * n_x) / p)), 0.0)
    alpha_i = np.maximum(p * (alpha_x + n_x) - n_i, 0.0)  # clip rounding noise at the argmax
    return alpha_x, alpha_i


# ----------------------------------------------------------------------------------------------
# Eq. (4)/(6) literally, and their solutions Eq. (5)/(7).


def recurrence(
    counts: ArrayLike, alpha: ArrayLike, paradigm: str, k: float = 1.0, *, lam: float = 0.5
) -> FloatArray:
    """p̂_n for n = 1..G by iterating the recurrence generation by generation.

    Replace, Eq. (4): y_i[n] = y_i[n-1] + α_i[n].
    Accumulate-Subsample, Eq. (6): y_i[n] = (N_i + k Σ_{j<n} y_i[j]) / (1+(n-1)k) + α_i[n].
    Mix(λ): y_i[n] = λ N_i + (1-λ) y_i[n-1] + α_i[n].
    All start from Eq. (1): y_i[1] = N_i + α_i[1]; p̂_n = y_i[n] / y[n]. Returns (G, V).
    """
    n_i = _as_counts(counts)
    a = _as_alpha(alpha, n_i.size)
    par = _paradigm(paradigm, k, lam)
    y = np.empty_like(a)
    y[0] = n_i + a[0]
    running = y[0].copy()  # Σ_{j<n} y_i[j], for the pooled weights of Eq. (6)
    for n in range(2, a.shape[0] + 1):
        t = par.terms(n)  # y_i[n] = (real·N_i + each·(running or y_i[n-1])) / norm + α_i[n]
        b = t.real * n_i + t.each * (running if t.pooled else y[n - 2])
        y[n - 1] = (b if t.norm == 1 else b / t.norm) + a[n - 1]
        running += y[n - 1]
    return y / y.sum(axis=1, keepdims=True)


def _discounted_cumsum(a: FloatArray, r: float) -> FloatArray:
    """E[n] = Σ_{j≤n} r^{n-j} a[j] for every n, blockwise: a block of rows is a small Toeplitz
    product plus r^{m+1} times the previous block's last row (no r^{-j}, so no overflow)."""
    out = np.empty_like(a)
    m = np.arange(_MIX_BLOCK)
    toeplitz = np.tril(r ** np.maximum(m[:, None] - m[None, :], 0).astype(np.float64))
    carry_pow = r ** (m + 1.0)
    for start in range(0, a.shape[0], _MIX_BLOCK):
        stop = min(start + _MIX_BLOCK, a.shape[0])
        b = stop - start
        out[start:stop] = toeplitz[:b, :b] @ a[start:stop]
        if start:
            out[start:stop] += carry_pow[:b, None] * out[start - 1]
    return out


def _error_mass(a: FloatArray, paradigm: Paradigm) -> FloatArray:
    """The error part of the closed-form numerator, y_i[n] - N_i, shape (G, V)."""
    if isinstance(paradigm, Replace):  # Eq. (5)
        return np.cumsum(a, axis=0)
    if isinstance(paradigm, AccumulateSubsample):  # Eq. (7)
        return a + _discounted_prefix(a, paradigm.k)
    if isinstance(paradigm, Mix):
        return _discounted_cumsum(a, 1.0 - paradigm.lam)
    raise InvalidInput(f"the theory has no closed form for {paradigm.name}")


def _discounted_prefix(a: FloatArray, k: float) -> FloatArray:
    """k Σ_{j=1}^{n-1} α_i[j] / (1+jk) for each n (0 for n = 1), shape (G, V)."""
    j = np.arange(1, a.shape[0] + 1, dtype=np.float64)
    weighted = np.cumsum(k * a / (1 + j * k)[:, None], axis=0)
    out = np.zeros_like(a)
    out[1:] = weighted[:-1]
    return out


def closed_form(
    counts: ArrayLike, alpha: ArrayLike, paradigm: str, k: float = 1.0, *, lam: float = 0.5
) -> FloatArray:
    """p̂_n for n = 1..G from the solutions, not by iteration.

    Replace, Eq. (5): p̂_n = (N_i + Σ_{j≤n} α_i[j]) / (N_x + Σ_{j≤n} α[j]).
    Accumulate-Subsample, Eq. (7): p̂_n = (N_i + α_i[n] + k Σ_{j<n} α_i[j]/(1+jk)) / (same over V).
    Mix(λ): p̂_n = (N_i + Σ_{j≤n} (1-λ)^{n-j} α_i[j]) / (same over V). Returns (G, V).
    """
    n_i = _as_counts(counts)
    a = _as_alpha(alpha, n_i.size)
    y = n_i + _error_mass(a, _paradigm(paradigm, k, lam))
    return y / y.sum(axis=1, keepdims=True)


def limit_term(alpha: ArrayLike, paradigm: str, k: float = 1.0, *, lam: float = 0.5) -> FloatArray:
    """Theorem 2.1's error-only term that p̂_n approaches once the error series diverge, (G, V).

    Replace: Σ_{j≤n} α_i[j] / Σ_{j≤n} α[j].
    Accumulate-Subsample: k Σ_{j<n} α_i[j]/(1+jk) / k Σ_{j<n} α[j]/(1+jk).
    Mix(λ): Σ_{j≤n} (1-λ)^{n-j} α_i[j] / Σ_{j≤n} (1-λ)^{n-j} α[j] (p̂_n does not approach it).
    Rows where no error has accumulated yet (0/0, e.g. n = 1 under Accumulate-Subsample) are NaN.
    """
    a = _as_alpha(alpha)
    par = _paradigm(paradigm, k, lam)
    if isinstance(par, AccumulateSubsample):
        mass = _discounted_prefix(a, par.k)
    else:
        mass = _error_mass(a, par)
    total = mass.sum(axis=1, keepdims=True)
    out = np.full_like(mass, np.nan)
    np.divide(mass, total, out=out, where=total > 0)
    return out


def real_data_weight(
    counts: ArrayLike, alpha: ArrayLike, paradigm: str, k: float = 1.0, *, lam: float = 0.5
) -> FloatArray:
    """w[n] = N_x / y[n], shape (G,): p̂_n = w·p + (1-w)·(error distribution).

    The proof of Theorem 2.1 is that w[n] → 0 when the error series diverge. Under
    Accumulate-Subsample with constant errors y[n] - N_x grows only like α·log n, so w[n] decays
    very slowly — the "matter of time" of Sec. 2.7.
    """
    n_i = _as_counts(counts)
    a = _as_alpha(alpha, n_i.size)
    n_x = n_i.sum()
    return n_x / (n_x + _error_mass(a, _paradigm(paradigm, k, lam)).sum(axis=1))


def real_data_share(
    generations: int, paradigm: str, k: float = 1.0, *, lam: float = 0.5
) -> FloatArray:
    """The share of generation n's training set drawn from D0 (Sec. 2.1.1), shape (G,).

    Replace: 1, 0, 0, ...; Accumulate-Subsample: 1/(1+(n-1)k); Mix(λ): 1, λ, λ, ...
    — D0's weight over the sum of the paradigm's weights (`Paradigm.real_share`). This is the
    nominal share of the training *data*. In the count form of Eq. (3) the share of the
    occurrences of x that come from D0 is N_x / (N_x + k Σ_j y[j]) instead, because generated
    data carries its own error mass. Contrast both with `real_data_weight`, what survives in p̂_n.
    """
    g = _check_generations(generations)
    par = _paradigm(paradigm, k, lam)
    return np.array([par.real_share(n) for n in range(1, g + 1)], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Error sequences for experiments. Each returns alpha (G, V) with E[α[n]] = total · (shape of n),
# split over the vocabulary by `weights` (normalised; e.g. uniform weights are additive smoothing).
# Random generators draw rows in order from one seeded stream, so the first G rows do not depend
# on how many generations are drawn: a longer horizon extends a run, it does not change it.


def _as_weights(weights: ArrayLike) -> FloatArray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise InvalidInput(f"weights must be a non-empty 1-D array (V,), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InvalidInput("weights must be finite, non-negative, with a positive sum")
    return w / w.sum()


def _check_total(total: float) -> float:
    if not np.isfinite(total) or total < 0:
        raise InvalidInput(
            f"total error per generation must be a finite number >= 0, got {total!r}"
        )
    return float(total)


def _decaying(generations: int, total: float, weights: ArrayLike, power: float) -> FloatArray:
    g = _check_generations(generations)
    n = np.arange(1, g + 1, dtype=np.float64)
    return (_check_total(total) / n**power)[:, None] * _as_weights(weights)[None, :]


def constant_errors(generations: int, total: float, weights: ArrayLike) -> FloatArray:
    """α_i[n] = total · w_i for every n: the theorem's assumption (α_i[n] ↛ 0) at its plainest."""
    return _decaying(generations, total, weights, 0.0)


def harmonic_errors(generations: int, total: float, weights: ArrayLike) -> FloatArray:
    """α_i[n] = total · w_i / n. α_i[n] → 0, so the theorem's assumption fails, yet Σ α[j]
    diverges and Replace still collapses (like 1/log n); under Accumulate-Subsample
    Σ α[j]/(1+jk) converges, so there the real-data weight stays bounded away from 0."""
    return _decaying(generations, total, weights, 1.0)


def inverse_square_errors(generations: int, total: float, weights: ArrayLike) -> FloatArray:
    """α_i[n] = total · w_i / n². Summable: p̂_n settles at a fixed mix of truth and errors."""
    return _decaying(generations, total, weights, 2.0)


def iid_errors(generations: int, total: float, weights: ArrayLike, seed: int) -> FloatArray:
    """α_i[n] = total · w_i · ξ_{n,i}, ξ i.i.d. Exponential(1): noisy errors that do not vanish."""
    g = _check_generations(generations)
    _check_seed(seed)
    w = _as_weights(weights)
    xi = np.random.default_rng([seed, 1]).standard_exponential(size=(g, w.size))
    return _check_total(total) * w[None, :] * xi


def burst_errors(
    generations: int, total: float, weights: ArrayLike, probability: float, seed: int
) -> FloatArray:
    """Sparse bursts: generation n errs with probability p, by total/p (same mean as constant)."""
    g = _check_generations(generations)
    if not np.isfinite(probability) or not 0 < probability <= 1:
        raise InvalidInput(f"burst probability must be in (0, 1], got {probability!r}")
    _check_seed(seed)
    hit = np.random.default_rng([seed, 2]).random(g) < probability
    return hit[:, None] * (_check_total(total) / probability) * _as_weights(weights)[None, :]


def random_weights(vocab_size: int, seed: int) -> FloatArray:
    """A seeded random split of the error over V tokens (flat Dirichlet): errors with a bias."""
    if vocab_size < 1:
        raise InvalidInput(f"vocab_size must be >= 1, got {vocab_size}")
    _check_seed(seed)
    return np.random.default_rng([seed, 3]).dirichlet(np.ones(vocab_size))
