"""Statistics of a corpus (a generated S_n, or D0 as the reference), compared with D0.

Everything that depends on corpus size is measured on a sample of the same number of tokens for
every corpus: whole stories drawn with a seed until `sample_tokens` is reached (the last story may
overshoot it), so generations compare like with like. Measured on the sample:

    distinct_1/2/3      unique n-grams / n-grams (n-grams that contain end-of-text are skipped:
                        they would cross a story boundary)
    unigram_entropy     entropy of the token distribution, bits (a cut story's end-of-text
                        separator is no token of the text, here and in the unigram KL)
    vocab_used          distinct token types
    tail_mass           share of tokens from D0's tail: the rarest types that together make up
                        `tail_share` (5%) of D0's tokens — D0 itself has ≈ 0.05
    tail_coverage       share of D0's tail types that occur at all
    repetition_4        share of each story's 4-grams that already occurred earlier in it
    kl_unigram_*        KL(S‖D0) and KL(D0‖S) of unigram distributions, bits, add-one smoothing over
                        the union of the types seen in either sample
    kl_bigram_*         the same for bigram distributions (over the union of seen bigrams)

Over the whole store: stories, tokens, mean/median story length (every stored story, and the
mean of the finished ones), the share of stories that did not end by themselves (a generated
corpus: cut at the end of their sequence or at the length cap, marked in the store), and the
end-of-text rate (end-of-text tokens the model wrote per token it wrote: a cut story's
separator is neither). Numpy only, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lmcollapse.data.store import TokenStore, written
from lmcollapse.data.tokenizer import Tok, decode_story
from lmcollapse.errors import InvalidInput
from lmcollapse.results import CorpusStats

_MIX = np.uint64(0x9E3779B97F4A7C15)
Counts = tuple[NDArray[np.int64], NDArray[np.int64]]  # (sorted keys, counts)


@dataclass(frozen=True)
class Reference:
    """What a corpus is compared with: D0's sample counts and its tail."""

    unigrams: Counts
    bigrams: Counts
    tail: NDArray[np.int64]  # token ids of D0's tail
    vocab_size: int
    eos_id: int
    sample_tokens: int
    stats: CorpusStats  # D0's own statistics


def sample_stories(
    store: TokenStore, tokens: int, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """(concatenated tokens, lengths, finished flags) of seeded random whole stories totalling
    >= `tokens` (or the whole store if it is smaller)."""
    if store.num_stories == 0:
        raise InvalidInput(f"{store.path} has no stories")
    order = np.random.default_rng([seed, 0x57A7]).permutation(store.num_stories)
    lens = np.diff(np.asarray(store.offsets))[order]
    n = int(np.searchsorted(np.cumsum(lens), tokens)) + 1
    chosen = np.sort(order[:n])
    parts = list(store.gather_marked(chosen))
    return (
        np.concatenate([p[0] for p in parts]).astype(np.int64),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _codes(tokens: NDArray[np.int64], n: int, vocab: int) -> NDArray[np.int64]:
    """One int64 per n-gram starting at each position (exact when vocab^n fits, else hashed)."""
    m = len(tokens) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    if vocab**n < 2**62:
        code = np.zeros(m, dtype=np.int64)
        for j in range(n):
            code = code * vocab + tokens[j : j + m]
        return code
    h = np.zeros(m, dtype=np.uint64)
    for j in range(n):
        h = (h ^ tokens[j : j + m].astype(np.uint64)) * _MIX
    return h.view(np.int64)


def _ngrams(tokens: NDArray[np.int64], n: int, vocab: int, eos: int) -> NDArray[np.int64]:
    """Codes of the n-grams without end-of-text in them."""
    codes = _codes(tokens, n, vocab)
    has_eos = np.zeros(len(codes), dtype=bool)
    is_eos = tokens == eos
    for j in range(n):
        has_eos |= is_eos[j : j + len(codes)]
    return codes[~has_eos]


def _counts(codes: NDArray[np.int64]) -> Counts:
    keys, counts = np.unique(codes, return_counts=True)
    return keys, counts.astype(np.int64)


def _kl_bits(p: Counts, q: Counts) -> float:
    """KL(P‖Q) in bits with add-one smoothing over the union of both supports."""
    keys = np.union1d(p[0], q[0])
    a = np.ones(keys.size)
    b = np.ones(keys.size)
    a[np.searchsorted(keys, p[0])] += p[1]
    b[np.searchsorted(keys, q[0])] += q[1]
    a /= a.sum()
    b /= b.sum()
    return float(np.sum(a * np.log2(a / b)))


def _repetition(
    tokens: NDArray[np.int64], lens: NDArray[np.int64], vocab: int, n: int = 4
) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same story."""
    codes = _codes(tokens, n, vocab)
    story = np.repeat(np.arange(len(lens)), lens)[: len(codes)]
    inside = story == np.repeat(np.arange(len(lens)), lens)[n - 1 : n - 1 + len(codes)]
    codes, story = codes[inside], story[inside]
    if codes.size == 0:
        return 0.0
    order = np.lexsort((codes, story))
    c, s = codes[order], story[order]
    repeated = (c[1:] == c[:-1]) & (s[1:] == s[:-1])
    return float(repeated.sum() / codes.size)


def _tail(store: TokenStore, share: float) -> NDArray[np.int64]:
    counts = np.zeros(store.vocab_size, dtype=np.int64)
    for chunk in store.iter_chunks(1 << 22):  # bincount widens to int64: 32 MB a chunk
        counts += np.bincount(chunk, minlength=store.vocab_size)
    counts[store.eos_id] = 0
    seen = np.flatnonzero(counts)
    order = seen[np.argsort(counts[seen], kind="stable")]  # rarest first
    cum = np.cumsum(counts[order])
    return np.sort(order[: int(np.searchsorted(cum, share * cum[-1], side="right"))])


def _measure(
    tokens: NDArray[np.int64],
    lens: NDArray[np.int64],
    finished: NDArray[np.bool_],
    vocab: int,
    eos: int,
    tail: NDArray[np.int64],
) -> tuple[dict[str, Any], Counts, Counts]:
    stats: dict[str, Any] = {}
    for n in (1, 2, 3):
        codes = _ngrams(tokens, n, vocab, eos)
        stats[f"distinct_{n}"] = float(np.unique(codes).size / codes.size) if codes.size else 0.0
    uni = np.bincount(tokens[written(lens, finished)], minlength=vocab)  # no cut's separator
    p = uni[uni > 0] / uni.sum()
    stats["unigram_entropy"] = float(-(p * np.log2(p)).sum())
    stats["vocab_used"] = int((uni > 0).sum())
    stats["tail_mass"] = float(uni[tail].sum() / uni.sum()) if tail.size else 0.0
    stats["tail_coverage"] = float((uni[tail] > 0).mean()) if tail.size else 0.0
    stats["repetition_4"] = _repetition(tokens, lens, vocab)
    seen = np.flatnonzero(uni)
    return (
        stats,
        (seen.astype(np.int64), uni[seen].astype(np.int64)),
        _counts(_ngrams(tokens, 2, vocab, eos)),
    )


def _whole_store(store: TokenStore) -> dict[str, Any]:
    """Counts over the whole store. The store marks the stories that did not end by themselves
    (their end-of-text is a separator the model did not write); `eos_rate` counts only the
    end-of-text tokens the model wrote, per token it wrote."""
    lens = np.diff(np.asarray(store.offsets))
    unfinished = int(store.unfinished.size)
    written = store.num_tokens - unfinished
    finished = np.ones(lens.size, dtype=bool)
    finished[np.asarray(store.unfinished)] = False
    return {
        "stories": store.num_stories,
        "tokens": store.num_tokens,
        "unfinished_share": unfinished / store.num_stories if store.num_stories else 0.0,
        "story_length_mean": float(lens.mean()) if lens.size else 0.0,
        "story_length_median": float(np.median(lens)) if lens.size else 0.0,
        "finished_length_mean": float(lens[finished].mean()) if finished.any() else 0.0,
        "eos_rate": (store.num_stories - unfinished) / written if written else 0.0,
    }


def reference(
    d0: TokenStore,
    *,
    sample_tokens: int = 1_000_000,
    tail_share: float = 0.05,
    seed: int = 0,
    vocab_size: int | None = None,
) -> Reference:
    """D0's statistics and counts, to compare generated corpora with (compute once per run).

    vocab_size: the ids generated corpora may hold (a model's vocabulary can exceed D0's)."""
    vocab = max(vocab_size or 0, d0.vocab_size)
    tail = _tail(d0, tail_share)
    tokens, lens, finished = sample_stories(d0, sample_tokens, seed)
    stats, uni, bi = _measure(tokens, lens, finished, vocab, d0.eos_id, tail)
    stats.update(_whole_store(d0))
    return Reference(uni, bi, tail, vocab, d0.eos_id, sample_tokens, CorpusStats(**stats))


def corpus_stats(store: TokenStore, ref: Reference, *, seed: int = 0) -> CorpusStats:
    """The statistics above for `store`, with the KL divergences from D0's (`ref`)."""
    if store.vocab_size > ref.vocab_size:
        raise InvalidInput(
            f"{store.path} has vocabulary {store.vocab_size}, more than the reference's "
            f"{ref.vocab_size}"
        )
    tokens, lens, finished = sample_stories(store, ref.sample_tokens, seed)
    stats, uni, bi = _measure(tokens, lens, finished, ref.vocab_size, ref.eos_id, ref.tail)
    stats.update(_whole_store(store))
    return CorpusStats(
        **stats,
        kl_unigram_to_d0=_kl_bits(uni, ref.unigrams),
        kl_unigram_from_d0=_kl_bits(ref.unigrams, uni),
        kl_bigram_to_d0=_kl_bits(bi, ref.bigrams),
        kl_bigram_from_d0=_kl_bits(ref.bigrams, bi),
    )


def samples_text(store: TokenStore, tok: Tok, count: int, seed: int) -> str:
    """A few whole stories of a corpus, chosen by seed (Table 1), as samples.txt holds them;
    a story the sampler cut is marked unfinished."""
    if count == 0 or store.num_stories == 0:
        return ""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(store.num_stories, size=min(count, store.num_stories), replace=False))
    parts = []
    for i, done in zip(idx, store.finished(idx), strict=True):
        text = decode_story(tok, store.story(int(i)))
        mark = "" if done else " (unfinished: cut by the sampler, no end of its own)"
        parts.append(f"--- story {int(i)}{mark} ---\n{text}{'' if done else ' …'}\n")
    return "\n".join(parts)
