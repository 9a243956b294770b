"""Training-set composition per generation: exact proportions, the right sources, seeded indices."""

from __future__ import annotations

import numpy as np
import pytest

from lmcollapse.data.paradigms import D0, choose, composition, generated, sample_indices
from lmcollapse.errors import InvalidInput

U = 10_000  # |D0| in stories


@pytest.mark.parametrize("k", [0.25, 1.0, 4.0])
def test_accumulate_subsample_proportions_are_exact(k: float) -> None:
    sizes = {j: round(k * U) for j in range(1, 10)}  # each S_j holds k·|D0| stories
    for n in range(1, 11):
        comp = composition("accumulate-subsample", n, U, sizes, k=k)
        assert comp.total == U
        counts = {p.source: p.count for p in comp.parts}
        assert abs(counts[D0] - U / (1 + (n - 1) * k)) < 1
        for j in range(1, n):
            assert abs(counts[generated(j)] - U * k / (1 + (n - 1) * k)) < 1
        assert set(counts) == {D0} | {generated(j) for j in range(1, n)}
        assert comp.share(D0) == pytest.approx(1 / (1 + (n - 1) * k), abs=1 / U)


def test_replace_uses_only_the_previous_generation() -> None:
    sizes = {1: 9000, 2: 11_000, 3: 10_500}
    assert composition("replace", 1, U, sizes).to_dict()["parts"] == [
        {"source": "d0", "count": U, "available": U}
    ]
    for n in (2, 3, 4):
        comp = composition("replace", n, U, sizes)
        assert [(p.source, p.count) for p in comp.parts] == [(generated(n - 1), sizes[n - 1])]
        idx = sample_indices(comp, seed=0)
        assert list(idx) == [generated(n - 1)]
        np.testing.assert_array_equal(idx[generated(n - 1)], np.arange(sizes[n - 1]))


def test_accumulate_takes_everything_and_mix_takes_a_fixed_share() -> None:
    sizes = {1: 500, 2: 700}
    comp = composition("accumulate", 3, U, sizes, k=0.05)
    assert [(p.source, p.count) for p in comp.parts] == [
        (D0, U),
        (generated(1), 500),
        (generated(2), 700),
    ]
    mix = composition("mix", 3, U, {2: U}, lam=0.3)
    assert [(p.source, p.count) for p in mix.parts] == [(D0, 3000), (generated(2), 7000)]
    assert composition("mix", 2, U, {1: U}, lam=0.0).parts[0].source == generated(1)


def test_same_seed_same_indices_without_replacement() -> None:
    sizes = dict.fromkeys(range(1, 5), U)
    comp = composition("accumulate-subsample", 5, U, sizes, k=1.0)
    a, b = sample_indices(comp, seed=7), sample_indices(comp, seed=7)
    assert a.keys() == b.keys()
    for source, idx in a.items():
        np.testing.assert_array_equal(idx, b[source])
        assert (
            len(np.unique(idx))
            == len(idx)
            == comp.parts[[p.source for p in comp.parts].index(source)].count
        )
        assert idx.min() >= 0 and idx.max() < U and (np.diff(idx) > 0).all()
    c = sample_indices(comp, seed=8)
    assert any(not np.array_equal(a[s], c[s]) for s in a)
    # each generation draws its own subsample of a source
    other = sample_indices(
        composition("accumulate-subsample", 6, U, {**sizes, 5: U}, k=1.0), seed=7
    )
    assert not np.array_equal(other[generated(1)], a[generated(1)])


def test_choose_costs_what_it_returns_not_what_it_chooses_from() -> None:
    rng = np.random.default_rng(0)
    idx = choose(10**12, 1000, rng)  # a permutation of 10^12 would not fit in memory
    assert len(np.unique(idx)) == 1000 and idx.max() < 10**12
    many = np.concatenate([choose(100, 10, np.random.default_rng(s)) for s in range(3000)])
    assert np.bincount(many, minlength=100).min() > 200  # roughly uniform: mean 300
    np.testing.assert_array_equal(choose(5, 5, rng), np.arange(5))


def test_composition_stays_cheap_after_many_generations() -> None:
    n, k = 2000, 0.01
    sizes = {j: round(k * U) for j in range(1, n)}
    comp = composition("accumulate-subsample", n, U, sizes, k=k)
    assert comp.total == U
    idx = sample_indices(comp, seed=1)
    assert sum(len(v) for v in idx.values()) == U


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: composition("accumulate-subsample", 2, U, {1: U}, k=0), "k must be > 0"),
        (lambda: composition("accumulate-subsample", 2, U, {1: U}, k=-1), "k must be > 0"),
        (lambda: composition("mix", 2, U, {1: U}, lam=1.0), r"must be in \[0, 1\)"),
        (lambda: composition("mix", 2, U, {1: U}, lam=-0.1), r"must be in \[0, 1\)"),
        (lambda: composition("recycle", 2, U, {1: U}), "unknown paradigm"),
        (lambda: composition("replace", 3, U, {1: U}), "needs S_2"),
        (lambda: composition("accumulate-subsample", 3, U, {1: U, 2: 10}, k=1), "has only 10"),
        (lambda: composition("replace", 0, U, {}), "generation must be >= 1"),
    ],
)
def test_bad_paradigm_input(call, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()


def test_empty_sources_and_absurd_rates_are_refused() -> None:
    with pytest.raises(InvalidInput, match="gen_001, which is empty"):
        composition("replace", 2, U, {1: 0})
    with pytest.raises(InvalidInput, match="at most 1e6"):
        composition("accumulate-subsample", 3, U, {1: U, 2: U}, k=1e308)
