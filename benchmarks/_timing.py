"""Timing that holds on a noisy shared machine: ours and a baseline interleaved in short rounds.

One long measurement of each side lets a burst of other work land on one of them: on a shared
2-core machine the same tiny-training ratio read 0.65x in one run and 2.34x in the next. Here
each round times both sides back to back (the order alternating, so neither always runs on a
warmer cache), the ratio is taken per round, and the report is the median ratio with its range.
A run whose rounds disagree by more than `MAX_SPREAD` (max/min of the per-round ratios) is
flagged as too noisy to trust rather than printed as if it were a result.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_SPREAD = 1.5
"""Largest max/min of the per-round ratios that a result is trusted with."""


@dataclass
class Race:
    """Per-round seconds of ours and of the baseline (one call each per round)."""

    ours_s: list[float] = field(default_factory=list)
    base_s: list[float] = field(default_factory=list)
    max_spread: float = MAX_SPREAD

    @property
    def ratios(self) -> list[float]:
        """Speedups per round: baseline seconds / our seconds (above 1: ours is faster)."""
        return [b / o for o, b in zip(self.ours_s, self.base_s, strict=True)]

    @property
    def speedup(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> float:
        """max/min of the per-round ratios (1: every round agreed)."""
        r = self.ratios
        return max(r) / min(r)

    @property
    def trusted(self) -> bool:
        return len(self.ratios) >= 3 and self.spread <= self.max_spread

    @property
    def ours_median_s(self) -> float:
        return statistics.median(self.ours_s)

    @property
    def base_median_s(self) -> float:
        return statistics.median(self.base_s)

    def fields(self, prefix: str, work: float) -> dict[str, Any]:
        """JSON fields: tokens/s of each side (median seconds), the median speedup, its range
        over the rounds, the number of rounds and whether the spread allows trusting it."""
        return {
            f"{prefix}_tokens_per_s": work / self.ours_median_s,
            f"hf_{prefix}_tokens_per_s": work / self.base_median_s,
            f"{prefix}_speedup": self.speedup,
            f"{prefix}_speedup_range": [min(self.ratios), max(self.ratios)],
            f"{prefix}_rounds": len(self.ratios),
            f"{prefix}_trusted": self.trusted,
        }


def race(
    ours: Callable[[], Any],
    base: Callable[[], Any],
    rounds: int = 5,
    *,
    warmup: bool = True,
    clock: Callable[[], float] = time.perf_counter,
    max_spread: float = MAX_SPREAD,
) -> Race:
    """Time `ours` and `base` once each per round, alternating which goes first, after one
    untimed call of each (allocator, caches, lazy initialisation)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if warmup:
        ours()
        base()
    result = Race(max_spread=max_spread)
    for i in range(rounds):
        pair = [(ours, result.ours_s), (base, result.base_s)]
        for fn, out in pair if i % 2 == 0 else pair[::-1]:
            t0 = clock()
            fn()
            out.append(clock() - t0)
    return result


def repeated(
    fn: Callable[[], Any], rounds: int = 5, *, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Seconds of `rounds` calls of fn after one untimed call (a quantity with no baseline)."""
    fn()
    out = []
    for _ in range(rounds):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def summary(values: list[float]) -> dict[str, Any]:
    """Median, range and spread (max/min) of repeated measurements of one quantity."""
    return {
        "median": statistics.median(values),
        "range": [min(values), max(values)],
        "spread": max(values) / min(values) if min(values) > 0 else float("inf"),
        "rounds": len(values),
    }


def flag(trusted: bool) -> str:
    """The mark a table puts next to a ratio too noisy to trust."""
    return "" if trusted else "  (noisy: rounds disagree)"
