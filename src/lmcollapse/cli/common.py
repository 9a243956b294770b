"""Pieces shared by the subcommands: context settings and the preset/config/--set options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def experiment_config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--preset NAME, --config FILE, --set KEY=VALUE (in that order of precedence, --set last)."""
    func = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Dotted override, e.g. --set paradigm.k=0.5 (applied last).",
    )(func)
    func = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A YAML config file, applied over the preset.",
    )(func)
    return click.option("--preset", help="A shipped preset (see `lmcollapse presets`).")(func)


def replicate_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--replicates N and --jobs J (run.replicates, run.jobs), for run and for each sweep value."""
    func = click.option(
        "--jobs", type=int, help="Replicates run at once, sharing the cores (run.jobs)."
    )(func)
    return click.option(
        "--replicates",
        type=int,
        help="Runs of the experiment (of each sweep value) sharing D0, differing in run.seed "
        "(run.replicates); their aggregate has intervals.",
    )(func)


def given(flags: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """{config key: value} for the flags that were given (not None, not empty)."""
    out = {}
    for flag, key in mapping.items():
        value = flags.get(flag)
        if value is not None and value != ():
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


class GreedyNextCommand(click.Command):
    """Lets --next take several values: `--next ' was' ' were'` reads as `--next ' was' --next
    ' were'` (values up to the next option; write `--next=-x` for a token that starts with '-')."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        state = "other"  # "value": the next arg is --next's own value; "more": extra values
        for arg in args:
            if arg == "--next":
                state = "value"
                out.append(arg)
            elif state == "value":
                state = "more"
                out.append(arg)
            elif state == "more" and not arg.startswith("-"):
                out += ["--next", arg]
            else:
                state = "other"
                out.append(arg)
        return super().parse_args(ctx, out)
