"""A generation's training set as packed fixed-length blocks (Appendix C.1.2).

The chosen stories (from one or more token stores; each story ends with its end-of-text token,
which is a trained target) are shuffled with a seed, laid end to end as one virtual stream, and
cut into blocks of `context + 1` tokens with stride `context`: block i is inputs
stream[iC : iC + C] and targets stream[iC + 1 : iC + C + 1], so every token but the first is a
target exactly once. The end-of-text of an unfinished story (a generated story cut by the
sampler, marked in its store) stays in the stream as the boundary but is no target (IGNORE):
the model never learns that a story stops where the sampler cut it. Nothing is materialised: a
block is assembled from the stores when asked for, read with pread rather than through the
memory map: an epoch over 40 stores then leaves no mapped pages behind (TokenStore.read).
`PackedBlocks` is a map-style dataset (len / getitem) that torch's DataLoader and accelerate's
sharding accept as it is; it needs numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lmcollapse.data.paradigms import tokens_of
from lmcollapse.data.store import TokenStore
from lmcollapse.errors import InvalidInput

IGNORE = -100  # a target that is no target (the index torch's cross-entropy ignores)


@dataclass(frozen=True)
class TrainingSet:
    """Stories `indices[k]` of `stores[k]` for every part of a generation's composition."""

    stores: Sequence[TokenStore]
    indices: Sequence[NDArray[np.int64]]

    def __post_init__(self) -> None:
        if len(self.stores) != len(self.indices):
            raise InvalidInput("a training set needs one index array per store")

    @classmethod
    def whole(cls, store: TokenStore) -> TrainingSet:
        """All stories of one store."""
        return cls([store], [np.arange(store.num_stories, dtype=np.int64)])

    @property
    def vocab_size(self) -> int:
        """The largest vocabulary among the stores (the model must cover it)."""
        return max((s.vocab_size for s in self.stores), default=0)

    @property
    def num_stories(self) -> int:
        """Stories in the training set."""
        return int(sum(len(i) for i in self.indices))

    @property
    def num_tokens(self) -> int:
        """Tokens in the chosen stories (each store's offsets read for them, then released)."""
        total = 0
        for store, idx in zip(self.stores, self.indices, strict=True):
            total += tokens_of(store.offsets, np.asarray(idx, dtype=np.int64))
            store.release()
        return total

    def blocks(self, context: int, seed: int, eos_targets: bool = True) -> PackedBlocks:
        """The stories in a seeded order, packed into blocks of context + 1 tokens
        (`eos_targets=False`: no end-of-text is a target at all)."""
        return PackedBlocks(self, context, seed, eos_targets)


class PackedBlocks:
    """Map-style dataset of packed blocks: item i is an int64 array (2, context): the inputs and
    their targets (IGNORE where a target is the separator after an unfinished story)."""

    def __init__(
        self, training: TrainingSet, context: int, seed: int, eos_targets: bool = True
    ) -> None:
        if context < 1:
            raise InvalidInput(f"context must be >= 1, got {context}")
        self.training, self.context = training, context
        self.eos = None if eos_targets or not training.stores else training.stores[0].eos_id
        source = np.concatenate(
            [np.full(len(i), k, dtype=np.int32) for k, i in enumerate(training.indices)]
        )
        story = np.concatenate([np.asarray(i, dtype=np.int64) for i in training.indices])
        order = np.random.default_rng([seed, 0xB10C]).permutation(len(story))
        self.source, self.story = source[order], story[order]
        self.starts = np.empty(len(order), dtype=np.int64)  # absolute token start in its store
        lens = np.empty(len(order), dtype=np.int64)
        finished = np.ones(len(order), dtype=bool)
        for k, store in enumerate(training.stores):
            sel = self.source == k
            off = np.asarray(store.offsets)
            self.starts[sel] = off[self.story[sel]]
            lens[sel] = off[self.story[sel] + 1] - off[self.story[sel]]
            finished[sel] = store.finished(self.story[sel])
            store.release()  # 40 stores' offsets would otherwise stay mapped (17 MB each at 2M)
        self.cum = np.concatenate([[0], np.cumsum(lens)])  # stream position of each story's start
        # stream positions of the separators that are no target (sorted: the stories are in order)
        self.separators = self.cum[1:][~finished] - 1
        self.total = int(self.cum[-1])
        if self.total <= context:
            raise InvalidInput(
                f"the training set has {self.total} tokens, too few for one block of "
                f"{context + 1}: "
                "use more stories or a shorter training.context_length"
            )

    def __len__(self) -> int:
        return (self.total - 1) // self.context

    def __getitem__(self, i: int) -> NDArray[np.int64]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        lo = i * self.context
        out = np.empty(self.context + 1, dtype=np.int64)
        k = int(np.searchsorted(self.cum, lo, side="right")) - 1
        pos = 0
        while pos < len(out):
            store = self.training.stores[self.source[k]]
            offset = lo + pos - self.cum[k]  # position inside story k
            take = min(int(self.cum[k + 1] - self.cum[k] - offset), len(out) - pos)
            a = self.starts[k] + offset
            out[pos : pos + take] = store.read(int(a), take)
            pos += take
            k += 1
        targets = out[1:].copy()
        lo_sep, hi_sep = np.searchsorted(self.separators, [lo + 1, lo + self.context + 1])
        targets[self.separators[lo_sep:hi_sep] - lo - 1] = IGNORE
        if self.eos is not None:
            targets[targets == self.eos] = IGNORE
        return np.stack([out[:-1], targets])
