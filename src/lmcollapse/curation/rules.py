"""Which scored stories a filter keeps (issue 13): the best share, or D0's central range.

Both return the kept stories' indices in story order, so the kept corpus keeps the generated
order; both are deterministic (ties ranked by story index), so a resumed run keeps the same.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from lmcollapse.errors import InvalidInput


def keep_best(scores: NDArray, keep: float, higher_is_better: bool) -> NDArray[np.int64]:
    """The ceil(keep · N) best-scoring stories (keep in (0, 1])."""
    if not 0 < keep <= 1:
        raise InvalidInput(f"curation.keep must be in (0, 1], got {keep}")
    s = np.asarray(scores, dtype=np.float64)
    count = math.ceil(keep * s.size)
    rank = np.lexsort((np.arange(s.size), -s if higher_is_better else s))  # stable: by index
    return np.sort(rank[:count]).astype(np.int64)


def d0_range(scores: NDArray, reference: NDArray, q: float) -> NDArray[np.int64]:
    """The stories whose score lies in the central (1 − q) range of the reference scores (D0's
    own stories): between its q/2 and 1 − q/2 quantiles, both ends included."""
    if not 0 <= q < 1:
        raise InvalidInput(f"curation.q must be in [0, 1), got {q}")
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size == 0:
        raise InvalidInput("d0-range needs D0's scores, and D0 has no stories")
    lo, hi = np.quantile(ref, [q / 2, 1 - q / 2])
    s = np.asarray(scores, dtype=np.float64)
    return np.flatnonzero((s >= lo) & (s <= hi)).astype(np.int64)


__all__ = ["d0_range", "keep_best"]
