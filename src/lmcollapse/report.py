"""The HTML report of one or more runs: one self-contained file (figures embedded, no network).

    lmcollapse report runs/demo runs/demo-accumulate-subsample --out compare.html

Sections: what happened (perplexity and probes at the first and last generation), Figure 2
(probes against the corpus truth), Figure 3 (held-out perplexity), Remark B.1's α*, diversity and
tail statistics, story lengths, Table 1 (samples of every generation), and the run facts
(config, timings, token counts, hardware, versions). Built from the run directories' files only.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from lmcollapse.artifacts import atomic_write_text
from lmcollapse.errors import InvalidInput
from lmcollapse.results import GenerationMetrics
from lmcollapse.rundir import RunLayout, load_metrics, read_config, read_manifest, run_containing

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
.sample{white-space:pre-wrap;background:#fafafa;border-left:3px solid #bbb;padding:.4em .8em;
margin:.4em 0;font-size:.9em} details{margin:.3em 0} summary{cursor:pointer}
"""

# After loading, the page notes on <body> how many figures rendered and any script error: a
# headless browser (the report's test) reads it back; a reader never sees it.
_SELF_CHECK = """<script>
window.addEventListener('error', function (e) {
  document.body.dataset.errors = (e.message || 'error');
});
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.figures = ok + '/' + imgs.length;
});
</script>"""

_CAPTIONS = {
    "probes.png": "Figure 2. p̂_n(v|x) of each generation (solid) against the corpus truth "
    "N_{x;v}/N_x of D0 (dashed).",
    "perplexity.png": "Figure 3. Perplexity on held-out real stories: the distance of generation "
    "n's distribution from D0's, on average (Appendix C.3).",
    "alpha.png": "Remark B.1: the smallest non-negative error α*_x (in units of N_x) that "
    "explains p̂_n(·|x) given D0's counts. Zero means p̂_n is D0's distribution.",
    "diversity.png": "Statistics of each generated corpus on equal-size samples; generation 0 is "
    "D0.",
    "lengths.png": "Story length and end-of-text rate of each corpus (generation 0 = D0).",
    "curation.png": "Curation (the paper's remedy, Sec. 4) and fresh real data. Left: what each "
    "generation's curation did to S_n before it joined the corpus — the share of sampled "
    "stories kept, a filter's acceptance rate, ToEdit's share of too-predictable tokens, the "
    "resampling detector's held-out AUC. Right: the real share of each training set (D0 and "
    "fresh stories); under Accumulate-Subsample with fresh data it tends to r/(k + r), not 0.",
    "downstream.png": "Downstream classification (the authors' protocol): each generation's "
    "model with a new classification head, fine-tuned on the task's training split and tested "
    "(accuracy solid, weighted F1 dotted), against a randomly initialised model of the same "
    "config fine-tuned the same way (dashed). A model no better than the dashed line has kept "
    "nothing a classifier can use.",
    "spread": "Theory next to replicates. Left: p̂_n(v|x) over the replicates (mean and "
    "interval, solid) against the bridge's limit term estimated from each replicate (dotted) "
    "and the truth (dashed). Middle: the standard deviation of p̂_n(v|x) across replicates. "
    "Right: the bridge's real-data weight N_x / y[n], which the proof drives to 0.",
    "theory": "Theory next to measurement. Left: p̂_n(v|x) (solid), Theorem 2.1's error-only "
    "limit term built from the estimated errors (dotted), D0's truth (dashed). Middle: the weight "
    "N_x/y[n] of the real data in p̂_n, which the proof says must vanish. Right: the smallest "
    "per-generation error α[n] (Remark B.1 applied to Prop. 2.3-2.5) relative to the counts b[n] "
    "it was added to; the theorem assumes α[n] does not tend to zero (the table's verdict). "
    "Minimal errors understate the true ones once p̂_n settles.",
}


def _load(run_dir: Path) -> dict[str, Any]:
    from lmcollapse.repdir import is_replicated

    if is_replicated(run_dir):
        return _load_replicated(run_dir)
    layout = RunLayout(run_dir)
    manifest = read_manifest(layout)
    metrics = load_metrics(layout)
    samples = {}
    for m in metrics:
        f = layout.samples(m["generation"])
        # a damaged samples.txt still shows (undecodable bytes marked), never fails the report
        samples[m["generation"]] = (
            f.read_text(encoding="utf-8", errors="replace") if f.is_file() else ""
        )
    config = ""
    if layout.config.is_file():  # shown as the run's: only if it is the one the run wrote
        read_config(layout, manifest)
        config = layout.config.read_text(encoding="utf-8")
    return {
        "dir": run_dir,
        "label": run_dir.name,
        "manifest": manifest,
        "metrics": metrics,
        "samples": samples,
        "config": config,
    }


def _load_replicated(root: Path) -> dict[str, Any]:
    """A replicated run: its first replicate's files (samples, facts, theory) and every
    replicate's metrics with their aggregate (aggregate.json, or computed when missing)."""
    from lmcollapse.aggregate import FORMAT as AGGREGATE_FORMAT
    from lmcollapse.aggregate import aggregate_run
    from lmcollapse.config import to_plain
    from lmcollapse.repdir import ReplicatedLayout, replicate_dirs

    reps = replicate_dirs(root)
    if not reps:
        raise InvalidInput(f"{root} is a replicated run none of whose replicates has started")
    run = _load(reps[0][1])
    layout = ReplicatedLayout(root)
    try:
        agg = json.loads(layout.aggregate_json.read_text(encoding="utf-8"))
        ok = agg.get("format") == AGGREGATE_FORMAT and isinstance(agg.get("generations"), list)
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:  # missing, damaged or of another version: computed from the replicates
        agg = to_plain(aggregate_run(root), json_safe=True)
    run |= {
        "dir": root,
        "label": root.name,
        "replicates": [(seed, load_metrics(RunLayout(path))) for seed, path in reps],
        "aggregate": agg,
        "first_replicate": reps[0][1],
    }
    return run


def _bridge(run: dict[str, Any]) -> tuple[str, dict[str, bytes]]:
    """The report's theory section for one run (and its figure), or why there is none."""
    from lmcollapse.bridge import ProbeBridge, from_run
    from lmcollapse.plots import bridge_figure

    try:
        result = from_run(run.get("first_replicate", run["dir"]))
    except InvalidInput as exc:
        return f"<p>No theory comparison: {html.escape(str(exc))}</p>", {}
    except Exception as exc:  # a report must never take a run down with it
        return (
            f"<p>The theory comparison failed ({html.escape(exc.__class__.__name__)}: "
            f"{html.escape(str(exc))}).</p>",
            {},
        )
    rows = []
    for p in result.probes:
        if not isinstance(p, ProbeBridge):
            rows.append(
                f"<tr><td class='l'>{html.escape(repr(p.context))}</td>"
                f"<td class='l' colspan='5'>{html.escape(p.skipped)}</td></tr>"
            )
            continue
        t = p.trend
        rows.append(
            f"<tr><td class='l'>{html.escape(repr(p.context))}</td><td>{_fmt(p.N_x)}</td>"
            f"<td>{_fmt(p.real_data_weight[-1])}</td>"
            f"<td>{_fmt(p.alpha_cumulative_log10[-1], 1)}</td>"
            f"<td>{_fmt(t.get('slope'))}</td><td class='l'>{html.escape(t['verdict'])}</td></tr>"
        )
    table = (
        "<table><tr><th class='l'>context x</th><th>N_x</th><th>N_x/y[G]</th><th>log10 Σα</th>"
        f"<th>slope of α[n]</th><th class='l'>the errors are…</th></tr>{''.join(rows)}"
        "</table>"
    )
    png = bridge_figure(run["label"], result)
    figures = {f"theory-{run['label']}.png": png} if png else {}
    return table, figures


def _spread(run: dict[str, Any]) -> tuple[str, dict[str, bytes]]:
    """A replicated run's theory across replicates (theory_spread.json, or computed when
    missing): at a few generations, p̂_n(v|x) over the replicates — mean, interval, standard
    deviation — next to the bridge's limit term; and the figure. Empty when the theory does not
    cover the run's paradigm."""
    from lmcollapse.aggregate import FORMAT as AGGREGATE_FORMAT
    from lmcollapse.aggregate import bridge_spread
    from lmcollapse.config import to_plain
    from lmcollapse.plots import spread_figure

    path = Path(run["dir"]) / "theory_spread.json"
    try:
        spread = json.loads(path.read_text(encoding="utf-8"))
        ok = spread.get("format") == AGGREGATE_FORMAT and isinstance(spread.get("probes"), list)
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:  # missing, damaged or of another version: computed from the replicates
        try:
            spread = to_plain(bridge_spread(run["dir"]), json_safe=True)
        except InvalidInput:
            return "", {}
    gens = spread["generations"]
    if not spread["probes"] or not gens:
        return "", {}
    picks = sorted({0, 1, len(gens) // 4, len(gens) // 2, len(gens) - 1})
    picks = [i for i in picks if i < len(gens)]

    def cell(s: dict[str, Any]) -> str:
        if s.get("mean") is None:
            return "—"
        if s.get("n", 0) < 2:
            return _fmt(s["mean"])
        return f"{_fmt(s['mean'])} [{_fmt(s['lo'])}, {_fmt(s['hi'])}]"

    rows = []
    for p in spread["probes"]:
        for t in p["tokens"]:
            for i in picks:
                rows.append(
                    f"<tr><td class='l'>{html.escape(repr(p['context']))}</td>"
                    f"<td class='l'>{html.escape(repr(t['token']))}</td><td>{gens[i]}</td>"
                    f"<td>{_fmt(t['truth'])}</td><td>{cell(t['p_hat'][i])}</td>"
                    f"<td>{_fmt(t['p_hat_sd'][i])}</td><td>{cell(t['limit'][i])}</td></tr>"
                )
    level = round(100 * spread.get("level", 0.95))
    table = (
        f"<p>The bridge run on each of {len(spread['seeds'])} replicates, which share D0: how far "
        "the measured p̂_n(v|x) spreads from replicate to replicate, next to Theorem 2.1's limit "
        "term that the bridge estimates from each single trajectory (both as mean ["
        f"{level}% interval] over the replicates).</p><table><tr><th class='l'>context x</th>"
        "<th class='l'>v</th><th>generation</th><th>truth</th><th>p̂_n(v|x)</th>"
        f"<th>sd across replicates</th><th>limit term</th></tr>{''.join(rows)}</table>"
    )
    if spread.get("skipped"):
        table += (
            "<p>Without a bridge: "
            + html.escape("; ".join(f"seed {s}: {why}" for s, why in spread["skipped"].items()))
            + "</p>"
        )
    png = spread_figure(run["label"], spread)
    return table, ({f"spread-{run['label']}.png": png} if png else {})


def _img(png: bytes, name: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    caption = html.escape(
        _CAPTIONS.get(name.split("-")[0].removesuffix(".png"), _CAPTIONS.get(name, name))
    )
    return (
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _replicated_summary(run: dict[str, Any]) -> str:
    """What happened across a replicated run's replicates: perplexity with its interval at the
    first and last generation, the collapse onset."""
    agg = run["aggregate"]
    gens = [g for g in agg["generations"] if g["generation"] >= 1]
    level = round(100 * agg["level"])
    head = (
        f"<p><b>{html.escape(run['label'])}</b>: {len(agg['seeds'])} replicates (seeds "
        f"{', '.join(map(str, agg['seeds']))}), sharing D0. "
    )
    if not gens:
        return head + "No generation has finished yet.</p>"

    def ppl(g: dict[str, Any]) -> str:
        m = g["metrics"].get("perplexity") or {}
        if m.get("mean") is None:
            return "—"
        return f"{_fmt(m['mean'], 2)} [{_fmt(m['lo'], 2)}, {_fmt(m['hi'], 2)}]"

    o = agg["onset"]
    onset = "did not start within the run in any replicate"
    if o["collapsed"]:
        where = f" [{_fmt(o['lo'], 1)}, {_fmt(o['hi'], 1)}]" if o["collapsed"] > 1 else ""
        onset = (
            f"started in {o['collapsed']} of {o['replicates']} replicates, at generation "
            f"{_fmt(o['mean'], 1)}{where} on average among them (median {_fmt(o['median'], 1)}"
            "; the others had not collapsed by their last generation)"
        )
    method = {
        "t": "Student's t",
        "bootstrap": "percentile bootstrap",
        "auto": "t below "
        f"{agg.get('auto_bootstrap_at', 20)} replicates, percentile bootstrap from there",
    }
    return head + (
        f"Held-out perplexity, mean [{level}% interval: {method.get(agg['interval'], '')}]: "
        f"{ppl(gens[0])} at generation {gens[0]['generation']} → {ppl(gens[-1])} at generation "
        f"{gens[-1]['generation']} ({gens[-1]['replicates']} replicates there). Collapse "
        f"(perplexity above {1 + o['tau']:g} × generation 1's) {onset}.</p>"
    )


def _aggregate_table(run: dict[str, Any]) -> str:
    """Per generation across replicates: mean [interval] of the main metrics, and the method."""
    cols = [
        ("perplexity", "perplexity"),
        ("probe0_alpha_x_relative", "α*_x/N_x"),
        ("corpus_distinct_2", "distinct-2"),
        ("corpus_unigram_entropy", "entropy"),
        ("corpus_tail_mass", "tail mass"),
    ]
    head = "".join(f"<th>{html.escape(c)}</th>" for _, c in cols)
    rows = []
    for g in run["aggregate"]["generations"]:
        cells = []
        method = ""
        for key, _ in cols:
            m = g["metrics"].get(key)
            if not m or m.get("mean") is None:
                cells.append("<td>—</td>")
                continue
            method = method or m.get("method", "")
            d = 1 if abs(m["mean"]) > 100 else 3
            cells.append(
                f"<td>{_fmt(float(m['mean']), d)} [{_fmt(float(m['lo']), d)}, "
                f"{_fmt(float(m['hi']), d)}]</td>"
            )
        rows.append(
            f"<tr><td>{g['generation']}</td><td>{g['replicates']}</td>{''.join(cells)}"
            f"<td>{html.escape(method)}</td></tr>"
        )
    return (
        f"<table><tr><th>generation</th><th>replicates</th>{head}<th>interval</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _summary(run: dict[str, Any]) -> str:
    if "aggregate" in run:
        return _replicated_summary(run)
    ms = [m for m in run["metrics"] if m["generation"] >= 1]
    if not ms:
        return "<p>No generation has finished yet.</p>"
    first, last = ms[0], ms[-1]
    parts = [
        f"<p><b>{html.escape(run['label'])}</b>: {html.escape(_setup(run))} "
        f"{len(ms)} generation(s) done "
        f"(status: {html.escape(str(run['manifest'].get('status')))}). Held-out perplexity "
        f"{_fmt(first['perplexity'], 2)} at generation {first['generation']} → "
        f"{_fmt(last['perplexity'], 2)} at generation {last['generation']}."
    ]
    for p_first, p_last in zip(first.get("probes", []), last.get("probes", []), strict=True):
        for v, d in p_last["next"].items():
            parts.append(
                f" p̂({html.escape(repr(v))} | {html.escape(repr(p_last['context']))}): "
                f"{_fmt(p_first['next'][v]['p_hat'])} → {_fmt(d['p_hat'])} "
                f"(truth {_fmt(d.get('truth'))})."
            )
    return "".join(parts) + "</p>"


def _setup(run: dict[str, Any]) -> str:
    """Where generation 1 and every generation's weights come from, and how S_n is drawn."""
    from lmcollapse.config import ExperimentConfig, from_yaml

    if not run.get("config"):
        return ""
    cfg = from_yaml(ExperimentConfig, run["config"])
    start = {
        "scratch": "a random init",
        "pretrained": f"{cfg.model.pretrained}'s weights",
        "previous": "the previous generation's weights",
    }[cfg.training.init]
    first = f"generation 1 is {cfg.run.first_model}; " if cfg.run.first_model else ""
    return f"{first}every generation trains from {start}; sampling: {cfg.sampling.describe()}."


def _metrics_table(run: dict[str, Any]) -> str:
    """The per-generation table, from the typed metrics (GenerationMetrics.from_plain is where
    what an older run lacks becomes None)."""
    cols = [
        ("generation", lambda m: m.generation),
        ("perplexity", lambda m: m.perplexity),
        ("α*_x/N_x", lambda m: m.probes[0].alpha_x_relative if m.probes else None),
        ("distinct-2", lambda m: m.corpus.distinct_2),
        ("entropy", lambda m: m.corpus.unigram_entropy),
        ("tail mass", lambda m: m.corpus.tail_mass),
        ("KL(D0‖S) bigram", lambda m: m.corpus.kl_bigram_from_d0),
        ("train tokens", lambda m: m.train_tokens),
        ("train s", lambda m: (m.seconds or {}).get("train")),
        ("sample s", lambda m: (m.seconds or {}).get("sample")),
        ("eval s", lambda m: (m.seconds or {}).get("evaluate")),
    ]
    fresh = any(
        str(part.get("source", "")).startswith("fresh_")
        for m in run["metrics"]
        for part in (m.get("composition") or {}).get("parts", [])
    )
    if fresh and not any(m.get("curation") for m in run["metrics"]):
        cols[8:8] = [("real share", lambda m: (m.composition or {}).get("real_token_share"))]
    if any(m.get("curation") for m in run["metrics"]):  # what the curation stage did
        cols[8:8] = [
            ("real share", lambda m: (m.composition or {}).get("real_token_share")),
            ("kept", lambda m: m.curation.kept_share if m.curation else None),
            ("accepted", lambda m: m.curation.acceptance_rate if m.curation else None),
            ("edited", lambda m: m.curation.edited_share if m.curation else None),
            ("detector AUC", lambda m: m.curation.detector_auc if m.curation else None),
        ]
    head = "".join(f"<th>{html.escape(c)}</th>" for c, _ in cols)
    rows = []
    for m in map(GenerationMetrics.from_plain, run["metrics"]):
        cells = [get(m) for _, get in cols]
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_fmt(v, 1 if isinstance(v, float) and v > 100 else 3)}</td>" for v in cells
            )
            + "</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _samples(run: dict[str, Any]) -> str:
    out = []
    for n, text in sorted(run["samples"].items()):
        stories = [s.split("\n", 1)[1].strip() for s in text.split("--- story ")[1:] if "\n" in s]
        what = "D0 (real stories)" if n == 0 else f"generation {n}"
        body = "".join(f'<div class="sample">{html.escape(s)}</div>' for s in stories) or "<p>—</p>"
        out.append(f"<details{' open' if n <= 1 else ''}><summary>{what}</summary>{body}</details>")
    return "".join(out)


def _facts(run: dict[str, Any]) -> str:
    m = run["manifest"]
    facts = {
        "created": m.get("created"),
        "updated": m.get("updated"),
        "preset": m.get("preset"),
        "seed": m.get("seed"),
        "epochs (chosen or fixed)": m.get("epochs"),
        "lmcollapse": m.get("lmcollapse_version"),
    }
    rows = "".join(
        f"<tr><th class='l'>{html.escape(k)}</th><td class='l'>{_fmt(v)}</td></tr>"
        for k, v in facts.items()
    )
    hw = html.escape(json.dumps({**m.get("hardware", {}), **m.get("versions", {})}, indent=1))
    return (
        f"<table>{rows}</table><details><summary>hardware and versions</summary><pre>{hw}</pre>"
        f"</details><details><summary>resolved config.yaml</summary><pre>"
        f"{html.escape(run['config'])}</pre></details>"
    )


def build_html(
    runs: list[dict[str, Any]],
    figures: dict[str, bytes],
    bridges: list[tuple[str, dict[str, bytes]]] | None = None,
    spreads: list[tuple[str, dict[str, bytes]]] | None = None,
) -> str:
    """The report page for these (loaded) runs, their rendered figures and theory sections."""
    title = "lmcollapse report: " + ", ".join(r["label"] for r in runs)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<p>Recursive training of language models on a finite real corpus D0, after "
        "<i>Theoretical Proof that Auto-regressive Language Models Collapse when Real-world Data "
        "is a Finite Set</i>. Generation 1 trains on D0; generation n on the paradigm's mix of D0 "
        "and earlier generations' output.</p>",
        "<h2>What happened</h2>",
    ]
    body += [_summary(r) for r in runs]
    body.append("<h2>Figures</h2>")
    body += [
        _img(png, name)
        for name, png in figures.items()
        if not name.startswith(("theory-", "spread-"))
    ]
    spreads = spreads or [("", {})] * len(runs)
    for r, (table, bridge_pngs), (spread, spread_pngs) in zip(
        runs, bridges or [("", {})] * len(runs), spreads, strict=True
    ):
        if table:
            body.append(f"<h2>Theory next to measurement: {html.escape(r['label'])}</h2>{table}")
            body += [_img(png, name) for name, png in bridge_pngs.items()]
        if "aggregate" in r:
            if spread:
                body.append(
                    f"<h2>Theory next to replicates: {html.escape(r['label'])}</h2>{spread}"
                )
                body += [_img(png, name) for name, png in spread_pngs.items()]
            body.append(
                f"<h2>Per generation across replicates: {html.escape(r['label'])}</h2>"
                f"{_aggregate_table(r)}<p>Theory, samples and run facts below are of the first "
                "replicate; <code>lmcollapse report RUN/replicates/seed=S --out F.html</code> "
                "renders one replicate's own.</p>"
            )
        body.append(f"<h2>Per generation: {html.escape(r['label'])}</h2>{_metrics_table(r)}")
        body.append(f"<h3>Samples (Table 1)</h3>{_samples(r)}")
        body.append(f"<h3>Run facts</h3>{_facts(r)}")
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>{''.join(body)}{_SELF_CHECK}</body></html>\n"
    )


def write_report(run_dirs: list[Path], out: str | Path, figures_dir: Path | None = None) -> Path:
    """Render the figures and write the report (and, for one run, figures/*.png too)."""
    from lmcollapse.plots import RunMetrics, run_figures, save_figures

    if not run_dirs:
        raise InvalidInput("give at least one run directory")
    parent = Path(os.path.abspath(out)).parent
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):  # before minutes of work
        raise InvalidInput(f"cannot write {out}: {parent} is not writable; choose another --out")
    inside = run_containing(Path(out))
    if inside is not None and not (  # only a run's own report goes inside it
        [Path(os.path.abspath(d)) for d in run_dirs] == [inside.absolute()]
        and Path(os.path.abspath(out)) == RunLayout(inside).report.absolute()
    ):
        raise InvalidInput(
            f"{out} is inside the run {inside}, whose files only `lmcollapse run` writes: write "
            f"the report outside it (only the run's own report may go to "
            f"{RunLayout(inside).report})"
        )
    runs = [_load(Path(d)) for d in run_dirs]
    labels = [r["label"] for r in runs]
    if len(set(labels)) != len(labels):  # same directory names: use the full paths
        labels = [str(r["dir"]) for r in runs]
    figures = run_figures(
        [
            RunMetrics(
                label, r["metrics"], [m for _, m in r.get("replicates", [])], r.get("aggregate")
            )
            for label, r in zip(labels, runs, strict=True)
        ]
    )
    bridges = [_bridge(r) for r in runs]
    spreads = [_spread(r) if "aggregate" in r else ("", {}) for r in runs]
    for _, pngs in bridges + spreads:
        figures.update(pngs)
    if figures_dir is not None:
        save_figures(figures, figures_dir)
    atomic_write_text(out, build_html(runs, figures, bridges, spreads))
    return Path(out)
