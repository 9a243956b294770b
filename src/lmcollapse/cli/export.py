"""`lmcollapse export RUN --generation N --format jsonl|parquet|hf`: one generation's corpus (S_n,
or D0 for N = 0) as a dataset `datasets.load_dataset` reads (lmcollapse.export)."""

from __future__ import annotations

from pathlib import Path

import click

from lmcollapse.cli.common import CONTEXT_SETTINGS


@click.command("export", context_settings=CONTEXT_SETTINGS)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--generation",
    "-g",
    type=click.IntRange(min=0),
    required=True,
    help="The generation whose corpus S_N to export (0: the real corpus D0).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "parquet", "hf"]),
    required=True,
    help="jsonl: one JSON object per line; parquet: one file; hf: a hub dataset directory "
    "(data/*.parquet and a README.md dataset card).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where to write (default RUN/export/gen_NNN.jsonl, gen_NNN.parquet or gen_NNN_hf/).",
)
@click.option("--force", is_flag=True, help="Replace an existing --out.")
def export_cmd(run_dir: Path, generation: int, fmt: str, out: Path | None, force: bool) -> None:
    """Write a generation's corpus, one row per story: text, unfinished, tokens, generation.

    The stories are decoded with the run's tokenizer, without their end-of-text token;
    `unfinished` marks those that did not end by themselves. Only completed generations are
    exported, after checking them against the run's checksums.
    """
    from lmcollapse.export import export_corpus

    done = export_corpus(run_dir, generation, fmt, out, force)
    click.echo(
        f"{done.path}: {done.rows:,} stories of generation {generation} ({done.unfinished:,} "
        f"unfinished, {done.tokens:,} tokens) as {fmt}"
    )
