"""`lmcollapse theory`: Section 2's recurrences run from flags or a config file."""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from lmcollapse.cli.common import CONTEXT_SETTINGS, given
from lmcollapse.config import TheoryConfig, deep_merge, dump_yaml, parse_overrides, resolve
from lmcollapse.config.theory import ErrorKind, TheoryParadigm
from lmcollapse.errors import InvalidInput

if typing.TYPE_CHECKING:
    from lmcollapse.bridge import BridgeResult


def _token_counts(items: Sequence[str]) -> tuple[list[str], list[Any]]:
    tokens, counts = [], []
    for item in items:
        label, sep, count = item.rpartition("=")
        if not sep or not label:
            raise InvalidInput(f"--token {item!r}: expected LABEL=COUNT, e.g. --token ' was=760'")
        tokens.append(label)
        counts.append(count)  # coerced and checked by the config (a number >= 0)
    return tokens, counts


def _theory_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Explicit flags as a config mapping (only those given)."""
    over = given(
        flags,
        {
            "paradigm": "paradigms",
            "k": "k",
            "lam": "lam",
            "generations": "generations",
            "horizon": "horizon",
            "band": "band",
            "seed": "seed",
        },
    )
    probe: dict[str, Any] = {}
    if flags["token"]:
        probe["tokens"], probe["counts"] = _token_counts(flags["token"])
    if flags["target"]:
        probe["targets"] = list(flags["target"])
    if flags["context"] is not None:
        probe["context"] = flags["context"]
    if probe:
        over["probe"] = probe
    errors = given(flags, {"errors": "kind", "error_scale": "scale", "error_profile": "profile"})
    if errors:
        over["errors"] = errors
    return over


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file with TheoryConfig fields (see `lmcollapse config docs --theory`).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any field, e.g. --set errors.kind=harmonic (applied last).",
)
@click.option(
    "--paradigm",
    multiple=True,
    type=click.Choice(typing.get_args(TheoryParadigm)),
    help="Paradigm to run (repeatable). Default: replace and accumulate-subsample.",
)
@click.option(
    "--k",
    "k",
    multiple=True,
    type=float,
    help="Accumulation rate k > 0 for accumulate-subsample (repeatable).",
)
@click.option("--lam", multiple=True, type=float, help="Real-data share λ for mix (repeatable).")
@click.option("--generations", type=int, help="Generations in the trajectories (default 40).")
@click.option(
    "--horizon", type=int, help="Generations for the real-data weight curve (default 10,000)."
)
@click.option(
    "--errors",
    type=click.Choice(typing.get_args(ErrorKind)),
    help="Error sequence α_i[n] (default iid).",
)
@click.option(
    "--error-scale", type=float, help="Mean error per generation relative to N_x (default 0.05)."
)
@click.option(
    "--error-profile",
    type=click.Choice(["uniform", "random"]),
    help="Split of the error over tokens (default uniform).",
)
@click.option(
    "--token",
    multiple=True,
    metavar="LABEL=COUNT",
    help="A continuation of x and its corpus count (repeatable; replaces the default table).",
)
@click.option(
    "--target", multiple=True, help="Token to track in the summary and figures (repeatable)."
)
@click.option("--context", help="Label of the context x (default ' there').")
@click.option("--band", type=float, help="Band around the truth for the summary (default 0.05).")
@click.option("--seed", type=int, help="Seed of random errors (default 0).")
@click.option(
    "--from-run",
    "from_run",
    type=click.Path(path_type=Path),
    help="Put the theory next to a run: estimate its per-generation errors from the recorded "
    "p̂_n(·|x) and D0's counts (writes to RUN/theory unless --out is given).",
)
@click.option("--out", help="Output directory (created if needed). Default: runs/theory.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table."
)
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
@click.option("--show-config", is_flag=True, help="Print the resolved config as YAML and exit.")
def theory(
    config_file: Path | None,
    sets: tuple[str, ...],
    from_run: Path | None,
    out: str | None,
    as_json: bool,
    no_figures: bool,
    show_config: bool,
    **flags: Any,
) -> None:
    """Run Section 2's theory: p̂_n(v|x) over generations for given counts and errors.

    With no options: the paper's case, x = ' there' with p(' was')=0.76 and p(' were')=0.05,
    i.i.d. errors of 5% of N_x per generation, Replace and Accumulate-Subsample (k = 0.1, 1, 10),
    40 generations and the real-data weight up to 10,000. Writes theory.json, trajectories.csv,
    real_weight.csv, config.yaml and figures/*.png to --out, and says what happened.

    With --from-run RUN: the bridge for a finished (or running) experiment instead — per probe
    context, the minimal per-generation errors, the limit term, the real-data weight and whether
    the errors look like tending to zero (bridge.json, bridge.csv, figures/theory.png).
    """
    if from_run is not None:
        used = [k for k, v in flags.items() if v not in (None, ())]
        if used or config_file or sets or show_config:
            raise InvalidInput(
                "--from-run takes the run's own config: drop the other theory options "
                f"({', '.join(sorted(used)) or '--config/--set/--show-config'})"
            )
        _from_run(from_run, out, as_json=as_json, figures=not no_figures)
        return
    out = "runs/theory" if out is None else out
    if not out.strip():
        raise InvalidInput("--out is empty: name an output directory")
    overrides = deep_merge(_theory_overrides(flags), parse_overrides(sets))
    cfg = resolve(TheoryConfig, config=config_file, overrides=overrides)
    for flag, paradigm in (("k", "accumulate-subsample"), ("lam", "mix")):
        if flags[flag] and paradigm not in cfg.paradigms:
            raise InvalidInput(f"--{flag} has no effect without --paradigm {paradigm}")
    if show_config:
        click.echo(dump_yaml(cfg), nl=False)
        return
    from lmcollapse import theory_experiment as te

    result = te.main(cfg, out, figures=not no_figures)
    if as_json:
        payload = {
            "out": str(out),
            "scenarios": {sc["name"]: sc["summary"] for sc in result["scenarios"]},
        }
        click.echo(json.dumps(payload, indent=1))
        return
    _print_theory_summary(cfg, result, out, figures=not no_figures)


def _from_run(run_dir: Path, out: str | None, *, as_json: bool, figures: bool) -> None:
    from lmcollapse import bridge
    from lmcollapse.bridge import ProbeBridge
    from lmcollapse.rundir import refuse_links

    if out is not None and not out.strip():
        raise InvalidInput("--out is empty: name an output directory")
    target = Path(out) if out is not None else run_dir / "theory"
    refuse_links(run_dir)  # theory/ (the default target) included
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"--out {target} is a file: choose a directory")
    result = bridge.from_run(run_dir)
    wrote = bridge.write(result, target, run_dir.name, figures=figures)
    if as_json:
        click.echo(json.dumps({"out": str(target), "probes": _summary(result)}, indent=1))
        return
    gens = result.generations
    click.echo(
        f"lmcollapse theory --from-run {run_dir}: generations {gens[0]}..{gens[-1]}, "
        f"paradigm {result.paradigm or '?'}"
    )
    for p in result.probes:
        if not isinstance(p, ProbeBridge):
            click.echo(f"• x = {p.context!r}: {p.skipped}")
            continue
        toks = ", ".join(
            f"p̂({t!r}) {d['p_hat'][0]:.3f}→{d['p_hat'][-1]:.3f} (truth {d['truth']:.3f}, "
            f"limit {d['limit'][-1] if d['limit'][-1] is not None else float('nan'):.3f})"
            for t, d in p.tokens.items()
        )
        total = _log10(p.alpha_cumulative_log10[-1])
        click.echo(
            f"• x = {p.context!r} (N_x = {p.N_x:,.0f}): {toks}; real-data weight "
            f"N_x/y = {p.real_data_weight[-1]:.3g}; Σα = 10^{total}; "
            f"the errors are {p.trend['verdict']} ({p.shares} of the training sets)"
        )
    click.echo(f"wrote {target}/: {', '.join(wrote)}")


def _summary(result: BridgeResult) -> list[dict[str, Any]]:
    """--json: per probe, its context and the last generation's numbers."""
    from lmcollapse.bridge import ProbeBridge

    out: list[dict[str, Any]] = []
    for p in result.probes:
        if not isinstance(p, ProbeBridge):
            out.append({"context": p.context, "N_x": p.N_x, "skipped": p.skipped})
            continue
        out.append(
            {
                "context": p.context,
                "N_x": p.N_x,
                "skipped": None,
                "real_data_weight_last": p.real_data_weight[-1],
                "alpha_cumulative_log10_last": p.alpha_cumulative_log10[-1],
                "trend": {k: v for k, v in p.trend.items() if k != "relative"},
                "rebuild_error": p.rebuild_error,
            }
        )
    return out


def _log10(value: float | None) -> str:
    return "-inf" if value is None else f"{value:.1f}"


def _print_theory_summary(
    cfg: TheoryConfig, result: dict[str, Any], out: str, *, figures: bool
) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: do not squeeze the table to 80 columns
        console = Console(highlight=False, width=120)
    n_x = sum(cfg.probe.counts)
    e = cfg.errors
    split = "custom" if e.weights else e.profile
    console.print(
        f"lmcollapse theory: x = {cfg.probe.context!r}, N_x = {n_x:g} over "
        f"{len(cfg.probe.tokens)} continuations; errors {e.kind} with α[n] ≈ {e.scale:g}·N_x "
        f"({split} split); {cfg.generations} generations, weights to n = {cfg.horizon:,}; "
        f"seed {cfg.seed}",
        markup=False,
    )
    g = cfg.generations
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("scenario", no_wrap=True)
    for tok in cfg.probe.targets:
        table.add_column(f"p̂({tok!r})\nn=1→{g} (truth)", justify="right", no_wrap=True)
        table.add_column("left\nband", justify="right", no_wrap=True)
    for header in (f"|p̂−limit|\nn={g}", f"N_x/y\nn={g}", f"N_x/y\nn={cfg.horizon:,}"):
        table.add_column(header, justify="right", no_wrap=True)
    for sc in result["scenarios"]:
        s = sc["summary"]
        cells = [sc["name"]]
        for t in s["targets"].values():
            cells.append(f"{t['p_first']:.3f}→{t['p_last']:.3f} ({t['truth']:.2f})")
            cells.append(f"n={t['left_band_at']}" if t["left_band_at"] else "never")
        lim = s["max_abs_to_limit_last"]
        cells += [
            "—" if lim is None else f"{lim:.3g}",
            f"{s['real_weight_last']:.3f}",
            f"{s['real_weight_horizon']:.3f}",
        ]
        table.add_row(*(Text(c) for c in cells))
    console.print(table)
    from lmcollapse.theory_experiment import summary_lines

    for line in summary_lines(result):
        console.print(f"• {line}", markup=False)
    wrote = "config.yaml, theory.json, trajectories.csv, real_weight.csv"
    if figures:
        wrote += ", figures/{trajectories,convergence,k_sweep,real_weight}.png"
    console.print(f"wrote {out}/: {wrote}", markup=False)
