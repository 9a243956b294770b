"""Corpus truth against a naive count, for contexts of one to three tokens and any chunking, and
by hand in a tiny token store."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmcollapse.data.stats import ContinuationCounter, corpus_truth, count_continuations
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.data.tokenizer import single_token, train_bpe
from lmcollapse.errors import InvalidInput


def naive(tokens: list[int], context: list[int]) -> collections.Counter:
    m = len(context)
    return collections.Counter(
        tokens[i + m] for i in range(len(tokens) - m) if tokens[i : i + m] == context
    )


def chunked(tokens: np.ndarray, sizes: list[int]):
    start = 0
    for size in sizes:
        yield tokens[start : start + size]
        start += size
    yield tokens[start:]


@given(
    tokens=st.lists(st.integers(0, 5), max_size=300),
    context=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    sizes=st.lists(st.integers(0, 40), max_size=12),
)
def test_counts_equal_a_naive_count_for_any_chunking(tokens, context, sizes) -> None:
    counter = count_continuations(chunked(np.array(tokens, dtype=np.uint16), sizes), context, 6)
    expected = naive(tokens, context)
    assert {i: int(c) for i, c in enumerate(counter.counts) if c} == dict(expected)
    assert counter.n_x == sum(expected.values())


def test_large_random_stream() -> None:
    rng = np.random.default_rng(0)
    tokens = rng.zipf(1.5, size=200_000) % 50
    for context in ([3], [1, 2], [1, 1, 2]):
        counter = count_continuations(chunked(tokens, [4096] * 40), context, 50)
        assert {i: int(c) for i, c in enumerate(counter.counts) if c} == dict(
            naive(tokens.tolist(), context)
        )


def test_probabilities_and_top() -> None:
    c = ContinuationCounter([7], 10)
    c.update([7, 1, 7, 1, 7, 2, 7])  # the last 7 has no successor yet
    c.update([3])
    assert c.n_x == 4
    assert c.probabilities()[1] == pytest.approx(0.5)
    assert c.top(2) == [(1, 2), (2, 1)]
    empty = ContinuationCounter([9], 10)
    empty.update([1, 2, 3])
    assert empty.n_x == 0 and not empty.probabilities().any() and empty.top() == []
    with pytest.raises(InvalidInput, match="at least one token"):
        ContinuationCounter([], 10)
    with pytest.raises(InvalidInput, match="outside the vocabulary"):
        ContinuationCounter([10], 10)


def test_narrow_chunks_do_not_wrap_large_ids() -> None:
    c = ContinuationCounter([300], 400)
    c.update(np.array([44, 1, 44, 2], dtype=np.uint8))  # 300 % 256 == 44: must not match
    assert c.n_x == 0
    with pytest.raises(InvalidInput, match="outside the vocabulary"):
        ContinuationCounter([1], 5).update([1, 9])


def test_corpus_truth_of_a_tiny_store_by_hand(tmp_path: Path) -> None:
    tok = train_bpe(["a b c", "b a c"], 300, tmp_path / "tok")
    a, b, c = (single_token(tok, t) for t in ("a", "b", "c"))
    assert tok.encode("ab") == [a, b]  # no merge across the words it was trained on
    e = tok.eos_id
    with TokenStoreWriter(tmp_path / "d0", vocab_size=tok.vocab_size, eos_id=e) as w:
        for story in ([a, b, a, c, e], [a, b, e], [c, a, e]):
            w.add(np.array(story))
        w.add(np.array([a, e]), finished=False)  # its end-of-text is a separator, not a target
    store = TokenStore.open(tmp_path / "d0")
    # stream a b a c ⏎ a b ⏎ c a ⏎ a ⏎: "a" is followed by b, c, b, ⏎ (and the cut separator)
    truth = corpus_truth(store, tok, "a")
    assert truth.n_x == 4
    assert {i: int(n) for i, n in enumerate(truth.counts) if n} == {b: 2, c: 1, e: 1}
    assert truth.counts[b] / truth.n_x == 0.5
    two = corpus_truth(store, tok, "ab")  # "a b" is followed by a, then by ⏎
    assert two.context.tolist() == [a, b] and two.n_x == 2 and two.counts[a] == two.counts[e] == 1
    with pytest.raises(InvalidInput, match=r"^context '' encodes to no token$"):
        corpus_truth(store, tok, "")
    with pytest.raises(InvalidInput, match=r"^probe context '' encodes to no token$"):
        corpus_truth(store, tok, "", what="probe context")
