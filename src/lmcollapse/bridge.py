"""The theory put next to a run: per-generation errors estimated from the measured models.

For a probe context x, a run records p̂_n(·|x) over the whole vocabulary for every generation,
and D0's counts N_{x;v}. Section 2 says each generation's distribution is its training counts
plus a non-negative error (Prop. 2.3 for n = 1, 2.4 for Replace, 2.5 for Accumulate-Subsample;
Mix in the same form): p̂_n = (b_i[n] + α_i[n]) / (b[n] + α[n]), where b[n] are the counts the
theory says generation n trained on — N for n = 1; y[n-1] under Replace; (N + k Σ_{j<n} y[j]) /
(1+(n-1)k) under Accumulate-Subsample; λN + (1-λ) y[n-1] under Mix — and y[n] = b[n] + α[n].
Remark B.1 gives the smallest such error, so `estimate_errors` applies it generation by
generation (`theory.decompose` with b[n] as the counts). From the estimated α follow Theorem
2.1's limit term, the real-data weight N_x / y[n] that the proof says must vanish, and whether
the per-generation errors look like tending to zero (the theorem's assumption is that they do
not). Pure numpy, like lmcollapse.theory.

The results are typed: `bridge` returns one probe's `ProbeBridge`, `from_run` a run's
`BridgeResult`; `lmcollapse.config.to_plain(result, json_safe=True)` is what bridge.json holds and
`BridgeResult.rows()` what bridge.csv holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lmcollapse import theory
from lmcollapse.config import to_plain
from lmcollapse.data.paradigms import source_id
from lmcollapse.errors import InvalidInput
from lmcollapse.paradigms import AccumulateSubsample, Paradigm, Terms, paradigm_of
from lmcollapse.results import GenerationMetrics

BRIDGE_PARADIGMS = theory.PARADIGMS  # replace, accumulate-subsample, mix


class _Scaled:
    """A non-negative vector as (its direction, summing to 1; the log of its total): the y of
    long runs grow past float range (10^300 within a few hundred generations of minimal errors),
    their directions and log-totals do not."""

    def __init__(self, vec: NDArray[np.float64], log: float) -> None:
        self.vec, self.log = vec, log

    @classmethod
    def of(cls, v: NDArray[np.float64]) -> _Scaled:
        t = float(v.sum())
        return cls(v / t, float(np.log(t))) if t > 0 else cls(np.zeros_like(v), -np.inf)

    def plus(self, other: _Scaled, w_self: float = 1.0, w_other: float = 1.0) -> _Scaled:
        """w_self·self + w_other·other."""
        la = self.log + np.log(w_self) if w_self > 0 else -np.inf
        lb = other.log + np.log(w_other) if w_other > 0 else -np.inf
        m = max(la, lb)
        if m == -np.inf:
            return _Scaled(np.zeros_like(self.vec), -np.inf)
        v = np.exp(la - m) * self.vec + np.exp(lb - m) * other.vec
        return _Scaled(v / v.sum(), m + float(np.log(v.sum())))

    def times(self, w: float) -> _Scaled:
        """w·self (self itself for w = 1)."""
        if w == 1:
            return self
        return _Scaled(self.vec, self.log + float(np.log(w)) if w > 0 else -np.inf)


Shares = Sequence[Mapping[int, float] | None]


def _paradigm(paradigm: str, k: float, lam: float, fresh: float = 0.0) -> Paradigm:
    """The run's paradigm, if the theory covers it (Accumulate has no closed form here); fresh
    real data (paradigm.fresh) joins its real term as D0-like counts."""
    if paradigm not in BRIDGE_PARADIGMS:
        raise InvalidInput(
            f"the theory covers {', '.join(BRIDGE_PARADIGMS)}; a {paradigm!r} run has no "
            "closed form to compare with"
        )
    return paradigm_of(paradigm, k, lam, fresh)


def _nominal(t: Terms, truth: _Scaled, last: _Scaled, running: _Scaled) -> _Scaled:
    """b[n] = (real·N + each·(Σ_{j<n} y[j] or y[n-1])) / norm, the paradigm's weights."""
    generated = running if t.pooled else last
    if not t.each:
        base = truth.times(t.real)
    elif not t.real:
        base = generated.times(t.each)
    else:
        base = truth.plus(generated, t.real, t.each)
    return base if t.norm == 1 else _Scaled(base.vec, base.log - float(np.log(t.norm)))


def _estimate(
    p: NDArray[np.float64],
    n_i: NDArray[np.float64],
    paradigm: Paradigm,
    shares: Shares | None = None,
) -> dict[str, Any]:
    """The estimation in scale-free form: per generation, α_i[n]/b[n] (`a`), log b[n], the
    direction of y[n] and log y[n]. b[n] = Σ_src w_src·y[src] (y[0] = N) with the paradigm's
    weights — or, where `shares[n-1]` is given for n ≥ 2, the measured token shares of generation
    n's training set by source (0: D0, j: S_j, −j: fresh F_j, taken as D0-like counts) as the
    weights."""
    if p.ndim != 2 or p.shape[1] != n_i.size:
        raise InvalidInput(f"p_hat must be (G, V) with V = {n_i.size}, got shape {p.shape}")
    G, V = p.shape
    truth = _Scaled.of(n_i)
    if truth.log == -np.inf:
        raise InvalidInput("counts must have a positive total N_x (the context must occur)")
    a = np.zeros((G, V))
    log_b, log_y = np.zeros(G), np.zeros(G)
    y_dir = np.zeros((G, V))
    running = _Scaled(np.zeros(V), -np.inf)  # Σ_{j<n} y[j]
    y = truth
    ys: list[_Scaled] = []  # y[1..n-1], for measured shares
    for n in range(1, G + 1):
        measured = _measured(shares, n)
        if n > 1 and measured:
            base = _Scaled(np.zeros(V), -np.inf)
            for src, w in sorted(measured.items()):
                if not -n < src < n:
                    raise InvalidInput(f"generation {n} cannot train on generation {src}'s data")
                real = src <= 0  # D0, or fresh real stories F_{-src}: D0-like counts
                base = base.plus(truth if real else ys[src - 1], 1.0, float(w))
        else:  # the running sum keeps this O(G·V) for every paradigm
            base = _nominal(paradigm.terms(n), truth, y, running)
        _, a_i = theory.decompose(p[n - 1], base.vec)  # α relative to b[n] (base sums to 1)
        a[n - 1] = np.maximum(a_i, 0.0)
        y_vec = base.vec + a[n - 1]
        y = _Scaled(y_vec / y_vec.sum(), base.log + float(np.log(y_vec.sum())))
        log_b[n - 1], log_y[n - 1], y_dir[n - 1] = base.log, y.log, y.vec
        running = running.plus(y)
        ys.append(y)
    return {"a": a, "log_b": log_b, "log_y": log_y, "y_dir": y_dir, "truth": truth}


def estimate_errors(
    p_hat: ArrayLike, counts: ArrayLike, paradigm: str, k: float = 1.0, *, lam: float = 0.5
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(alpha (G, V), y (G, V)): the minimal errors explaining p̂_1..p̂_G given D0's counts.

    Exact inverse of `theory.closed_form` whenever every generation's true error has a zero
    entry (the minimal one of Remark B.1); otherwise the smallest errors consistent with p̂.
    Values beyond float range are inf (`bridge` works in a scale-free form instead).
    """
    e = _estimate(
        np.asarray(p_hat, dtype=np.float64),
        np.asarray(counts, dtype=np.float64),
        _paradigm(paradigm, k, lam),
    )
    with np.errstate(over="ignore"):
        alpha = e["a"] * np.exp(e["log_b"])[:, None]
        y = e["y_dir"] * np.exp(e["log_y"])[:, None]
    return alpha, y


def error_trend(
    alpha_total: ArrayLike | None = None,
    scale: ArrayLike | None = None,
    *,
    log_alpha: ArrayLike | None = None,
) -> dict[str, Any]:
    """Do the per-generation errors α[n] look like tending to zero (Theorem 2.1 assumes they do
    not)? The log-log slope of α[n] over the later half, and the verdict in words. `scale` (the
    counts b[n] each error was added to) only adds α[n]/b[n] for display.

    The errors are Remark B.1's minimal ones, which understate the true errors once p̂_n barely
    moves from p̂_{n-1} (a run settled near its limit): read a "decaying" verdict with that in
    mind. Give `log_alpha` (natural log of α[n]) instead of alpha_total for errors beyond float
    range."""
    if log_alpha is None:
        with np.errstate(divide="ignore"):
            log_a = np.log(np.asarray(alpha_total, dtype=np.float64))
    else:
        log_a = np.asarray(log_alpha, dtype=np.float64)
    G = log_a.size
    out: dict[str, Any] = {"slope": None, "verdict": "too short to tell"}
    if scale is not None:
        out["relative"] = np.exp(log_a - np.log(np.asarray(scale, dtype=np.float64))).tolist()
    if G < 4:
        return out
    n = np.arange(1, G + 1, dtype=np.float64)
    half = slice(G // 2, G)
    ok = np.isfinite(log_a[half])
    if ok.sum() >= 2:
        out["slope"] = float(np.polyfit(np.log(n[half][ok]), log_a[half][ok], 1)[0])
    q = max(1, G // 4)
    first, last = _log_mean(log_a[:q]), _log_mean(log_a[-q:])  # log of the quarters' means
    out["first_quarter_log10_mean"] = None if first == -np.inf else first / np.log(10)
    out["last_quarter_log10_mean"] = None if last == -np.inf else last / np.log(10)
    slope = out["slope"]
    if last == -np.inf:
        out["verdict"] = "zero: no error is needed to explain the later generations"
    elif slope is not None and slope < -1.0 and last < first:
        out["verdict"] = (
            f"decaying like n^{slope:.2f}: summable, so the theorem's assumption fails "
            "(p̂_n may stay a mix of truth and errors)"
        )
    elif slope is not None and slope < -0.2 and last < first:
        out["verdict"] = (
            f"decaying like n^{slope:.2f}, too slowly to be summable: the error series still "
            "diverge"
        )
    else:
        out["verdict"] = "not tending to zero, as Theorem 2.1 assumes: collapse is a matter of time"
    return out


def _log_mean(log_values: NDArray[np.float64]) -> float:
    finite = log_values[np.isfinite(log_values)]
    if not finite.size:
        return -np.inf
    m = float(finite.max())
    return m + float(np.log(np.exp(finite - m).sum() / log_values.size))


@dataclass(frozen=True, kw_only=True)
class ProbeBridge:
    """The bridge for one probe context x: per generation n (lists over n = 1..G), what the
    report shows — estimated α, the real-data weight and share, the distances to Theorem 2.1's
    limit term and to the truth, the error trend — and per tracked token its p̂_n, limit and α.
    Log10 values of zero (−inf) and undefined limits (0/0) are None, as bridge.json has them."""

    context: str | None = field(default=None, metadata={"omit_none": True})
    N_x: float
    paradigm: str
    k: float
    lam: float
    alpha_relative: list[float]  # α[n] / b[n]
    alpha_total_log10: list[float | None]  # log10 α[n]
    alpha_cumulative_log10: list[float | None]  # log10 Σ_{j≤n} α[j]
    real_data_weight: list[float]  # N_x / y[n]
    real_data_share: list[float]  # D0's share of generation n's training set
    shares: str  # "measured token shares" or "nominal"
    rebuild_error: float  # max |y[n]/Σy[n] - p̂_n|: 0 up to rounding, by construction
    distance_to_limit: list[float | None]
    distance_to_truth: list[float]
    trend: dict[str, Any]  # error_trend's slope and verdict, with `relative` = alpha_relative
    tokens: dict[str, dict[str, Any]]  # token -> id, truth, p_hat, limit, alpha_relative


@dataclass(frozen=True)
class SkippedProbe:
    """A probe the bridge cannot compare: why, in words."""

    context: str
    N_x: int
    skipped: str


@dataclass(frozen=True)
class BridgeResult:
    """The bridge for every probe of a run (`from_run`); to_plain(·, json_safe=True) of it is
    bridge.json and `rows()` bridge.csv."""

    run: str
    generations: list[int]
    probes: list[ProbeBridge | SkippedProbe]

    @property
    def compared(self) -> list[ProbeBridge]:
        """The probes with a comparison (not skipped)."""
        return [p for p in self.probes if isinstance(p, ProbeBridge)]

    @property
    def paradigm(self) -> str | None:
        """The run's paradigm, as the compared probes record it (None if none is compared)."""
        return next((p.paradigm for p in self.compared), None)

    def rows(self) -> list[dict[str, Any]]:
        """bridge.csv: one row per (compared probe, generation), its tokens as extra columns."""
        rows = []
        for i, p in enumerate(self.probes):
            if not isinstance(p, ProbeBridge):
                continue
            for g, n in enumerate(self.generations):
                row = {
                    "probe": i,
                    "context": p.context,
                    "generation": n,
                    "alpha_total_log10": p.alpha_total_log10[g],
                    "alpha_relative": p.alpha_relative[g],
                    "real_data_weight": p.real_data_weight[g],
                    "real_data_share": p.real_data_share[g],
                    "distance_to_limit": p.distance_to_limit[g],
                    "distance_to_truth": p.distance_to_truth[g],
                }
                for tok, d in p.tokens.items():
                    row[f"p_hat[{tok}]"] = d["p_hat"][g]
                    row[f"limit[{tok}]"] = d["limit"][g]
                    row[f"alpha_relative[{tok}]"] = d["alpha_relative"][g]
                rows.append(row)
        return rows


def bridge(
    p_hat: ArrayLike,
    counts: ArrayLike,
    paradigm: str,
    k: float = 1.0,
    *,
    lam: float = 0.5,
    tokens: dict[str, int] | None = None,
    shares: Shares | None = None,
    fresh: float = 0.0,
) -> ProbeBridge:
    """Everything the report shows for one probe: estimated α, y, the limit term, the real-data
    weight, the closed form rebuilt from α (equal to p̂ by construction), the error trend.
    `shares`: each generation's measured token shares by source (see `_estimate`)."""
    p = np.asarray(p_hat, dtype=np.float64)
    n_i = np.asarray(counts, dtype=np.float64)
    par = _paradigm(paradigm, k, lam, fresh)
    e = _estimate(p, n_i, par, shares)
    a, log_b, log_y, y_dir, truth = e["a"], e["log_b"], e["log_y"], e["y_dir"], e["truth"]
    a_tot = a.sum(axis=1)  # α[n] / b[n]
    with np.errstate(divide="ignore"):
        log_alpha = np.log(a_tot) + log_b  # log α[n]
    weight = np.exp(truth.log - log_y)  # N_x / y[n]
    # Theorem 2.1's limit term from the scale-free y: the error part of y[n] over its total —
    # y[n] minus the real counts (and, under Accumulate-Subsample, minus this generation's α).
    r = np.exp(log_b - log_y)  # b[n] / y[n]
    err = y_dir - weight[:, None] * truth.vec
    if isinstance(par, AccumulateSubsample):
        err = err - a * r[:, None]
    total = err.sum(axis=1, keepdims=True)
    limit = np.full_like(err, np.nan)
    ok = total[:, 0] > 1e-12
    limit[ok] = err[ok] / total[ok]
    cum = np.logaddexp.accumulate(log_alpha)
    ln10 = np.log(10.0)
    return ProbeBridge(
        paradigm=paradigm,
        k=k,
        lam=lam,
        N_x=float(n_i.sum()),
        alpha_relative=a_tot.tolist(),
        alpha_total_log10=to_plain(log_alpha / ln10, json_safe=True),
        alpha_cumulative_log10=to_plain(cum / ln10, json_safe=True),
        real_data_weight=weight.tolist(),
        real_data_share=_real_shares(p.shape[0], par, shares),
        shares="measured token shares" if shares and any(shares) else "nominal",
        rebuild_error=float(np.max(np.abs(y_dir - p / p.sum(axis=1, keepdims=True)))),
        distance_to_limit=to_plain(np.abs(p - limit).sum(axis=1), json_safe=True),
        distance_to_truth=np.abs(p - truth.vec).sum(axis=1).tolist(),
        trend=error_trend(log_alpha=log_alpha) | {"relative": a_tot.tolist()},
        tokens={
            name: {
                "id": int(i),
                "truth": float(truth.vec[i]),
                "p_hat": p[:, i].tolist(),
                "limit": to_plain(limit[:, i], json_safe=True),
                "alpha_relative": a[:, i].tolist(),
            }
            for name, i in (tokens or {}).items()
        },
    )


def _real_shares(G: int, paradigm: Paradigm, shares: Shares | None) -> list[float]:
    """The real share (D0 and fresh stories) of each generation's training set: measured where
    given, else the paradigm's (the real weight over the sum of its weights)."""
    out = [paradigm.real_share(n) for n in range(1, G + 1)]
    for n in range(2, G + 1):
        measured = _measured(shares, n)
        if measured:
            out[n - 1] = float(sum(w for src, w in measured.items() if src <= 0))
    return out


def _measured(shares: Shares | None, n: int) -> Mapping[int, float] | None:
    """Generation n's measured shares, if recorded."""
    return shares[n - 1] if shares is not None and n - 1 < len(shares) else None


def run_shares(metrics: Sequence[GenerationMetrics]) -> list[dict[int, float] | None]:
    """Each generation's token shares by source (0: D0, j: S_j) from its metrics' composition;
    None where the run did not measure them (an older run) or the model trained on exact
    expected counts in the nominal shares."""
    out: list[dict[int, float] | None] = []
    for m in metrics:
        comp = m.composition or {}
        parts = comp.get("parts") or []
        if "trained_on" in comp or not parts or any("tokens" not in p for p in parts):
            out.append(None)
            continue
        total = sum(p["tokens"] for p in parts)
        shares: dict[int, float] = {}
        for p in parts:
            src = source_id(str(p["source"]))
            shares[src] = shares.get(src, 0.0) + p["tokens"] / total
        out.append(shares)
    return out


def from_run(run_dir: str | Any) -> BridgeResult:
    """The bridge for every probe of a run, from its files (probes.npz of each generation)."""
    from lmcollapse.rundir import (
        RunLayout,
        completed,
        generation_metrics,
        read_manifest,
        run_config,
    )

    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout)
    cfg = run_config(layout.root)
    par = cfg.paradigm
    if par.name not in BRIDGE_PARADIGMS:
        raise InvalidInput(
            f"{layout.root} ran the {par.name} paradigm; the theory covers "
            f"{', '.join(BRIDGE_PARADIGMS)}"
        )
    done = [n for n in completed(manifest, layout) if n >= 1]
    if not layout.distributions(0).is_file() or not done:
        raise InvalidInput(
            f"{layout.root} has no recorded distributions yet (gen_000/probes.npz and at least "
            "one finished generation): run or resume it with this version of lmcollapse"
        )
    missing = [n for n in done if not layout.distributions(n).is_file()]
    if missing:
        raise InvalidInput(
            f"{layout.root}: generations {missing[:5]} have no probes.npz (made by an older "
            "version): the bridge needs every generation's full p̂_n(·|x)"
        )
    done = [n for i, n in enumerate(done) if n == i + 1]  # generations 1..G without a gap
    if not done:
        raise InvalidInput(f"{layout.root}: generation 1 is not finished yet")
    meta0 = generation_metrics(layout, 0)
    probes: list[ProbeBridge | SkippedProbe] = []
    counts = _arrays(layout.distributions(0), [f"counts_{i}" for i in range(len(meta0.probes))])
    p_hats: list[list[Any]] = [[] for _ in counts]
    for n in done:
        for i, p in enumerate(
            _arrays(layout.distributions(n), [f"p_hat_{i}" for i in range(len(counts))])
        ):
            p_hats[i].append(p)
    shares = run_shares([generation_metrics(layout, n) for n in done])
    for i, (probe, c) in enumerate(zip(meta0.probes, counts, strict=True)):
        if c.sum() <= 0:
            why = "the context never occurs in D0 (N_x = 0): no truth to compare"
            probes.append(SkippedProbe(probe.context, int(c.sum()), why))
            continue
        p = np.array(p_hats[i])
        v = max(p.shape[1], c.size)
        pp, cc = np.zeros((p.shape[0], v)), np.zeros(v)
        pp[:, : p.shape[1]], cc[: c.size] = p, c
        tokens = {t: d.id for t, d in probe.next.items()}
        one = bridge(
            pp, cc, par.name, par.k, lam=par.lam, tokens=tokens, shares=shares, fresh=par.fresh
        )
        probes.append(dataclasses.replace(one, context=probe.context))
    return BridgeResult(str(layout.root), done, probes)


def _arrays(path: Path, keys: list[str]) -> list[NDArray[np.float64]]:
    """Arrays of a probes.npz; a damaged file is a one-line error naming it."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            return [np.asarray(z[k], dtype=np.float64) for k in keys]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InvalidInput(
            f"{path} is damaged ({exc.__class__.__name__}): remove {path.parent.name} and every "
            "later gen_* directory, then rerun `lmcollapse run` with the same --out"
        ) from None


def write(result: BridgeResult, target: Path, label: str, *, figures: bool = True) -> list[str]:
    """bridge.json, bridge.csv and (with figures) figures/theory.png into `target`; the names
    written. What `lmcollapse theory --from-run` writes."""
    from lmcollapse.artifacts import atomic_write_json, atomic_write_text, csv_text

    wrote = ["bridge.json", "bridge.csv"]
    try:
        atomic_write_json(target / "bridge.json", to_plain(result, json_safe=True))
        atomic_write_text(target / "bridge.csv", csv_text(result.rows()))
        if figures:
            from lmcollapse.plots import bridge_figure, save_figures

            png = bridge_figure(label, result)
            if png:
                save_figures({"theory.png": png}, target / "figures")
                wrote.append("figures/theory.png")
    except OSError as exc:
        raise InvalidInput(f"cannot write to {target}: {exc.strerror}") from None
    return wrote


__all__ = [
    "BRIDGE_PARADIGMS",
    "BridgeResult",
    "ProbeBridge",
    "SkippedProbe",
    "bridge",
    "error_trend",
    "estimate_errors",
    "from_run",
    "write",
]
