"""The paradigms as objects (their weights by hand, the one validator, the theory's recurrence
against its closed forms) and the training-set composition per generation: exact proportions,
the right sources, seeded indices."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from lmcollapse import theory
from lmcollapse.data.paradigms import D0, choose, composition, generated, sample_indices
from lmcollapse.errors import InvalidInput
from lmcollapse.paradigms import (
    PARADIGMS,
    Accumulate,
    AccumulateSubsample,
    Mix,
    Replace,
    from_config,
    paradigm_of,
)

U = 10_000  # |D0| in stories


# ----------------------------------------------------------------------------------------------
# lmcollapse.paradigms: the one definition.


def test_weights_by_hand_at_generations_one_two_and_four() -> None:
    everyone = [Replace(), AccumulateSubsample(0.5), Accumulate(0.5), Mix(0.25)]
    for par in everyone:  # generation 1 trains on all of D0, whatever the paradigm
        assert par.weights(1) == {0: 1.0}
        assert par.needs(1) == [0]
        assert par.shares(1) == [(0, None)]
        assert par.real_share(1) == 1.0
    assert Replace().weights(2) == {1: 1.0}
    assert Replace().weights(4) == {3: 1.0}
    assert AccumulateSubsample(0.5).weights(2) == {0: 1 / 1.5, 1: 0.5 / 1.5}
    assert AccumulateSubsample(0.5).weights(3) == {0: 0.5, 1: 0.25, 2: 0.25}
    assert AccumulateSubsample(0.5).weights(4) == {0: 0.4, 1: 0.2, 2: 0.2, 3: 0.2}
    assert Accumulate(0.5).weights(2) == {0: 1.0, 1: 0.5}
    assert Accumulate(0.5).weights(4) == {0: 1.0, 1: 0.5, 2: 0.5, 3: 0.5}
    assert Mix(0.25).weights(2) == {0: 0.25, 1: 0.75}
    assert Mix(0.25).weights(4) == {0: 0.25, 3: 0.75}
    # λ = 0 is Replace and λ = 1 trains on D0 alone: a source of weight 0 is no source
    assert Mix(0.0).weights(4) == Replace().weights(4)
    assert Mix(1.0).weights(4) == {0: 1.0}


def test_needs_shares_scale_and_the_real_share_follow_from_the_weights() -> None:
    assert Replace().needs(4) == [3]
    assert AccumulateSubsample(2.0).needs(4) == Accumulate(2.0).needs(4) == [0, 1, 2, 3]
    assert Mix(0.3).needs(4) == [0, 3]
    # whole sources (Replace, Accumulate) against shares of a |D0|-sized set
    assert Replace().shares(3) == [(2, None)]
    assert Accumulate(2.0).shares(3) == [(0, None), (1, None), (2, None)]
    assert AccumulateSubsample(0.5).shares(3) == [(0, 0.5), (1, 0.25), (2, 0.25)]
    assert Mix(0.3).shares(3) == [(0, 0.3), (2, 0.7)]
    # |S_n| / |D0|, and which paradigms keep every S_j
    four = (Replace(), AccumulateSubsample(3.0), Accumulate(0.5), Mix(0.3))
    assert [p.scale for p in four] == [1.0, 3.0, 0.5, 1.0]
    assert [p.accumulating for p in four] == [False, True, True, False]
    assert [p.subsampled for p in four] == [False, True, False, True]
    # D0's weight over the sum of the weights: the nominal real-data share
    assert [Replace().real_share(n) for n in (2, 4)] == [0.0, 0.0]
    assert AccumulateSubsample(0.5).real_share(4) == pytest.approx(1 / 2.5, rel=1e-15)
    assert Accumulate(0.5).real_share(4) == pytest.approx(1 / 2.5, rel=1e-15)
    assert Mix(0.3).real_share(4) == 0.3
    for par in (AccumulateSubsample(0.7), Accumulate(0.7), Mix(0.3)):
        for n in (2, 5, 9):
            w = par.weights(n)
            assert par.real_share(n) == pytest.approx(w[0] / sum(w.values()), rel=1e-14)
            t = par.terms(n)  # the closed form the weights are written in
            last = {n - 1} if not t.pooled else set(range(1, n))
            assert set(w) - {0} == last
            assert all(v == pytest.approx(t.each / t.norm) for j, v in w.items() if j)


def test_paradigm_of_builds_each_name_and_ignores_the_other_parameter() -> None:
    assert PARADIGMS == ("replace", "accumulate-subsample", "accumulate", "mix")
    assert paradigm_of("replace", k=-5.0, lam=7.0) == Replace()
    assert paradigm_of("accumulate-subsample", k=0.5, lam=7.0) == AccumulateSubsample(0.5)
    assert paradigm_of("accumulate", k=2.0) == Accumulate(2.0)
    assert paradigm_of("mix", k=-1.0, lam=0.3) == Mix(0.3)
    assert [paradigm_of(name).name for name in PARADIGMS] == list(PARADIGMS)
    assert AccumulateSubsample(1.0) != Accumulate(1.0)

    class Section:  # what a ParadigmConfig offers
        name, k, lam = "mix", 1.0, 0.2

    assert from_config(Section()) == Mix(0.2)


@pytest.mark.parametrize(
    ("name", "k", "lam", "message"),
    [
        (
            "accumulate-subsample",
            0.0,
            0.5,
            "k: must be > 0 and finite (the accumulation rate), got 0",
        ),
        ("accumulate-subsample", -1.0, 0.5, "k: must be > 0 and finite"),
        ("accumulate", math.nan, 0.5, "k: must be > 0 and finite (the accumulation rate), got nan"),
        ("accumulate", math.inf, 0.5, "got inf"),
        ("accumulate-subsample", "1", 0.5, "got '1'"),
        ("mix", 1.0, 1.5, "lam: must be in [0, 1] (the real-data share of mix), got 1.5"),
        ("mix", 1.0, -0.1, "lam: must be in [0, 1]"),
        ("mix", 1.0, math.nan, "lam: must be in [0, 1]"),
        ("recycle", 1.0, 0.5, "unknown paradigm 'recycle': choose one of replace, accumulate-"),
    ],
)
def test_the_one_validator_refuses_unusable_parameters(name, k, lam, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as info:
        paradigm_of(name, k, lam)
    assert "\n" not in str(info.value)


def test_the_validator_accepts_the_edges_and_large_rates() -> None:
    assert Mix(1.0).check() == [] and Mix(0.0).check() == []  # λ = 1: the all-real control
    assert AccumulateSubsample(1e9).check() == []  # no cap on k
    assert Replace().check() == []
    assert AccumulateSubsample(0.0).check() == [
        "k: must be > 0 and finite (the accumulation rate), got 0.0"
    ]
    assert Mix(2.0).check() == ["lam: must be in [0, 1] (the real-data share of mix), got 2.0"]
    assert Accumulate(np.float32(0.5)).check() == []  # numpy scalars are numbers
    assert Accumulate(True).check() != []  # a bool is not a rate
    with pytest.raises(InvalidInput, match="generation must be >= 1"):
        Replace().weights(0)


@pytest.mark.parametrize(
    ("paradigm", "k", "lam"),
    [
        ("replace", 1.0, 0.5),
        ("accumulate-subsample", 0.1, 0.5),
        ("accumulate-subsample", 4.0, 0.5),
        ("mix", 1.0, 0.0),
        ("mix", 1.0, 0.3),
        ("mix", 1.0, 1.0),
    ],
)
def test_the_recurrence_from_the_weights_equals_the_closed_form(paradigm, k, lam) -> None:
    """theory.recurrence iterates b[n] from the paradigm's weights; the closed forms are the
    paper's Eq. (5), (7) and the Mix derivation: they agree for every paradigm the theory has."""
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 300, size=30).astype(np.float64)
    alpha = rng.exponential(2.0, size=(300, 30))
    rec = theory.recurrence(counts, alpha, paradigm, k, lam=lam)
    assert np.max(np.abs(rec - theory.closed_form(counts, alpha, paradigm, k, lam=lam))) < 1e-10
    # and the iteration is b[n] = Σ w·y literally, the weights summed one by one
    par = paradigm_of(paradigm, k, lam)
    y = [counts + alpha[0]]
    for n in range(2, 41):
        b = sum(w * (counts if src == 0 else y[src - 1]) for src, w in par.weights(n).items())
        y.append(b + alpha[n - 1])
    literal = np.array(y) / np.array(y).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(rec[:40], literal, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# lmcollapse.data.paradigms: the stories each generation trains on.


@pytest.mark.parametrize("k", [0.25, 1.0, 4.0])
def test_accumulate_subsample_proportions_are_exact(k: float) -> None:
    sizes = {j: round(k * U) for j in range(1, 10)}  # each S_j holds k·|D0| stories
    for n in range(1, 11):
        comp = composition(AccumulateSubsample(k), n, U, sizes)
        assert comp.total == U
        counts = {p.source: p.count for p in comp.parts}
        assert abs(counts[D0] - U / (1 + (n - 1) * k)) < 1
        for j in range(1, n):
            assert abs(counts[generated(j)] - U * k / (1 + (n - 1) * k)) < 1
        assert set(counts) == {D0} | {generated(j) for j in range(1, n)}
        assert comp.share(D0) == pytest.approx(1 / (1 + (n - 1) * k), abs=1 / U)


def test_replace_uses_only_the_previous_generation() -> None:
    sizes = {1: 9000, 2: 11_000, 3: 10_500}
    assert composition(Replace(), 1, U, sizes).to_dict()["parts"] == [
        {"source": "d0", "count": U, "available": U}
    ]
    for n in (2, 3, 4):
        comp = composition(Replace(), n, U, sizes)
        assert [(p.source, p.count) for p in comp.parts] == [(generated(n - 1), sizes[n - 1])]
        idx = sample_indices(comp, seed=0)
        assert list(idx) == [generated(n - 1)]
        np.testing.assert_array_equal(idx[generated(n - 1)], np.arange(sizes[n - 1]))


def test_accumulate_takes_everything_and_mix_takes_a_fixed_share() -> None:
    sizes = {1: 500, 2: 700}
    comp = composition(Accumulate(0.05), 3, U, sizes)
    assert [(p.source, p.count) for p in comp.parts] == [
        (D0, U),
        (generated(1), 500),
        (generated(2), 700),
    ]
    mix = composition(Mix(0.3), 3, U, {2: U})
    assert [(p.source, p.count) for p in mix.parts] == [(D0, 3000), (generated(2), 7000)]
    assert composition(Mix(0.0), 2, U, {1: U}).parts[0].source == generated(1)
    assert [(p.source, p.count) for p in composition(Mix(1.0), 2, U, {}).parts] == [(D0, U)]


def test_same_seed_same_indices_without_replacement() -> None:
    sizes = dict.fromkeys(range(1, 5), U)
    comp = composition(AccumulateSubsample(1.0), 5, U, sizes)
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
    other = sample_indices(composition(AccumulateSubsample(1.0), 6, U, {**sizes, 5: U}), seed=7)
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
    comp = composition(AccumulateSubsample(k), n, U, sizes)
    assert comp.total == U
    idx = sample_indices(comp, seed=1)
    assert sum(len(v) for v in idx.values()) == U


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: composition(AccumulateSubsample(0), 2, U, {1: U}), "k: must be > 0"),
        (lambda: composition(AccumulateSubsample(-1), 2, U, {1: U}), "k: must be > 0"),
        (lambda: composition(Mix(1.5), 2, U, {1: U}), r"lam: must be in \[0, 1\]"),
        (lambda: composition(Mix(-0.1), 2, U, {1: U}), r"lam: must be in \[0, 1\]"),
        (lambda: composition(Replace(), 3, U, {1: U}), "needs S_2"),
        (lambda: composition(AccumulateSubsample(1), 3, U, {1: U, 2: 10}), "has only 10"),
        (lambda: composition(Replace(), 0, U, {}), "generation must be >= 1"),
    ],
)
def test_bad_paradigm_input(call, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()


def test_empty_sources_and_overflowing_rates_are_refused() -> None:
    with pytest.raises(InvalidInput, match="gen_001, which is empty"):
        composition(Replace(), 2, U, {1: 0})
    with pytest.raises(InvalidInput, match="overflows at generation 3; use a smaller k"):
        composition(AccumulateSubsample(1e308), 3, U, {1: U, 2: U})


def test_mix_with_all_real_data_is_a_fixed_point_of_a_run(tmp_path) -> None:
    """Mix(λ = 1), the all-real control: every generation trains on all of D0 and nothing else,
    so an exact n-gram model is the same model in every generation — to the last bit."""
    import json

    import lmcollapse
    from lmcollapse.config import ExperimentConfig, resolve

    sets = ["paradigm.name=mix", "paradigm.lam=1", "data.num_stories=200", "run.generations=3"]
    sets += ["data.tokenizer_vocab_size=500", "sampling.length=200", "evaluation.stats_tokens=3000"]
    out = lmcollapse.run(resolve(ExperimentConfig, preset="ngram-demo", overrides=sets), tmp_path)
    gens = [json.loads((out / f"gen_00{n}" / "metrics.json").read_text()) for n in (1, 2, 3)]
    assert [m["composition"]["parts"][0]["source"] for m in gens] == ["d0"] * 3
    assert all(len(m["composition"]["parts"]) == 1 for m in gens)  # S_{n-1} has weight 0
    assert gens[1]["composition"]["real_token_share"] == 1.0
    assert gens[0]["perplexity"] == gens[1]["perplexity"] == gens[2]["perplexity"]
    assert gens[0]["probes"] == gens[1]["probes"] == gens[2]["probes"]
    assert gens[0]["train_tokens"] == gens[2]["train_tokens"]


def test_a_rate_no_run_can_reach_is_refused_before_training(tmp_path) -> None:
    """k has no upper bound (the theory takes any), but a run whose S_n would need more
    generated data than a number can say is refused in one line, leaving nothing behind."""
    import lmcollapse
    from lmcollapse.config import ExperimentConfig, resolve

    sets = ["paradigm.name=accumulate-subsample", "paradigm.k=1e300", "data.num_stories=100"]
    cfg = resolve(ExperimentConfig, preset="ngram-demo", overrides=sets)
    with pytest.raises(
        InvalidInput,
        match=r"every generation would need [0-9.]+e\+30[0-9] tokens of generated data "
        r"\(more than a run can count\): use a smaller paradigm\.k$",
    ):
        lmcollapse.run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
