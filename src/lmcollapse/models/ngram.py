"""An exact n-gram model family whose smoothing is the paper's additive error.

With additive smoothing δ the model is p̂(v|h) = (N_{h;v} + δ) / (N_h + Vδ): Prop. 2.3 with
α_{h;v} = δ for every v — the paper's form, exactly, for every history h at once. Witten-Bell
interpolation (p̂(v|h) = (N_{h;v} + T_h p̂_lower(v|h')) / (N_h + T_h), T_h the number of distinct
continuations of h, down to an additive-δ unigram) is offered as the contrast: its error is not
uniform over the vocabulary but follows the lower-order distribution.

Histories are the n-1 previous tokens of a story, padded on the left with end-of-text: a story
s_1..s_m (s_m = EOS) is scored and counted from the start token EOS, as the transformer is.

Counts live in sorted numpy arrays — pair keys h·V + v with their counts, grouped by history as
in a CSR matrix (`indptr`) — plus a per-history `base`, a count added to every v of that history.
Trained from a corpus, base is 0. In the expected-counts modes (`expected_counts`) a count table
is sparse-plus-constant-per-row — the smoothing mass the previous generation spread over the
vocabulary — and `base` holds the constant part, so V × V tables are never materialised.

Sampling is vectorised over a batch of sequences, at temperature 1 with no truncation: each step
is a mixture draw (the counts part, found by binary search in the cumulative counts of the
history's row, or the smoothing part: uniform, or the lower order), so every token keeps its exact
probability, however small.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lmcollapse.artifacts import atomic_dir
from lmcollapse.data.store import written
from lmcollapse.errors import InvalidInput
from lmcollapse.paradigms import Paradigm
from lmcollapse.results import PerplexityResult

FORMAT = "lmcollapse-ngram"
SMOOTHINGS = ("additive", "witten-bell")
_KEY_LIMIT = 2**62  # V^order must stay below this for int64 pair keys
_GATHER = 8192  # stories per batch when counting


@dataclass(frozen=True)
class NGramShape:
    """What the pipeline asks of any model: vocabulary and how much context it can take."""

    vocab_size: int
    max_positions: int
    order: int


def check_model(order: int, vocab_size: int, eos_id: int, delta: float, smoothing: str) -> None:
    """Raise InvalidInput unless an n-gram model of these settings can exist."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise InvalidInput(f"n-gram order must be an integer >= 1, got {order!r}")
    if smoothing not in SMOOTHINGS:
        raise InvalidInput(f"smoothing must be one of {', '.join(SMOOTHINGS)}, got {smoothing!r}")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise InvalidInput(
            f"smoothing delta must be a finite number > 0 (the paper's form needs every "
            f"p̂ > 0), got {delta!r}"
        )
    if vocab_size < 2 or not 0 <= eos_id < vocab_size:
        raise InvalidInput(
            f"n-gram model needs 0 <= eos_id < vocab_size, got {eos_id}, {vocab_size}"
        )
    if float(vocab_size) ** order >= _KEY_LIMIT:
        raise InvalidInput(
            f"order {order} over a vocabulary of {vocab_size} ids overflows 64-bit n-gram keys: "
            "use a lower model.order or a smaller tokenizer"
        )


def _unique_sum(keys: NDArray[np.int64], weights: NDArray[np.float64]) -> tuple[Any, Any]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse.ravel(), weights=weights, minlength=uniq.size)


class NGramModel:
    """An order-n model with additive or Witten-Bell smoothing (see the module docstring)."""

    family = "ngram"

    def __init__(
        self,
        vocab_size: int,
        eos_id: int,
        order: int = 2,
        delta: float = 1.0,
        smoothing: str = "additive",
    ) -> None:
        check_model(order, vocab_size, eos_id, delta, smoothing)
        self.vocab_size, self.eos_id, self.order = int(vocab_size), int(eos_id), order
        self.delta, self.smoothing = float(delta), smoothing
        self.shape = NGramShape(self.vocab_size, 2**31 - 1, order)
        self._set(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0))
        self.lower: NGramModel | None = None
        if smoothing == "witten-bell" and order > 1:
            self.lower = NGramModel(vocab_size, eos_id, order - 1, delta, smoothing)

    # --- the count table -----------------------------------------------------------------------

    def _set(
        self,
        keys: NDArray[np.int64],
        values: NDArray[np.float64],
        hists: NDArray[np.int64],
        base: NDArray[np.float64],
    ) -> None:
        """Install pair keys (sorted) with their counts, and the histories (sorted, a superset of
        the pairs' histories) with their per-row base counts."""
        V = self.vocab_size
        self.keys, self.values = keys.astype(np.int64), values.astype(np.float64)
        self.hists, self.base = hists.astype(np.int64), base.astype(np.float64)
        self.indptr = np.searchsorted(self.keys // V, self.hists, side="left")
        self.indptr = np.append(self.indptr, self.keys.size).astype(np.int64)
        widths = np.diff(self.indptr)
        self.row_counts = np.bincount(  # N_h from the sparse part (0 for a history with none)
            np.repeat(np.arange(self.hists.size), widths),
            weights=self.values,
            minlength=self.hists.size,
        ).astype(np.float64)
        self.row_types = np.diff(self.indptr).astype(np.float64)  # T_h (Witten-Bell)
        self.cum = np.concatenate([[0.0], np.cumsum(self.values)])
        self._row_of = None  # orders 1-2: a direct history -> row map (no binary search)
        if self.order <= 2:
            self._row_of = np.full(self.dense_histories, -1, dtype=np.int64)
            self._row_of[self.hists] = np.arange(self.hists.size)

    @property
    def dense_histories(self) -> int:
        """Every possible history of an order-1 or -2 model: V tokens, or the one empty one."""
        return self.vocab_size if self.order == 2 else 1

    @property
    def num_ngrams(self) -> int:
        """Distinct n-grams stored (the model's size)."""
        return int(self.keys.size) + (self.lower.num_ngrams if self.lower else 0)

    def history_keys(self, tokens: NDArray[Any], lens: NDArray[np.int64]) -> NDArray[np.int64]:
        """The key of every token's history (n-1 previous tokens of its story, EOS-padded)."""
        V, eos = self.vocab_size, self.eos_id
        toks = np.asarray(tokens, dtype=np.int64)
        key = np.zeros(toks.size, dtype=np.int64)
        if self.order == 1 or toks.size == 0:
            return key
        starts = np.cumsum(lens) - lens
        pos = np.arange(toks.size, dtype=np.int64) - np.repeat(starts, lens)
        for back in range(self.order - 1, 0, -1):  # oldest first
            prev = np.full(toks.size, eos, dtype=np.int64)
            ok = pos >= back
            prev[ok] = toks[np.flatnonzero(ok) - back]
            key = key * V + prev
        return key

    def fit(self, stores: Any, indices: Any = None) -> NGramModel:
        """Count n-grams of the chosen stories (a TrainingSet, or stores with index arrays)."""
        if indices is None:
            stores, indices = stores.stores, stores.indices
        V = self.vocab_size
        keys, values = np.zeros(0, np.int64), np.zeros(0)
        pending: list[tuple[Any, Any]] = []
        for store, idx in zip(stores, indices, strict=True):
            if store.vocab_size > V:
                raise InvalidInput(
                    f"{store.path} has vocabulary {store.vocab_size}, larger than the model's {V}"
                )
            for toks, lens, done in store.gather_marked(np.asarray(idx), batch=_GATHER):
                pair = self.history_keys(toks, lens) * V + np.asarray(toks, dtype=np.int64)
                pair = pair[written(lens, done)]  # no (last → separator) of an unfinished story
                u, c = np.unique(pair, return_counts=True)
                pending.append((u, c.astype(np.float64)))
                if len(pending) >= 16:
                    keys, values = _unique_sum(
                        np.concatenate([keys] + [p[0] for p in pending]),
                        np.concatenate([values] + [p[1] for p in pending]),
                    )
                    pending = []
        if pending:
            keys, values = _unique_sum(
                np.concatenate([keys] + [p[0] for p in pending]),
                np.concatenate([values] + [p[1] for p in pending]),
            )
        hists = np.unique(keys // V)
        self._set(keys, values, hists, np.zeros(hists.size))
        if self.lower is not None:
            self.lower.fit(stores, indices)
        return self

    # --- probabilities -------------------------------------------------------------------------

    def _rows(self, hkeys: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        if self._row_of is not None:
            r = self._row_of[hkeys]
            return np.maximum(r, 0), r >= 0
        r = np.searchsorted(self.hists, hkeys)
        rc = np.minimum(r, max(self.hists.size - 1, 0))
        seen = (r < self.hists.size) & (self.hists[rc] == hkeys) if self.hists.size else r < 0
        return rc, seen

    def _pair_counts(self, hkeys: NDArray[np.int64], targets: NDArray[np.int64]) -> Any:
        pair = hkeys * self.vocab_size + targets
        j = np.searchsorted(self.keys, pair)
        jc = np.minimum(j, max(self.keys.size - 1, 0))
        if not self.keys.size:
            return np.zeros(pair.size)
        found = (j < self.keys.size) & (self.keys[jc] == pair)
        return np.where(found, self.values[jc], 0.0)

    def _lower_keys(self, hkeys: NDArray[np.int64]) -> NDArray[np.int64]:
        """Drop the oldest token of each history (the lower order's history)."""
        return hkeys % (self.vocab_size ** (self.order - 2)) if self.order > 2 else hkeys * 0

    def prob(self, hkeys: NDArray[np.int64], targets: NDArray[np.int64]) -> NDArray[np.float64]:
        """p̂(target | history) for arrays of history keys and targets, float64."""
        hkeys = np.asarray(hkeys, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        r, seen = self._rows(hkeys)
        c = self._pair_counts(hkeys, targets)
        V, d = self.vocab_size, self.delta
        if self.lower is None:  # additive (and the unigram end of Witten-Bell)
            base = np.where(seen, self.base[r], 0.0) if self.base.size else 0.0
            total = np.where(seen, self.row_counts[r], 0.0) if self.hists.size else 0.0
            return (c + base + d) / (total + V * (base + d))
        lower = self.lower.prob(self._lower_keys(hkeys), targets)
        types = np.where(seen, self.row_types[r], 0.0)
        total = np.where(seen, self.row_counts[r], 0.0)
        out = lower.copy()
        ok = seen & (total > 0)
        out[ok] = (c[ok] + types[ok] * lower[ok]) / (total[ok] + types[ok])
        return out

    def context_key(self, context_ids: list[int] | NDArray[Any]) -> int:
        """The history key of the last n-1 tokens of a context (EOS-padded if shorter)."""
        ids = self._check_ids(context_ids)
        hist = ([self.eos_id] * (self.order - 1) + ids)[len(ids) :] if self.order > 1 else []
        key = 0
        for t in hist:
            key = key * self.vocab_size + t
        return key

    def _check_ids(self, context_ids: list[int] | NDArray[Any]) -> list[int]:
        ids = [int(i) for i in context_ids]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise InvalidInput(
                f"context ids {ids} are outside the model's vocabulary [0, {self.vocab_size})"
            )
        return ids

    def distribution(self, context_ids: list[int] | NDArray[Any]) -> NDArray[np.float64]:
        """p̂(·|x) over the whole vocabulary for a context x, (V,).

        Its last n-1 tokens are the history. A context shorter than n-1 tokens (a probe such as
        " there" for a trigram) means x anywhere, as the corpus truth N_{x;v}/N_x counts it: the
        average of p̂(·|h) over the trained histories h that end with x, weighted by their counts
        N_h — the model's own p̂(·|x). If no trained history ends with x, x is taken as a story's
        start (the history padded with end-of-text)."""
        if len(context_ids) == 0:
            raise InvalidInput("the probe context is empty: give text such as ' there'")
        ids = self._check_ids(context_ids)
        V = self.vocab_size
        v = np.arange(V, dtype=np.int64)
        m = len(ids)
        if m < self.order - 1:
            suffix = 0
            for t in ids:
                suffix = suffix * V + t
            rows = np.flatnonzero(self.hists % (V**m) == suffix)
            weights = self.row_counts[rows] + V * self.base[rows]
            keep = weights > 0
            rows, weights = rows[keep], weights[keep]
            if rows.size:
                out = np.zeros(V)
                for start in range(0, rows.size, 64):  # 64 histories × V at a time
                    part = rows[start : start + 64]
                    keys = np.repeat(self.hists[part], V)
                    probs = self.prob(keys, np.tile(v, part.size)).reshape(part.size, V)
                    out += weights[start : start + 64] @ probs
                return out / weights.sum()
        key = self.context_key(ids)
        return self.prob(np.full(V, key, dtype=np.int64), v)

    def counts(self, context_ids: list[int] | NDArray[Any]) -> NDArray[np.float64]:
        """N_{h;v} over the vocabulary for the history of a context (its last n-1 tokens,
        EOS-padded), the base included: the counts the theory calls N_{x;v_i}, (V,)."""
        key = self.context_key(context_ids)
        V = self.vocab_size
        lo, hi = np.searchsorted(self.keys, [key * V, (key + 1) * V])
        out = np.zeros(V)
        out[self.keys[lo:hi] % V] = self.values[lo:hi]
        r, seen = self._rows(np.array([key], dtype=np.int64))
        if seen[0] and self.base.size:
            out += self.base[r[0]]
        return out

    def story_logprobs(self, tokens: NDArray[Any], lens: NDArray[np.int64]) -> NDArray[Any]:
        """log p̂ of every token of the given stories, each predicted from its story's start."""
        toks = np.asarray(tokens, dtype=np.int64)
        return np.log(self.prob(self.history_keys(toks, lens), toks))

    def score_tokens(
        self,
        tokens: NDArray[Any],
        lens: NDArray[np.int64],
        *,
        eos_id: int,
        context: int = 1,
        top_k: int = 0,
    ) -> Any:
        """log p̂ of every token from its story's start (n - 1 tokens of history are all the
        model reads: `context` changes nothing), and the top_k tokens of each history's
        distribution, computed once per distinct history, V probabilities at a time."""
        from lmcollapse.models.base import TokenScores

        if eos_id != self.eos_id:
            raise InvalidInput(f"end-of-text id {eos_id} is not the model's {self.eos_id}")
        toks, lens = np.asarray(tokens, dtype=np.int64), np.asarray(lens, dtype=np.int64)
        if toks.size and (toks.min() < 0 or toks.max() >= self.vocab_size):
            raise InvalidInput(f"token ids outside the model's vocabulary [0, {self.vocab_size})")
        hkeys = self.history_keys(toks, lens)
        logp = np.log(self.prob(hkeys, toks))
        V, k = self.vocab_size, min(top_k, self.vocab_size)
        ids, probs = np.zeros((toks.size, k), dtype=np.int64), np.zeros((toks.size, k))
        if k and toks.size:
            hists, inverse = np.unique(hkeys, return_inverse=True)
            top_i, top_p = np.zeros((hists.size, k), np.int64), np.zeros((hists.size, k))
            step = max(1, (1 << 22) // V)
            v = np.arange(V, dtype=np.int64)
            for lo in range(0, hists.size, step):
                part = hists[lo : lo + step]
                p = self.prob(np.repeat(part, V), np.tile(v, part.size)).reshape(part.size, V)
                top_i[lo : lo + step], top_p[lo : lo + step] = _top_k(p, k)
            ids, probs = top_i[inverse.ravel()], top_p[inverse.ravel()]
        return TokenScores(logp, ids, probs)

    def perplexity(
        self,
        store: Any,
        *,
        context: int = 1,
        stride: int | None = None,
        max_stories: int | None = None,
        first_token: bool = True,
    ) -> PerplexityResult:
        """Held-out perplexity, story by story, exactly: the n-gram needs no window (n-1 tokens
        of context are all it reads, so `context` and `stride` change nothing);
        `first_token=False` leaves each story's first token unscored."""
        if context < 1:
            raise InvalidInput(f"evaluation context must be >= 1, got {context}")
        n = store.num_stories if max_stories is None else min(max_stories, store.num_stories)
        if n == 0:
            raise InvalidInput(f"{store.path} has no stories to evaluate on")
        if store.vocab_size > self.vocab_size:
            raise InvalidInput(
                f"{store.path} has vocabulary {store.vocab_size}, larger than the model's "
                f"{self.vocab_size}"
            )
        total, count = 0.0, 0
        for toks, lens, done in store.gather_marked(np.arange(n), batch=_GATHER):
            scored = written(lens, done)
            if not first_token:
                scored[(np.cumsum(lens) - lens)[lens > 0]] = False
            total -= float(self.story_logprobs(toks, lens)[scored].sum())
            count += int(scored.sum())
        loss = total / count
        return PerplexityResult(loss, math.exp(loss), count, n)

    # --- sampling ------------------------------------------------------------------------------

    def _draw(self, hkeys: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.int64]:
        """One token per history, exactly from p̂(·|h): a mixture draw between the counts part
        (binary search in the row's cumulative counts) and the smoothing part (uniform, or the
        lower order for Witten-Bell, with fresh uniforms)."""
        V, d = self.vocab_size, self.delta
        u, w = rng.random(hkeys.size), rng.random(hkeys.size)
        r, seen = self._rows(hkeys)
        total = np.where(seen, self.row_counts[r], 0.0) if self.hists.size else np.zeros(u.size)
        if self.lower is None:
            base = np.where(seen, self.base[r], 0.0) if self.base.size else np.zeros(u.size)
            smooth = V * (base + d)
        else:
            smooth = np.where(seen, self.row_types[r], 0.0)
        from_counts = u * (total + smooth) < total
        out = np.empty(u.size, dtype=np.int64)
        if from_counts.any():
            rr = r[from_counts]
            lo, hi = self.indptr[rr], self.indptr[rr + 1]
            target = self.cum[lo] + w[from_counts] * total[from_counts]
            order = np.argsort(target)  # sorted queries: a much faster binary search
            j = np.empty(target.size, dtype=np.int64)
            j[order] = np.searchsorted(self.cum, target[order], side="right") - 1
            j = np.clip(j, lo, hi - 1)
            out[from_counts] = self.keys[j] % V
        rest = ~from_counts
        if rest.any():
            if self.lower is None:
                out[rest] = np.minimum((w[rest] * V).astype(np.int64), V - 1)
            else:
                out[rest] = self.lower._draw(self._lower_keys(hkeys[rest]), rng)
        return out

    def _dense_rows(self) -> tuple[Any, ...]:
        """Orders 1-2, additive: per-history arrays over every history (unseen ones too), so a
        sampling step is a handful of gathers."""
        H = self._row_of.size  # type: ignore[union-attr]
        total, smooth = np.zeros(H), np.full(H, self.vocab_size * self.delta)
        lo, hi = np.zeros(H, dtype=np.int64), np.ones(H, dtype=np.int64)
        h = self.hists
        total[h] = self.row_counts
        smooth[h] = self.vocab_size * (self.base + self.delta)
        lo[h], hi[h] = self.indptr[:-1], np.maximum(self.indptr[1:], self.indptr[:-1] + 1)
        return total, smooth, lo, hi, self.cum[lo]

    def _draw_dense(self, prev: NDArray[np.int64], rng: np.random.Generator, dense: Any) -> Any:
        total_d, smooth_d, lo_d, hi_d, cumlo_d = dense
        V = self.vocab_size
        uw = rng.random((2, prev.size))
        total = total_d[prev]
        from_counts = uw[0] * (total + smooth_d[prev]) < total
        out = np.minimum((uw[1] * V).astype(np.int64), V - 1)  # the uniform part
        idx = np.flatnonzero(from_counts)
        if idx.size:
            p = prev[idx]
            target = cumlo_d[p] + uw[1, idx] * total[idx]
            order = np.argsort(target)
            j = np.empty(idx.size, dtype=np.int64)
            j[order] = np.searchsorted(self.cum, target[order], side="right") - 1
            out[idx] = self.keys[np.clip(j, lo_d[p], hi_d[p] - 1)] % V
        return out

    def sample_sequences(
        self, rows: int, length: int, seed: int, stop_at_eos: bool = False
    ) -> list[NDArray[np.int64]]:
        """`rows` sequences of up to `length` tokens, each starting after EOS; in stream mode a
        sequence runs on across end-of-text with its history reset (Algorithm 1's stream)."""
        if length < 1:
            raise InvalidInput(f"sampling length must be >= 1, got {length}")
        V, eos = self.vocab_size, self.eos_id
        rng = np.random.default_rng(seed)
        out = np.empty((rows, length), dtype=np.int64)
        done_at = np.full(rows, length, dtype=np.int64)
        active = np.arange(rows)
        if self.order <= 2 and self.lower is None:  # the fast path: the history is one token
            dense = self._dense_rows()
            prev = np.full(rows, eos if self.order == 2 else 0, dtype=np.int64)
            for t in range(length):
                tok = self._draw_dense(prev if self.order == 2 else prev * 0, rng, dense)
                out[active, t] = tok
                if stop_at_eos:
                    going = tok != eos
                    done_at[active[~going]] = t + 1
                    active, tok = active[going], tok[going]
                    if active.size == 0:
                        break
                prev = tok  # after end-of-text the history is end-of-text: the stream restarts
            return [out[i, : done_at[i]] for i in range(rows)]
        hist = np.full((rows, max(self.order - 1, 0)), eos, dtype=np.int64)
        for t in range(length):
            key = np.zeros(active.size, dtype=np.int64)
            for c in range(hist.shape[1]):
                key = key * V + hist[active, c]
            tok = self._draw(key, rng)
            out[active, t] = tok
            if hist.shape[1]:
                hist[active] = np.roll(hist[active], -1, axis=1)
                hist[active, -1] = tok
                ended = tok == eos
                hist[active[ended]] = eos
            if stop_at_eos:
                ended = tok == eos
                done_at[active[ended]] = t + 1
                active = active[~ended]
                if active.size == 0:
                    break
        return [out[i, : done_at[i]] for i in range(rows)]

    # --- the LanguageModel interface (models.base) ---------------------------------------------

    @property
    def device(self) -> Any:
        """Counting and sampling run in numpy: the sampler's generator lives on the CPU."""
        import torch

        return torch.device("cpu")

    def next_token_distributions(self, contexts: Any) -> NDArray[np.float64]:
        """p̂(·|x) for each context (see `distribution`), (len(contexts), V)."""
        return np.stack([self.distribution(c) for c in contexts])

    def sample(
        self,
        batch: int,
        length: int,
        *,
        eos_id: int,
        context: int,
        generator: Any,
        params: Any,
        stop_at_eos: bool,
    ) -> list[NDArray[np.int64]]:
        """`sample_sequences` seeded from the torch generator; the whole history is the context
        (n - 1 tokens), so `context` changes nothing."""
        if not params.faithful:
            raise InvalidInput(
                "the ngram family samples faithfully only (temperature 1, no top-k/top-p): "
                "set sampling.temperature 1, sampling.top_k 0, sampling.top_p 1"
            )
        if eos_id != self.eos_id:
            raise InvalidInput(f"end-of-text id {eos_id} is not the model's {self.eos_id}")
        import torch

        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return self.sample_sequences(batch, length, seed, stop_at_eos=stop_at_eos)

    def describe(self) -> str:
        return (
            f"n-gram model: order {self.order}, {self.smoothing} smoothing, δ = {self.delta:g}, "
            f"vocabulary {self.vocab_size}, {self.num_ngrams:,} n-grams stored"
        )

    def save(self, path: str | Path) -> Path:
        """config.json (model_type lmcollapse-ngram) + counts.npz, written atomically."""
        with atomic_dir(path) as tmp:
            (tmp / "config.json").write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
            np.savez(tmp / "counts.npz", **self._arrays())
        return Path(path)

    def config(self) -> dict[str, Any]:
        return {
            "model_type": FORMAT,
            "order": self.order,
            "delta": self.delta,
            "smoothing": self.smoothing,
            "vocab_size": self.vocab_size,
            "eos_token_id": self.eos_id,
        }

    def _arrays(self, prefix: str = "") -> dict[str, Any]:
        out = {
            f"{prefix}keys": self.keys,
            f"{prefix}values": self.values,
            f"{prefix}hists": self.hists,
            f"{prefix}base": self.base,
        }
        if self.lower is not None:
            out.update(self.lower._arrays(prefix + "lower_"))
        return out

    def _load_arrays(self, data: Any, prefix: str = "") -> None:
        self._set(
            data[f"{prefix}keys"],
            data[f"{prefix}values"],
            data[f"{prefix}hists"],
            data[f"{prefix}base"],
        )
        if self.lower is not None:
            self.lower._load_arrays(data, prefix + "lower_")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> NGramModel:
        p = Path(path)
        try:
            meta = json.loads((p / "config.json").read_text(encoding="utf-8"))
            model = cls(
                meta["vocab_size"],
                meta["eos_token_id"],
                meta["order"],
                meta["delta"],
                meta["smoothing"],
            )
            with np.load(p / "counts.npz") as data:
                model._load_arrays(data)
        except (OSError, KeyError, ValueError, IndexError, zipfile.BadZipFile) as exc:
            raise InvalidInput(f"{p} is not a readable n-gram model ({exc})") from None
        return model


# ----------------------------------------------------------------------------------------------
# Expected counts (the paper's footnote 3: sampling error ignored).


def _top_k(p: NDArray[np.float64], k: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The k largest entries of every row, best first, ties by the smaller id: O(V) per row (a
    partition, not a sort — smoothing makes thousands of unseen tokens tie)."""
    rows, V = p.shape
    kth = np.partition(p, V - k, axis=1)[:, V - k : V - k + 1]  # every row's k-th largest
    above, tie = p > kth, p == kth
    need = k - above.sum(axis=1, keepdims=True)  # ties taken, lowest ids first (>= 1)
    take = above | (tie & (np.cumsum(tie, axis=1) <= need))
    ids = np.nonzero(take)[1].reshape(rows, k)  # k per row, in id order
    vals = np.take_along_axis(p, ids, axis=1)
    order = np.lexsort((ids, -vals), axis=1)
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(vals, order, axis=1)


@dataclass
class CountTable:
    """A bigram (or unigram) count table as sparse-plus-row-constant: count(h, v) =
    values[pair h·V+v] + base[h], over every history h in 0..V-1 (one history for a unigram)."""

    keys: NDArray[np.int64]
    values: NDArray[np.float64]
    base: NDArray[np.float64]

    def __add__(self, other: CountTable) -> CountTable:
        if not np.array_equal(self.keys, other.keys):
            raise ValueError("count tables with different patterns")
        return CountTable(self.keys, self.values + other.values, self.base + other.base)

    def scaled(self, factor: float) -> CountTable:
        return CountTable(self.keys, self.values * factor, self.base * factor)


def check_expected(model: NGramModel) -> None:
    """Expected counts are exact for what they support; say so for the rest."""
    if model.order > 2:
        raise InvalidInput(
            f"expected-counts mode supports n-gram orders 1 and 2 (the generated stream is then "
            f"a Markov chain on tokens), not order {model.order}: set model.order to 2 or "
            "model.expected_counts to off"
        )
    if model.smoothing != "additive":
        raise InvalidInput(
            "expected-counts mode needs additive smoothing (the paper's form): set "
            "model.smoothing to additive or model.expected_counts to off"
        )


def table_of(model: NGramModel) -> CountTable:
    """The model's own counts as a table over every history."""
    check_expected(model)
    H = model.dense_histories
    base = np.zeros(H)
    if model.hists.size:
        base[model.hists] = model.base
    # every (h, EOS) pair is in the pattern, so that tables of successive generations share one
    closing = np.arange(H, dtype=np.int64) * model.vocab_size + model.eos_id
    keys = np.union1d(model.keys, closing)
    values = np.zeros(keys.size)
    values[np.searchsorted(keys, model.keys)] = model.values
    return CountTable(keys, values, base)


def from_table(model: NGramModel, table: CountTable) -> NGramModel:
    """Install a count table as the model's counts."""
    H = model.dense_histories
    model._set(table.keys, table.values, np.arange(H, dtype=np.int64), table.base)
    return model


def _transitions(model: NGramModel) -> tuple[CountTable, Any, Any, Any, Any]:
    """The model's table as a chain: (table, history row and token of each pair, a, b) with
    P(h, v) = a_h S(h, v) + b_h — S the sparse counts, b = a·(base + δ) the smoothing."""
    V = model.vocab_size
    t = table_of(model)
    H = t.base.size
    rows = t.keys // V if H > 1 else np.zeros(t.keys.size, dtype=np.int64)
    rho = t.base + model.delta
    a = 1.0 / (np.bincount(rows, weights=t.values, minlength=H) + V * rho)
    return t, rows, t.keys % V, a, a * rho


def expected_story_counts(
    model: NGramModel, max_length: int | None = None
) -> tuple[CountTable, float]:
    """(expected n-gram counts of one generated story, its expected length in tokens).

    A story is the chain started after EOS and stopped at the first EOS it emits. Unigram: the
    length is geometric, E[count of v] = p(v)/p(EOS). Bigram: transitions P(u,v) = a_u (S(u,v) +
    ρ_u) with ρ = base + δ; the expected visits w of the non-EOS tokens solve w (I - Q) = s, Q = A
    + b 1ᵀ (A sparse, b the row constants) — done exactly with one sparse LU of I - A and the
    Sherman-Morrison step for the rank-one part. E[count(u, v)] = visits_u P(u, v), with one visit
    of EOS (the start).

    With `max_length` L: the sampler's story mode exactly — a story that has not ended after L
    tokens is cut there (stored with an end-of-text separator that is no target, so it adds no
    pair (last token, EOS)); the visits are then the sum of L steps of the chain (L sparse
    products). The length counts stored tokens, the separator included.
    """
    check_expected(model)
    if max_length is not None:
        if max_length < 1:
            raise InvalidInput(f"sampling length must be >= 1, got {max_length}")
        return _truncated_story_counts(model, int(max_length))
    V, eos = model.vocab_size, model.eos_id
    t, rows, cols, a, b = _transitions(model)
    if model.order == 1:  # E[count of v] = p(v) / p(EOS)
        p_eos = float(a[0] * t.values[t.keys == eos].sum() + b[0])
        return CountTable(t.keys, t.values * a[0] / p_eos, b / p_eos), 1.0 / p_eos
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    keep = np.flatnonzero(np.arange(V) != eos)
    pos = np.full(V, -1)
    pos[keep] = np.arange(keep.size)
    inner = (rows != eos) & (cols != eos)
    A = sp.csr_matrix(
        (a[rows[inner]] * t.values[inner], (pos[rows[inner]], pos[cols[inner]])),
        shape=(keep.size, keep.size),
    )
    start = np.full(keep.size, b[eos])
    from_eos = (rows == eos) & (cols != eos)
    start[pos[cols[from_eos]]] += a[eos] * t.values[from_eos]
    lu = splu((sp.identity(keep.size, format="csc") - A).T.tocsc())
    x1 = lu.solve(start)  # s M^-1 as a column
    x2 = lu.solve(np.ones(keep.size))  # 1ᵀ M^-1
    bi = b[keep]
    c = float(x1 @ bi) / (1.0 - float(x2 @ bi))
    w = x1 + c * x2
    visits = np.ones(V)
    visits[keep] = w
    scale = visits * a
    return CountTable(t.keys, t.values * scale[rows], visits * b), float(visits.sum())


def _truncated_story_counts(model: NGramModel, L: int) -> tuple[CountTable, float]:
    import scipy.sparse as sp

    V, eos = model.vocab_size, model.eos_id
    t, rows, cols, a, b = _transitions(model)
    H = t.base.size
    S = sp.csr_matrix((t.values, (rows, cols)), shape=(H, V))
    alive = np.zeros(H)
    alive[eos if H > 1 else 0] = 1.0  # the start: after EOS
    visits = np.zeros(H)
    for _ in range(L):
        visits += alive
        step = (alive * a) @ S + float(alive @ b)  # mass of each next token
        step[eos] = 0.0  # emitting EOS ends the story
        alive = step if H > 1 else np.array([step.sum()])
    scale = visits * a
    values = t.values * scale[rows]
    length = float(visits.sum() + alive.sum())  # emitted tokens, and a separator per cut story
    return CountTable(t.keys, values, visits * b), length


def generated_counts(
    model: NGramModel, mode: str, stories: float, max_length: int | None = None
) -> CountTable:
    """The counts a generated corpus S_n of `stories` stories contributes, without sampling error.

    `chain`: `stories` times the expected counts of one story of the model's stream (exact).
    `paper`: the paper's count form (Eq. 3-4): the corpus carries the model's counts plus its
    error, (N_{h;v} + δ) per pair, times `stories` — here the corpus's size relative to D0
    (|S_n| / |D0|), since the count form is in D0's units.
    """
    if mode == "chain":
        per_story, _ = expected_story_counts(model, max_length)
        return per_story.scaled(stories)
    if mode == "paper":
        t = table_of(model)
        return CountTable(t.keys, t.values, t.base + model.delta).scaled(stories)
    raise InvalidInput(f"expected-counts mode must be chain or paper, got {mode!r}")


def training_table(
    paradigm: Paradigm, n: int, d0: CountTable, last: CountTable, cumulative: CountTable
) -> CountTable:
    """Generation n's (n ≥ 2) training counts from D0's counts and the generated corpora's, in
    the paradigm's exact weights: b[n] = w_0·D0 + Σ_j (w_j / scale)·S_j, where `last` is
    S_{n-1}'s expected table and `cumulative` those of S_1..S_{n-1} summed (each S_j of
    scale·|D0|, so w_j / scale is the weight of its table). The weights come as
    `paradigm.terms(n)`: on S_{n-1} alone, or the same on every S_j — the running sum."""
    t = paradigm.terms(n)
    generated = _weighted(cumulative if t.pooled else last, t.each / paradigm.scale)
    real = _weighted(d0, t.real)
    table = generated if real is None else real if generated is None else real + generated
    if table is None:
        raise InvalidInput(f"generation {n} of {paradigm.name} trains on nothing")
    return table if t.norm == 1 else table.scaled(1.0 / t.norm)


def _weighted(table: CountTable, weight: float) -> CountTable | None:
    """weight·table, None for weight 0 (and the table itself for weight 1: no rounding)."""
    if weight == 0:
        return None
    return table if weight == 1 else table.scaled(weight)


def expected_run(
    model: NGramModel,
    generations: int,
    paradigm: Paradigm,
    mode: str,
    *,
    d0_stories: int,
    max_length: int | None = None,
    d0_tokens: int | None = None,
) -> list[NGramModel]:
    """Generations 1..G in an expected-counts mode, in memory: `model` is generation 1 (fitted
    on D0); returns every generation's model. The pipeline does the same, one generation at a
    time with the counts on disk. With `d0_tokens` (paradigm.unit tokens) each chain-mode S_n
    holds scale·|D0| tokens, else scale·|D0| stories (scale = k when accumulating, else 1)."""
    check_expected(model)
    paradigm.ensure_valid()
    models = [model]
    d0 = table_of(model)
    last = expected_corpus(model, mode, paradigm, d0_stories, d0_tokens, max_length)
    cumulative = last
    for n in range(2, generations + 1):
        nxt = NGramModel(model.vocab_size, model.eos_id, model.order, model.delta)
        from_table(nxt, training_table(paradigm, n, d0, last, cumulative))
        models.append(nxt)
        last = expected_corpus(nxt, mode, paradigm, d0_stories, d0_tokens, max_length)
        cumulative = cumulative + last
    return models


def expected_corpus(
    model: NGramModel,
    mode: str,
    paradigm: Paradigm,
    d0_stories: int,
    d0_tokens: int | None = None,
    max_length: int | None = None,
) -> CountTable:
    """The expected counts of the corpus S_n a generation contributes under a paradigm:
    scale·|D0| (k·|D0| when accumulating, else |D0|), in tokens when `d0_tokens` is given, else
    in stories."""
    scale = paradigm.scale
    if mode != "chain":
        return generated_counts(model, mode, scale, max_length)
    if d0_tokens is None:
        return generated_counts(model, mode, scale * d0_stories, max_length)
    per_story, length = expected_story_counts(model, max_length)  # as many stories as hold
    return per_story.scaled(scale * d0_tokens / length)  # k·|D0| stored tokens in expectation
