"""Token-level editing, ToEdit (Zhu et al. 2024, "How to Synthesize Text Data without Model
Collapse?", arXiv 2412.14689): a prior model reads a text in one teacher-forced pass, and every
token it finds too predictable — p(x_i | x_<i) >= p_max — is replaced by a draw from the prior's
top-k candidates at that position, at temperature beta (weights p_j^(1/beta)); optionally tokens
with p <= p_min are deleted.

What is never edited: a story's first token (as in ToEdit), and end-of-text tokens (a story's
end is where the model stopped; an edit must not merge or split stories). For the same reason
end-of-text is no replacement candidate, nor an id outside the corpus's vocabulary. The
original token always stays a candidate (if the top-k misses it — only possible when
p_max <= 1/(k+1) — it takes the last candidate's place).

Draws are seeded per batch of stories, so an edited corpus is the same on a rerun.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

STORY_BATCH = 512  # stories per teacher-forced pass


@dataclass
class EditCounts:
    """What an edit did: tokens read, resampled (at or above p_max), changed by the draw (a
    resampled token may be drawn again), deleted (at or below p_min)."""

    tokens: int = 0
    resampled: int = 0
    changed: int = 0
    deleted: int = 0
    stories: int = 0

    def add(self, other: EditCounts) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def edit_batch(
    toks: NDArray[Any],
    lens: NDArray[np.int64],
    scores: Any,
    *,
    eos_id: int,
    p_max: float,
    beta: float,
    p_min: float | None,
    rng: np.random.Generator,
    vocab: int | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], EditCounts]:
    """One batch of stories edited from its TokenScores (logp, top_ids, top_probs): the new
    tokens, the new lengths, and the counts. Candidates at or past `vocab` (a prior of a
    padded vocabulary) are never drawn."""
    toks = np.asarray(toks, dtype=np.int64)
    p = np.exp(scores.logp)
    starts = np.cumsum(lens) - lens
    editable = toks != eos_id
    editable[starts[lens > 0]] = False
    resample = editable & (p >= p_max)
    delete = editable & ~resample & (p <= p_min) if p_min is not None else np.zeros_like(editable)
    out = toks.copy()
    rows = np.flatnonzero(resample)
    if rows.size:
        ids = scores.top_ids[rows].copy()
        probs = scores.top_probs[rows].copy()
        missing = ~(ids == toks[rows, None]).any(axis=1)
        ids[missing, -1], probs[missing, -1] = toks[rows[missing]], p[rows[missing]]
        never = (ids == eos_id) | (ids >= (vocab if vocab is not None else np.inf))
        weight = np.where(never, 0.0, probs ** (1.0 / beta))
        cdf = np.cumsum(weight, axis=1)
        u = rng.random(rows.size) * cdf[:, -1]
        pick = np.minimum((cdf <= u[:, None]).sum(axis=1), ids.shape[1] - 1)
        out[rows] = ids[np.arange(rows.size), pick]
    story = np.repeat(np.arange(lens.size), lens)
    new_lens = lens - np.bincount(story[delete], minlength=lens.size)
    counts = EditCounts(
        tokens=int(toks.size),
        resampled=int(rows.size),
        changed=int((out != toks).sum()),
        deleted=int(delete.sum()),
        stories=int(lens.size),
    )
    return out[~delete], new_lens.astype(np.int64), counts


def edit_parts(
    parts: list[tuple[Any, NDArray[np.int64]]],
    prior: Any,
    writer: Any,
    *,
    cfg: Any,
    context: int,
    seed: int,
) -> EditCounts:
    """Edit the chosen stories of each (store, indices) part, in order, into `writer` (a
    TokenStoreWriter), streamed in batches of STORY_BATCH stories."""
    c, total = cfg.curation, EditCounts()
    for b, (store, toks, lens, done) in enumerate(_batches(parts)):
        scores = prior.score_tokens(toks, lens, eos_id=store.eos_id, context=context, top_k=c.top_k)
        rng = np.random.default_rng([seed, b])
        new, new_lens, counts = edit_batch(
            toks,
            lens,
            scores,
            eos_id=store.eos_id,
            p_max=c.p_max,
            beta=c.beta,
            p_min=c.p_min,
            rng=rng,
        )
        writer.add_flat(new, new_lens, done)
        total.add(counts)
    return total


def _batches(parts: list[tuple[Any, NDArray[np.int64]]]) -> Iterator[tuple[Any, ...]]:
    for store, idx in parts:
        for toks, lens, done in store.gather_marked(np.asarray(idx), batch=STORY_BATCH):
            yield store, toks, lens, done


__all__ = ["EditCounts", "edit_batch", "edit_parts"]
