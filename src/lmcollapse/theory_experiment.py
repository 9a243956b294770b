"""Theory experiments: run Section 2's closed forms for several paradigms on one context's corpus
counts and an error sequence, and write trajectories, limits, real-data weights and figures.

    lmcollapse theory --out runs/theory                       # the paper's case, both paradigms
    python -c "from lmcollapse.config import TheoryConfig; from lmcollapse.theory_experiment \\
        import main; main(TheoryConfig(), 'runs/theory')"

Output directory: config.yaml (resolved), theory.json (everything, for plots and tools),
trajectories.csv (one row per scenario, generation and token), real_weight.csv (N_x/y[n] on a
log grid up to the horizon), figures/*.png.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse import theory
from lmcollapse._version import __version__
from lmcollapse.artifacts import (
    atomic_write_json,
    atomic_write_text,
    csv_text,
    prepare_output_dir,
)
from lmcollapse.config import TheoryConfig, dump_yaml, to_plain

HORIZON_POINTS = 400  # log-spaced generations kept for the long-horizon curves


@dataclass(frozen=True)
class Scenario:
    """One paradigm with its parameter: a line in every figure."""

    paradigm: str
    k: float = 1.0
    lam: float = 0.5

    @property
    def name(self) -> str:
        """How figures, tables and CSVs call it, e.g. "accumulate-subsample k=0.5"."""
        if self.paradigm == "accumulate-subsample":
            return f"accumulate-subsample k={self.k:g}"
        if self.paradigm == "mix":
            return f"mix λ={self.lam:g}"
        return self.paradigm


def scenarios(cfg: TheoryConfig) -> list[Scenario]:
    """Replace once, Accumulate-Subsample once per k, Mix once per λ, in the configured order."""
    out: list[Scenario] = []
    for paradigm in dict.fromkeys(cfg.paradigms):
        if paradigm == "accumulate-subsample":
            out += [Scenario(paradigm, k=k) for k in dict.fromkeys(cfg.k)]
        elif paradigm == "mix":
            out += [Scenario(paradigm, lam=lam) for lam in dict.fromkeys(cfg.lam)]
        else:
            out.append(Scenario(paradigm))
    return out


def error_sequence(cfg: TheoryConfig, generations: int) -> np.ndarray:
    """α_i[n] for n = 1..generations, (G, V). Rows do not depend on `generations` (see theory)."""
    counts = np.asarray(cfg.probe.counts, dtype=np.float64)
    spec = cfg.errors
    if spec.weights:
        weights = np.asarray(spec.weights, dtype=np.float64)
    elif spec.profile == "random":
        weights = theory.random_weights(counts.size, cfg.seed)
    else:
        weights = np.ones(counts.size)
    total = spec.scale * counts.sum()
    if spec.kind == "constant":
        return theory.constant_errors(generations, total, weights)
    if spec.kind == "iid":
        return theory.iid_errors(generations, total, weights, cfg.seed)
    if spec.kind == "harmonic":
        return theory.harmonic_errors(generations, total, weights)
    if spec.kind == "inverse-square":
        return theory.inverse_square_errors(generations, total, weights)
    if spec.kind == "bursts":
        return theory.burst_errors(generations, total, weights, spec.burst_probability, cfg.seed)
    raise ValueError(f"unknown error kind {spec.kind!r}")  # the config's Literal rules this out


def horizon_grid(generations: int, horizon: int, points: int = HORIZON_POINTS) -> np.ndarray:
    """Generations 1..G, then log-spaced up to the horizon (1-based, unique, sorted)."""
    grid = np.unique(np.round(np.geomspace(1, horizon, points)).astype(np.int64))
    return np.union1d(np.arange(1, generations + 1), grid)


def _first(mask: np.ndarray) -> int | None:
    """1-based index of the first True, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) + 1 if hits.size else None


def simulate(cfg: TheoryConfig) -> dict[str, Any]:
    """Every scenario's trajectories and summary as plain data (what theory.json holds)."""
    tokens = list(cfg.probe.tokens)
    counts = np.asarray(cfg.probe.counts, dtype=np.float64)
    truth = counts / counts.sum()
    g, h = cfg.generations, cfg.horizon
    alpha_h = error_sequence(cfg, h)
    grid = horizon_grid(g, h)
    target_idx = [tokens.index(t) for t in cfg.probe.targets]
    results = []
    for sc in scenarios(cfg):
        kw = {"k": sc.k, "lam": sc.lam}
        # Everything up to the horizon once; the trajectories are its first G rows.
        p_hat_h = theory.closed_form(counts, alpha_h, sc.paradigm, **kw)
        limit_h = theory.limit_term(alpha_h, sc.paradigm, **kw)
        weight_h = theory.real_data_weight(counts, alpha_h, sc.paradigm, **kw)
        dist_h = np.max(np.abs(p_hat_h - limit_h), axis=1)  # NaN where the limit is 0/0
        p_hat, limit, weight, dist_limit = p_hat_h[:g], limit_h[:g], weight_h[:g], dist_h[:g]
        share = theory.real_data_share(g, sc.paradigm, **kw)
        summary: dict[str, Any] = {
            "targets": {
                tokens[i]: {
                    "truth": float(truth[i]),
                    "p_first": float(p_hat[0, i]),
                    "p_last": float(p_hat[-1, i]),
                    "limit_last": float(limit[-1, i]),
                    "left_band_at": _first(np.abs(p_hat[:, i] - truth[i]) > cfg.band),
                }
                for i in target_idx
            },
            "tv_to_truth_last": float(0.5 * np.abs(p_hat[-1] - truth).sum()),
            "max_abs_to_limit_last": float(dist_limit[-1]),
            "max_abs_to_limit_horizon": float(dist_h[-1]),
            "real_weight_last": float(weight[-1]),
            "real_weight_horizon": float(weight_h[-1]),
            "real_weight_below_half_at": _first(weight_h < 0.5),
            "real_share_last": float(share[-1]),
        }
        results.append(
            {
                "name": sc.name,
                "paradigm": sc.paradigm,
                "k": sc.k,
                "lam": sc.lam,
                "p_hat": p_hat.tolist(),
                "limit": limit.tolist(),
                "max_abs_to_limit": dist_limit.tolist(),
                "real_weight": weight.tolist(),
                "real_share": share.tolist(),
                "horizon_real_weight": weight_h[grid - 1].tolist(),
                "horizon_max_abs_to_limit": dist_h[grid - 1].tolist(),
                "summary": summary,
            }
        )
    return to_plain(
        {
            "lmcollapse_version": __version__,
            "config": to_plain(cfg),
            "context": cfg.probe.context,
            "tokens": tokens,
            "truth": truth.tolist(),
            "targets": list(cfg.probe.targets),
            "band": cfg.band,
            "generations": g,
            "horizon": h,
            "alpha": alpha_h[:g].tolist(),
            "horizon_generations": grid.tolist(),
            "scenarios": results,
        },
        json_safe=True,
    )


def trajectories_csv(result: dict[str, Any]) -> str:
    """Tidy CSV: one row per (scenario, generation, token); an undefined limit is empty."""
    rows = []
    for sc in result["scenarios"]:
        for n in range(result["generations"]):
            for i, tok in enumerate(result["tokens"]):
                p, lim = sc["p_hat"][n][i], sc["limit"][n][i]
                rows.append(
                    {
                        "scenario": sc["name"],
                        "paradigm": sc["paradigm"],
                        "k": sc["k"],
                        "lam": sc["lam"],
                        "generation": n + 1,
                        "token": tok,
                        "truth": result["truth"][i],
                        "alpha": result["alpha"][n][i],
                        "p_hat": p,
                        "limit": lim,
                        "abs_diff_to_limit": None if lim is None else abs(p - lim),
                        "real_weight": sc["real_weight"][n],
                        "real_share": sc["real_share"][n],
                    }
                )
    return csv_text(rows)


def real_weight_csv(result: dict[str, Any]) -> str:
    """Wide CSV: generation, then N_x/y[n] per scenario, on the long-horizon grid."""
    return csv_text(
        [
            {"generation": n}
            | {sc["name"]: sc["horizon_real_weight"][j] for sc in result["scenarios"]}
            for j, n in enumerate(result["horizon_generations"])
        ]
    )


def main(cfg: TheoryConfig, out_dir: str | Path, *, figures: bool = True) -> dict[str, Any]:
    """Simulate, then write config.yaml, theory.json, the CSVs and the figures into out_dir.

    Everything is computed (and the figures drawn in memory) before the first file is written.
    """
    result = simulate(cfg)
    figs = None
    if figures:
        from lmcollapse.plots import theory_figures  # matplotlib only when figures are wanted

        figs = theory_figures(result)
    out = prepare_output_dir(out_dir)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    atomic_write_json(out / "theory.json", result)
    atomic_write_text(out / "trajectories.csv", trajectories_csv(result))
    atomic_write_text(out / "real_weight.csv", real_weight_csv(result))
    if figs is not None:
        from lmcollapse.plots import save_figures

        save_figures(figs, out / "figures")
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What happened, in words: one line per scenario."""
    g, h, band = result["generations"], result["horizon"], result["band"]
    lines = []
    for sc in result["scenarios"]:
        s = sc["summary"]
        left = [
            f"p̂({tok!r}) left the ±{band:g} band at n={t['left_band_at']}"
            if t["left_band_at"]
            else f"p̂({tok!r}) stayed within ±{band:g} of the truth"
            for tok, t in s["targets"].items()
        ]
        below = s["real_weight_below_half_at"]
        half = f"falls below 0.5 at n={below:,}" if below else f"stays above 0.5 up to n={h:,}"
        lines.append(
            f"{sc['name']}: {'; '.join(left)}. Real-data weight N_x/y[n] is "
            f"{s['real_weight_last']:.3f} at n={g} and {s['real_weight_horizon']:.3f} at n={h:,} "
            f"({half})."
        )
    return lines
