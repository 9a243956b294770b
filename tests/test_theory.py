"""lmcollapse.theory against the paper's equations: recurrence vs closed form, Remark B.1,
Theorem 2.1's limit, and the error generators."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lmcollapse import theory
from lmcollapse.errors import InvalidInput
from lmcollapse.paradigms import paradigm_of

RNG = np.random.default_rng(20241123)
COUNTS = RNG.integers(0, 500, size=50).astype(np.float64)  # zeros included: unseen continuations
ALPHA = RNG.exponential(3.0, size=(200, 50))


@pytest.mark.parametrize(
    ("paradigm", "k"),
    [
        ("replace", 1.0),
        ("accumulate-subsample", 0.1),
        ("accumulate-subsample", 1.0),
        ("accumulate-subsample", 3.0),
    ],
)
def test_recurrence_equals_closed_form(paradigm: str, k: float) -> None:
    rec = theory.recurrence(COUNTS, ALPHA, paradigm, k)
    closed = theory.closed_form(COUNTS, ALPHA, paradigm, k)
    assert rec.shape == closed.shape == (200, 50)
    assert np.max(np.abs(rec - closed)) < 1e-10
    np.testing.assert_allclose(closed.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.01, 0.3, 1.0])
def test_mix_recurrence_equals_closed_form_beyond_one_block(lam: float) -> None:
    alpha = RNG.exponential(1.0, size=(700, 50))  # several blocks of the blocked discounted sum
    rec = theory.recurrence(COUNTS, alpha, "mix", lam=lam)
    assert np.max(np.abs(rec - theory.closed_form(COUNTS, alpha, "mix", lam=lam))) < 1e-10


def test_generation_one_is_prop_2_3_for_every_paradigm() -> None:
    expected = (COUNTS + ALPHA[0]) / (COUNTS.sum() + ALPHA[0].sum())  # Eq. (1)
    for paradigm in theory.PARADIGMS:
        np.testing.assert_allclose(
            theory.closed_form(COUNTS, ALPHA, paradigm)[0], expected, rtol=1e-13
        )


def test_hand_computed_accumulate_subsample_generation_three() -> None:
    # Two tokens, k = 2: Eq. (6) by hand. y1 = N + α[1]; y2 = (N + k y1)/(1+k) + α[2];
    # y3 = (N + k(y1 + y2))/(1 + 2k) + α[3].
    n = np.array([3.0, 1.0])
    a = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    y1 = n + a[0]
    y2 = (n + 2 * y1) / 3 + a[1]
    y3 = (n + 2 * (y1 + y2)) / 5 + a[2]
    np.testing.assert_allclose(
        theory.closed_form(n, a, "accumulate-subsample", 2.0)[2], y3 / y3.sum()
    )
    # Eq. (7) for the same: N + α[3] + k(α[1]/(1+k) + α[2]/(1+2k))
    y3_closed = n + a[2] + 2 * (a[0] / 3 + a[1] / 5)
    np.testing.assert_allclose(y3, y3_closed)


def test_mix_edges_are_replace_and_real_data_only() -> None:
    np.testing.assert_allclose(
        theory.closed_form(COUNTS, ALPHA, "mix", lam=0.0),
        theory.closed_form(COUNTS, ALPHA, "replace"),
        atol=1e-14,
    )
    only_real = (COUNTS + ALPHA) / (COUNTS.sum() + ALPHA.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(
        theory.closed_form(COUNTS, ALPHA, "mix", lam=1.0), only_real, atol=1e-14
    )


@settings(max_examples=60, deadline=None)
@given(
    counts=arrays(np.float64, st.integers(1, 8), elements=st.floats(0, 1e4)),
    gens=st.integers(1, 30),
    k=st.floats(0.01, 50),
    lam=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_recurrence_equals_closed_form(counts, gens, k, lam, seed) -> None:
    if counts.sum() <= 0:
        counts = counts + 1.0
    alpha = np.random.default_rng(seed).exponential(
        counts.sum() * 0.1 + 1, size=(gens, counts.size)
    )
    for paradigm in theory.PARADIGMS:
        rec = theory.recurrence(counts, alpha, paradigm, k, lam=lam)
        closed = theory.closed_form(counts, alpha, paradigm, k, lam=lam)
        assert np.max(np.abs(rec - closed)) < 1e-10


# ----------------------------------------------------------------------------------------------
# Remark B.1


def test_decompose_round_trips_and_is_minimal() -> None:
    p_hat = RNG.dirichlet(np.ones(50))
    alpha_x, alpha_i = theory.decompose(p_hat, COUNTS)
    assert alpha_x > 0 and np.all(alpha_i >= 0)
    assert alpha_i.sum() == pytest.approx(alpha_x, rel=1e-12)
    np.testing.assert_allclose((COUNTS + alpha_i) / (COUNTS.sum() + alpha_x), p_hat, atol=1e-15)
    np.testing.assert_allclose(
        (COUNTS + alpha_i) / (COUNTS.sum() + alpha_i.sum()), p_hat, atol=1e-15
    )
    # Minimal: one component is exactly at zero, and any smaller α_x makes some α_i negative.
    assert alpha_i.min() == 0.0
    smaller = alpha_x * (1 - 1e-9)
    assert np.min(p_hat * (smaller + COUNTS.sum()) - COUNTS) < 0


def test_decompose_is_zero_for_the_corpus_distribution() -> None:
    counts = np.array([760.0, 50.0, 190.0])
    alpha_x, alpha_i = theory.decompose(counts / counts.sum(), counts)
    assert alpha_x == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(alpha_i, 0.0, atol=1e-9)


def test_decompose_hand_example() -> None:
    # N = (3, 1), p̂ = (0.5, 0.5): α* = max((3-2)/0.5, (1-2)/0.5) = 2; α = (0, 2); 3/(4+2) = 0.5
    alpha_x, alpha_i = theory.decompose([0.5, 0.5], [3.0, 1.0])
    assert alpha_x == pytest.approx(2.0)
    np.testing.assert_allclose(alpha_i, [0.0, 2.0], atol=1e-12)


def test_decompose_recovers_the_errors_of_a_simulated_generation() -> None:
    # Prop. 2.4 with y[n-1] in place of the counts: the minimal α of generation n comes back
    # exactly when the true α has a zero component (it is then the minimal one).
    alpha = RNG.exponential(5.0, size=(3, 50))
    alpha[:, 7] = 0.0
    y_prev = COUNTS + alpha[0]
    p2 = theory.closed_form(COUNTS, alpha, "replace")[1]
    alpha_x, alpha_i = theory.decompose(p2, y_prev)
    np.testing.assert_allclose(alpha_i, alpha[1], atol=1e-9)
    assert alpha_x == pytest.approx(alpha[1].sum())


@settings(max_examples=80, deadline=None)
@given(
    p=arrays(np.float64, st.integers(1, 12), elements=st.floats(1e-3, 1.0)),
    scale=st.floats(1, 1e5),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_decompose_rebuilds_p_hat(p, scale, seed) -> None:
    p = p / p.sum()
    counts = np.random.default_rng(seed).integers(0, 100, size=p.size).astype(np.float64) * scale
    counts[0] += 1.0
    alpha_x, alpha_i = theory.decompose(p, counts)
    assert alpha_x >= 0 and np.all(alpha_i >= 0)
    np.testing.assert_allclose(
        (counts + alpha_i) / (counts.sum() + alpha_x), p, rtol=1e-9, atol=1e-12
    )


# ----------------------------------------------------------------------------------------------
# Theorem 2.1


def test_replace_with_constant_errors_approaches_the_limit_exactly_like_1_over_n() -> None:
    counts = np.array([760.0, 50.0, 190.0])
    a = np.array([1.0, 2.0, 7.0])
    alpha = theory.constant_errors(5000, a.sum(), a)
    p_hat = theory.closed_form(counts, alpha, "replace")
    limit = theory.limit_term(alpha, "replace")
    np.testing.assert_allclose(limit, np.broadcast_to(a / a.sum(), limit.shape), atol=1e-14)
    n = np.arange(1, 5001)[:, None]
    # (N_i + nα_i)/(N + nα) - α_i/α = (N_i α - N α_i) / (α (N + nα))
    expected = (counts * a.sum() - counts.sum() * a) / (a.sum() * (counts.sum() + n * a.sum()))
    np.testing.assert_allclose(p_hat - limit, expected, atol=1e-13)
    dist = np.abs(p_hat - limit).max(axis=1)
    assert np.all(np.diff(dist) < 0) and dist[-1] < dist[0] / 40


@pytest.mark.parametrize("k", [0.1, 1.0, 3.0])
def test_accumulate_subsample_with_constant_errors_approaches_the_limit(k: float) -> None:
    counts = np.array([760.0, 50.0, 190.0])
    a = np.array([100.0, 20.0, 80.0])
    gens = 200_000
    alpha = theory.constant_errors(gens, a.sum(), a)
    p_hat = theory.closed_form(counts, alpha, "accumulate-subsample", k)
    limit = theory.limit_term(alpha, "accumulate-subsample", k)
    assert np.all(np.isnan(limit[0]))  # 0/0 at n = 1: no earlier generation yet
    s = np.concatenate([[0.0], np.cumsum(k / (1 + k * np.arange(1, gens)))])[:, None]
    expected = (counts * a.sum() - counts.sum() * a) / (
        a.sum() * (counts.sum() + a.sum() * (1 + s))
    )
    np.testing.assert_allclose(p_hat[1:] - limit[1:], expected[1:], atol=1e-12)
    dist = np.abs(p_hat - limit).max(axis=1)[1:]
    assert np.all(np.diff(dist) <= 1e-15)  # monotone towards 0 ...
    assert dist[-1] < 0.5 * dist[0]  # ... but only like 1/log n: still 0.07 after 2·10^5
    assert dist[-1] > 0.05


def test_real_data_weight_and_share() -> None:
    counts = np.array([6.0, 4.0])
    alpha = theory.constant_errors(4, 2.0, [1, 1])
    np.testing.assert_allclose(
        theory.real_data_weight(counts, alpha, "replace"), 10 / (10 + 2 * np.arange(1, 5))
    )
    w_as = theory.real_data_weight(counts, alpha, "accumulate-subsample", 1.0)
    s = np.array([0, 1 / 2, 1 / 2 + 1 / 3, 1 / 2 + 1 / 3 + 1 / 4])
    np.testing.assert_allclose(w_as, 10 / (10 + 2 + 2 * s))
    np.testing.assert_allclose(theory.real_data_share(4, "replace"), [1, 0, 0, 0])
    np.testing.assert_allclose(
        theory.real_data_share(4, "accumulate-subsample", 0.5), [1, 1 / 1.5, 1 / 2, 1 / 2.5]
    )
    np.testing.assert_allclose(theory.real_data_share(3, "mix", lam=0.25), [1, 0.25, 0.25])


def test_the_real_data_share_is_the_paradigms_and_the_validator_is_the_one() -> None:
    """real_data_share is D0's weight over the sum of the paradigm's weights: the Sec. 2.1.1
    formulas to the last bit; bad parameters get lmcollapse.paradigms' message."""
    n = np.arange(1, 201, dtype=np.float64)
    for k in (0.05, 1.0, 3.7):
        np.testing.assert_array_equal(
            theory.real_data_share(200, "accumulate-subsample", k), 1.0 / (1.0 + (n - 1.0) * k)
        )
    for lam in (0.0, 0.3, 0.71, 1.0):
        np.testing.assert_array_equal(theory.real_data_share(5, "mix", lam=lam), [1] + [lam] * 4)
    for name, k, lam in (("accumulate-subsample", 0.0, 0.5), ("mix", 1.0, 1.5)):
        with pytest.raises(InvalidInput) as direct:
            paradigm_of(name, k, lam)
        with pytest.raises(InvalidInput) as via_theory:
            theory.real_data_share(3, name, k, lam=lam)
        assert str(via_theory.value) == str(direct.value)
    with pytest.raises(InvalidInput, match="unknown paradigm 'accumulate': choose one of replace"):
        theory.closed_form(COUNTS, ALPHA, "accumulate")  # no closed form here: the pipeline's only


def test_accumulate_subsample_weight_decays_only_logarithmically() -> None:
    counts = np.array([1000.0])
    alpha = theory.constant_errors(10_000, 50.0, [1.0])
    w = theory.real_data_weight(counts, alpha, "accumulate-subsample", 1.0)
    # y[n] - N = α(1 + H_n - 1) with H_n the harmonic number: ≈ α(ln n + γ)
    h = np.cumsum(1 / np.arange(1, 10_001))
    np.testing.assert_allclose(w, 1000 / (1000 + 50 * h), rtol=1e-12)
    assert w[-1] > 0.6  # after 10^4 generations most of p̂ still comes from D0
    assert theory.real_data_weight(counts, alpha, "replace")[-1] < 0.003


def test_mix_keeps_a_real_data_floor() -> None:
    counts = np.array([700.0, 300.0])
    alpha = theory.constant_errors(2000, 100.0, [0, 1])
    w = theory.real_data_weight(counts, alpha, "mix", lam=0.2)
    # error mass → α/λ = 500: weight → 1000/1500
    assert w[-1] == pytest.approx(1000 / 1500, rel=1e-9)


# ----------------------------------------------------------------------------------------------
# Error generators


def test_deterministic_error_sequences() -> None:
    w = np.array([1.0, 3.0])
    np.testing.assert_allclose(theory.constant_errors(3, 8.0, w), [[2, 6]] * 3)
    np.testing.assert_allclose(theory.harmonic_errors(3, 6.0, w)[:, 1], [4.5, 2.25, 1.5])
    np.testing.assert_allclose(theory.inverse_square_errors(3, 4.0, w)[:, 0], [1, 0.25, 1 / 9])


def test_random_error_sequences_are_seeded_with_the_right_mean_and_a_stable_prefix() -> None:
    w = np.ones(5)
    a = theory.iid_errors(20_000, 10.0, w, seed=3)
    assert np.array_equal(a, theory.iid_errors(20_000, 10.0, w, seed=3))
    assert not np.array_equal(a, theory.iid_errors(20_000, 10.0, w, seed=4))
    assert a.sum(axis=1).mean() == pytest.approx(10.0, rel=0.02)
    assert np.array_equal(theory.iid_errors(40, 10.0, w, seed=3), a[:40])
    b = theory.burst_errors(20_000, 10.0, w, 0.1, seed=3)
    hit = b.sum(axis=1) > 0
    assert hit.mean() == pytest.approx(0.1, abs=0.01)
    np.testing.assert_allclose(b[hit].sum(axis=1), 100.0)
    assert np.array_equal(theory.burst_errors(40, 10.0, w, 0.1, seed=3), b[:40])
    r = theory.random_weights(6, seed=1)
    assert r.sum() == pytest.approx(1.0) and np.array_equal(r, theory.random_weights(6, seed=1))


def test_harmonic_errors_collapse_replace_but_not_accumulate_subsample() -> None:
    counts = np.array([1000.0])
    alpha = theory.harmonic_errors(100_000, 500.0, [1.0])
    assert theory.real_data_weight(counts, alpha, "replace")[-1] < 0.2  # Σ 1/n diverges
    w = theory.real_data_weight(counts, alpha, "accumulate-subsample", 1.0)
    # Σ 1/(j(1+j)) = 1: the error mass converges to ≤ 500(1 + 1), so the weight stays ≥ 1/2
    assert w.min() > 0.5 - 1e-12


# ----------------------------------------------------------------------------------------------
# Bad input: a clear ValueError that says what is wrong


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: theory.closed_form(COUNTS, ALPHA, "accumulate-subsample", 0.0), "k: must be"),
        (lambda: theory.recurrence(COUNTS, ALPHA, "accumulate-subsample", -1.0), "k: must be"),
        (lambda: theory.recurrence(COUNTS, ALPHA, "accumulate-subsample", "1"), "k: must be"),
        (lambda: theory.iid_errors(3, 1.0, [1], seed=-1), "seed must be"),
        (lambda: theory.closed_form(-COUNTS - 1, ALPHA, "replace"), "counts must be non-negative"),
        (lambda: theory.closed_form(COUNTS, -ALPHA, "replace"), "alpha must be non-negative"),
        (lambda: theory.closed_form(COUNTS, ALPHA[:, :3], "replace"), "columns but counts has"),
        (lambda: theory.closed_form(COUNTS, ALPHA[0], "replace"), "alpha must be a 2-D"),
        (
            lambda: theory.closed_form(COUNTS, np.zeros((0, 50)), "replace"),
            "at least one generation",
        ),
        (lambda: theory.closed_form(COUNTS, ALPHA, "collapse"), "unknown paradigm 'collapse'"),
        (lambda: theory.closed_form(np.zeros(50), ALPHA, "replace"), "positive total"),
        (lambda: theory.closed_form(COUNTS, ALPHA, "mix", lam=1.5), r"lam: must be in \[0, 1\]"),
        (lambda: theory.limit_term(ALPHA, "accumulate-subsample", k=float("nan")), "k: must be"),
        (lambda: theory.decompose([0.5, 0.5, 0.0], [1, 1, 1]), "must be > 0"),
        (lambda: theory.decompose([0.5, 0.6], [1, 1]), "must sum to 1"),
        (lambda: theory.decompose([0.5, 0.5], [1, 1, 1]), "shape"),
        (lambda: theory.decompose([0.5, 0.5], [1, -1]), "non-negative"),
        (lambda: theory.real_data_share(0, "replace"), "generations must be >= 1"),
        (lambda: theory.constant_errors(0, 1.0, [1]), "generations must be >= 1"),
        (lambda: theory.constant_errors(3, -1.0, [1]), "total error"),
        (lambda: theory.burst_errors(3, 1.0, [1], 0.0, 0), "probability"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert isinstance(info.value, InvalidInput)


def test_theory_never_imports_torch() -> None:
    code = (
        "import sys, lmcollapse.theory, lmcollapse.theory_experiment; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_decompose_renormalises_within_tolerance() -> None:
    counts = np.array([1e9, 5e8, 5e8])
    p = np.array([0.5, 0.3, 0.2 + 9e-7])  # sums to 1 + 9e-7: accepted
    alpha_x, alpha_i = theory.decompose(p, counts)
    assert alpha_i.sum() == pytest.approx(alpha_x, rel=1e-12)
