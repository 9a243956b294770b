"""Figures from result files only (theory.json today; run metrics later), written atomically.

Uses matplotlib's Agg backend: no display needed. Each function takes the loaded results and a
directory and returns the paths it wrote.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lmcollapse.artifacts import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    _pyplot().close(fig)
    return path


def _nan(values: list[Any]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def theory_figures(result: dict[str, Any], fig_dir: str | Path) -> list[Path]:
    """trajectories.png (Figure 2 style), convergence.png, k_sweep.png, real_weight.png."""
    plt = _pyplot()
    out = Path(fig_dir)
    tokens, truth, targets = result["tokens"], result["truth"], result["targets"]
    idx = [tokens.index(t) for t in targets]
    gens = list(range(1, result["generations"] + 1))
    scen = result["scenarios"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    context = result["context"]
    paths = []

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
    paths.append(_save(fig, out / "trajectories.png"))

    # Convergence to the error-only term up to the horizon, log-log: Replace ~ 1/n when errors
    # do not vanish, Accumulate-Subsample only ~ 1/log n.
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for sc in scen:
        ax.plot(
            result["horizon_generations"], _nan(sc["horizon_max_abs_to_limit"]), label=sc["name"]
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("generation n (log scale)")
    ax.set_ylabel("max_i |p̂_n(v_i|x) − limit term|")
    ax.set_title(f"Distance to Theorem 2.1's error-only term, up to n = {result['horizon']:,}")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "convergence.png"))

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
    paths.append(_save(fig, out / "k_sweep.png"))

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
    paths.append(_save(fig, out / "real_weight.png"))
    return paths
