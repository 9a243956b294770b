"""`lmcollapse compare RUN_A RUN_B` (issue 14): does A differ from B, generation by generation?

Both runs must be replicated. At every generation both reached with at least 2 replicates with a
finite value of the metric: mean(A) − mean(B) with Welch's interval, a two-sided p-value
(lmcollapse.uncertainty: Welch's t-test, or the exact permutation test), and Holm's correction
across those generations. The typed result is `Comparison` (its JSON is --json's output).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmcollapse.errors import InvalidInput
from lmcollapse.uncertainty import EXACT_SPLITS, difference, holm


@dataclass(frozen=True)
class GenerationComparison:
    generation: int
    mean_a: float
    mean_b: float
    diff: float  # mean_a − mean_b
    lo: float
    hi: float
    p: float
    p_holm: float
    n_a: int
    n_b: int
    exact: bool | None = None  # permutation: every split enumerated (else random splits)


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    metric: str
    test: str  # "welch" or "permutation"
    level: float
    correction: str
    generations: list[GenerationComparison]
    resamples: int = 10_000  # random splits of a permutation test too large to enumerate


def _values(root: Path, metric: str) -> dict[int, list[float]]:
    """generation → the replicates' finite values of a metrics.csv column."""
    from lmcollapse.aggregate import replicate_metrics
    from lmcollapse.repdir import read_index
    from lmcollapse.rundir import metrics_rows

    index = read_index(root)
    if len(index["seeds"]) < 2:
        raise InvalidInput(f"{root} has 1 replicate: a comparison needs at least 2 in each run")
    out: dict[int, list[float]] = {}
    columns: set[str] = set()
    for rows in (metrics_rows(m) for m in replicate_metrics(root).values()):
        for row in rows:
            columns |= set(row)
            v = row.get(metric)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.setdefault(int(row["generation"]), []).append(float(v))
    if metric not in columns:
        near = difflib.get_close_matches(metric, sorted(columns), n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise InvalidInput(
            f"{root} has no metric {metric!r}{hint}: give a column of its replicates' metrics.csv"
        )
    return out


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    metric: str = "perplexity",
    test: str = "welch",
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """The per-generation comparison of two replicated runs."""
    from lmcollapse.repdir import is_replicated

    for r in (run_a, run_b):
        if not Path(r).exists():
            raise InvalidInput(f"{r} does not exist: give a replicated run's directory")
        if not is_replicated(r):
            raise InvalidInput(
                f"{r} is not a replicated run: compare needs replicates; run it with "
                "--replicates N (N >= 2)"
            )
    if test not in ("welch", "permutation"):
        raise InvalidInput(f"--test {test!r}: choose welch or permutation")
    a, b = _values(Path(run_a), metric), _values(Path(run_b), metric)
    gens = [  # generation 0 is the shared D0 itself: nothing to compare
        g for g in sorted(set(a) & set(b)) if g >= 1 and len(a[g]) >= 2 and len(b[g]) >= 2
    ]
    if not gens:
        raise InvalidInput(
            f"{run_a} and {run_b} share no generation with at least 2 replicates' {metric} "
            "each: run more generations or replicates"
        )
    diffs = [
        difference(a[g], b[g], test, level, resamples, [seed, g])  # type: ignore[arg-type]
        for g in gens
    ]
    adjusted = holm([d.p for d in diffs])
    rows = [
        GenerationComparison(
            g,
            sum(a[g]) / len(a[g]),
            sum(b[g]) / len(b[g]),
            d.diff,
            d.lo,
            d.hi,
            d.p,
            q,
            d.n_a,
            d.n_b,
            math.comb(d.n_a + d.n_b, d.n_a) <= EXACT_SPLITS if test == "permutation" else None,
        )
        for g, d, q in zip(gens, diffs, adjusted, strict=True)
    ]
    return Comparison(str(run_a), str(run_b), metric, test, level, "holm", rows, resamples)


def comparison_lines(c: Comparison) -> list[str]:
    """The comparison as a table, with what was tested."""
    test = "Welch's t-test"
    if c.test == "permutation":
        kinds = {g.exact for g in c.generations}
        test = (
            "exact permutation test (every split)"
            if kinds == {True}
            else f"permutation test ({c.resamples:,} random splits: p >= 1/{c.resamples + 1:,})"
            if kinds == {False}
            else f"permutation test (every split up to {EXACT_SPLITS:,}, else {c.resamples:,} "
            "random ones)"
        )
    lines = [
        f"{c.metric}: A = {c.run_a}, B = {c.run_b}; A − B with Welch's {round(100 * c.level)}% "
        f"interval, two-sided p by {test}, Holm-corrected across {len(c.generations)} "
        "generations",
        f"{'gen':>4} {'n_A':>4} {'n_B':>4} {'mean A':>11} {'mean B':>11} {'A − B':>11} "
        f"{'interval':>25} {'p':>9} {'p (Holm)':>9}",
    ]
    for g in c.generations:
        star = " *" if g.p_holm < 1 - c.level else ""
        lines.append(
            f"{g.generation:>4} {g.n_a:>4} {g.n_b:>4} {g.mean_a:>11.4g} {g.mean_b:>11.4g} "
            f"{g.diff:>11.4g} {f'[{g.lo:.4g}, {g.hi:.4g}]':>25} {g.p:>9.3g} {g.p_holm:>9.3g}"
            f"{star}"
        )
    lines.append(f"* : Holm-corrected p < {1 - c.level:.2g}")
    return lines


def comparison_figure(c: Comparison) -> bytes:
    """A − B with its interval per generation (left), and the p-values, raw and Holm-corrected,
    on a log scale with the significance level (right)."""
    from lmcollapse.plots import _png, _pyplot

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    xs = [g.generation for g in c.generations]
    left.fill_between(
        xs, [g.lo for g in c.generations], [g.hi for g in c.generations], alpha=0.25, lw=0
    )
    left.plot(xs, [g.diff for g in c.generations], marker="o", ms=3)
    left.axhline(0, color="k", lw=0.8)
    left.set_title(f"{c.metric}: A − B, {round(100 * c.level)}% Welch interval")
    right.plot(xs, [max(g.p, 1e-300) for g in c.generations], marker="o", ms=3, label="p")
    right.plot(
        xs,
        [max(g.p_holm, 1e-300) for g in c.generations],
        marker="s",
        ms=3,
        label="p, Holm-corrected",
    )
    right.axhline(1 - c.level, color="r", ls="--", lw=1, label=f"{1 - c.level:.2g}")
    right.set_yscale("log")
    right.set_title("two-sided p " + ("(Welch)" if c.test == "welch" else "(permutation)"))
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xlabel("generation n")
    fig.suptitle(f"A = {Path(c.run_a).name}, B = {Path(c.run_b).name}", fontsize=10)
    return _png(fig, integer_x=True)


def to_json(c: Comparison) -> dict[str, Any]:
    from lmcollapse.config import to_plain

    return to_plain(c, json_safe=True)


__all__ = [
    "Comparison",
    "GenerationComparison",
    "compare_runs",
    "comparison_figure",
    "comparison_lines",
    "to_json",
]
