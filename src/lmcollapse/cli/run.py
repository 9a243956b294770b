"""`lmcollapse run` (the experiment), `report`, and the inspection commands `probe`, `sample`,
`status` for a run directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lmcollapse.cli.common import (
    CONTEXT_SETTINGS,
    GreedyNextCommand,
    experiment_config_options,
    replicate_options,
)
from lmcollapse.errors import InvalidInput

DEFAULT_PRESET = "demo"


@click.command("run", context_settings=CONTEXT_SETTINGS)
@experiment_config_options
@click.option("--out", help="Run directory (default runs/<preset>).")
@click.option(
    "--resume",
    type=click.Choice(["auto", "never"]),
    default="auto",
    show_default=True,
    help="auto: continue the run in --out after its last finished generation; never: refuse an "
    "existing run.",
)
@replicate_options
@click.option("--quiet", is_flag=True, help="No progress bars (the log file is still written).")
def run_cmd(
    preset: str | None,
    config_file: Path | None,
    sets: tuple[str, ...],
    out: str | None,
    resume: str,
    replicates: int | None,
    jobs: int | None,
    quiet: bool,
) -> None:
    """Run the recursive-training experiment (default: the demo preset on this machine).

    Generation 1 trains on D0; every generation is evaluated, generates its corpus, and the next
    trains on its paradigm's mix. Rerun the same command to continue an interrupted run.
    """
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.inspect import run_summary_lines
    from lmcollapse.replicates import run_experiment

    if out is not None and not out.strip():
        raise InvalidInput("--out is empty: name a run directory")
    name = DEFAULT_PRESET if preset is None and config_file is None else preset
    sets = (*sets, *_replicate_sets(replicates, jobs))
    cfg = resolve(ExperimentConfig, preset=name, config=config_file, overrides=sets)
    root = run_experiment(cfg, out, preset=name, resume=resume, progress=not quiet)
    _echo(run_summary_lines(root))


@click.command("sweep", context_settings=CONTEXT_SETTINGS)
@click.argument("assignment", metavar="KEY=V1,V2,...")
@experiment_config_options
@click.option("--out", help="Sweep directory (default runs/sweep-<KEY>); a run per value inside.")
@replicate_options
@click.option("--quiet", is_flag=True, help="No progress bars (each run's log is still written).")
def sweep_cmd(
    assignment: str,
    preset: str | None,
    config_file: Path | None,
    sets: tuple[str, ...],
    out: str | None,
    replicates: int | None,
    jobs: int | None,
    quiet: bool,
) -> None:
    """Run one experiment per value of a config key, then one report overlaying them.

    E.g. `lmcollapse sweep paradigm.k=0.05,0.25,1,4 --preset ngram-demo-accumulate-subsample`:
    does a smaller k only delay collapse? Every run resumes like `lmcollapse run`.
    """
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.inspect import sweep_summary_lines
    from lmcollapse.sweeps import sweep

    key, sep, values = assignment.partition("=")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not vals:
        raise InvalidInput(
            f"sweep {assignment!r}: expected KEY=V1,V2,..., e.g. paradigm.k=0.25,1,4"
        )
    if len(set(vals)) != len(vals):
        raise InvalidInput(f"sweep {assignment!r}: a value is repeated")
    key = key.strip()
    sets = (*sets, *_replicate_sets(replicates, jobs))
    name = DEFAULT_PRESET if preset is None and config_file is None else preset
    configs = {  # every config resolved and validated before anything runs
        f"{key}={v}".replace("/", "_"): resolve(
            ExperimentConfig, preset=name, config=config_file, overrides=[*sets, f"{key}={v}"]
        )
        for v in vals
    }
    root = Path(out) if out else Path("runs") / f"sweep-{key}"
    dirs, report = sweep(configs, root, preset=name, progress=not quiet)
    _echo(sweep_summary_lines(root, key, dict(zip(configs, dirs, strict=True)), report))


@click.command("report", context_settings=CONTEXT_SETTINGS)
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="The HTML file to write."
)
def report_cmd(runs: tuple[Path, ...], out: Path) -> None:
    """One self-contained HTML report of one or more runs, overlaid (e.g. 1M vs 33M)."""
    from lmcollapse.report import write_report

    if out.exists() and out.is_dir():
        raise InvalidInput(f"--out {out} is a directory: give a file name such as report.html")
    write_report(list(runs), out)
    click.echo(str(out))


@click.command("compare", context_settings=CONTEXT_SETTINGS)
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--metric", default="perplexity", show_default=True, help="A metrics.csv column.")
@click.option(
    "--test",
    type=click.Choice(["welch", "permutation"]),
    default="welch",
    show_default=True,
    help="welch: Welch's t-test; permutation: the permutation test of the mean difference, "
    "exact up to 20,000 splits (its p cannot go below 2/C(n_A + n_B, n_A)), else 10,000 "
    "random ones.",
)
@click.option("--figure", type=click.Path(path_type=Path), help="Also write the figure (PNG).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compare_cmd(
    run_a: Path, run_b: Path, metric: str, test: str, figure: Path | None, as_json: bool
) -> None:
    """Per generation, A − B of two replicated runs: interval, p-value, Holm-corrected."""
    from lmcollapse.artifacts import atomic_path
    from lmcollapse.compare import compare_runs, comparison_figure, comparison_lines, to_json
    from lmcollapse.repdir import index_config, read_index

    st = index_config(read_index(run_a)).stats if (run_a / "replicates.json").is_file() else None
    level = st.level if st else 0.95
    c = compare_runs(run_a, run_b, metric, test, level, st.resamples if st else 10_000)
    if figure is not None:
        if figure.is_dir():
            raise InvalidInput(f"--figure {figure} is a directory: give a file name such as a.png")
        if not figure.parent.is_dir():
            raise InvalidInput(f"--figure {figure}: {figure.parent} is not a directory")
        png = comparison_figure(c)
        with atomic_path(figure) as tmp:
            tmp.write_bytes(png)
    if as_json:
        click.echo(json.dumps(to_json(c), indent=1))
        return
    _echo(comparison_lines(c) + ([f"figure: {figure}"] if figure else []))


@click.command("status", context_settings=CONTEXT_SETTINGS)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_cmd(run_dir: Path, as_json: bool) -> None:
    """What a run directory holds: status, generations done, perplexity, timings."""
    from lmcollapse.inspect import status_lines
    from lmcollapse.rundir import status

    s = status(run_dir)
    if as_json:
        click.echo(json.dumps(s, indent=1))
        return
    _echo(status_lines(s))


@click.command("probe", cls=GreedyNextCommand, context_settings=CONTEXT_SETTINGS)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--context", required=True, help="Context text x, e.g. ' there' (leading space matters)."
)
@click.option(
    "--next",
    "next_",
    multiple=True,
    metavar="TOKEN [TOKEN ...]",
    help="Continuations v to report (each one token).",
)
@click.option(
    "--top", type=int, default=5, show_default=True, help="Top continuations per generation."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def probe_cmd(run_dir: Path, context: str, next_: tuple[str, ...], top: int, as_json: bool) -> None:
    """p̂_n(v|x) of every finished generation for any context, with the truth from D0."""
    from lmcollapse.inspect import probe_lines, probe_run

    result = probe_run(run_dir, context, list(next_), top)
    if as_json:
        click.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    _echo(probe_lines(result))


@click.command("sample", context_settings=CONTEXT_SETTINGS)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--generation", "-g", type=int, required=True, help="Which generation's model.")
@click.option("--num", "-n", type=int, default=3, show_default=True, help="How many stories.")
@click.option(
    "--length", type=int, help="Tokens at most per story (default: the run's sampling length)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draws.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sample_cmd(
    run_dir: Path, generation: int, num: int, length: int | None, seed: int, as_json: bool
) -> None:
    """Fresh stories from one generation's model (pure sampling, stopped at end-of-text)."""
    from lmcollapse.inspect import sample_lines, sample_run

    result = sample_run(run_dir, generation, num, length, seed)
    if as_json:
        click.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    _echo(sample_lines(result))


def _replicate_sets(replicates: int | None, jobs: int | None) -> list[str]:
    """--replicates and --jobs as the overrides they stand for (applied after --set)."""
    out = []
    for flag, key, value in (
        ("--replicates", "run.replicates", replicates),
        ("--jobs", "run.jobs", jobs),
    ):
        if value is not None:
            if value < 1:
                raise InvalidInput(f"{flag} must be >= 1, got {value}")
            out.append(f"{key}={value}")
    return out


def _echo(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)
