"""The `lmcollapse` command line: thin subcommands that parse, load a config and call one function.

    lmcollapse run [--preset NAME | --config FILE] [--set ...] [--out DIR] the experiment
    lmcollapse sweep KEY=V1,V2,... [--preset ...] [--set ...]          one run per value + report
    lmcollapse report RUN [RUN ...] --out FILE.html                     HTML report
    lmcollapse status|probe|sample RUN ...                              inspect a run
    lmcollapse export RUN --generation N --format jsonl|parquet|hf      a corpus as a dataset
    lmcollapse theory [--config FILE] [--set KEY=VALUE ...] [flags]   theory experiment
    lmcollapse corpus prepare|stats                                    D0, holdout, tokenizer; truth
    lmcollapse config show|docs|check                                  experiment configuration
    lmcollapse presets                                                 shipped presets

Bad input of any kind (flags, config files, values, paths, data) ends in one line on stderr,
`lmcollapse: error: ...`, and exit status 2; nothing is written before the input is validated.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from lmcollapse._version import __version__
from lmcollapse.cli.common import CONTEXT_SETTINGS
from lmcollapse.errors import InvalidInput, RunFailed


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
        except RunFailed as exc:
            _fail(str(exc), 1)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted", 130)
        except OSError as exc:  # disk full, permissions: the environment, not a bug
            where = f"cannot write or read {exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}: check the free space and permissions there", 1)
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
    Data is a Finite Set". Start with `lmcollapse run` (the demo, a few minutes on a laptop).
    """


def _register() -> None:
    from lmcollapse.cli.config import config, presets
    from lmcollapse.cli.corpus import corpus
    from lmcollapse.cli.export import export_cmd
    from lmcollapse.cli.run import (
        compare_cmd,
        probe_cmd,
        report_cmd,
        run_cmd,
        sample_cmd,
        status_cmd,
        sweep_cmd,
    )
    from lmcollapse.cli.theory import theory

    for command in (
        run_cmd,
        sweep_cmd,
        report_cmd,
        compare_cmd,
        status_cmd,
        probe_cmd,
        sample_cmd,
        export_cmd,
        theory,
        corpus,
        config,
        presets,
    ):
        main.add_command(command)


_register()
