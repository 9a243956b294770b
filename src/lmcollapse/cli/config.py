"""`lmcollapse config show|check|docs` and `lmcollapse presets`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lmcollapse.cli.common import CONTEXT_SETTINGS, experiment_config_options
from lmcollapse.config import (
    ExperimentConfig,
    TheoryConfig,
    describe_fields,
    dump_yaml,
    preset_description,
    preset_names,
    resolve,
)


@click.group(context_settings=CONTEXT_SETTINGS)
def config() -> None:
    """Show, document and check experiment configurations."""


@config.command("show", context_settings=CONTEXT_SETTINGS)
@experiment_config_options
def config_show(preset: str | None, config_file: Path | None, sets: tuple[str, ...]) -> None:
    """Print the resolved experiment config: defaults <- preset <- file <- --set."""
    cfg = resolve(ExperimentConfig, preset=preset, config=config_file, overrides=sets)
    click.echo(dump_yaml(cfg), nl=False)


@config.command("check", context_settings=CONTEXT_SETTINGS)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--preset", help="Check a shipped preset (with FILE: the file over it).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a field.")
@click.option("--theory", "is_theory", is_flag=True, help="Check it as a theory config.")
def config_check(
    file: Path | None, preset: str | None, sets: tuple[str, ...], is_theory: bool
) -> None:
    """Validate a config file or a preset, listing every problem at once (nothing is fetched:
    hub models and datasets are checked when a run starts)."""
    if file is None and preset is None:
        raise click.UsageError("give a config FILE, or --preset NAME")
    if is_theory and preset is not None:
        raise click.UsageError("--preset names experiment presets: drop --theory")
    cls = TheoryConfig if is_theory else ExperimentConfig
    resolve(cls, preset=preset, config=file, overrides=sets)
    what = " over ".join(str(x) for x in (file, preset and f"preset {preset}") if x)
    click.echo(f"{what}: ok")


@config.command("docs", context_settings=CONTEXT_SETTINGS)
@click.option("--theory", "is_theory", is_flag=True, help="Document the theory config instead.")
def config_docs(is_theory: bool) -> None:
    """Every field: dotted key, type, default and what it means."""
    cls = TheoryConfig if is_theory else ExperimentConfig
    for key, type_name, default, doc in describe_fields(cls):
        click.echo(f"{key}  ({type_name}; default {json.dumps(default, ensure_ascii=False)})")
        for line in doc.splitlines() or ["(undocumented)"]:
            click.echo(f"    {line}")


@click.command(context_settings=CONTEXT_SETTINGS)
def presets() -> None:
    """List the experiment presets shipped with the package."""
    names = preset_names()
    width = max(map(len, names))
    for name in names:
        click.echo(f"{name:<{width}}  {preset_description(name)}")
