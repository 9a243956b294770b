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
