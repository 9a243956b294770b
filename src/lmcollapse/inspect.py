"""Inspecting a run directory: what `lmcollapse status`, `probe` and `sample` print, from Python.

    probe_run("runs/demo", " there", [" was", " were"], top=5)   # p̂_n(v|x) of every generation
    sample_run("runs/demo", generation=3, num=5)                  # fresh stories of one model
    print("\\n".join(status_lines(status("runs/demo"))))          # the `lmcollapse status` text

A run is read through `lmcollapse.rundir` (layout, manifest, config, metrics), its truth counted
in its own D0 (`data.stats.corpus_truth`), its models loaded with `models.load_model`; nothing
here writes into the run. The `*_lines` helpers are the commands' text forms, so the command line
only parses, calls one function and prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmcollapse.data.prepare import open_prepared
from lmcollapse.data.stats import corpus_truth
from lmcollapse.data.tokenizer import decode_story, single_token
from lmcollapse.errors import InvalidInput
from lmcollapse.rundir import (
    RunLayout,
    check_d0,
    collapse_summary,
    completed,
    read_manifest,
    run_config,
    status,
    verified_model,
)


def probe_run(
    run_dir: str | Path, context: str, next_texts: Sequence[str] = (), top: int = 5
) -> dict[str, Any]:
    """p̂_n(v|x) of every finished generation for any context x, next to the truth N_{x;v}/N_x of
    the run's D0 and α* (what `lmcollapse probe --json` prints): probes the run did not plan."""
    from lmcollapse.evaluate.probes import probe

    if not context:
        raise InvalidInput(
            "the context is empty: give text such as ' there' (leading space matters)"
        )
    if top < 0:
        raise InvalidInput(f"--top must be >= 0, got {top}")
    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout)
    corpus = _data(layout, manifest)
    tok = corpus.tokenizer
    ids = {v: single_token(tok, v, "next token") for v in next_texts}  # before counting D0
    truth = corpus_truth(corpus.d0, tok, context)
    n_x = truth.n_x
    out: dict[str, Any] = {
        "run": str(run_dir),
        "context": context,
        "context_tokens": tok.token_strings(truth.context.tolist()),
        "N_x": n_x,
        "truth": {v: float(truth.counts[i] / n_x) if n_x else None for v, i in ids.items()},
        "generations": [],
    }
    for n in completed(manifest, layout):
        result = probe(_model(layout, manifest, n), tok, context, next_texts, truth, top_k=top)
        out["generations"].append(
            {
                "generation": n,
                "next": {v: d.to_plain() for v, d in result.next.items()},
                "top": result.top,
                "alpha_x_relative": result.alpha_x_relative,
            }
        )
    return out


def probe_lines(result: dict[str, Any]) -> list[str]:
    """The text form of a `probe_run` result: the truth, then one line per generation."""
    lines = [
        f"context {result['context']!r} = {result['context_tokens']}; N_x in D0 = {result['N_x']:,}"
    ]
    for v, t in result["truth"].items():
        lines.append(f"  truth p({v!r}|x) = {'—' if t is None else f'{t:.4f}'}")
    for g in result["generations"]:
        nxt = "  ".join(f"{v!r}: {d['p_hat']:.4f}" for v, d in g["next"].items())
        tops = ", ".join(f"{t['token']!r} {t['p_hat']:.3f}" for t in g["top"])
        lines.append(
            f"  generation {g['generation']:3d}: {nxt}  α*/N_x {g['alpha_x_relative']}  top: {tops}"
        )
    return lines


SAMPLE_MEMORY = 4 * 2**30  # bytes `lmcollapse sample` may use for its buffers


def sample_run(
    run_dir: str | Path, generation: int, num: int, length: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Fresh stories from one finished generation's model, drawn as the run draws its corpora
    (pure sampling, its sampling config and context) but stopped at end-of-text: what
    `lmcollapse sample --json` prints. `finished[i]`: story i ended by itself within `length`
    tokens (default: the run's sampling.length)."""
    import torch

    from lmcollapse.sample import SamplingParams, sample_batch, sampling_context

    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout)
    done = completed(manifest, layout)
    if generation not in done:
        raise InvalidInput(
            f"generation {generation} of {run_dir} is not finished; finished: {done or 'none'}"
        )
    if num < 1:
        raise InvalidInput(f"--num must be >= 1, got {num}")
    if not 0 <= seed < 2**63:
        raise InvalidInput(f"--seed must be in [0, 2^63), got {seed}")
    cfg = run_config(run_dir)
    tok = _data(layout, manifest).tokenizer
    model = _model(layout, manifest, generation)
    length = cfg.sampling.length if length is None else length
    need = num * (2 * model.shape.vocab_size * 4 + (length + 1) * 8)  # the sampler's buffers
    if length >= 1 and need > SAMPLE_MEMORY:
        raise InvalidInput(
            f"--num {num} stories of up to --length {length} tokens would need "
            f"{need / 2**30:,.1f} GiB for the sampler: ask for fewer or shorter stories"
        )
    rows = sample_batch(
        model,
        num,
        length,
        eos_id=tok.eos_id,
        context=sampling_context(cfg, model),
        generator=torch.Generator().manual_seed(seed),
        params=SamplingParams.of(cfg.sampling),
        stop_at_eos=True,
    )
    return {
        "run": str(run_dir),
        "generation": generation,
        "seed": seed,
        "stories": [decode_story(tok, r) for r in rows],
        "finished": [bool(len(r)) and int(r[-1]) == tok.eos_id for r in rows],
    }


def sample_lines(result: dict[str, Any]) -> list[str]:
    """The text form of a `sample_run` result: each story under a header that marks a story cut
    at the length (its text ends in …), a blank line after each."""
    lines = []
    g = result["generation"]
    for i, (text, done) in enumerate(zip(result["stories"], result["finished"], strict=True)):
        mark = "" if done else " (unfinished: no end-of-text within --length)"
        lines += [
            f"--- generation {g}, story {i + 1}{mark} ---",
            f"{text}{'' if done else ' …'}",
            "",
        ]
    return lines


def status_lines(s: dict[str, Any]) -> list[str]:
    """The text form of `rundir.status`: status and progress, the last error, one line per
    finished generation (perplexity, seconds per stage), the report."""
    done = s["generations_done"]
    lines = [
        f"{s['run']}: {s['status']} — generations done {len(done)}/{s['generations_planned']}"
        f" (preset {s['preset']}, created {s['created']})"
    ]
    if s.get("error"):
        lines.append(f"last error: {s['error']}")
    for n in done:
        sec = s["seconds"].get(str(n)) or {}
        timing = ", ".join(f"{k} {v:.2f}s" if v < 10 else f"{k} {v:.0f}s" for k, v in sec.items())
        ppl = s["perplexity"].get(str(n))
        shown = f"{ppl:.3f}" if isinstance(ppl, (int, float)) else "none"
        lines.append(f"  generation {n:3d}: perplexity {shown} ({timing})")
    if s["report"]:
        lines.append(f"report: {s['report']}")
    return lines


def _fmt_interval(m: dict[str, Any] | None) -> str:
    if not m or m.get("mean") is None:
        return "—"
    if m.get("n", 0) < 2:
        return f"{m['mean']:.2f}"
    return f"{m['mean']:.2f} [{m['lo']:.2f}, {m['hi']:.2f}]"


def replicated_summary_lines(root: str | Path) -> list[str]:
    """What `lmcollapse run` prints at the end of a replicated run (from aggregate.json):
    replicates, perplexity at the first and last generation with intervals, the onset."""
    import json

    from lmcollapse.repdir import ReplicatedLayout, read_index

    layout = ReplicatedLayout(Path(root))
    index = read_index(root)
    agg = json.loads(layout.aggregate_json.read_text(encoding="utf-8"))
    gens = [g for g in agg["generations"] if g["generation"] >= 1]
    o = agg["onset"]
    level = round(100 * agg["level"])
    lines = [
        f"{root}: {len(agg['seeds'])} replicates (seeds {', '.join(map(str, agg['seeds']))}), "
        f"status {index.get('status')}"
    ]
    if gens:
        first, last = gens[0], gens[-1]
        lines.append(
            f"held-out perplexity, mean [{level}% interval]: generation {first['generation']} "
            f"{_fmt_interval(first['metrics'].get('perplexity'))} → generation "
            f"{last['generation']} {_fmt_interval(last['metrics'].get('perplexity'))} "
            f"({last['replicates']} replicate(s) there)"
        )
    when = "not within the run"
    if o["collapsed"]:
        summary = {"mean": o["mean"], "lo": o["lo"], "hi": o["hi"], "n": o["collapsed"]}
        when = (
            f"generation {_fmt_interval(summary)} (median {o['median']:g}), in "
            f"{o['collapsed']} of {o['replicates']} replicates (mean among them)"
        )
    else:
        when += f", in none of {o['replicates']} replicates"
    lines.append(f"collapse onset (perplexity > {1 + o['tau']:g} × generation 1's): {when}")
    lines.append(f"aggregate: {layout.aggregate_csv}")
    lines.append(f"report: {layout.report}")
    return lines


def run_summary_lines(run_dir: str | Path) -> list[str]:
    """What `lmcollapse run` prints at its end: generations, status, held-out perplexity by
    generation (a long run's thinned to a dozen or so) and the report."""
    from lmcollapse.repdir import is_replicated

    if is_replicated(run_dir):
        return replicated_summary_lines(run_dir)
    s = status(run_dir)
    items = [(k, v) for k, v in s["perplexity"].items() if v is not None]
    if len(items) > 12:  # a long run: the first few, evenly spaced ones, the last
        step = max(1, len(items) // 8)
        keep = sorted(set(range(3)) | set(range(0, len(items), step)) | {len(items) - 1})
        items = [items[i] for i in keep]
    ppl = ", ".join(f"{k}: {v:.2f}" for k, v in items)
    return [
        f"{run_dir}: {len(s['generations_done'])} generation(s), status {s['status']}",
        f"held-out perplexity by generation: {ppl}",
        f"report: {s['report']}",
    ]


def sweep_summary_lines(
    root: str | Path, key: str, runs: Mapping[str, str | Path], report: str | Path
) -> list[str]:
    """What `lmcollapse sweep` prints: per run (label → directory) its perplexity from the first
    generation to the last and where it first doubled (`rundir.collapse_summary`)."""
    from lmcollapse.repdir import is_replicated

    lines = [f"{root}: {len(runs)} runs of {key}"]
    for label, d in runs.items():
        if is_replicated(d):
            lines += [f"  {label}: " + line for line in replicated_summary_lines(d)[1:3]]
            continue
        c = collapse_summary(d)
        onset = f"generation {c['onset']}" if c["onset"] else "not within the run"
        first = "—" if c["first"] is None else f"{c['first']:.2f}"
        last = "—" if c["last"] is None else f"{c['last']:.2f}"
        lines.append(
            f"  {label}: perplexity {first} → {last} over {c['generations']} generations; "
            f"doubled at {onset}"
        )
    lines.append(f"report: {report}")
    return lines


__all__ = [
    "probe_lines",
    "probe_run",
    "replicated_summary_lines",
    "run_summary_lines",
    "sample_lines",
    "sample_run",
    "status_lines",
    "sweep_summary_lines",
]


def _data(layout: RunLayout, manifest: dict[str, Any]) -> Any:
    """The run's prepared data, after checking it is the data the run started with."""
    corpus = open_prepared(layout.data)
    check_d0(dict(manifest), corpus)
    return corpus


def _model(layout: RunLayout, manifest: dict[str, Any], n: int) -> Any:
    """Generation n's model, checked against its recorded SHA-256; a file that will not load is
    a one-line error naming it."""
    from lmcollapse.models import load_model

    path = verified_model(layout, manifest, n)
    try:
        return load_model(path)
    except InvalidInput:
        raise
    except Exception as exc:  # a damaged checkpoint: safetensors, torch or json errors
        raise InvalidInput(
            f"{path} does not load ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}): "
            f"remove gen_{n:03d} and every later gen_* directory, then rerun `lmcollapse run`"
        ) from None
