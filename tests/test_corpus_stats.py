"""Corpus statistics (evaluate.corpus) on hand-made corpora."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.evaluate.corpus import corpus_stats, reference


def store(
    path: Path, stories: list[list[int]], vocab: int = 10, cut: tuple[int, ...] = ()
) -> TokenStore:
    """A store of these stories; those in `cut` are marked unfinished."""
    with TokenStoreWriter(path, vocab_size=vocab, eos_id=0) as w:
        for i, s in enumerate(stories):
            w.add(np.array(s), finished=i not in cut)
    return TokenStore.open(path)


def test_statistics_by_hand(tmp_path: Path) -> None:
    d0 = store(tmp_path / "d0", [[1, 2, 3, 1, 2, 3, 0], [4, 5, 0]])
    ref = reference(d0, sample_tokens=100, tail_share=0.3)
    s = ref.stats
    # unigrams without EOS: 1,2,3,1,2,3,4,5 → 5 types of 8; bigrams without EOS: 12,23,31,12,23,45
    assert s.distinct_1 == pytest.approx(5 / 8)
    assert s.distinct_2 == pytest.approx(4 / 6)
    # story 1 repeats its 4-gram? 1231, 2312, 3123 — all distinct; no repetition
    assert s.repetition_4 == 0.0
    assert s.stories == 2 and s.tokens == 10 and s.eos_rate == pytest.approx(0.2)
    # D0's tail: the rarest types making up 30% of its 8 non-EOS tokens: 4 and 5 (2 tokens = 25%)
    assert set(ref.tail.tolist()) == {4, 5}
    assert s.tail_mass == pytest.approx(0.2) and s.tail_coverage == 1.0
    same = corpus_stats(d0, ref)
    assert same.kl_unigram_to_d0 == pytest.approx(0.0) and same.kl_bigram_from_d0 == pytest.approx(
        0.0
    )


def test_a_collapsed_corpus_is_measured_as_one(tmp_path: Path) -> None:
    d0 = store(tmp_path / "d0", [[1, 2, 3, 4, 5, 6, 7, 8, 9, 0]] * 3)
    ref = reference(d0, sample_tokens=100)
    repeat = store(tmp_path / "g", [[1, 2, 1, 2, 1, 2, 1, 2, 0]] * 3, cut=(1,))
    s = corpus_stats(repeat, ref)
    assert s.vocab_used == 3 and s.distinct_2 < 0.2
    # 4-grams of a story: 1212 2121 1212 2121 1212 2120 — three repeat an earlier one
    assert s.repetition_4 == pytest.approx(3 / 6)
    assert s.kl_unigram_from_d0 > 0.5 and s.kl_bigram_from_d0 > s.kl_unigram_from_d0
    assert s.unfinished_share == pytest.approx(1 / 3)
    assert s.eos_rate == pytest.approx(2 / 26)  # end-of-text the model wrote, per token it wrote
    p = np.array([12, 12, 2]) / 26  # the cut story's separator is no token of the text
    assert s.unigram_entropy == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert s.finished_length_mean == 9.0
