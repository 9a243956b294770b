"""`lmcollapse run` (the experiment), `report`, and the inspection commands `probe`, `sample`,
`status` for a run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lmcollapse.cli.common import CONTEXT_SETTINGS, GreedyNextCommand, experiment_config_options
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
@click.option("--quiet", is_flag=True, help="No progress bars (the log file is still written).")
def run_cmd(
    preset: str | None,
    config_file: Path | None,
    sets: tuple[str, ...],
    out: str | None,
    resume: str,
    quiet: bool,
) -> None:
    """Run the recursive-training experiment (default: the demo preset on this machine).

    Generation 1 trains on D0; every generation is evaluated, generates its corpus, and the next
    trains on its paradigm's mix. Rerun the same command to continue an interrupted run.
    """
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.pipeline import run
    from lmcollapse.rundir import status

    if out is not None and not out.strip():
        raise InvalidInput("--out is empty: name a run directory")
    name = preset if preset or config_file else DEFAULT_PRESET
    cfg = resolve(ExperimentConfig, preset=name, config=config_file, overrides=sets)
    root = run(cfg, out, preset=name, resume=resume, progress=not quiet)
    s = status(root)
    items = [(k, v) for k, v in s["perplexity"].items() if v is not None]
    if len(items) > 12:  # a long run: the first few, evenly spaced ones, the last
        step = max(1, len(items) // 8)
        keep = sorted(set(range(3)) | set(range(0, len(items), step)) | {len(items) - 1})
        items = [items[i] for i in keep]
    ppl = ", ".join(f"{k}: {v:.2f}" for k, v in items)
    click.echo(f"{root}: {len(s['generations_done'])} generation(s), status {s['status']}")
    click.echo(f"held-out perplexity by generation: {ppl}")
    click.echo(f"report: {s['report']}")


@click.command("sweep", context_settings=CONTEXT_SETTINGS)
@click.argument("assignment", metavar="KEY=V1,V2,...")
@experiment_config_options
@click.option("--out", help="Sweep directory (default runs/sweep-<KEY>); a run per value inside.")
@click.option("--quiet", is_flag=True, help="No progress bars (each run's log is still written).")
def sweep_cmd(
    assignment: str,
    preset: str | None,
    config_file: Path | None,
    sets: tuple[str, ...],
    out: str | None,
    quiet: bool,
) -> None:
    """Run one experiment per value of a config key, then one report overlaying them.

    E.g. `lmcollapse sweep paradigm.k=0.05,0.25,1,4 --preset ngram-demo-accumulate-subsample`:
    does a smaller k only delay collapse? Every run resumes like `lmcollapse run`.
    """
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.pipeline import sweep
    from lmcollapse.rundir import collapse_summary

    key, sep, values = assignment.partition("=")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not vals:
        raise InvalidInput(
            f"sweep {assignment!r}: expected KEY=V1,V2,..., e.g. paradigm.k=0.25,1,4"
        )
    if len(set(vals)) != len(vals):
        raise InvalidInput(f"sweep {assignment!r}: a value is repeated")
    key = key.strip()
    name = preset if preset or config_file else DEFAULT_PRESET
    configs = {  # every config resolved and validated before anything runs
        f"{key}={v}".replace("/", "_"): resolve(
            ExperimentConfig, preset=name, config=config_file, overrides=[*sets, f"{key}={v}"]
        )
        for v in vals
    }
    root = Path(out) if out else Path("runs") / f"sweep-{key}"
    dirs, report = sweep(configs, root, preset=name, progress=not quiet)
    click.echo(f"{root}: {len(dirs)} runs of {key}")
    for label, d in zip(configs, dirs, strict=True):
        c = collapse_summary(d)
        onset = f"generation {c['onset']}" if c["onset"] else "not within the run"
        first = "—" if c["first"] is None else f"{c['first']:.2f}"
        last = "—" if c["last"] is None else f"{c['last']:.2f}"
        click.echo(
            f"  {label}: perplexity {first} → {last} over {c['generations']} generations; "
            f"doubled at {onset}"
        )
    click.echo(f"report: {report}")


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


@click.command("status", context_settings=CONTEXT_SETTINGS)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_cmd(run_dir: Path, as_json: bool) -> None:
    """What a run directory holds: status, generations done, perplexity, timings."""
    from lmcollapse.rundir import status

    s = status(run_dir)
    if as_json:
        click.echo(json.dumps(s, indent=1))
        return
    done = s["generations_done"]
    click.echo(
        f"{s['run']}: {s['status']} — generations done {len(done)}/{s['generations_planned']}"
        f" (preset {s['preset']}, created {s['created']})"
    )
    if s.get("error"):
        click.echo(f"last error: {s['error']}")
    for n in done:
        sec = s["seconds"].get(str(n)) or {}
        timing = ", ".join(f"{k} {v:.2f}s" if v < 10 else f"{k} {v:.0f}s" for k, v in sec.items())
        click.echo(f"  generation {n:3d}: perplexity {s['perplexity'].get(str(n)):.3f} ({timing})")
    if s["report"]:
        click.echo(f"report: {s['report']}")


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
    result = probe_run(run_dir, context, list(next_), top)
    if as_json:
        click.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    click.echo(f"context {context!r} = {result['context_tokens']}; N_x in D0 = {result['N_x']:,}")
    for v, t in result["truth"].items():
        click.echo(f"  truth p({v!r}|x) = {'—' if t is None else f'{t:.4f}'}")
    for g in result["generations"]:
        nxt = "  ".join(f"{v!r}: {d['p_hat']:.4f}" for v, d in g["next"].items())
        tops = ", ".join(f"{t['token']!r} {t['p_hat']:.3f}" for t in g["top"])
        click.echo(
            f"  generation {g['generation']:3d}: {nxt}  α*/N_x {g['alpha_x_relative']}  top: {tops}"
        )


def probe_run(run_dir: Path, context: str, next_texts: list[str], top: int) -> dict[str, Any]:
    """The probe of every finished generation of a run (what `lmcollapse probe` prints)."""
    from lmcollapse.data.prepare import open_prepared
    from lmcollapse.data.stats import count_store_continuations
    from lmcollapse.data.tokenizer import single_token
    from lmcollapse.evaluate.probes import probe
    from lmcollapse.models import load_model
    from lmcollapse.rundir import RunLayout, completed, read_manifest

    if not context:
        raise InvalidInput(
            "the context is empty: give text such as ' there' (leading space matters)"
        )
    if top < 0:
        raise InvalidInput(f"--top must be >= 0, got {top}")
    layout = RunLayout(run_dir)
    manifest = read_manifest(layout)
    corpus = open_prepared(layout.data)
    tok = corpus.tokenizer
    for v in next_texts:
        single_token(tok, v, "next token")
    ids = tok.encode(context)
    truth = count_store_continuations(corpus.d0, ids, tok.vocab_size)
    out: dict[str, Any] = {
        "run": str(run_dir),
        "context": context,
        "context_tokens": tok.token_strings(ids),
        "N_x": truth.n_x,
        "truth": {},
        "generations": [],
    }
    for v in next_texts:
        i = tok.encode(v)[0]
        out["truth"][v] = float(truth.counts[i] / truth.n_x) if truth.n_x else None
    for n in completed(manifest, layout):
        result = probe(load_model(layout.model(n)), tok, context, next_texts, truth, top_k=top)
        out["generations"].append(
            {
                "generation": n,
                "next": {v: d.to_plain() for v, d in result.next.items()},
                "top": result.top,
                "alpha_x_relative": result.alpha_x_relative,
            }
        )
    return out


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
    import torch

    from lmcollapse.data.prepare import open_prepared
    from lmcollapse.models import load_model
    from lmcollapse.rundir import RunLayout, completed, read_manifest, run_config
    from lmcollapse.sample import SamplingParams, sample_batch, sampling_context

    layout = RunLayout(run_dir)
    manifest = read_manifest(layout)
    done = completed(manifest, layout)
    if generation not in done:
        raise InvalidInput(
            f"generation {generation} of {run_dir} is not finished; finished: {done or 'none'}"
        )
    if num < 1:
        raise InvalidInput(f"--num must be >= 1, got {num}")
    cfg = run_config(run_dir)
    tok = open_prepared(layout.data).tokenizer
    model = load_model(layout.model(generation))
    s = cfg.sampling
    rows = sample_batch(
        model,
        num,
        length if length is not None else s.length,
        eos_id=tok.eos_id,
        context=sampling_context(cfg, model),
        generator=torch.Generator().manual_seed(seed),
        params=SamplingParams.of(s),
        stop_at_eos=True,
    )
    finished = [bool(len(r)) and int(r[-1]) == tok.eos_id for r in rows]
    stories = [
        tok.decode(r[:-1].tolist() if done else r.tolist()).strip()
        for r, done in zip(rows, finished, strict=True)
    ]
    if as_json:
        out = {"run": str(run_dir), "generation": generation, "seed": seed, "stories": stories}
        click.echo(json.dumps(out | {"finished": finished}, indent=1, ensure_ascii=False))
        return
    for i, (text, done) in enumerate(zip(stories, finished, strict=True)):
        mark = "" if done else " (unfinished: no end-of-text within --length)"
        tail = "" if done else " …"
        click.echo(f"--- generation {generation}, story {i + 1}{mark} ---\n{text}{tail}\n")
