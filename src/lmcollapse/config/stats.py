"""The stats section (issue 14): how a replicated run's curves get their intervals and when its
collapse starts. None of it changes a replicate's numbers: a finished run may be aggregated again
with other settings (`lmcollapse run` with the same --out)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class StatsConfig:
    """Intervals across replicates and the collapse onset (lmcollapse.uncertainty)."""

    interval: Literal["auto", "t", "bootstrap"] = "auto"
    """The interval of a mean over replicates: `t` (Student's, for few replicates), `bootstrap`
    (percentile, for many, or skewed metrics), `auto` (t below 20 replicates, bootstrap from
    20); aggregate.csv says which each generation got."""
    level: float = 0.95
    """The intervals' confidence level, in (0, 1)."""
    resamples: int = 10_000
    """Bootstrap resamples, and random splits of a permutation test too large to enumerate."""
    onset_tau: float = 0.5
    """Collapse onset: the first generation whose perplexity exceeds (1 + onset_tau) ×
    generation 1's, > 0."""

    def check(self) -> list[str]:
        """Problems the types cannot catch, each naming its field."""
        out = []
        if not (math.isfinite(self.level) and 0 < self.level < 1):
            out.append(f"level: must be in (0, 1), got {self.level!r}")
        if self.resamples < 100:
            out.append(f"resamples: must be >= 100, got {self.resamples}")
        if not (math.isfinite(self.onset_tau) and self.onset_tau > 0):
            out.append(f"onset_tau: must be > 0, got {self.onset_tau!r}")
        return out
