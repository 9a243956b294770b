"""`lmcollapse corpus prepare` (D0, holdout, tokenizer into a directory) and `lmcollapse corpus
stats` (the corpus truth N_x, N_{x;v} of a context)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from lmcollapse.cli.common import (
    CONTEXT_SETTINGS,
    GreedyNextCommand,
    experiment_config_options,
    given,
)
from lmcollapse.config import ExperimentConfig, resolve


@click.group(context_settings=CONTEXT_SETTINGS)
def corpus() -> None:
    """Build the real corpus D0 and measure its truth."""


@corpus.command("prepare", context_settings=CONTEXT_SETTINGS)
@experiment_config_options
@click.option("--data", "source", help="Source: builtin, a hub dataset, a file or a directory.")
@click.option("--num-stories", type=int, help="Stories to make (builtin) or to take at most.")
@click.option("--tokenizer", help="`train`, or a pretrained tokenizer's name or path.")
@click.option("--vocab-size", type=int, help="Vocabulary of a trained tokenizer.")
@click.option("--text-column", help="Column or JSON field holding the text.")
@click.option("--split", help="Split of a hub or save_to_disk dataset.")
@click.option("--dedupe/--no-dedupe", default=None, help="Drop exact duplicate stories.")
@click.option(
    "--holdout", "holdout_fraction", type=float, help="Held-out share of D0, in (0, 0.5]."
)
@click.option(
    "--out",
    type=str,
    default="runs/corpus",
    show_default=True,
    help="Directory for tokenizer/, d0/, holdout/ and corpus.json.",
)
def prepare_cmd(
    preset: str | None, config_file: Path | None, sets: tuple[str, ...], out: str, **flags: Any
) -> None:
    """Build D0, its held-out split and the tokenizer into --out (a second call reuses them)."""
    from lmcollapse.data.prepare import prepare

    data = given(
        flags,
        {
            "source": "source",
            "num_stories": "num_stories",
            "tokenizer": "tokenizer",
            "vocab_size": "tokenizer_vocab_size",
            "text_column": "text_column",
            "split": "split",
            "dedupe": "dedupe",
            "holdout_fraction": "holdout_fraction",
        },
    )
    cfg = resolve(
        ExperimentConfig, preset=preset, config=config_file, overrides=_with_data(sets, data)
    )
    t0 = time.perf_counter()
    prepared = prepare(cfg.data, out, log=lambda msg: click.echo(msg, err=True))
    info = prepared.info
    click.echo(
        f"{out}: D0 {info['d0']['stories']:,} stories / {info['d0']['tokens']:,} tokens, holdout "
        f"{info['holdout']['stories']:,} / {info['holdout']['tokens']:,}, vocabulary "
        f"{info['tokenizer']['vocab_size']:,} ({time.perf_counter() - t0:.1f} s)"
    )


def _with_data(sets: tuple[str, ...], data: dict[str, Any]) -> dict[str, Any]:
    from lmcollapse.config import deep_merge, parse_overrides

    return deep_merge({"data": data} if data else {}, parse_overrides(sets))


@corpus.command("stats", cls=GreedyNextCommand, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--data",
    "source",
    required=True,
    help="A prepared corpus directory, a token store, or a text source (builtin, hub, file).",
)
@click.option("--tokenizer", help="Tokenizer name or path (not needed for a prepared corpus).")
@click.option(
    "--context", required=True, help="Context text x, e.g. ' there' (mind the leading space)."
)
@click.option(
    "--next",
    "next_",
    multiple=True,
    metavar="TOKEN [TOKEN ...]",
    help="Continuations v to report, e.g. --next ' was' ' were' (each must be one token).",
)
@click.option("--top", type=int, default=10, show_default=True, help="How many top continuations.")
@click.option("--num-stories", type=int, help="Cap a text source (builtin default: 10,000).")
@click.option(
    "--text-column", default="text", show_default=True, help="Text column of a text source."
)
@click.option(
    "--split", default="train", show_default=True, help="Split of a hub or saved dataset."
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the builtin story world.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def stats_cmd(
    source: str,
    tokenizer: str | None,
    context: str,
    next_: tuple[str, ...],
    top: int,
    num_stories: int | None,
    text_column: str,
    split: str,
    seed: int,
    as_json: bool,
) -> None:
    """Corpus truth: N_x, N_{x;v} and p(v|x) = N_{x;v}/N_x of a context; its top continuations."""
    from lmcollapse.data.stats import source_stats

    result = source_stats(
        source,
        context,
        next_,
        top,
        tokenizer=tokenizer,
        num_stories=num_stories,
        text_column=text_column,
        split=split,
        seed=seed,
    )
    if as_json:
        click.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    _print_stats(result)


def _print_stats(r: dict[str, Any]) -> None:
    click.echo(f"data: {r['data']}")
    click.echo(
        f"context {r['context']!r} = {r['context_tokens']} (ids {r['context_ids']}): "
        f"N_x = {r['N_x']:,}"
    )
    if r["N_x"] == 0:
        click.echo("the context never occurs followed by a token: p(v|x) is undefined")
    width = max([len(repr(t)) for t in r["next"]] + [len(repr(t["token"])) for t in r["top"]] + [5])
    for text, v in r["next"].items():
        p = "—" if v["p"] is None else f"{v['p']:.4f}"
        click.echo(f"  {text!r:<{width}} N_x;v = {v['count']:>12,}   p = {p}")
    if r["top"]:
        click.echo(f"top {len(r['top'])} continuations:")
        for t in r["top"]:
            click.echo(f"  {t['token']!r:<{width}} {t['count']:>12,}   p = {t['p']:.4f}")
