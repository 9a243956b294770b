"""`lmcollapse run`: the recursive-training experiment, generation after generation, resumable.

    run(resolve(ExperimentConfig, preset="demo"))          # what `lmcollapse run` does

Generation 1 trains on D0 (minus the holdout); every generation is evaluated (held-out
perplexity, probes against the corpus truth with Remark B.1's α*), generates its corpus S_n,
and the next trains on its paradigm's composition of D0 and the S_j. Generation 0 is the
reference row: D0 itself (the truth of every probe, D0's corpus statistics).

Resume and safety: the run directory records the resolved config and a manifest; a generation
counts as done only once its metrics are written and the manifest says so, so a run killed at
any moment (SIGKILL included) redoes at most the generation in progress, and every random choice
comes from (run.seed, generation, purpose), so a resumed run computes what an uninterrupted one
does. A lock keeps a second process out; every file is written atomically.

Under `accelerate launch`, every process trains (DDP) and samples its shard; only the main
process evaluates and writes manifests, metrics, figures and the report.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse.artifacts import atomic_write_json, atomic_write_text, csv_text
from lmcollapse.config import ExperimentConfig, dump_yaml, to_plain
from lmcollapse.errors import InvalidInput
from lmcollapse.paradigms import Paradigm, from_config
from lmcollapse.rundir import (
    RunLayout,
    RunLock,
    completed,
    config_is_partial,
    default_out,
    forget_new_run,
    load_metrics,
    metrics_rows,
    now,
    sha256_of,
    start_or_resume,
)

log = logging.getLogger("lmcollapse")

# Seconds between rewrites of metrics.csv, figures and report.html during a run (fast model
# families finish many generations per second; the end of the run always writes them).
OUTPUT_INTERVAL = 20.0


def seed_for(seed: int, generation: int, purpose: str) -> int:
    """A seed for one random choice of one generation, independent of every other one."""
    tag = int.from_bytes(hashlib.blake2b(purpose.encode(), digest_size=4).digest(), "little")
    return int(np.random.SeedSequence([seed, generation, tag]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class _Context:
    cfg: ExperimentConfig
    layout: RunLayout
    manifest: dict[str, Any]
    corpus: Any  # PreparedCorpus
    state: Any  # accelerate PartialState
    progress: bool
    truths: list[Any] | None = None  # one ContinuationCounter per probe (main process)
    evaluation: Any = None  # the TokenStore perplexity is measured on (main process)
    eval_set: dict[str, Any] | None = None  # what metrics.json says about it
    reference: Any = None  # evaluate.corpus.Reference (main process)
    outputs_at: float = -math.inf  # time.monotonic() of the last metrics.csv/figures/report
    outputs_cost: float = 0.0  # seconds the last write took

    @property
    def main(self) -> bool:
        return bool(self.state.is_main_process)

    @functools.cached_property
    def paradigm(self) -> Paradigm:
        """The run's paradigm, built once from cfg.paradigm."""
        return from_config(self.cfg.paradigm)

    def save_manifest(self) -> None:
        if self.main:
            self.manifest["updated"] = now()
            atomic_write_json(self.layout.manifest, self.manifest, indent=None)


def run(
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    *,
    preset: str | None = None,
    resume: str = "auto",
    progress: bool = True,
) -> Path:
    """Run (or continue) the experiment; returns the run directory."""
    from lmcollapse.runtime import distributed_state

    if resume not in ("auto", "never"):
        raise InvalidInput(f"resume must be auto or never, got {resume!r}")
    root = Path(out or cfg.run.out or default_out(preset))
    layout = RunLayout(root)
    state = distributed_state(cfg.run.device)
    manifest = start_or_resume(cfg, layout, preset, resume)  # validates before any write
    created = not root.exists()
    if state.is_main_process:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create run directory {root}: {exc.strerror}") from None
        lock: Any = RunLock(layout.lock)
    else:
        lock = _NoLock()
    with lock:
        state.wait_for_everyone()
        handler = _log_to(layout) if state.is_main_process else None
        try:
            return _run_locked(cfg, layout, manifest, state, progress)
        except InvalidInput:
            if state.is_main_process and not layout.manifest.is_file():
                forget_new_run(root, created)  # bad input for a new run: leave nothing
            raise
        finally:
            if handler is not None:
                log.removeHandler(handler)
                handler.close()


class _NoLock:
    def __enter__(self) -> _NoLock:
        return self

    def __exit__(self, *_: Any) -> None:
        return None


def _log_to(layout: RunLayout) -> logging.Handler:
    handler = logging.FileHandler(layout.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _say(message: str, progress: bool = True) -> None:
    log.info(message)
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message)


def _run_locked(
    cfg: ExperimentConfig, layout: RunLayout, manifest: dict[str, Any], state: Any, progress: bool
) -> Path:
    from lmcollapse.data.prepare import (
        check_evaluation_source,
        evaluation_ready,
        open_prepared,
        prepare,
        prepare_evaluation,
    )

    main = state.is_main_process
    if main:
        _say(
            f"lmcollapse run → {layout.root} ({cfg.paradigm.name}, "
            f"{cfg.run.generations} generations, "
            f"seed {cfg.run.seed})",
            progress,
        )
        spec = _eval_spec(cfg)
        if spec is not None and not evaluation_ready(spec, layout.data / "eval"):
            check_evaluation_source(spec)  # its errors before the (long) data preparation
        corpus = prepare(
            cfg.data, layout.data, log=lambda m: _say(m, progress)
        )  # validates the data
        evaluation = (
            corpus.holdout
            if spec is None
            else prepare_evaluation(
                spec, corpus.tokenizer, layout.data / "eval", log=lambda m: _say(m, progress)
            )
        )
        if cfg.model.family == "ngram":  # the model's own limits, before anything is recorded
            from lmcollapse.models import build_model

            build_model(cfg.model, corpus.tokenizer.vocab_size, corpus.tokenizer.eos_id)
        if not layout.config.is_file() or config_is_partial(layout):
            atomic_write_text(layout.config, dump_yaml(cfg))
        manifest["status"] = "running"
        manifest["generations_planned"] = cfg.run.generations
        atomic_write_json(layout.manifest, manifest, indent=None)
    state.wait_for_everyone()
    if not main:
        corpus = open_prepared(layout.data)
    ctx = _Context(cfg, layout, manifest, corpus, state, progress and main)
    if main:
        ctx.evaluation, ctx.eval_set = evaluation, _eval_set(spec, evaluation)
    try:
        if main:
            _reference_row(ctx)
        done = set(completed(manifest, layout))
        todo = [n for n in range(1, cfg.run.generations + 1) if n not in done]
        bar = _bar(cfg.run.generations, len(done), ctx.progress)
        for n in todo:
            _generation(ctx, n)
            bar.update(1)
        bar.close()
        if main:
            manifest["status"] = (
                "complete" if len(completed(manifest, layout)) >= cfg.run.generations else "running"
            )
            ctx.save_manifest()
            _write_outputs(ctx)
            _say(f"done: {layout.report}", ctx.progress)
    except BaseException as exc:
        if main:
            manifest["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest["error"] = f"{exc.__class__.__name__}: {exc}"
            ctx.save_manifest()
        raise
    return layout.root


def _bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc="generations",
        unit="gen",
        disable=not enabled,
        dynamic_ncols=True,
    )


def _reference_row(ctx: _Context) -> None:
    """Generation 0: D0's probe truth and corpus statistics (recomputed if missing)."""
    from lmcollapse.data.stats import count_store_continuations
    from lmcollapse.evaluate.corpus import reference

    cfg, layout, corpus = ctx.cfg, ctx.layout, ctx.corpus
    tok = corpus.tokenizer
    ctx.truths = []
    probes = []
    for p in cfg.evaluation.probes:
        ids = tok.encode(p.context)
        if not ids:
            raise InvalidInput(f"probe context {p.context!r} encodes to no token")
        counter = count_store_continuations(corpus.d0, ids, tok.vocab_size)
        ctx.truths.append(counter)
        from lmcollapse.data.tokenizer import single_token

        nxt = {}
        for v in p.next:
            i = single_token(tok, v, "probe token")
            c = int(counter.counts[i])
            truth = c / counter.n_x if counter.n_x else None
            nxt[v] = {"id": i, "count": c, "truth": truth, "p_hat": truth, "alpha": 0.0}
        probes.append(
            {
                "context": p.context,
                "context_tokens": tok.token_strings(ids),
                "N_x": counter.n_x,
                "next": nxt,
                "alpha_x": 0.0,
                "alpha_x_relative": 0.0,
            }
        )
    ctx.reference = reference(
        corpus.d0,
        sample_tokens=_stats_tokens(cfg, corpus),
        seed=cfg.run.seed,
        vocab_size=cfg.model.vocab_size or tok.vocab_size,
    )
    vocab = cfg.model.vocab_size or tok.vocab_size
    if not layout.distributions(0).is_file():  # also for a run made before they were recorded
        _save_arrays(
            layout.distributions(0),
            {f"counts_{i}": _padded(c.counts, vocab) for i, c in enumerate(ctx.truths)},
        )
    if layout.metrics(0).is_file():
        return
    metrics = {
        "generation": 0,
        "what": "D0, the real corpus (the truth every generation is compared with)",
        "perplexity": None,
        "loss": None,
        "probes": probes,
        "corpus": ctx.reference.stats,
        "train_stories": corpus.d0.num_stories,
        "train_tokens": corpus.d0.num_tokens,
    }
    atomic_write_json(layout.metrics(0), to_plain(metrics, json_safe=True))
    atomic_write_text(
        layout.samples(0),
        _samples_text(
            corpus.d0, tok, cfg.evaluation.num_samples, seed_for(cfg.run.seed, 0, "samples")
        ),
    )


def _eval_spec(cfg: ExperimentConfig) -> Any:
    """The evaluation source as a SourceSpec, or None for D0's holdout."""
    from lmcollapse.data.sources import SourceSpec

    e = cfg.evaluation
    if e.source == "holdout":
        return None
    return SourceSpec(e.source, e.split, e.text_column or cfg.data.text_column, e.max_stories)


def _eval_set(spec: Any, store: Any) -> dict[str, Any]:
    """What metrics.json says about the set perplexity was measured on."""
    from lmcollapse.data import sources
    from lmcollapse.data.store import is_store

    if spec is None:
        return {"source": "holdout", "split": None, "what": "D0's held-out split"}
    if is_store(spec.source):  # a token store used in place: its checksum shows which
        what = {"split": None, "what": f"token store {spec.source}"}
        return {"source": spec.source, **what, "checksum": store.meta.get("checksum")}
    return {
        "source": spec.source,
        "split": spec.split,
        "what": f"{sources.describe(spec)}, tokenized with the run's tokenizer",
    }


def _stats_tokens(cfg: ExperimentConfig, corpus: Any) -> int:
    """Tokens sampled for corpus statistics: a fixed budget, at most D0's size."""
    return int(min(cfg.evaluation.stats_tokens, corpus.d0.num_tokens))


def _generation(ctx: _Context, n: int) -> None:
    import torch

    from lmcollapse.data.packing import TrainingSet
    from lmcollapse.data.paradigms import D0, compose, generated
    from lmcollapse.data.store import TokenStore
    from lmcollapse.models import build_model, describe
    from lmcollapse.runtime import seed_everything
    from lmcollapse.sample import SamplingParams, generate_corpus
    from lmcollapse.train import train

    cfg, layout, corpus, state = ctx.cfg, ctx.layout, ctx.corpus, ctx.state
    tok = corpus.tokenizer
    gen_dir = layout.generation(n)
    if ctx.main and gen_dir.exists():
        shutil.rmtree(gen_dir)  # an unfinished attempt: redo it from the start
    state.wait_for_everyone()
    entry: dict[str, Any] = {"status": "running", "started": now(), "seconds": {}}
    ctx.manifest["generations"][str(n)] = entry
    ctx.save_manifest()
    _say(f"generation {n}/{cfg.run.generations}", ctx.progress)

    # What generation n trains on: the paradigm's shares of |D0| (tokens or stories).
    needed = [j for j in ctx.paradigm.needs(n) if j]  # the S_j the paradigm reads
    sources = {D0: corpus.d0} | {generated(j): TokenStore.open(layout.corpus(j)) for j in needed}
    comp, chosen = compose(
        ctx.paradigm,
        n,
        sources,
        unit=cfg.paradigm.unit,
        seed=seed_for(cfg.run.seed, n, "composition"),
    )
    data = TrainingSet(
        [sources[p.source] for p in comp.parts], [chosen[p.source] for p in comp.parts]
    )

    # Train a fresh model.
    t0 = time.perf_counter()
    seed_everything(seed_for(cfg.run.seed, n, "init"))
    model = build_model(cfg.model, tok.vocab_size, tok.eos_id)
    if n == 1 and cfg.model.family != "ngram":
        text = describe(model) if hasattr(model, "transformer") else f"model: {cfg.model.hf_config}"
        _say(text, ctx.progress)
    if cfg.model.family == "ngram":
        result = _train_ngram(ctx, n, model, data)
    else:
        early = cfg.training.early_stopping and ctx.manifest.get("epochs") is None
        result = train(
            model,
            data,
            cfg.training,
            seed=seed_for(cfg.run.seed, n, "data"),
            holdout=corpus.holdout if early else None,
            epochs=ctx.manifest.get("epochs"),
            device=cfg.run.device,
            progress=ctx.progress,
        )
        if early:
            ctx.manifest["epochs"] = result.best_epoch or result.epochs
    entry["seconds"]["train"] = time.perf_counter() - t0
    if ctx.main:
        model.save_pretrained(layout.model(n))
    state.wait_for_everyone()

    # Generate S_n.
    t0 = time.perf_counter()
    model.eval()
    s = cfg.sampling
    scale = ctx.paradigm.scale
    size: dict[str, int] = {}  # k·|D0| per generation, in the paradigm's unit
    if s.num_sequences is not None:
        size["num_sequences"] = max(1, math.ceil(scale * s.num_sequences))
    elif cfg.paradigm.unit == "tokens":
        size["min_tokens"] = max(1, math.ceil(scale * corpus.d0.num_tokens))
    else:
        size["min_stories"] = max(1, math.ceil(scale * corpus.d0.num_stories))
    params = SamplingParams.of(s)
    with torch.no_grad():
        sampled = generate_corpus(
            model,
            layout.corpus(n),
            **size,
            length=s.length,
            batch_size=s.batch_size,
            context=sampling_context(cfg, model),
            eos_id=tok.eos_id,
            vocab_size=model.shape.vocab_size,
            seed=seed_for(cfg.run.seed, n, "sample"),
            mode=s.mode,
            params=params,
            provenance={"generation": n},
            progress=ctx.progress,
        )
    entry["seconds"]["sample"] = time.perf_counter() - t0
    state.wait_for_everyone()

    # Evaluate (main process), write, mark complete.
    if ctx.main:
        t0 = time.perf_counter()
        metrics = _evaluate(ctx, n, model, TokenStore.open(layout.corpus(n)))
        entry["seconds"]["evaluate"] = time.perf_counter() - t0
        metrics.update(
            {
                "train": {
                    "epochs": result.epochs,
                    "steps": result.steps,
                    "tokens": result.tokens,
                    "seconds": result.seconds,
                    "tokens_per_s": result.tokens_per_second,
                    "losses": result.losses,
                    "holdout_losses": result.holdout_losses,
                    "best_epoch": result.best_epoch,
                },
                "train_stories": data.num_stories,
                "train_tokens": data.num_tokens,
                "composition": comp.to_dict(),
                "sample": {
                    "sequences": sampled.sequences,
                    "tokens": sampled.tokens,
                    "stories": sampled.stories,
                    "unfinished": sampled.unfinished,
                    "seconds": sampled.seconds,
                    "tokens_per_s": sampled.tokens_per_second,
                },
                "seconds": entry["seconds"],
            }
        )
        if cfg.model.family == "ngram" and cfg.model.expected_counts != "off" and n > 1:
            metrics["train_tokens"] = result.tokens  # the expected counts' total, not a sample
            metrics["train_stories"] = None
            metrics["composition"] = {
                **metrics["composition"],
                "trained_on": f"expected counts ({cfg.model.expected_counts}) in the paradigm's "
                "exact shares; the sampled stories above were not used",
            }
        atomic_write_json(layout.metrics(n), to_plain(metrics, json_safe=True))
        entry.update(
            {
                "status": "complete",
                "finished": now(),
                "model_sha256": sha256_of(layout.model(n)),
                "corpus_checksum": TokenStore.open(layout.corpus(n)).meta["checksum"],
                "metrics_sha256": sha256_of(layout.metrics(n)),
            }
        )
        ctx.save_manifest()
        if time.monotonic() - ctx.outputs_at >= max(OUTPUT_INTERVAL, 10 * ctx.outputs_cost):
            _write_outputs(ctx)  # the run's end writes them in any case
        ppl = metrics["perplexity"]
        _say(
            f"generation {n}: held-out perplexity {ppl:.2f}; "
            + "; ".join(
                f"p̂({v!r}|{p['context']!r}) = {d['p_hat']:.3f} (truth {d['truth']:.3f})"
                for p in metrics["probes"]
                for v, d in p["next"].items()
                if d.get("truth") is not None
            ),
            ctx.progress,
        )
    state.wait_for_everyone()


def _train_ngram(ctx: _Context, n: int, model: Any, data: Any) -> Any:
    """Count generation n's training set — or, in an expected-counts mode, build its counts from
    the earlier generations' expected corpora (footnote 3: no sampling error)."""
    from lmcollapse.models import ngram
    from lmcollapse.train import TrainResult

    cfg, layout = ctx.cfg, ctx.layout
    t0 = time.perf_counter()
    mode = cfg.model.expected_counts
    if mode == "off" or n == 1:
        model.fit(data)
    else:
        ngram.from_table(model, _expected_training_table(ctx, n))
    if mode != "off":
        cap = cfg.sampling.length if cfg.sampling.mode == "story" else None  # story mode: exact
        d0 = ctx.corpus.d0
        full = ngram.expected_corpus(
            model,
            mode,
            ctx.paradigm,
            d0.num_stories,
            d0.num_tokens if cfg.paradigm.unit == "tokens" else None,
            cap,
        )
        if n == 1:  # D0's counts are stored once, with generation 1's
            cumulative, d0 = full, ngram.table_of(model)
        else:
            _, before, _ = _load_expected(layout, n - 1)
            cumulative, d0 = before + full, None
        _save_expected(layout, n, full, cumulative, d0)
    if n == 1:
        _say(model.describe(), ctx.progress)
    tokens = round(float(model.values.sum() + model.base.sum() * model.vocab_size))
    return TrainResult(epochs=1, steps=0, tokens=tokens, seconds=time.perf_counter() - t0)


def _padded(counts: Any, size: int) -> np.ndarray:
    out = np.zeros(max(size, len(counts)))
    out[: len(counts)] = counts
    return out


def _save_arrays(path: Path, arrays: dict[str, Any]) -> None:
    """An .npz written atomically."""
    import io

    from lmcollapse.artifacts import atomic_path

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _save_expected(layout: RunLayout, n: int, full: Any, cumulative: Any, d0: Any) -> None:
    """S_n's expected counts and their running sum (D0's counts only with generation 1)."""
    arrays = {
        "keys": full.keys,
        "values": full.values,
        "base": full.base,
        "cum_values": cumulative.values,
        "cum_base": cumulative.base,
    }
    if d0 is not None:
        arrays |= {"d0_values": d0.values, "d0_base": d0.base}
    _save_arrays(layout.generation(n) / "expected_counts.npz", arrays)


def _load_expected(layout: RunLayout, n: int) -> tuple[Any, Any, Any]:
    """(S_n's expected counts, their sum over generations 1..n, D0's counts)."""
    from lmcollapse.models.ngram import CountTable

    with np.load(layout.generation(n) / "expected_counts.npz") as z:
        keys = z["keys"]
        full = CountTable(keys, z["values"], z["base"])
        cumulative = CountTable(keys, z["cum_values"], z["cum_base"])
    with np.load(layout.generation(1) / "expected_counts.npz") as z:
        d0 = CountTable(keys, z["d0_values"], z["d0_base"])
    return full, cumulative, d0


def _expected_training_table(ctx: _Context, n: int) -> Any:
    """Generation n's training counts from the expected corpora, in the paradigm's shares."""
    from lmcollapse.models.ngram import training_table

    last, cumulative, d0 = _load_expected(ctx.layout, n - 1)
    return training_table(ctx.paradigm, n, d0, last, cumulative)


def sampling_context(cfg: ExperimentConfig, model: Any) -> int:
    """How many tokens the model sees when sampling: Algorithm 1's queue of training.context_length
    tokens, or (sampling.slide false) the whole sequence."""
    if cfg.sampling.slide:
        return min(cfg.training.context_length, model.shape.max_positions)
    return min(cfg.sampling.length + 1, model.shape.max_positions)


def _evaluate(ctx: _Context, n: int, model: Any, generated: Any) -> dict[str, Any]:
    from lmcollapse.evaluate.corpus import corpus_stats
    from lmcollapse.evaluate.perplexity import perplexity
    from lmcollapse.evaluate.probes import probe

    cfg, corpus = ctx.cfg, ctx.corpus
    e = cfg.evaluation
    context = min(e.context_length, model.shape.max_positions)
    ppl = perplexity(
        model,
        ctx.evaluation,
        context=context,
        stride=e.perplexity_stride,
        max_stories=e.max_stories,
        first_token=e.score_first_token,
    )
    from lmcollapse.evaluate.probes import next_token_distribution

    dists = [next_token_distribution(model, corpus.tokenizer.encode(p.context)) for p in e.probes]
    probes = [
        probe(model, corpus.tokenizer, p.context, p.next, truth, top_k=10, distribution=d)
        for p, truth, d in zip(e.probes, ctx.truths or [], dists, strict=True)
    ]
    _save_arrays(ctx.layout.distributions(n), {f"p_hat_{i}": d for i, d in enumerate(dists)})
    stats = corpus_stats(generated, ctx.reference, seed=seed_for(cfg.run.seed, n, "stats"))
    atomic_write_text(
        ctx.layout.samples(n),
        _samples_text(
            generated, corpus.tokenizer, e.num_samples, seed_for(cfg.run.seed, n, "samples")
        ),
    )
    return {
        "generation": n,
        "perplexity": ppl["perplexity"],
        "loss": ppl["loss"],
        "eval_tokens": ppl["tokens"],
        "eval_stories": ppl["stories"],
        "eval_set": ctx.eval_set,
        "probes": probes,
        "corpus": stats,
    }


def _samples_text(store: Any, tok: Any, count: int, seed: int) -> str:
    """A few whole stories of a corpus, chosen by seed (Table 1)."""
    if count == 0 or store.num_stories == 0:
        return ""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(store.num_stories, size=min(count, store.num_stories), replace=False))
    parts = []
    for i, done in zip(idx, store.finished(idx), strict=True):
        ids = store.story(int(i)).tolist()
        ended = bool(ids) and ids[-1] == tok.eos_id
        text = tok.decode(ids[:-1] if ended else ids).strip()
        mark = "" if done else " (unfinished: cut by the sampler, no end of its own)"
        parts.append(f"--- story {int(i)}{mark} ---\n{text}{'' if done else ' …'}\n")
    return "\n".join(parts)


def _write_outputs(ctx: _Context) -> None:
    """metrics.csv, figures/ and report.html from the metrics files."""

    from lmcollapse.report import write_report

    layout = ctx.layout
    t0 = ctx.outputs_at = time.monotonic()
    atomic_write_text(layout.metrics_csv, csv_text(metrics_rows(load_metrics(layout))))
    write_report([layout.root], layout.report, figures_dir=layout.figures)
    ctx.outputs_cost = time.monotonic() - t0


def sweep(
    configs: dict[str, ExperimentConfig],
    out: str | Path,
    *,
    preset: str | None = None,
    progress: bool = True,
) -> tuple[list[Path], Path]:
    """Run (or continue) one experiment per config into out/<label>, then one report overlaying
    them all (out/report.html, figures in out/figures). Returns (run directories, report)."""
    from lmcollapse.report import write_report

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InvalidInput(f"sweep directory {root} exists and is not a directory: choose another")
    dirs = []
    for label, cfg in configs.items():
        _say(f"sweep: {label}", progress)
        dirs.append(run(cfg, root / label, preset=preset, progress=progress))
    report = write_report(dirs, root / "report.html", figures_dir=root / "figures")
    return dirs, report


__all__ = ["run", "sampling_context", "seed_for", "sweep"]
