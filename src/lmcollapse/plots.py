"""Figures from result files only (theory.json today; run metrics later).

Uses matplotlib's Agg backend: no display needed. Figure functions take the loaded results and
return {file name: PNG bytes}, rendered in memory, so a plotting error leaves nothing half
written; `save_figures` writes them atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from lmcollapse.artifacts import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, integer_x: bool = False) -> bytes:
    if integer_x:
        _integer_generations(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def save_figures(figures: dict[str, bytes], fig_dir: str | Path) -> list[Path]:
    """Write rendered figures into fig_dir, each atomically; returns their paths."""
    paths = []
    for name, png in figures.items():
        path = Path(fig_dir) / name
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
        paths.append(path)
    return paths


def _log_scale_if_possible(ax: Any, values: list[list[float]], note: str) -> None:
    """Log y-axis when there is positive finite data, else a note instead of an exception."""
    if any(v > 0 and math.isfinite(v) for series in values for v in series):
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)


def _nan(values: list[Any]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def theory_figures(result: dict[str, Any]) -> dict[str, bytes]:
    """trajectories.png (Figure 2 style), convergence.png, k_sweep.png, real_weight.png."""
    plt = _pyplot()
    figures: dict[str, bytes] = {}
    tokens, truth, targets = result["tokens"], result["truth"], result["targets"]
    idx = [tokens.index(t) for t in targets]
    gens = list(range(1, result["generations"] + 1))
    scen = result["scenarios"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    context = result["context"]

    # Figure 2: p̂_n(v|x) per scenario, solid; corpus truth dashed; Theorem 2.1's term dotted.
    ncols = min(3, len(scen))
    nrows = math.ceil(len(scen) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(4.6 * ncols, 3.4 * nrows),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, sc in zip(axes.flat, scen, strict=False):
        for c, i in enumerate(idx):
            color = colors[c % len(colors)]
            ax.plot(gens, [row[i] for row in sc["p_hat"]], color=color, label=f"p̂_n({tokens[i]!r})")
            ax.axhline(truth[i], color=color, ls="--", lw=1, label=f"true p({tokens[i]!r})")
            ax.plot(gens, _nan([row[i] for row in sc["limit"]]), color=color, ls=":", lw=1)
        ax.set_title(sc["name"])
        ax.set_xlabel("generation n")
        ax.set_ylim(0, 1)
    for ax in axes.flat[len(scen) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel(f"p̂_n(v | {context!r})")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(
        "Next-token probabilities over generations (dashed: corpus truth; "
        "dotted: Theorem 2.1's error-only term)",
        fontsize=9,
    )
    figures["trajectories.png"] = _png(fig)

    _theory_curves(plt, result, idx, figures)
    return figures


def _theory_curves(
    plt: Any, result: dict[str, Any], idx: list[int], figures: dict[str, bytes]
) -> None:
    """convergence.png, k_sweep.png and real_weight.png of a theory result."""
    tokens, truth, scen = result["tokens"], result["truth"], result["scenarios"]
    gens = list(range(1, result["generations"] + 1))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    context = result["context"]
    # Convergence to the error-only term up to the horizon, log-log: Replace ~ 1/n when errors
    # do not vanish, Accumulate-Subsample only ~ 1/log n.
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for sc in scen:
        ax.plot(
            result["horizon_generations"], _nan(sc["horizon_max_abs_to_limit"]), label=sc["name"]
        )
    ax.set_xscale("log")
    _log_scale_if_possible(
        ax,
        [_nan(sc["horizon_max_abs_to_limit"]) for sc in scen],
        "no error has accumulated: the limit term is undefined",
    )
    ax.set_xlabel("generation n (log scale)")
    ax.set_ylabel("max_i |p̂_n(v_i|x) − limit term|")
    ax.set_title(f"Distance to Theorem 2.1's error-only term, up to n = {result['horizon']:,}")
    ax.legend(fontsize=8)
    figures["convergence.png"] = _png(fig)

    # The same target across paradigms and k, side by side.
    fig, axes = plt.subplots(
        1, len(idx), figsize=(5 * len(idx), 3.6), squeeze=False, layout="constrained"
    )
    for ax, i in zip(axes.flat, idx, strict=True):
        for c, sc in enumerate(scen):
            ax.plot(
                gens,
                [row[i] for row in sc["p_hat"]],
                color=colors[c % len(colors)],
                label=sc["name"],
            )
        ax.axhline(truth[i], color="k", ls="--", lw=1, label="corpus truth")
        ax.set_title(f"p̂_n({tokens[i]!r} | {context!r})")
        ax.set_xlabel("generation n")
    axes[0, 0].legend(fontsize=7)
    figures["k_sweep.png"] = _png(fig)

    # Long horizon: the weight of the real data in p̂_n, N_x / y[n].
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for sc in scen:
        ax.plot(result["horizon_generations"], sc["horizon_real_weight"], label=sc["name"])
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("generation n (log scale)")
    ax.set_ylabel("real-data weight N_x / y[n]")
    ax.set_title(f"How much of D0 survives in p̂_n, up to n = {result['horizon']:,}")
    ax.legend(fontsize=8)
    figures["real_weight.png"] = _png(fig)


# ----------------------------------------------------------------------------------------------
# Figures of one or more runs (from their metrics.json files)


class RunMetrics:
    """One run's series for the figures: its label and the metrics of generations 0..N; for a
    replicated run, every replicate's too and its aggregate (aggregate.json), drawn as a band
    (the interval), the mean line and thin replicate lines. Unpacks as (label, metrics)."""

    def __init__(
        self,
        label: str,
        metrics: list[dict[str, Any]],
        replicates: list[list[dict[str, Any]]] | None = None,
        aggregate: dict[str, Any] | None = None,
    ) -> None:
        self.label, self.metrics = label, metrics
        self.replicates = replicates or []
        self.aggregate = aggregate

    def __iter__(self) -> Any:
        return iter((self.label, self.metrics))

    def __getitem__(self, i: int) -> Any:
        return (self.label, self.metrics)[i]


def _as_run(run: Any) -> RunMetrics:
    return run if isinstance(run, RunMetrics) else RunMetrics(*run)


def _line(
    ax: Any,
    run: RunMetrics,
    get: Any,
    column: str,
    *,
    start: int = 0,
    color: Any = None,
    label: str | None = None,
    **style: Any,
) -> None:
    """One run's curve of `get` (a metrics.json getter): a line, or for a replicated run the
    aggregate's mean of `column` (its metrics.csv name) in a shaded interval, over thin lines
    of the replicates."""
    style = {"marker": "o", "ms": 3, **style}
    if not run.replicates or run.aggregate is None:
        xs, ys = _series(run.metrics, get, start)
        ax.plot(xs, ys, color=color, label=label, **style)
        return
    for metrics in run.replicates:
        xs, ys = _series(metrics, get, start)
        ax.plot(xs, ys, color=color, lw=0.5, alpha=0.3, ls="-")
    xs, mean, lo, hi = [], [], [], []
    for g in run.aggregate["generations"]:
        m = g["metrics"].get(column)
        if g["generation"] < start or m is None or m.get("mean") is None:
            continue
        xs.append(g["generation"])
        mean.append(m["mean"])
        lo.append(m["lo"])
        hi.append(m["hi"])
    ax.fill_between(xs, lo, hi, color=color, alpha=0.2, lw=0)
    n = len(run.replicates)
    ax.plot(xs, mean, color=color, label=f"{label} (mean of {n}, {_band_name(run)})", **style)


def _band_name(run: RunMetrics) -> str:
    level = round(100 * (run.aggregate or {}).get("level", 0.95))
    return f"{level}% interval"


_STYLES = ["-", "-.", ":", (0, (3, 1, 1, 1, 1, 1))]  # "--" is the corpus truth


def _series(
    metrics: list[dict[str, Any]], get: Any, start: int = 0
) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for m in metrics:
        if m["generation"] < start:
            continue
        try:
            v = get(m)
        except (KeyError, IndexError, TypeError):
            v = None
        if v is not None:
            xs.append(m["generation"])
            ys.append(v)
    return xs, ys


def run_figures(runs: list[RunMetrics]) -> dict[str, bytes]:
    """probes.png (Figure 2), perplexity.png (Figure 3), alpha.png, diversity.png, lengths.png,
    and curation.png for runs that curate or add fresh real data."""
    plt = _pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figures: dict[str, bytes] = {}
    runs = [_as_run(r) for r in runs]
    probes = runs[0].metrics[0].get("probes", []) if runs and runs[0].metrics else []
    for draw in (
        _probes_figure,
        _perplexity_figure,
        _alpha_figure,
        _diversity_figure,
        _lengths_figure,
        _curation_figure,
        _downstream_figure,
    ):
        draw(plt, colors, runs, probes, figures)
    return figures


def _downstream_figure(
    plt: Any,
    colors: list[str],
    runs: list[RunMetrics],
    probes: list[Any],
    figures: dict[str, bytes],
) -> None:
    """downstream.png, for runs with evaluation.downstream: each task's test accuracy per
    generation (solid; weighted F1 dotted) against the random-init baseline (dashed)."""
    tasks: list[str] = []
    for run in runs:
        for m in run.metrics:
            tasks += [d["task"] for d in m.get("downstream") or [] if d["task"] not in tasks]
    if not tasks:
        return
    cols = min(len(tasks), 4)
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.6 * cols, 3.2 * rows), layout="constrained", squeeze=False
    )
    for ax, task in zip(axes.flat, tasks, strict=False):

        def get(m: dict[str, Any], key: str, task: str = task) -> Any:
            return next((d[key] for d in m["downstream"] if d["task"] == task), None)

        for ri, run in enumerate(runs):
            color = colors[ri % len(colors)]
            _line(
                ax, run, lambda m: get(m, "accuracy"), f"downstream_{task}_accuracy",
                start=1, color=color, label=f"{run.label}: accuracy",
            )  # fmt: skip
            xs, ys = _series(run.metrics, lambda m: get(m, "f1_weighted"), 1)
            ax.plot(xs, ys, color=color, ls=":", lw=1, label=f"{run.label}: weighted F1")
            _, base = _series(run.metrics, lambda m: get(m, "baseline_accuracy"), 1)
            if base:
                ax.axhline(base[0], color=color, ls="--", lw=1, label=f"{run.label}: random init")
        ax.set_title(task)
        ax.set_xlabel("generation n")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    figures["downstream.png"] = _png(fig, integer_x=True)


_CURATION_SERIES = {  # what a curation record says, and how its line is drawn
    "kept_share": ("kept share of the sampled stories", "-"),
    "acceptance_rate": ("filter: acceptance rate", "--"),
    "edited_share": ("toedit: share of tokens at or above p_max", ":"),
    "changed_share": ("toedit: share of tokens changed", (0, (1, 3))),
    "detector_auc": ("resample: detector AUC (held out)", "-."),
    "repeated_share": ("resample: share of draws repeating a story", (0, (5, 1))),
}


def _curation_figure(
    plt: Any,
    colors: list[str],
    runs: list[RunMetrics],
    probes: list[Any],
    figures: dict[str, bytes],
) -> None:
    """curation.png, for runs that curate or add fresh real data: what each generation's
    curation kept or edited, and the real share of every training set."""
    curated = [(r, m) for r, m in runs if any(g.get("curation") for g in m)]
    fresh = any(
        str(p.get("source", "")).startswith("fresh_")
        for _, m in runs
        for g in m
        for p in (g.get("composition") or {}).get("parts", [])
    )
    if not curated and not fresh:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.4, 4), layout="constrained")
    for ri, (label, metrics) in enumerate(runs):
        color = colors[ri % len(colors)]
        for key, (what, style) in _CURATION_SERIES.items():
            xs, ys = _series(metrics, lambda m, key=key: m["curation"][key], 1)
            if xs:
                left.plot(
                    xs, ys, color=color, ls=style, marker="o", ms=2, label=f"{what} — {label}"
                )
        xs, ys = _series(metrics, lambda m: m["composition"]["real_token_share"], 1)
        right.plot(xs, ys, color=color, marker="o", ms=3, label=label)
    left.set_ylim(0, 1.02)
    left.set_title("What curation kept or edited")
    right.set_title("Real data (D0 and fresh stories) in each training set")
    right.set_ylabel("real token share")
    right.set_ylim(0, 1.02)
    for ax in (left, right):
        ax.set_xlabel("generation n")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    figures["curation.png"] = _png(fig, integer_x=True)


def _probes_figure(
    plt: Any,
    colors: list[str],
    runs: list[RunMetrics],
    probes: list[Any],
    figures: dict[str, bytes],
) -> None:
    """Figure 2: p̂_n(v|x) per generation against the corpus truth (dashed), one panel per probe."""
    multi = len(runs) > 1
    probes = runs[0][1][0].get("probes", []) if runs and runs[0][1] else []
    if probes:
        fig, axes = plt.subplots(
            1, len(probes), figsize=(6.2 * len(probes), 4), squeeze=False, layout="constrained"
        )
        for pi, (ax, p0) in enumerate(zip(axes.flat, probes, strict=True)):
            for ti, v in enumerate(p0["next"]):
                color = colors[ti % len(colors)]
                truth = p0["next"][v].get("truth")
                if truth is not None:
                    ax.axhline(truth, color=color, ls="--", lw=1, label=f"true p({v!r})")
                for ri, run in enumerate(runs):
                    name = f"p̂_n({v!r})" + (f" — {run.label}" if multi else "")
                    _line(
                        ax,
                        run,
                        lambda m, pi=pi, v=v: m["probes"][pi]["next"][v]["p_hat"],
                        f"probe{pi}_{v.strip() or v}_p_hat",
                        start=1,
                        color=color,
                        label=name,
                        ls=_STYLES[ri % len(_STYLES)],
                    )
            ax.set_title(f"Next-token probabilities after {p0['context']!r}")
            ax.set_xlabel("generation n")
            ax.set_ylabel(f"p̂_n(v | {p0['context']!r})")
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7)
        figures["probes.png"] = _png(fig, integer_x=True)


def _perplexity_figure(
    plt: Any,
    colors: list[str],
    runs: list[RunMetrics],
    probes: list[Any],
    figures: dict[str, bytes],
) -> None:
    """Figure 3: held-out perplexity per generation."""
    fig, ax = plt.subplots(figsize=(6.2, 4), layout="constrained")
    for ri, run in enumerate(runs):
        color = colors[ri % len(colors)]
        _line(
            ax, run, lambda m: m["perplexity"], "perplexity", start=1, color=color, label=run.label
        )
    ax.set_xlabel("generation n")
    ax.set_ylabel("perplexity on held-out real stories")
    ax.set_title("Perplexity over generations (Figure 3)")
    ax.legend(fontsize=8)
    figures["perplexity.png"] = _png(fig, integer_x=True)


def _alpha_figure(
    plt: Any,
    colors: list[str],
    runs: list[RunMetrics],
    probes: list[Any],
    figures: dict[str, bytes],
) -> None:
    """Remark B.1's minimal error α*_x (in units of N_x), per probe."""
    multi = len(runs) > 1
    if probes:
        fig, ax = plt.subplots(figsize=(6.2, 4), layout="constrained")
        for ri, run in enumerate(runs):
            for pi, p0 in enumerate(probes):
                _line(
                    ax,
                    run,
                    lambda m, pi=pi: m["probes"][pi]["alpha_x_relative"],
                    f"probe{pi}_alpha_x_relative",
                    start=1,
                    color=colors[(ri * len(probes) + pi) % len(colors)],
                    label=f"x = {p0['context']!r}" + (f" — {run.label}" if multi else ""),
                )
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_xlabel("generation n")
        ax.set_ylabel("α*_x / N_x")
        ax.set_title("Minimal error explaining p̂_n(·|x) given D0 (Remark B.1)")
        ax.legend(fontsize=7)
        figures["alpha.png"] = _png(fig, integer_x=True)


def _diversity_figure(
    plt: Any,
    colors: list[str],
    runs: list[RunMetrics],
    probes: list[Any],
    figures: dict[str, bytes],
) -> None:
    """Diversity and the tail, generation 0 = D0."""
    panels = [
        ("distinct_1", "distinct-1"),
        ("distinct_2", "distinct-2"),
        ("distinct_3", "distinct-3"),
        ("unigram_entropy", "unigram entropy (bits)"),
        ("tail_mass", "mass on D0's tail"),
        ("tail_coverage", "D0's tail types used"),
        ("repetition_4", "4-gram repetition"),
        ("kl_unigram_from_d0", "KL(D0 ‖ S_n) unigrams, bits"),
        ("kl_bigram_from_d0", "KL(D0 ‖ S_n) bigrams, bits"),
    ]
    fig, axes = plt.subplots(3, 3, figsize=(13, 9), layout="constrained")
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for ri, run in enumerate(runs):
            color = colors[ri % len(colors)]
            get = lambda m, key=key: m["corpus"][key]  # noqa: E731
            _line(ax, run, get, f"corpus_{key}", color=color, label=run.label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generation n (0 = D0)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Diversity and the tail of each generated corpus, against D0 (generation 0)")
    figures["diversity.png"] = _png(fig, integer_x=True)


def _lengths_figure(
    plt: Any,
    colors: list[str],
    runs: list[RunMetrics],
    probes: list[Any],
    figures: dict[str, bytes],
) -> None:
    """Story length and end-of-text rate."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    for ri, run in enumerate(runs):
        for ax, key in zip(axes, ("story_length_mean", "eos_rate"), strict=True):
            get = lambda m, key=key: m["corpus"][key]  # noqa: E731
            _line(ax, run, get, f"corpus_{key}", color=colors[ri % len(colors)], label=run.label)
    axes[0].set_title("mean story length (tokens)")
    axes[1].set_title("end-of-text tokens per token")
    for ax in axes:
        ax.set_xlabel("generation n (0 = D0)")
    axes[0].legend(fontsize=7)
    figures["lengths.png"] = _png(fig, integer_x=True)


def bridge_figure(label: str, result: Any) -> bytes | None:
    """The theory next to the measurement for one run (a bridge.BridgeResult): per probe, p̂_n
    against the limit term of Theorem 2.1 and the truth; the real-data weight N_x/y[n]; the
    estimated per-generation error α[n] relative to the counts it was added to."""
    probes = result.compared
    if not probes:
        return None
    plt = _pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    gens = result.generations
    fig, axes = plt.subplots(
        len(probes), 3, figsize=(15, 3.8 * len(probes)), squeeze=False, layout="constrained"
    )
    for row, p in zip(axes, probes, strict=True):
        ax = row[0]
        for ti, (tok, d) in enumerate(p.tokens.items()):
            color = colors[ti % len(colors)]
            ax.axhline(d["truth"], color=color, ls="--", lw=1, label=f"truth p({tok!r})")
            ax.plot(gens, d["p_hat"], color=color, marker="o", ms=2, label=f"p̂_n({tok!r})")
            ax.plot(gens, _nan(d["limit"]), color=color, ls=":", lw=2, label="limit term")
        ax.set_ylim(0, 1)
        ax.set_title(f"x = {p.context!r}: p̂_n, Theorem 2.1's limit term, truth", fontsize=10)
        ax.set_xlabel("generation n")
        ax.legend(fontsize=7)
        ax = row[1]
        ax.plot(gens, p.real_data_weight, marker="o", ms=2, color=colors[0])
        _log_scale_if_possible(ax, [p.real_data_weight], "no weight")
        ax.set_title("real-data weight N_x / y[n] (the proof: → 0)", fontsize=10)
        ax.set_xlabel("generation n")
        ax = row[2]
        rel = p.trend["relative"]
        ax.plot(gens, rel, marker="o", ms=2, color=colors[1])
        _log_scale_if_possible(ax, [rel], "no error")
        ax.set_title("minimal α[n] / b[n] (Remark B.1, per generation)", fontsize=10)
        ax.set_xlabel("generation n")
    fig.suptitle(f"Theory next to measurement — {label} ({result.paradigm})")
    return _png(fig, integer_x=True)


def spread_figure(label: str, spread: dict[str, Any]) -> bytes | None:
    """The theory next to the replicates (aggregate.BridgeSpread, as theory_spread.json has it):
    per probe, p̂_n(v|x) across replicates (mean, interval) next to the bridge's limit term
    (mean, interval) and the truth; the replicates' standard deviation of p̂_n(v|x); the
    real-data weight N_x / y[n] (mean, interval)."""
    probes = spread.get("probes") or []
    if not probes:
        return None
    plt = _pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    gens = spread["generations"]

    def band(ax: Any, series: list[dict[str, Any]], color: Any, **style: Any) -> None:
        ax.fill_between(
            gens,
            _nan([s["lo"] for s in series]),
            _nan([s["hi"] for s in series]),
            color=color,
            alpha=0.2,
            lw=0,
        )
        ax.plot(gens, _nan([s["mean"] for s in series]), color=color, **style)

    fig, axes = plt.subplots(
        len(probes), 3, figsize=(15, 3.8 * len(probes)), squeeze=False, layout="constrained"
    )
    level = round(100 * spread.get("level", 0.95))
    for row, p in zip(axes, probes, strict=True):
        for ti, t in enumerate(p["tokens"]):
            color = colors[ti % len(colors)]
            row[0].axhline(t["truth"], color=color, ls="--", lw=1, label=f"truth p({t['token']!r})")
            band(row[0], t["p_hat"], color, marker="o", ms=2, label=f"p̂_n({t['token']!r})")
            band(row[0], t["limit"], color, ls=":", lw=2, label="bridge's limit term")
            row[1].plot(gens, _nan(t["p_hat_sd"]), color=color, marker="o", ms=2, label=t["token"])
        row[0].set_ylim(0, 1)
        row[0].set_title(
            f"x = {p['context']!r}: mean and {level}% interval over replicates", fontsize=10
        )
        row[0].legend(fontsize=7)
        row[1].set_title("spread of p̂_n(v|x) across replicates (sd)", fontsize=10)
        row[1].legend(fontsize=7)
        band(row[2], p["real_data_weight"], colors[0], marker="o", ms=2)
        _log_scale_if_possible(row[2], [_nan([s["mean"] for s in p["real_data_weight"]])], "—")
        row[2].set_title("the bridge's real-data weight N_x / y[n]", fontsize=10)
        for ax in row:
            ax.set_xlabel("generation n")
    n = len(spread.get("seeds", []))
    fig.suptitle(f"Theory next to {n} replicates — {label} ({spread.get('paradigm')})")
    return _png(fig, integer_x=True)


def _integer_generations(fig: Any) -> None:
    """Generations are whole numbers: no 1.5 on the x axis."""
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
