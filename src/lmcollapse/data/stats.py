"""Corpus truth: N_x and N_{x;v} (Sec. 2.1.2) for a token context x over a token stream.

The stream is the corpus as a model sees it: every story's tokens followed by end-of-text, one
after another. N_{x;v} counts the positions where the tokens of x are followed by v (v may be
end-of-text; an x that spans a story boundary counts like any other), and N_x = Σ_v N_{x;v}.
Over a token store (`count_store_continuations`) the separator after an unfinished generated
story is not counted: the model did not write it.
Counting is vectorised per chunk (one comparison pass per context token and a bincount), so a
600M-token store takes seconds, in bounded RAM.

    counter = ContinuationCounter([there_id], vocab_size)
    for chunk in store.iter_chunks():
        counter.update(chunk)
    counter.n_x, counter.counts[was_id] / counter.n_x

`corpus_truth(store, tok, " there")` does the same from a context's text; `source_stats` is
`lmcollapse corpus stats` for a prepared corpus, a token store or a text source.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lmcollapse.data.tokenizer import Tok, encode_stories, load_tokenizer, single_token
from lmcollapse.errors import InvalidInput


class ContinuationCounter:
    """Counts what follows a context over a stream fed in chunks of any size."""

    def __init__(self, context: Sequence[int], vocab_size: int) -> None:
        if len(context) == 0:
            raise InvalidInput("the context must have at least one token")
        if any(not 0 <= int(t) < vocab_size for t in context):
            raise InvalidInput(
                f"context ids {list(context)} are outside the vocabulary [0, {vocab_size})"
            )
        self.context = np.asarray(context, dtype=np.int64)
        self.vocab_size = vocab_size
        self.counts = np.zeros(vocab_size, dtype=np.int64)
        self._carry = np.zeros(
            0, dtype=np.int64
        )  # the last m tokens: a match may end in the next chunk

    def padded(self, size: int) -> NDArray[np.float64]:
        """N_{x;v} as floats over max(size, V) ids (a model's vocabulary may be larger)."""
        out = np.zeros(max(size, self.counts.size))
        out[: self.counts.size] = self.counts
        return out

    def update(self, chunk: ArrayLike) -> None:
        """Count matches whose continuation lies in this chunk (or earlier)."""
        m = self.context.size
        chunk = np.asarray(chunk)
        if chunk.dtype.kind not in "iu" or np.iinfo(chunk.dtype).max < self.context.max():
            chunk = chunk.astype(np.int64)  # a narrow dtype would wrap a large context id around
        # Compare in the chunk's own dtype (uint16 for most stores): 4x less memory traffic.
        arr = (
            np.concatenate([self._carry.astype(chunk.dtype), chunk]) if self._carry.size else chunk
        )
        starts = arr.size - m  # candidate starts 0..starts-1 have their continuation inside arr
        if starts > 0:
            ctx = self.context.astype(arr.dtype)
            mask = arr[:starts] == ctx[0]
            for j in range(1, m):
                mask &= arr[j : j + starts] == ctx[j]
            nxt = arr[m : m + starts][mask]
            if nxt.size and (nxt.min() < 0 or nxt.max() >= self.vocab_size):
                raise InvalidInput(
                    f"token ids outside the vocabulary [0, {self.vocab_size}) in the stream"
                )
            self.counts += np.bincount(nxt, minlength=self.vocab_size)
        self._carry = np.array(arr[max(arr.size - m, 0) :], dtype=np.int64)

    @property
    def n_x(self) -> int:
        """N_x: occurrences of the context that have a next token."""
        return int(self.counts.sum())

    def probabilities(self) -> NDArray[np.float64]:
        """N_{x;v}/N_x over the vocabulary (all zeros if x never occurs)."""
        n = self.n_x
        return self.counts / n if n else np.zeros(self.vocab_size)

    def top(self, k: int = 10) -> list[tuple[int, int]]:
        """The k most frequent continuations as (id, count), most frequent first, ties by id."""
        order = np.lexsort((np.arange(self.vocab_size), -self.counts))[:k]
        return [(int(i), int(self.counts[i])) for i in order if self.counts[i] > 0]


def count_continuations(
    chunks: Iterable[ArrayLike], context: Sequence[int], vocab_size: int
) -> ContinuationCounter:
    """Feed a whole stream (e.g. `store.iter_chunks()`) through a ContinuationCounter."""
    counter = ContinuationCounter(context, vocab_size)
    for chunk in chunks:
        counter.update(chunk)
    return counter


def count_store_continuations(
    store: Any, context: Sequence[int], vocab_size: int
) -> ContinuationCounter:
    """`count_continuations` over a token store's stream, less the separators of its unfinished
    stories: the end-of-text after a story the sampler cut is no continuation of anything."""
    counter = count_continuations(store.iter_chunks(), context, vocab_size)
    cut = np.asarray(store.unfinished)
    m = len(context)
    sep = np.asarray(store.offsets)[cut + 1] - 1  # stream positions of those separators
    sep = sep[sep >= m]
    if sep.size:
        match = np.ones(sep.size, dtype=bool)
        for j, t in enumerate(context):
            match &= np.asarray(store.tokens[sep - m + j]) == int(t)
        counter.counts[store.eos_id] -= int(match.sum())
    return counter


def corpus_truth(store: Any, tok: Tok, context: str, what: str = "context") -> ContinuationCounter:
    """The truth N_x, N_{x;v} of a context text x in a token store (D0 for a run's probes): one
    encoding and one count for the pipeline's reference row and `lmcollapse probe` alike."""
    ids = tok.encode(context)
    if not ids:
        raise InvalidInput(f"{what} {context!r} encodes to no token")
    return count_store_continuations(store, ids, tok.vocab_size)


def context_stats(
    counter: ContinuationCounter,
    tok: Tok,
    context_text: str,
    next_texts: Sequence[str],
    top_k: int = 10,
) -> dict[str, Any]:
    """The `corpus stats` result: N_x, each asked continuation's count and p, and the top k."""
    n_x = counter.n_x
    nxt = {}
    for text in next_texts:
        i = single_token(tok, text, "next token")
        c = int(counter.counts[i])
        nxt[text] = {"id": i, "count": c, "p": c / n_x if n_x else None}
    return {
        "context": context_text,
        "context_tokens": tok.token_strings(counter.context.tolist()),
        "context_ids": counter.context.tolist(),
        "N_x": n_x,
        "next": nxt,
        "top": [
            {"token": tok.token_strings([i])[0], "id": i, "count": c, "p": c / n_x}
            for i, c in counter.top(top_k)
        ],
    }


def source_stats(
    source: str,
    context: str,
    next_texts: Sequence[str] = (),
    top: int = 10,
    *,
    tokenizer: str | None = None,
    num_stories: int | None = None,
    text_column: str = "text",
    split: str = "train",
    seed: int = 0,
) -> dict[str, Any]:
    """`context_stats` of any corpus, plus where it was counted (what `lmcollapse corpus stats
    --json` prints): a prepared corpus directory (its D0, its own tokenizer), a token store (the
    tokenizer it was built with), or a text source encoded on the fly (builtin capped at 10,000
    stories unless num_stories says otherwise). Bad input fails before anything is counted."""
    from lmcollapse.data.prepare import is_prepared, open_prepared
    from lmcollapse.data.store import TokenStore, is_store

    if top < 0:
        raise InvalidInput(f"--top must be >= 0, got {top}")
    if not context:
        raise InvalidInput(
            "the context is empty: give text such as ' there' (leading space matters)"
        )
    chunks: Any
    if is_prepared(source) or (Path(source) / ".prepare.json").is_file():
        if tokenizer is not None:
            raise InvalidInput(
                f"{source} is a prepared corpus with its own tokenizer: leave out --tokenizer"
            )
        prepared = open_prepared(source)
        tok, chunks, where = prepared.tokenizer, prepared.d0, f"{source}/d0"
    else:
        if tokenizer is None:
            raise InvalidInput("--tokenizer is needed for a token store or a text source")
        tok = load_tokenizer(tokenizer)
        if is_store(source):
            store = TokenStore.open(source)
            built_with = store.meta.get("provenance", {}).get("tokenizer")
            if store.vocab_size != tok.vocab_size or built_with not in (None, tok.fingerprint()):
                raise InvalidInput(
                    f"{source} was built with another tokenizer: use the one it was built with"
                )
            chunks, where = store, source
        else:
            chunks = _encoded_chunks(tok, source, num_stories, text_column, split, seed)
            where = source
    ids = tok.encode(context)
    for text in next_texts:  # fail on a bad next token before counting a large corpus
        single_token(tok, text, "next token")
    counter = (
        count_store_continuations(chunks, ids, tok.vocab_size)
        if isinstance(chunks, TokenStore)
        else count_continuations(chunks, ids, tok.vocab_size)
    )
    result = context_stats(counter, tok, context, list(next_texts), top)
    result["data"] = where
    return result


def _encoded_chunks(
    tok: Tok, source: str, num_stories: int | None, text_column: str, split: str, seed: int
) -> Iterator[NDArray[np.int64]]:
    """A text source's token stream, encoded batch by batch (never held whole)."""
    from lmcollapse.data.sources import SourceSpec, iter_stories

    if num_stories is None and source == "builtin":
        num_stories = 10_000
    spec = SourceSpec(
        source, split=split, text_column=text_column, num_stories=num_stories, seed=seed
    )
    return (flat for flat, _ in encode_stories(tok, iter_stories(spec)))
