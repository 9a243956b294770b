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
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lmcollapse import theory
from lmcollapse.errors import InvalidInput

BRIDGE_PARADIGMS = theory.PARADIGMS  # replace, accumulate-subsample, mix


def estimate_errors(
    p_hat: ArrayLike, counts: ArrayLike, paradigm: str, k: float = 1.0, *, lam: float = 0.5
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(alpha (G, V), y (G, V)): the minimal errors explaining p̂_1..p̂_G given D0's counts.

    Exact inverse of `theory.closed_form` whenever every generation's true error has a zero
    entry (the minimal one of Remark B.1); otherwise the smallest errors consistent with p̂.
    """
    if paradigm not in BRIDGE_PARADIGMS:
        raise InvalidInput(
            f"the theory covers {', '.join(BRIDGE_PARADIGMS)}; a {paradigm!r} run has no "
            "closed form to compare with"
        )
    p = np.asarray(p_hat, dtype=np.float64)
    n_i = np.asarray(counts, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != n_i.size:
        raise InvalidInput(f"p_hat must be (G, V) with V = {n_i.size}, got shape {p.shape}")
    G, V = p.shape
    alpha = np.zeros((G, V))
    y = np.zeros((G, V))
    running = np.zeros(V)  # Σ_{j<n} y[j]
    for n in range(1, G + 1):
        if n == 1:
            base = n_i
        elif paradigm == "replace":
            base = y[n - 2]
        elif paradigm == "accumulate-subsample":
            base = (n_i + k * running) / (1 + (n - 1) * k)
        else:  # mix
            base = lam * n_i + (1 - lam) * y[n - 2]
        _, a_i = theory.decompose(p[n - 1], base)
        alpha[n - 1] = np.maximum(a_i, 0.0)
        y[n - 1] = base + alpha[n - 1]
        running += y[n - 1]
    return alpha, y


def error_trend(alpha_total: ArrayLike, scale: ArrayLike | None = None) -> dict[str, Any]:
    """Do the per-generation errors α[n] look like tending to zero (Theorem 2.1 assumes they do
    not)? The log-log slope of α[n] over the later half, and the verdict in words. `scale` (the
    counts b[n] each error was added to) only adds α[n]/b[n] for display.

    The errors are Remark B.1's minimal ones, which understate the true errors once p̂_n barely
    moves from p̂_{n-1} (a run settled near its limit): read a "decaying" verdict with that in
    mind."""
    a = np.asarray(alpha_total, dtype=np.float64)
    G = a.size
    out: dict[str, Any] = {"slope": None, "verdict": "too short to tell"}
    if scale is not None:
        out["relative"] = (a / np.asarray(scale, dtype=np.float64)).tolist()
    if G < 4:
        return out
    n = np.arange(1, G + 1, dtype=np.float64)
    half = slice(G // 2, G)
    ok = a[half] > 0
    if ok.sum() >= 2:
        out["slope"] = float(np.polyfit(np.log(n[half][ok]), np.log(a[half][ok]), 1)[0])
    first = float(np.mean(a[: max(1, G // 4)]))
    last = float(np.mean(a[-max(1, G // 4) :]))
    out["first_quarter_mean"], out["last_quarter_mean"] = first, last
    slope = out["slope"]
    if last == 0.0:
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


def bridge(
    p_hat: ArrayLike,
    counts: ArrayLike,
    paradigm: str,
    k: float = 1.0,
    *,
    lam: float = 0.5,
    tokens: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Everything the report shows for one probe: estimated α, y, the limit term, the real-data
    weight, the closed form rebuilt from α (equal to p̂ by construction), the error trend."""
    p = np.asarray(p_hat, dtype=np.float64)
    n_i = np.asarray(counts, dtype=np.float64)
    alpha, y = estimate_errors(p, n_i, paradigm, k, lam=lam)
    limit = theory.limit_term(alpha, paradigm, k, lam=lam)
    weight = theory.real_data_weight(n_i, alpha, paradigm, k, lam=lam)
    rebuilt = theory.closed_form(n_i, alpha, paradigm, k, lam=lam)
    scale = y.sum(axis=1) - alpha.sum(axis=1)  # b[n]: the counts each error was added to
    result: dict[str, Any] = {
        "paradigm": paradigm,
        "k": k,
        "lam": lam,
        "N_x": float(n_i.sum()),
        "alpha_total": alpha.sum(axis=1).tolist(),
        "alpha_cumulative": np.cumsum(alpha.sum(axis=1)).tolist(),
        "real_data_weight": weight.tolist(),
        "rebuild_error": float(np.max(np.abs(rebuilt - p))),
        "distance_to_limit": [
            None if not np.isfinite(d) else float(d) for d in np.abs(p - limit).sum(axis=1)
        ],
        "distance_to_truth": np.abs(p - n_i / n_i.sum()).sum(axis=1).tolist(),
        "trend": error_trend(alpha.sum(axis=1), scale),
        "tokens": {},
    }
    for name, i in (tokens or {}).items():
        result["tokens"][name] = {
            "id": int(i),
            "truth": float(n_i[i] / n_i.sum()),
            "p_hat": p[:, i].tolist(),
            "limit": [None if not np.isfinite(v) else float(v) for v in limit[:, i]],
            "alpha": alpha[:, i].tolist(),
        }
    return result


def from_run(run_dir: str | Any) -> dict[str, Any]:
    """The bridge for every probe of a run, from its files (probes.npz of each generation)."""
    import json
    from pathlib import Path

    from lmcollapse.artifacts import RunLayout
    from lmcollapse.pipeline import completed, read_manifest, run_config

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
    meta0 = json.loads(layout.metrics(0).read_text(encoding="utf-8"))
    out: dict[str, Any] = {"run": str(layout.root), "generations": done, "probes": []}
    with np.load(layout.distributions(0)) as z0:
        counts = [z0[f"counts_{i}"] for i in range(len(meta0["probes"]))]
    p_hats: list[list[Any]] = [[] for _ in counts]
    for n in done:
        with np.load(layout.distributions(n)) as z:
            for i in range(len(counts)):
                p_hats[i].append(z[f"p_hat_{i}"])
    for i, (probe, c) in enumerate(zip(meta0["probes"], counts, strict=True)):
        entry: dict[str, Any] = {"context": probe["context"], "N_x": int(c.sum())}
        if c.sum() <= 0:
            entry["skipped"] = "the context never occurs in D0 (N_x = 0): no truth to compare"
        else:
            p = np.array(p_hats[i])
            v = max(p.shape[1], c.size)
            pp, cc = np.zeros((p.shape[0], v)), np.zeros(v)
            pp[:, : p.shape[1]], cc[: c.size] = p, c
            tokens = {t: d["id"] for t, d in probe["next"].items()}
            entry.update(bridge(pp, cc, par.name, par.k, lam=par.lam, tokens=tokens))
        out["probes"].append(entry)
    return out


__all__ = ["BRIDGE_PARADIGMS", "bridge", "error_trend", "estimate_errors", "from_run"]
