"""A replicated run's aggregate (issue 14): per generation, every numeric metric's mean over the
replicates that reached it with its interval (lmcollapse.uncertainty), and the collapse onset
per replicate with its interval. Read from the replicates' own metrics files; aggregate.csv is
`Aggregate.rows()`, aggregate.json `to_plain(Aggregate)`."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse.uncertainty import AUTO_BOOTSTRAP_AT, interval, onset

FORMAT = 1


@dataclass(frozen=True)
class MetricSummary:
    """One metric at one generation across replicates (lo = hi = mean for one replicate)."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: int  # replicates with a finite value
    method: str  # "t", "bootstrap", "" (fewer than 2 values)


@dataclass(frozen=True)
class GenerationAggregate:
    generation: int
    replicates: int  # that reached this generation
    metrics: dict[str, MetricSummary]


@dataclass(frozen=True)
class OnsetSummary:
    """The first generation whose perplexity exceeds (1 + tau) × generation 1's, per replicate;
    the interval is over the replicates that collapsed within their generations (the others are
    censored: counted, not averaged)."""

    tau: float
    per_seed: dict[str, int | None]
    collapsed: int
    replicates: int
    mean: float | None
    lo: float | None
    hi: float | None
    median: float | None
    method: str


@dataclass(frozen=True)
class Aggregate:
    seeds: list[int]
    interval: str  # the configured method (auto: t below AUTO_BOOTSTRAP_AT replicates)
    level: float
    resamples: int
    generations: list[GenerationAggregate]
    onset: OnsetSummary
    format: int = FORMAT
    auto_bootstrap_at: int = AUTO_BOOTSTRAP_AT
    metric_names: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """aggregate.csv: one row per generation, with `replicates`, the row's `interval` method
        (that of a metric every replicate has) and m_mean, m_lo, m_hi, m_n for every metric."""
        out = []
        for g in self.generations:
            row: dict[str, Any] = {"generation": g.generation, "replicates": g.replicates}
            methods = [s.method for s in g.metrics.values() if s.n == g.replicates and s.method]
            row["interval"] = methods[0] if methods else ""
            for name in self.metric_names:  # every column in every row: metrics.csv's order
                s = g.metrics.get(name) or MetricSummary(None, None, None, 0, "")
                row |= {f"{name}_mean": s.mean, f"{name}_lo": s.lo, f"{name}_hi": s.hi}
                row[f"{name}_n"] = s.n
            out.append(row)
        return out


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate(
    rows_by_seed: dict[int, list[dict[str, Any]]],
    *,
    method: str = "auto",
    level: float = 0.95,
    resamples: int = 10_000,
    tau: float = 0.5,
    seed: int = 0,
) -> Aggregate:
    """The aggregate of replicates' metrics.csv rows (seed → rows, one per generation)."""
    keys: dict[str, bool] = {}  # metrics.csv's columns in order: whether one value is a number
    by_gen: dict[int, dict[int, dict[str, Any]]] = {}
    for s, rows in rows_by_seed.items():
        for row in rows:
            by_gen.setdefault(int(row["generation"]), {})[s] = row
            for k, v in row.items():
                keys[k] = keys.get(k, False) or _numeric(v)
    names = [k for k, numeric in keys.items() if numeric and k != "generation"]
    gens = []
    for g in sorted(by_gen):
        reps = by_gen[g]
        metrics = {}
        for name in names:
            values = [r.get(name) for r in reps.values()]
            if not any(_numeric(v) for v in values):
                continue
            values = [v if _numeric(v) else None for v in values]
            key = [seed, g, zlib.crc32(name.encode())]  # each bootstrap its own seeded draws
            iv = interval(values, method, level, resamples, key)  # type: ignore[arg-type]
            metrics[name] = MetricSummary(iv.mean, iv.lo, iv.hi, iv.n, iv.method)
        gens.append(GenerationAggregate(g, len(reps), metrics))
    per_seed = {
        str(s): onset([(int(r["generation"]), r.get("perplexity")) for r in rows], tau)
        for s, rows in rows_by_seed.items()
    }
    hits = [v for v in per_seed.values() if v is not None]
    onset_key = [seed, 1 << 32]  # no generation's key (a seed sequence takes no negatives)
    iv = interval(hits, method, level, resamples, onset_key)  # type: ignore[arg-type]
    median = float(np.median(hits)) if hits else None
    return Aggregate(
        seeds=sorted(rows_by_seed),
        interval=method,
        level=level,
        resamples=resamples,
        generations=gens,
        onset=OnsetSummary(
            tau, per_seed, len(hits), len(per_seed), iv.mean, iv.lo, iv.hi, median, iv.method
        ),
        metric_names=names,
    )


def replicate_metrics(root: str | Path) -> dict[int, list[dict[str, Any]]]:
    """seed → the metrics.json records of every generation a replicate has finished."""
    from lmcollapse.repdir import replicate_dirs
    from lmcollapse.rundir import load_metrics

    return {s: load_metrics(path) for s, path in replicate_dirs(root)}


def aggregate_run(root: str | Path) -> Aggregate:
    """The aggregate of a replicated run, with its stats section's settings."""
    from lmcollapse.repdir import index_config, read_index
    from lmcollapse.rundir import metrics_rows

    cfg = index_config(read_index(root))
    st = cfg.stats
    rows = {s: metrics_rows(m) for s, m in replicate_metrics(root).items()}
    return aggregate(
        rows,
        method=st.interval,
        level=st.level,
        resamples=st.resamples,
        tau=st.onset_tau,
        seed=cfg.run.seed,
    )


@dataclass(frozen=True)
class TokenSpread:
    """One tracked token v of a probe context x across replicates, per generation: the
    replicates' p̂_n(v|x) (mean, interval, standard deviation) next to the bridge's estimate
    from each replicate of Theorem 2.1's limit term for v (mean, interval)."""

    token: str
    truth: float
    p_hat: list[MetricSummary]
    p_hat_sd: list[float | None]  # the spread across replicates (ddof 1)
    limit: list[MetricSummary]


@dataclass(frozen=True)
class ProbeSpread:
    context: str | None
    N_x: float
    alpha_relative: list[MetricSummary]  # the bridge's minimal α[n] / b[n]
    real_data_weight: list[MetricSummary]  # N_x / y[n]
    tokens: list[TokenSpread]


@dataclass(frozen=True)
class BridgeSpread:
    """The theory next to the replicates (issue 14): the bridge (lmcollapse.bridge) of every
    replicate, aggregated per generation — how far p̂_n(v|x) spreads across replicates that
    share D0, next to the limit term and errors the bridge estimates from each one trajectory.
    theory_spread.json is to_plain of it, theory_spread.csv `rows()`."""

    paradigm: str | None
    seeds: list[int]
    generations: list[int]
    probes: list[ProbeSpread]
    skipped: dict[str, str]  # replicate seed → why it has no bridge
    interval: str = "auto"
    level: float = 0.95
    format: int = FORMAT

    def rows(self) -> list[dict[str, Any]]:
        """One row per (probe, token, generation)."""
        out = []
        for i, p in enumerate(self.probes):
            for t in p.tokens:
                for j, n in enumerate(self.generations):
                    row: dict[str, Any] = {"probe": i, "context": p.context, "token": t.token}
                    row |= {"generation": n, "truth": t.truth}
                    for name, s in (
                        ("p_hat", t.p_hat[j]),
                        ("limit", t.limit[j]),
                        ("alpha_relative", p.alpha_relative[j]),
                        ("real_data_weight", p.real_data_weight[j]),
                    ):
                        row |= {f"{name}_mean": s.mean, f"{name}_lo": s.lo, f"{name}_hi": s.hi}
                        row[f"{name}_n"] = s.n
                        if name == "p_hat":
                            row["p_hat_sd"] = t.p_hat_sd[j]
                    out.append(row)
        return out


def _probe_spread(bridges: list[Any], i: int, gens: list[int], over: Any) -> ProbeSpread:
    """Probe i across the replicates' bridges; over(values, generation, what) summarises one
    generation's values (what: 0 p̂, 1 limit, 2 α, 3 weight — each its own bootstrap draws)."""
    from lmcollapse.bridge import ProbeBridge

    def per_gen(get: Any) -> list[list[Any]]:
        """[generation][replicate] values (None where a replicate lacks the generation)."""
        table = []
        for n in gens:
            row = []
            for r in bridges:
                p = r.probes[i] if i < len(r.probes) else None
                ok = isinstance(p, ProbeBridge) and n in r.generations
                row.append(get(p, r.generations.index(n)) if ok else None)
            table.append(row)
        return table

    def summary(table: list[list[Any]], what: int) -> list[MetricSummary]:
        return [over(vs, n, what) for n, vs in zip(gens, table, strict=True)]

    p0 = bridges[0].probes[i]
    tokens = []
    for tok, d in p0.tokens.items():
        ph = per_gen(lambda p, j, tok=tok: p.tokens[tok]["p_hat"][j])
        lim = per_gen(lambda p, j, tok=tok: p.tokens[tok]["limit"][j])
        sd = [
            float(np.std(x, ddof=1)) if len(x := [v for v in vs if v is not None]) > 1 else None
            for vs in ph
        ]
        tokens.append(TokenSpread(tok, d["truth"], summary(ph, 0), sd, summary(lim, 1)))
    alpha = per_gen(lambda p, j: p.alpha_relative[j])
    weight = per_gen(lambda p, j: p.real_data_weight[j])
    return ProbeSpread(p0.context, p0.N_x, summary(alpha, 2), summary(weight, 3), tokens)


def bridge_spread(
    root: str | Path,
    *,
    method: str | None = None,
    level: float | None = None,
    resamples: int | None = None,
) -> BridgeSpread:
    """The bridge of every replicate of a replicated run, aggregated (settings: the run's stats
    section unless given). A replicate the bridge cannot read is named in `skipped`; a paradigm
    the theory does not cover is a one-line error."""
    from lmcollapse.bridge import BRIDGE_PARADIGMS, ProbeBridge, from_run
    from lmcollapse.errors import InvalidInput
    from lmcollapse.repdir import index_config, read_index, replicate_dirs

    cfg = index_config(read_index(root))
    if cfg.paradigm.name not in BRIDGE_PARADIGMS:
        raise InvalidInput(
            f"{root} ran the {cfg.paradigm.name} paradigm; the theory covers "
            f"{', '.join(BRIDGE_PARADIGMS)}"
        )
    method, level = method or cfg.stats.interval, level or cfg.stats.level
    resamples = resamples or cfg.stats.resamples
    results, skipped = {}, {}
    for s, path in replicate_dirs(root):
        try:
            results[s] = from_run(path)
        except InvalidInput as exc:
            skipped[str(s)] = str(exc)
    gens = sorted({n for r in results.values() for n in r.generations})
    first = next(iter(results.values()), None)
    if first is None:
        return BridgeSpread(None, [], gens, [], skipped, method, level)

    def over(values: list[Any], key: list[int]) -> MetricSummary:
        iv = interval(values, method, level, resamples, key)  # type: ignore[arg-type]
        return MetricSummary(iv.mean, iv.lo, iv.hi, iv.n, iv.method)

    bridges = list(results.values())
    probes = [
        _probe_spread(
            bridges, i, gens, lambda vs, n, what, i=i: over(vs, [cfg.run.seed, n, i, what])
        )
        for i, p0 in enumerate(first.probes)
        if isinstance(p0, ProbeBridge)
    ]
    return BridgeSpread(first.paradigm, sorted(results), gens, probes, skipped, method, level)


__all__ = [
    "Aggregate",
    "BridgeSpread",
    "GenerationAggregate",
    "MetricSummary",
    "OnsetSummary",
    "ProbeSpread",
    "TokenSpread",
    "aggregate",
    "aggregate_run",
    "bridge_spread",
    "replicate_metrics",
]
