"""Per-story scores of a token store, for filtering a generated corpus (issue 13).

Each is computed from a story's own tokens (its closing end-of-text left out), in batches of
stories gathered from the memory map, vectorised: no Python loop per story, so a paper-scale
corpus is scored in one streamed pass with one float per story in memory.

- `length`: the story's tokens.
- `distinct-n`: distinct n-grams / n-grams in the story (Li et al. 2016's distinct-n within one
  text); a story shorter than n has none and scores 0.
- `entropy`: the Shannon entropy, in bits, of the story's unigram distribution.
- `repetition`: the share of the story's 4-grams that repeat an earlier 4-gram of the same
  story (1 − distinct-4); 0 for a story with no 4-gram.

`HIGHER_IS_BETTER` says which way each score ranks when a filter keeps the best stories: the
paper's remedy retains diverse, high-entropy text, so more distinct n-grams, more entropy and
less repetition rank higher; so do longer stories (a degenerate sampler's stories are cut
short). `reference-perplexity` (lower is better) needs a model and lives with the stage.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from lmcollapse.errors import InvalidInput

TEXT_SCORES = ("length", "distinct-n", "entropy", "repetition")
HIGHER_IS_BETTER = {
    "length": True,
    "distinct-n": True,
    "entropy": True,
    "repetition": False,
    "reference-perplexity": False,
}
BATCH = 8192  # stories scored at once


def story_scores(store: object, score: str, *, n: int = 2, batch: int = BATCH) -> NDArray:
    """One float64 per story of `store` (a data.store.TokenStore), in story order."""
    if score not in TEXT_SCORES:
        raise InvalidInput(
            f"unknown score {score!r}: choose one of {', '.join(TEXT_SCORES)} (or "
            "reference-perplexity, which needs a model)"
        )
    if n < 1:
        raise InvalidInput(f"the n of distinct-n must be >= 1, got {n}")
    vocab = int(store.vocab_size)  # type: ignore[attr-defined]
    parts = [_batch_scores(toks, lens, score, n, vocab) for toks, lens in _stories(store, batch)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _stories(store: object, batch: int) -> Iterator[tuple[NDArray, NDArray[np.int64]]]:
    """(tokens, lengths) per batch of stories, each story's closing end-of-text removed."""
    eos = store.eos_id  # type: ignore[attr-defined]
    total = store.num_stories  # type: ignore[attr-defined]
    for start in range(0, total, batch):
        idx = np.arange(start, min(total, start + batch))
        for toks, lens in store.gather(idx, batch=batch):  # type: ignore[attr-defined]
            ends = np.cumsum(lens) - 1
            closed = (lens > 0) & (toks[np.maximum(ends, 0)] == eos)
            keep = np.ones(toks.size, dtype=bool)
            keep[ends[closed]] = False
            yield np.asarray(toks[keep], dtype=np.int64), lens - closed


def _batch_scores(
    toks: NDArray, lens: NDArray[np.int64], score: str, n: int, vocab: int
) -> NDArray:
    if score == "length":
        return lens.astype(np.float64)
    story = np.repeat(np.arange(lens.size), lens)  # the story of every token
    if score == "entropy":
        pairs, counts = np.unique(story * vocab + toks, return_counts=True)  # (story, token)
        owner = pairs // vocab
        p = counts / lens[owner]
        return np.bincount(owner, weights=-p * np.log2(p), minlength=lens.size)
    order = 4 if score == "repetition" else n
    grams, owner = _ngrams(toks, story, lens, order, vocab)
    total = np.bincount(owner, minlength=lens.size).astype(np.float64)
    sort = np.lexsort((grams, owner))  # by story, then n-gram: a new pair starts a distinct one
    g, o = grams[sort], owner[sort]
    new = np.ones(g.size, dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (o[1:] != o[:-1])
    distinct = np.bincount(o[new], minlength=lens.size).astype(np.float64)
    share = np.divide(distinct, total, out=np.zeros_like(total), where=total > 0)
    return np.where(total > 0, 1.0 - share, 0.0) if score == "repetition" else share


def _ngrams(
    toks: NDArray, story: NDArray, lens: NDArray[np.int64], order: int, vocab: int
) -> tuple[NDArray, NDArray]:
    """Every n-gram inside one story as one int64 key (its ids in base V: exact while V^n fits
    63 bits, as 4-grams of a 50k vocabulary do; beyond, a 64-bit polynomial hash), with the
    story it is in."""
    starts = np.cumsum(lens) - lens
    pos = np.arange(toks.size) - np.repeat(starts, lens)  # position within its story
    first = np.flatnonzero(pos <= np.repeat(lens, lens) - order)  # an n-gram starts here
    base = np.uint64(vocab if vocab**order < 2**63 else 0x9E3779B97F4A7C15)
    key = np.zeros(first.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(order):
            key = key * base + toks[first + j].astype(np.uint64)
    return key.view(np.int64), story[first]


__all__ = ["HIGHER_IS_BETTER", "TEXT_SCORES", "story_scores"]
