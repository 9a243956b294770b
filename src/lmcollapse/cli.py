"""The `lmcollapse` command line: thin subcommands that parse, load a config and call one function.

    lmcollapse theory [--config FILE] [--set KEY=VALUE ...] [flags]   theory experiment
    lmcollapse config show|docs|check                                  experiment configuration
    lmcollapse presets                                                 shipped presets

Bad input of any kind (flags, config files, values, paths) ends in one line on stderr,
`lmcollapse: error: ...`, and exit status 2; nothing is written before the input is validated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from lmcollapse import __version__
from lmcollapse.config import (
    ExperimentConfig,
    TheoryConfig,
    deep_merge,
    describe_fields,
    dump_yaml,
    from_plain,
    parse_overrides,
    preset_description,
    preset_names,
    read_yaml_file,
    resolve,
)
from lmcollapse.errors import InvalidInput

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LMCollapseGroup(click.Group):
    """A click group whose errors are one line and exit 2 (usage and input), never a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "lmcollapse"
            _fail(f"{exc.format_message()} (see '{where} --help')")
        except InvalidInput as exc:
            _fail(str(exc))
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted", 130)
        except OSError as exc:  # disk full, permissions: the environment, not a bug
            name = f" {exc.filename}" if exc.filename else ""
            _fail(f"cannot write{name}: {exc.strerror or exc}", 1)
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"lmcollapse: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


@click.group(cls=LMCollapseGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="lmcollapse")
def main() -> None:
    """Recursive training of language models and the theory of their collapse.

    Implements "Theoretical Proof that Auto-regressive Language Models Collapse when Real-world
    Data is a Finite Set". Start with `lmcollapse theory`.
    """


# ----------------------------------------------------------------------------------------------
# lmcollapse theory


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
    over: dict[str, Any] = {}
    simple = {
        "paradigm": "paradigms",
        "k": "k",
        "lam": "lam",
        "generations": "generations",
        "horizon": "horizon",
        "band": "band",
        "seed": "seed",
    }
    for flag, key in simple.items():
        value = flags[flag]
        if value not in (None, ()):
            over[key] = list(value) if isinstance(value, tuple) else value
    probe: dict[str, Any] = {}
    if flags["token"]:
        probe["tokens"], probe["counts"] = _token_counts(flags["token"])
    if flags["target"]:
        probe["targets"] = list(flags["target"])
    if flags["context"] is not None:
        probe["context"] = flags["context"]
    if probe:
        over["probe"] = probe
    errors = {
        key: flags[flag]
        for flag, key in {
            "errors": "kind",
            "error_scale": "scale",
            "error_profile": "profile",
        }.items()
        if flags[flag] is not None
    }
    if errors:
        over["errors"] = errors
    return over


@main.command(context_settings=CONTEXT_SETTINGS)
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
    type=click.Choice(["replace", "accumulate-subsample", "mix"]),
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
    type=click.Choice(["constant", "iid", "harmonic", "inverse-square", "bursts"]),
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
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/theory"),
    show_default=True,
    help="Output directory.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table."
)
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
@click.option("--show-config", is_flag=True, help="Print the resolved config as YAML and exit.")
def theory(
    config_file: Path | None,
    sets: tuple[str, ...],
    out: Path,
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
    """
    data = read_yaml_file(config_file) if config_file else {}
    data = deep_merge(data, _theory_overrides(flags))
    data = deep_merge(data, parse_overrides(sets))
    cfg = from_plain(TheoryConfig, data, str(config_file) if config_file else None)
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


def _print_theory_summary(
    cfg: TheoryConfig, result: dict[str, Any], out: Path, *, figures: bool
) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, width=max(Console().width, 120))
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


# ----------------------------------------------------------------------------------------------
# lmcollapse config / presets


@main.group(context_settings=CONTEXT_SETTINGS)
def config() -> None:
    """Show, document and check experiment configurations."""


_preset_option = click.option("--preset", help="A shipped preset (see `lmcollapse presets`).")
_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML config file, applied over the preset.",
)
_set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Dotted override, e.g. --set paradigm.k=0.5 (applied last).",
)


@config.command("show", context_settings=CONTEXT_SETTINGS)
@_preset_option
@_config_option
@_set_option
def config_show(preset: str | None, config_file: Path | None, sets: tuple[str, ...]) -> None:
    """Print the resolved experiment config: defaults <- preset <- file <- --set."""
    cfg = resolve(ExperimentConfig, preset=preset, config=config_file, overrides=sets)
    click.echo(dump_yaml(cfg), nl=False)


@config.command("check", context_settings=CONTEXT_SETTINGS)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--theory", "is_theory", is_flag=True, help="Check it as a theory config.")
def config_check(file: Path, is_theory: bool) -> None:
    """Validate a config file, listing every problem at once."""
    cls = TheoryConfig if is_theory else ExperimentConfig
    resolve(cls, config=file)
    click.echo(f"{file}: ok")


@config.command("docs", context_settings=CONTEXT_SETTINGS)
@click.option("--theory", "is_theory", is_flag=True, help="Document the theory config instead.")
def config_docs(is_theory: bool) -> None:
    """Every field: dotted key, type, default and what it means."""
    cls = TheoryConfig if is_theory else ExperimentConfig
    for key, type_name, default, doc in describe_fields(cls):
        click.echo(f"{key}  ({type_name}; default {json.dumps(default, ensure_ascii=False)})")
        for line in doc.splitlines() or ["(undocumented)"]:
            click.echo(f"    {line}")


@main.command(context_settings=CONTEXT_SETTINGS)
def presets() -> None:
    """List the experiment presets shipped with the package."""
    for name in preset_names():
        click.echo(f"{name:<12} {preset_description(name)}")
