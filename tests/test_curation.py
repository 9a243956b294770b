"""Curation's scores and rules (issue 13), on stores whose answers are computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lmcollapse.curation.rules import d0_range, keep_best
from lmcollapse.curation.scores import story_scores
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.errors import InvalidInput

EOS = 0
STORIES = [  # token ids; each is stored followed by end-of-text
    [1, 2, 1, 2, 1],  # 2-grams 12 21 12 21: 2 distinct of 4; 4-grams 1212 2121: none repeats
    [3, 3, 3, 3, 3, 3],  # 2-grams: 1 distinct of 5; 4-grams 3333 ×3: 2 of 3 repeat
    [4],  # no 2-gram, no 4-gram
    [5, 6, 7, 8, 5, 6, 7, 8],  # 4-grams 5678 6785 7856 8567 5678: 1 of 5 repeats
]


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    with TokenStoreWriter(tmp_path / "s", vocab_size=9, eos_id=EOS) as w:
        for s in STORIES:
            w.add([*s, EOS])
        w.add([9 - 1, 2], finished=False)  # cut by the length cap: no end-of-text to drop
    return TokenStore.open(tmp_path / "s")


def _entropy(ids: list[int]) -> float:
    _, counts = np.unique(ids, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_scores_are_the_hand_computed_ones(store: TokenStore) -> None:
    assert story_scores(store, "length").tolist() == [5, 6, 1, 8, 2]
    assert story_scores(store, "distinct-n", n=2).tolist() == pytest.approx(
        [2 / 4, 1 / 5, 0.0, 4 / 7, 1.0]
    )
    assert story_scores(store, "distinct-n", n=1).tolist() == pytest.approx(
        [2 / 5, 1 / 6, 1.0, 4 / 8, 1.0]
    )
    assert story_scores(store, "repetition").tolist() == pytest.approx(
        [0.0, 2 / 3, 0.0, 1 / 5, 0.0]
    )
    want = [_entropy(s) for s in STORIES] + [_entropy([8, 2])]
    assert story_scores(store, "entropy").tolist() == pytest.approx(want)
    assert want[0] == pytest.approx(-(0.6 * math.log2(0.6) + 0.4 * math.log2(0.4)))
    # batches split anywhere give the same scores
    assert story_scores(store, "repetition", batch=2).tolist() == pytest.approx(
        story_scores(store, "repetition").tolist()
    )


def test_an_unknown_score_or_n_is_one_clear_error(store: TokenStore) -> None:
    with pytest.raises(InvalidInput, match="unknown score 'perplexity': choose one of length"):
        story_scores(store, "perplexity")
    with pytest.raises(InvalidInput, match="n of distinct-n must be >= 1"):
        story_scores(store, "distinct-n", n=0)


def test_keep_best_keeps_the_top_share_in_story_order() -> None:
    scores = np.array([0.5, 0.9, 0.1, 0.9, 0.3])
    assert keep_best(scores, 0.4, higher_is_better=True).tolist() == [1, 3]
    assert keep_best(scores, 0.5, higher_is_better=True).tolist() == [0, 1, 3]  # ceil(2.5)
    assert keep_best(scores, 0.4, higher_is_better=False).tolist() == [2, 4]
    assert keep_best(np.array([1.0, 1.0, 1.0]), 0.34, True).tolist() == [0, 1]  # ties: by index
    assert keep_best(scores, 1.0, True).tolist() == [0, 1, 2, 3, 4]
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(InvalidInput, match=r"curation.keep must be in \(0, 1\]"):
            keep_best(scores, bad, True)


def test_d0_range_keeps_about_1_minus_q_of_d0s_own_stories() -> None:
    rng = np.random.default_rng(0)
    d0 = rng.normal(size=20_000)
    for q in (0.1, 0.2, 0.5):
        kept = d0_range(d0, d0, q)
        assert kept.size / d0.size == pytest.approx(1 - q, abs=2e-4)  # exact up to the ends
    lo, hi = np.quantile(d0, [0.05, 0.95])
    generated = np.array([lo - 1, lo, (lo + hi) / 2, hi, hi + 1])
    assert d0_range(generated, d0, 0.1).tolist() == [1, 2, 3]
    edges = np.array([d0.min() - 1, d0.min(), d0.max(), d0.max() + 1])
    assert d0_range(edges, d0, 0.0).tolist() == [1, 2]  # q = 0: D0's whole range
    with pytest.raises(InvalidInput, match=r"curation.q must be in \[0, 1\)"):
        d0_range(generated, d0, 1.0)


def test_d0_range_on_real_stories_keeps_about_1_minus_q(builtin_corpus) -> None:
    """On D0's own stories a discrete score ties at the quantiles, so the share kept is at
    least 1 − q and not far above it."""
    d0 = builtin_corpus.d0
    for score in ("length", "distinct-n", "entropy"):
        s = story_scores(d0, score)
        share = d0_range(s, s, 0.2).size / s.size
        assert 0.8 <= share <= 0.84, (score, share)


# ----------------------------------------------------------------------------------------------
# One teacher-forced pass (the model interface's score_tokens), for every family


def _tiny_neo(vocab: int = 9, positions: int = 16):
    import torch

    from lmcollapse.config import ModelConfig
    from lmcollapse.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(
        num_layers=2, hidden_size=8, num_heads=2, max_position_embeddings=positions, window_size=4
    )
    return build_model(cfg, vocab, EOS)


def test_torch_score_tokens_is_the_models_own_softmax(store: TokenStore) -> None:
    """logp and the top-k are read off a plain forward pass of [EOS] + story, and summed they
    are the perplexity's loss (each short story in one window)."""
    import torch

    model = _tiny_neo()
    toks, lens = next(store.gather(np.arange(store.num_stories)))
    got = model.score_tokens(toks, lens, eos_id=EOS, context=16, top_k=3)
    starts = np.cumsum(lens) - lens
    for i in range(lens.size):
        story = toks[starts[i] : starts[i] + lens[i]].astype(np.int64)
        with torch.no_grad():
            model.eval()
            logits = model(torch.tensor([[EOS, *story[:-1]]]))[0].double()
        p = torch.softmax(logits, -1).numpy()
        sl = slice(starts[i], starts[i] + lens[i])
        np.testing.assert_allclose(got.logp[sl], np.log(p[np.arange(lens[i]), story]), atol=1e-5)
        np.testing.assert_array_equal(got.top_ids[sl], np.argsort(-p, axis=1, kind="stable")[:, :3])
        np.testing.assert_allclose(got.top_probs[sl], -np.sort(-p, axis=1)[:, :3], atol=1e-6)
    ppl = model.perplexity(store, context=16)
    assert -got.logp.sum() / toks.size == pytest.approx(ppl.loss, rel=1e-5)


def test_torch_score_tokens_windows_a_long_story_as_perplexity_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    with TokenStoreWriter(tmp_path / "long", vocab_size=9, eos_id=EOS) as w:
        w.add([*rng.integers(1, 9, 40), EOS])
    long = TokenStore.open(tmp_path / "long")
    model = _tiny_neo(positions=64)
    toks, lens = next(long.gather([0]))
    got = model.score_tokens(toks, lens, eos_id=EOS, context=8, batch_tokens=16)
    assert -got.logp.mean() == pytest.approx(model.perplexity(long, context=8).loss, rel=1e-5)


def test_ngram_score_tokens_and_its_top_k_with_ties_by_id(store: TokenStore) -> None:
    from lmcollapse.models.ngram import NGramModel

    model = NGramModel(9, EOS, order=2, delta=0.5).fit([store], [np.arange(4)])
    toks, lens = next(store.gather(np.arange(store.num_stories)))
    got = model.score_tokens(toks, lens, eos_id=EOS, context=1, top_k=4)
    np.testing.assert_allclose(got.logp, model.story_logprobs(toks, lens))
    for t in range(toks.size):
        prev = EOS if t in set(np.cumsum(lens) - lens) else int(toks[t - 1])
        p = model.distribution([prev])
        best = np.lexsort((np.arange(9), -p))[:4]  # by probability, then by id
        np.testing.assert_array_equal(got.top_ids[t], best)
        np.testing.assert_allclose(got.top_probs[t], p[best])


def test_reference_perplexity_is_each_storys_own(store: TokenStore) -> None:
    """exp(mean −log p) over the tokens the model wrote: the cut story's separator is left out."""
    from lmcollapse.curation.stage import perplexity_scores
    from lmcollapse.models.ngram import NGramModel

    model = NGramModel(9, EOS, order=2, delta=0.5).fit([store], [np.arange(4)])
    got = perplexity_scores(store, model, context=1)
    for i in range(store.num_stories):
        story = np.asarray(store.story(i), dtype=np.int64)
        logp = model.story_logprobs(story, np.array([story.size]))
        scored = logp if i < 4 else logp[:-1]
        assert got[i] == pytest.approx(math.exp(-scored.mean()))


# ----------------------------------------------------------------------------------------------
# ToEdit on a prior whose probabilities are known


KNOWN_P = {1: 0.995, 2: 0.99, 3: 0.5, 4: 0.0005, 5: 0.5, 6: 0.3, 0: 0.15, 7: 0.05}


class _Known:
    """TokenScores of a prior that gives token t probability P[t] wherever it stands, with the
    same top-3 candidates everywhere (ids 5, 6, 0 = end-of-text, 7 at probabilities .5, .3,
    .15, .05); a token outside them is not in the top-k."""

    def __call__(self, toks: np.ndarray, k: int = 4):
        from lmcollapse.models.base import TokenScores

        p = np.array([KNOWN_P[int(t)] for t in toks])
        ids = np.tile([5, 6, 0, 7][:k], (toks.size, 1))
        probs = np.tile([0.5, 0.3, 0.15, 0.05][:k], (toks.size, 1))
        return TokenScores(np.log(p), ids, probs)


def test_toedit_resamples_exactly_the_tokens_at_or_above_p_max() -> None:
    """Story [1, 2, 3, 1, EOS]: the first token is kept although p = 0.995; 2 (p = 0.99 = p_max)
    and the second 1 are resampled, 3 is not, nor the end-of-text."""
    from lmcollapse.curation.toedit import edit_batch

    toks, lens = np.array([1, 2, 3, 1, EOS, 2, EOS]), np.array([5, 2])
    rng = np.random.default_rng(0)
    new, new_lens, c = edit_batch(
        toks, lens, _Known()(toks), eos_id=EOS, p_max=0.99, beta=1.0, p_min=None, rng=rng
    )
    assert (c.tokens, c.resampled, c.deleted, c.stories) == (7, 2, 0, 2)  # the 2 of story 2 leads
    np.testing.assert_array_equal(new_lens, lens)
    same = [0, 2, 4, 5, 6]
    np.testing.assert_array_equal(new[same], toks[same])
    # candidates 5, 6 and the original (in 7's place): never end-of-text, never 7
    assert new[1] in {5, 6, 2} and new[3] in {5, 6, 1}
    assert c.changed == int((new != toks).sum())


def test_toedit_draws_replacements_at_the_right_rates() -> None:
    """The original token (not among the top-k: it takes the last candidate's place) and the
    non-end-of-text candidates, at weights p^(1/beta): beta 1 → 5: .5, 6: .3, orig: .995
    (normalised over 1.795); beta 2 → square roots."""
    from lmcollapse.curation.toedit import edit_batch

    n = 200_000
    toks = np.array([3] + [1] * n + [EOS])
    lens = np.array([n + 2])
    for beta in (1.0, 2.0):
        new, _, c = edit_batch(
            toks,
            lens,
            _Known()(toks),
            eos_id=EOS,
            p_max=0.99,
            beta=beta,
            p_min=None,
            rng=np.random.default_rng(1),
        )
        w = np.array([0.5, 0.3, 0.995]) ** (1 / beta)
        got = np.array([(new[1:-1] == t).mean() for t in (5, 6, 1)])
        np.testing.assert_allclose(got, w / w.sum(), atol=4 / np.sqrt(n))
        assert c.resampled == n and c.changed == int((new[1:-1] != 1).sum())


def test_toedit_deletes_tokens_at_or_below_p_min_but_never_the_first() -> None:
    from lmcollapse.curation.toedit import edit_batch

    toks, lens = np.array([4, 3, 4, 4, 3, EOS]), np.array([6])
    new, new_lens, c = edit_batch(
        toks,
        lens,
        _Known()(toks),
        eos_id=EOS,
        p_max=0.99,
        beta=1.0,
        p_min=0.001,
        rng=np.random.default_rng(0),
    )
    np.testing.assert_array_equal(new, [4, 3, 3, EOS])
    assert new_lens.tolist() == [4] and c.deleted == 2 and c.resampled == 0


# ----------------------------------------------------------------------------------------------
# Detector-weighted resampling


def test_weighted_draw_respects_max_repeats() -> None:
    """One story of overwhelming weight is drawn max_repeats times, no more; weight 0 never."""
    from lmcollapse.curation.resample import weighted_draw

    w = np.array([1e6, 1.0, 1.0, 1.0, 0.0, 1.0])
    with np.errstate(divide="ignore"):
        drawn = weighted_draw(np.log(w), np.ones(6, np.int64), need=8, max_repeats=3, seed=0)
    counts = np.bincount(drawn, minlength=6)
    assert counts[0] == 3 and counts.max() == 3 and counts[4] == 0 and counts.sum() == 8


def test_weighted_draw_follows_the_weights_proportions() -> None:
    """Few draws from many repeats: each story's share of the draws is its share of the weight
    (to 4 standard errors); drawing by tokens stops at the story that reaches the need."""
    from lmcollapse.curation.resample import weighted_draw

    w = np.array([0.5, 0.3, 0.15, 0.05])
    for scale in (0.0, -800.0):  # the same weights times e^-800, far below the smallest float
        lw = np.log(w) + scale
        drawn = weighted_draw(lw, np.ones(4, np.int64), need=20_000, max_repeats=10**6, seed=3)
        share = np.bincount(drawn, minlength=4) / drawn.size
        np.testing.assert_allclose(share, w / w.sum(), atol=4 * np.sqrt(0.25 / drawn.size))
    lens = np.array([10, 20, 30, 40])
    by_tokens = weighted_draw(np.log(w), lens, need=95, max_repeats=3, seed=1)
    assert lens[by_tokens].sum() >= 95 > lens[by_tokens].sum() - lens.max()


def test_weighted_draw_refuses_a_pool_too_small() -> None:
    from lmcollapse.curation.resample import weighted_draw

    with pytest.raises(InvalidInput, match=r"curation\.max_repeats"):
        weighted_draw(np.zeros(3), np.ones(3, np.int64), need=10, max_repeats=3, seed=0)
