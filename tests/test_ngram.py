"""The ngram family: hand counts, the paper's form (α_i = δ), exact sampling, save/load, and the
expected-counts modes against the closed forms of lmcollapse.theory over 50 generations."""

from __future__ import annotations

import numpy as np
import pytest

from lmcollapse import theory
from lmcollapse.data.packing import TrainingSet
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.errors import InvalidInput
from lmcollapse.models import load_model
from lmcollapse.models.ngram import (
    NGramModel,
    expected_run,
    expected_story_counts,
    from_table,
    table_of,
)
from lmcollapse.paradigms import Replace, paradigm_of
from lmcollapse.sample import stories_of

EOS = 0


def store_of(path, stories, vocab=5) -> TokenStore:
    with TokenStoreWriter(path, vocab_size=vocab, eos_id=EOS) as w:
        for s in stories:
            w.add(np.array(s, dtype=np.int64))
    return TokenStore.open(path)


HAND = [[1, 2, 0], [1, 3, 0], [2, 2, 0]]
# bigram counts (history -> next), each story starting after EOS:
# EOS: {1: 2, 2: 1}; 1: {2: 1, 3: 1}; 2: {0: 2, 2: 1}; 3: {0: 1}; 4: never seen
HAND_COUNTS = {0: {1: 2, 2: 1}, 1: {2: 1, 3: 1}, 2: {0: 2, 2: 1}, 3: {0: 1}, 4: {}}


def test_bigram_probabilities_are_the_hand_counts(tmp_path) -> None:
    delta, V = 0.5, 5
    m = NGramModel(V, EOS, order=2, delta=delta).fit(
        TrainingSet.whole(store_of(tmp_path / "s", HAND))
    )
    for h, row in HAND_COUNTS.items():
        p = m.distribution([h])
        n_h = sum(row.values())
        want = np.array([(row.get(v, 0) + delta) / (n_h + V * delta) for v in range(V)])
        np.testing.assert_allclose(p, want, rtol=0, atol=1e-15)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert m.distribution([4]).tolist() == [0.2] * 5  # an unseen history: uniform


def test_trigram_histories_are_padded_with_end_of_text(tmp_path) -> None:
    m = NGramModel(5, EOS, order=3, delta=1.0).fit(
        TrainingSet.whole(store_of(tmp_path / "s", HAND))
    )
    # history (EOS, EOS) was followed by 1, 1, 2; (EOS, 1) by 2, 3; (1, 2) by EOS
    np.testing.assert_allclose(m.distribution([EOS, EOS])[[1, 2]], [3 / 8, 2 / 8])
    np.testing.assert_allclose(m.distribution([EOS, 1])[[2, 3, 4]], [2 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(m.distribution([1, 2])[EOS], 2 / 6)
    # a context shorter than n - 1 means x anywhere (as the corpus truth counts it): the
    # count-weighted average over the histories ending with x — for 2: (1, 2), (EOS, 2), (2, 2)
    avg = (m.distribution([1, 2]) + m.distribution([EOS, 2]) + m.distribution([2, 2])) / 3
    np.testing.assert_allclose(m.distribution([2]), avg, atol=1e-15)
    np.testing.assert_allclose(m.distribution([1]), m.distribution([EOS, 1]))  # one history
    # x never seen as a history's end: x at a story's start
    np.testing.assert_allclose(m.distribution([4]), m.distribution([EOS, 4]))


def test_additive_smoothing_is_proposition_2_3_with_alpha_delta(tmp_path) -> None:
    delta, V = 0.25, 5
    m = NGramModel(V, EOS, order=2, delta=delta).fit(
        TrainingSet.whole(store_of(tmp_path / "s", HAND))
    )
    for h, row in HAND_COUNTS.items():
        if not row:
            continue
        counts = np.array([row.get(v, 0) for v in range(V)], dtype=float)
        eq1 = theory.closed_form(counts, np.full((1, V), delta), "replace")[0]
        np.testing.assert_allclose(m.distribution([h]), eq1, rtol=0, atol=1e-15)
        # Remark B.1's minimal error never exceeds the smoothing's, and explains p̂ exactly
        a_x, a_i = theory.decompose(m.distribution([h]), counts)
        assert 0 <= a_x <= V * delta + 1e-12
        np.testing.assert_allclose((counts + a_i) / (counts.sum() + a_x), m.distribution([h]))


def test_witten_bell_interpolates_with_the_lower_order(tmp_path) -> None:
    delta, V = 1.0, 5
    data = TrainingSet.whole(store_of(tmp_path / "s", HAND))
    m = NGramModel(V, EOS, order=2, delta=delta, smoothing="witten-bell").fit(data)
    uni = np.array([3, 2, 3, 1, 0], dtype=float)  # unigram counts of the 9 targets
    p_uni = (uni + delta) / (uni.sum() + V * delta)
    # history 2: N = 3 over T = 2 types {0: 2, 2: 1}
    want = (np.array([2, 0, 1, 0, 0]) + 2 * p_uni) / (3 + 2)
    np.testing.assert_allclose(m.distribution([2]), want, atol=1e-15)
    np.testing.assert_allclose(m.distribution([4]), p_uni, atol=1e-15)  # unseen: the unigram
    for h in range(V):
        assert m.distribution([h]).sum() == pytest.approx(1.0, abs=1e-12)


def test_sampling_draws_every_token_at_its_probability(tmp_path) -> None:
    # a controlled row: history 1 saw 2 once and 3 once; δ = 0.01 leaves 0.0247 of the mass to
    # the smoothing (spread over 5 tokens: 0.00495 each, the rare tokens 0 and 4)
    m = NGramModel(5, EOS, order=2, delta=0.01).fit(
        TrainingSet.whole(store_of(tmp_path / "s", HAND))
    )
    p = m.distribution([1])
    n = 400_000
    toks = m._draw(np.full(n, 1, dtype=np.int64), np.random.default_rng(0))
    freq = np.bincount(toks, minlength=5) / n
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * sigma), (freq, p)
    assert freq[4] > 0  # a token never seen after 1 is still drawn


def test_sequences_restart_after_end_of_text_and_are_seeded(tmp_path) -> None:
    m = NGramModel(5, EOS, order=3, delta=0.1).fit(
        TrainingSet.whole(store_of(tmp_path / "s", HAND))
    )
    a = m.sample_sequences(64, 40, seed=3)
    b = m.sample_sequences(64, 40, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(len(x) == 40 for x in a)  # stream mode: every sequence runs its length
    stories = m.sample_sequences(64, 40, seed=4, stop_at_eos=True)
    assert all(s[-1] == EOS or len(s) == 40 for s in stories)
    assert all(EOS not in s[:-1] for s in stories)


def test_stream_histories_restart_after_end_of_text(tmp_path) -> None:
    """In stream mode, the token after an EOS is drawn from p̂(·|EOS, EOS) — the start of a story
    — not from p̂(·|last token, EOS)."""
    stories = [[1, 2, 0], [3, 4, 0], [1, 1, 0]]
    m = NGramModel(5, EOS, order=3, delta=0.05).fit(
        TrainingSet.whole(store_of(tmp_path / "s", stories))
    )
    assert not np.allclose(m.distribution([EOS, EOS]), m.distribution([2, EOS]))
    seqs = np.array(m.sample_sequences(20_000, 12, seed=2))
    after = seqs[:, 1:][seqs[:, :-1] == EOS]  # every token that follows an EOS in the stream
    p = m.distribution([EOS, EOS])
    freq = np.bincount(after, minlength=5) / after.size
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / after.size) + 1e-12), (freq, p)


def test_witten_bell_sampling_draws_at_the_model_probabilities(tmp_path) -> None:
    m = NGramModel(5, EOS, order=2, delta=0.5, smoothing="witten-bell").fit(
        TrainingSet.whole(store_of(tmp_path / "s", HAND))
    )
    n = 300_000
    for h in (1, 4):  # a seen history and an unseen one (the unigram)
        toks = m._draw(np.full(n, h, dtype=np.int64), np.random.default_rng(h))
        p = m.distribution([h])
        freq = np.bincount(toks, minlength=5) / n
        assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n)), (h, freq, p)


def test_a_table_whose_last_histories_are_empty_works(tmp_path) -> None:
    """Histories past the last one with counts (e.g. rare top ids) are valid rows."""
    m = NGramModel(6, EOS, order=2, delta=0.5).fit(
        TrainingSet.whole(store_of(tmp_path / "s", HAND))
    )
    from_table(m, table_of(m))  # every history 0..5, the top ones without counts
    np.testing.assert_allclose(m.distribution([5]), np.full(6, 1 / 6))
    assert m.distribution([1]).sum() == pytest.approx(1.0)
    m.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").distribution([2]), m.distribution([2]))


def test_save_and_load_give_the_same_model(tmp_path) -> None:
    data = TrainingSet.whole(store_of(tmp_path / "s", HAND))
    for smoothing in ("additive", "witten-bell"):
        m = NGramModel(5, EOS, order=3, delta=0.3, smoothing=smoothing).fit(data)
        m.save(tmp_path / smoothing)
        back = load_model(tmp_path / smoothing)
        for ctx in ([1], [1, 2], [3, 0]):
            np.testing.assert_array_equal(back.distribution(ctx), m.distribution(ctx))
        assert back.num_ngrams == m.num_ngrams


def test_perplexity_is_the_mean_story_loss(tmp_path) -> None:
    store = store_of(tmp_path / "s", HAND)
    m = NGramModel(5, EOS, order=2, delta=0.5).fit(TrainingSet.whole(store))
    logp = 0.0
    for s in HAND:
        hist = [EOS, *s[:-1]]
        logp += sum(np.log(m.distribution([h])[v]) for h, v in zip(hist, s, strict=True))
    result = m.perplexity(store)
    assert result.tokens == 9
    assert result.perplexity == pytest.approx(np.exp(-logp / 9), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": 0}, "order must be an integer >= 1"),
        ({"delta": 0.0}, "delta must be a finite number > 0"),
        ({"delta": -1.0}, "delta must be a finite number > 0"),
        ({"smoothing": "kneser"}, "smoothing must be one of"),
        ({"order": 12}, "overflows 64-bit"),
    ],
)
def test_bad_model_parameters_are_refused(kwargs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        NGramModel(**{"vocab_size": 50, "eos_id": 0, **kwargs})


def test_expected_counts_refuse_what_they_cannot_compute() -> None:
    with pytest.raises(InvalidInput, match="orders 1 and 2"):
        expected_story_counts(NGramModel(5, EOS, order=3))
    with pytest.raises(InvalidInput, match="additive"):
        expected_story_counts(NGramModel(5, EOS, order=2, smoothing="witten-bell"))


# ----------------------------------------------------------------------------------------------
# Expected counts: the theorem checked numerically on a real language model.


@pytest.fixture(scope="module")
def random_d0(tmp_path_factory) -> TokenStore:
    """200 random stories over 12 tokens, lengths 1-15, each ending with EOS."""
    rng = np.random.default_rng(7)
    stories = []
    for _ in range(200):
        n = int(rng.integers(1, 15))
        stories.append([*(rng.choice(np.arange(1, 12), size=n, p=np.arange(11, 0, -1) / 66)), EOS])
    return store_of(tmp_path_factory.mktemp("d0") / "s", stories, vocab=12)


@pytest.mark.parametrize("cap", [None, 6])
def test_expected_story_counts_match_a_long_sample(tmp_path, random_d0, cap) -> None:
    """Every expected pair count of one story — the sparse part and the smoothing base — against
    40,000 sampled stories (story mode; with a cap of 6 tokens the sampler cuts unfinished
    stories there: their end-of-text separator is no pair, in the counts or the expectation)."""
    V, n = 12, 40_000
    m = NGramModel(V, EOS, order=2, delta=0.2).fit(TrainingSet.whole(random_d0))
    per_story, length = expected_story_counts(m, cap)
    seqs = m.sample_sequences(n, cap or 400, seed=1, stop_at_eos=True)
    flat, lens, finished = stories_of(seqs, EOS)
    assert lens.size == n and (not finished.all()) == (cap is not None)
    if cap is not None:  # exactly the sequences that reached the cap without an end-of-text
        np.testing.assert_array_equal(~finished, [len(q) == cap and q[-1] != EOS for q in seqs])
    assert lens.mean() == pytest.approx(length, rel=0.02)
    with TokenStoreWriter(tmp_path / "g", vocab_size=V, eos_id=EOS) as w:
        w.add_flat(flat, lens, finished)
    counted = NGramModel(V, EOS, order=2, delta=0.2).fit(
        TrainingSet.whole(TokenStore.open(tmp_path / "g"))
    )
    want = np.zeros((V, V))
    want[per_story.keys // V, per_story.keys % V] = per_story.values
    want = (want + per_story.base[:, None]) * n
    seen = np.zeros((V, V))
    seen[counted.keys // V, counted.keys % V] = counted.values
    assert np.all(np.abs(seen - want) <= 6 * np.sqrt(2 * want) + 3), np.abs(seen - want).max()
    assert want[:, 5].min() > 50  # the base alone is well above the tolerance's floor
    assert want[EOS].sum() == pytest.approx(n)  # one start per story


def test_capped_expected_counts_converge_to_the_exact_ones(random_d0) -> None:
    for order in (1, 2):
        m = NGramModel(12, EOS, order=order, delta=0.2).fit(TrainingSet.whole(random_d0))
        exact, length = expected_story_counts(m)
        capped, capped_length = expected_story_counts(m, 3000)
        np.testing.assert_allclose(capped.values, exact.values, atol=1e-12)
        np.testing.assert_allclose(capped.base, exact.base, atol=1e-12)
        assert capped_length == pytest.approx(length, rel=1e-12)


def _probe_counts(m: NGramModel, x: int) -> np.ndarray:
    return m.counts([x])


@pytest.mark.parametrize(("paradigm", "k"), [("replace", 1.0), ("accumulate-subsample", 0.5)])
def test_paper_mode_is_the_closed_form_to_1e9(random_d0, paradigm, k) -> None:
    """The paper's count form: generation n's p̂_n(·|x) is Eq. (5)/(7) with α_i[n] = δ."""
    G, V, delta = 50, 12, 0.05
    first = NGramModel(V, EOS, order=2, delta=delta).fit(TrainingSet.whole(random_d0))
    par = paradigm_of(paradigm, k)
    models = expected_run(first, G, par, "paper", d0_stories=random_d0.num_stories)
    for x in (EOS, 1, 5):
        measured = np.array([m.distribution([x]) for m in models])
        want = theory.closed_form(_probe_counts(first, x), np.full((G, V), delta), paradigm, k)
        assert np.max(np.abs(measured - want)) < 1e-9
    # and the collapse the theorem predicts is under way: the real-data weight falls
    w = theory.real_data_weight(_probe_counts(first, 1), np.full((G, V), delta), paradigm, k)
    assert w[-1] < w[0]


def test_chain_mode_replace_is_the_closed_form_with_the_implied_errors(random_d0) -> None:
    """Exact expected counts of the generated stream (footnote 3): under Replace, p̂_n(·|x) is
    Eq. (5) with α_i[n] = δ·y[n-1]/N_n(x) — the smoothing δ expressed in the units of the
    theory's y (N_n(x) is how often x occurs in generation n's training counts)."""
    G, V, delta = 50, 12, 0.05
    first = NGramModel(V, EOS, order=2, delta=delta).fit(TrainingSet.whole(random_d0))
    models = expected_run(first, G, Replace(), "chain", d0_stories=random_d0.num_stories)
    for x in (EOS, 3):
        counts = _probe_counts(first, x)
        alpha = np.empty((G, V))
        y = counts.sum()
        for n, m in enumerate(models):
            n_x = _probe_counts(m, x).sum()
            alpha[n] = delta * (y / n_x if n else 1.0)
            y += alpha[n].sum()
        measured = np.array([m.distribution([x]) for m in models])
        want = theory.closed_form(counts, alpha, "replace")
        assert np.max(np.abs(measured - want)) < 1e-9


def test_unigram_expected_counts_are_geometric() -> None:
    m = NGramModel(4, EOS, order=1, delta=1.0)
    per_story, length = expected_story_counts(m)  # no data: uniform, p(EOS) = 1/4
    assert length == pytest.approx(4.0)
    assert per_story.base[0] == pytest.approx(1.0)  # each token once per story on average


def test_the_fast_bigram_sampler_draws_at_the_model_probabilities(tmp_path) -> None:
    m = NGramModel(5, EOS, order=2, delta=0.01).fit(
        TrainingSet.whole(store_of(tmp_path / "s", HAND))
    )
    n = 400_000
    first = np.array([s[0] for s in m.sample_sequences(n, 1, seed=5)])  # p(· | EOS)
    second = np.array([s[1] for s in m.sample_sequences(n, 2, seed=6) if s[0] == 1])  # p(· | 1)
    for toks, h in ((first, EOS), (second, 1)):
        p = m.distribution([h])
        freq = np.bincount(toks, minlength=5) / toks.size
        assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / toks.size)), (h, freq, p)
