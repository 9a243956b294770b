"""`lmcollapse run`: the recursive-training experiment, generation after generation, resumable.

    run(resolve(ExperimentConfig, preset="demo"))          # what `lmcollapse run` does

Generation 1 trains on D0 (minus the holdout); every generation is evaluated (held-out
perplexity, probes against the corpus truth with Remark B.1's α*), generates its corpus S_n,
and the next trains on its paradigm's composition of D0 and the S_j. Generation 0 is the
reference row: D0 itself (the truth of every probe, D0's corpus statistics).

A generation is a sequence of named stages (`STAGES`): compose → fit → sample → curate →
evaluate → record, each a function of the run's context and the generation's state; a new stage
is one more function in that tuple. curate (lmcollapse.curation) does nothing unless
curation.name asks for it.

Resume and safety: the run directory (lmcollapse.rundir) records the resolved config and a
manifest; a generation counts as done only once its metrics are written and the manifest says
so, so a run killed at any moment (SIGKILL included) redoes at most the generation in progress,
and every random choice comes from (run.seed, generation, purpose), so a resumed run computes
what an uninterrupted one does. A lock keeps a second process out; every file is written
atomically.

Under `accelerate launch`, every process trains (DDP) and samples its shard; only the main
process evaluates and writes manifests, metrics, figures and the report.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse.artifacts import atomic_write_json, atomic_write_npz, atomic_write_text, csv_text
from lmcollapse.config import ExperimentConfig
from lmcollapse.errors import InvalidInput
from lmcollapse.paradigms import Paradigm, from_config
from lmcollapse.results import GenerationMetrics, ProbeResult, SampleResult, TrainResult
from lmcollapse.rundir import (
    Corpora,
    RunLayout,
    RunLock,
    check_d0,
    check_fresh,
    completed,
    config_is_partial,
    default_out,
    forget_new_run,
    load_metrics,
    missing_dirs,
    now,
    sha256_of,
    write_config,
)
from lmcollapse.runtime import log, log_to, main_first, say

# Seconds between rewrites of metrics.csv, figures and report.html (the run's end always writes).
OUTPUT_INTERVAL = 20.0


def seed_for(seed: int, generation: int, purpose: str) -> int:
    """A seed for one random choice of one generation, independent of every other one."""
    tag = int.from_bytes(hashlib.blake2b(purpose.encode(), digest_size=4).digest(), "little")
    return int(np.random.SeedSequence([seed, generation, tag]).generate_state(1)[0])


@dataclass
class _Context:
    """What every generation of a run shares."""

    cfg: ExperimentConfig
    layout: RunLayout
    manifest: dict[str, Any]
    corpus: Any  # data.prepare.PreparedCorpus
    state: Any  # accelerate PartialState
    progress: bool
    truths: list[Any] = field(default_factory=list)  # a ContinuationCounter per probe (main)
    evaluation: Any = None  # the TokenStore perplexity is measured on (main process)
    eval_set: dict[str, Any] | None = None  # what metrics.json says about it
    reference: Any = None  # evaluate.corpus.Reference (main process)
    outputs_at: float = -math.inf  # time.monotonic() of the last metrics.csv/figures/report
    outputs_cost: float = 0.0  # seconds the last write took
    corpora: Any = None  # rundir.Corpora: the S_j, checked against the manifest when first read
    curation_cache: dict[str, Any] = field(default_factory=dict)  # the prior model, D0's scores
    data_from: Path | None = None  # another run's prepared data, shared (replicates)
    report: bool = True  # figures/ and report.html with metrics.csv (a replicate: metrics.csv only)

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

    def say(self, message: str) -> None:
        say(message, self.progress)


@dataclass
class Generation:
    """One generation's state as its stages fill it in."""

    n: int
    entry: dict[str, Any]  # the manifest's record of this generation
    composition: Any = None  # data.paradigms.Composition
    data: Any = None  # data.packing.TrainingSet
    model: Any = None  # models.base.LanguageModel
    trained: TrainResult | None = None
    sampled: SampleResult | None = None
    curated: Any = None  # results.CurationResult (main process, when curating)
    metrics: GenerationMetrics | None = None


def run(
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    *,
    preset: str | None = None,
    resume: str = "auto",
    progress: bool = True,
    set_up_only: bool = False,
    data_from: Path | None = None,
    report: bool = True,
) -> Path:
    """Run (or continue) the experiment; returns the run directory. set_up_only: stop once the
    data is prepared and every input checked against it (a sweep sets up every value first).
    data_from: a run's data directory of the same data config, shared into a new run's (its
    files hard-linked; the replicates of a replicated run share D0 so). report: write figures/
    and report.html as well as metrics.csv (a replicated run's replicates do not: its own
    report draws them all)."""
    from lmcollapse.checks import preflight
    from lmcollapse.config import validate
    from lmcollapse.runtime import distributed_state

    cfg = validate(cfg)  # a config made in code gets every check before anything is written
    if resume not in ("auto", "never"):
        raise InvalidInput(f"resume must be auto or never, got {resume!r}")
    root = Path(out or cfg.run.out or default_out(preset))
    layout = RunLayout(root)
    state = distributed_state(cfg.run.device)
    manifest = preflight(cfg, root, preset, resume)  # every check that needs no write
    state.wait_for_everyone()  # every process has looked before the main one creates anything
    made, new = missing_dirs(root), not layout.manifest.is_file()
    if state.is_main_process:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create run directory {root}: {exc.strerror}") from None
        lock: Any = RunLock(layout.lock)
    else:
        lock = contextlib.nullcontext()  # the main process holds the lock
    with lock:
        state.wait_for_everyone()
        handler = log_to(layout.log) if state.is_main_process else None
        try:
            return _run_locked(
                cfg, layout, manifest, state, progress, set_up_only, data_from, report
            )
        except InvalidInput:
            if state.is_main_process and new and not completed(manifest, layout):
                forget_new_run(root, made)  # bad input for a new run: leave nothing
            raise
        finally:
            if handler is not None:
                log.removeHandler(handler)
                handler.close()


def _run_locked(
    cfg: ExperimentConfig,
    layout: RunLayout,
    manifest: dict[str, Any],
    state: Any,
    progress: bool,
    set_up_only: bool = False,
    data_from: Path | None = None,
    report: bool = True,
) -> Path:
    from lmcollapse.data.prepare import open_prepared
    from lmcollapse.runtime import progress_bar

    main = state.is_main_process
    ctx = _Context(
        cfg, layout, manifest, None, state, progress and main, data_from=data_from, report=report
    )
    ctx.corpora = Corpora(layout, manifest)
    main_first(state, lambda: _set_up(ctx, progress))  # its errors reach every process
    if set_up_only:
        return layout.root
    if not main:
        ctx.corpus = open_prepared(layout.data)
    try:
        if main:
            _reference_row(ctx)
        done = set(completed(manifest, layout))
        todo = [n for n in range(1, cfg.run.generations + 1) if n not in done]
        bar = progress_bar(
            cfg.run.generations, "generations", "gen", ctx.progress, initial=len(done), leave=True
        )
        for n in todo:
            _generation(ctx, n)
            bar.update(1)
        bar.close()
        if main:
            finished = len(completed(manifest, layout)) >= cfg.run.generations
            manifest["status"] = "complete" if finished else "running"
            ctx.save_manifest()
            _write_outputs(ctx)
            ctx.say(f"done: {layout.report if report else layout.metrics_csv}")
    except BaseException as exc:
        if main:
            manifest["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest["error"] = f"{exc.__class__.__name__}: {exc}"
            ctx.save_manifest()
        raise
    return layout.root


def _set_up(ctx: _Context, progress: bool) -> None:
    """Main process: the config and manifest of a new run; D0, the evaluation set and the
    model's limits checked (and made); then the manifest says running. Bad input for a new run
    removes all of it again (`run`)."""
    from lmcollapse.checks import tokenizer_check
    from lmcollapse.data import prepare as p
    from lmcollapse.sample import corpus_target

    cfg, layout = ctx.cfg, ctx.layout
    ctx.say(
        f"lmcollapse run → {layout.root} ({cfg.paradigm.name}, {cfg.run.generations} "
        f"generations, seed {cfg.run.seed})"
    )
    if not layout.manifest.is_file():  # a new run is recorded first: a kill in what follows
        write_config(layout, ctx.manifest, cfg)  # (the data preparation) resumes
        ctx.manifest["status"] = "preparing"
        atomic_write_json(layout.manifest, ctx.manifest, indent=None)
    spec = p.evaluation_spec(cfg.evaluation, cfg.data)
    if spec is not None and not p.evaluation_ready(spec, layout.data / "eval"):
        p.check_evaluation_source(spec)  # its errors before the (long) data preparation
    if ctx.data_from is not None and p.is_prepared(ctx.data_from):
        from lmcollapse.repdir import share_data

        share_data(ctx.data_from, layout.data)  # nothing when the run has its own already
    rebuilt = not p.is_prepared(layout.data)
    ctx.corpus = corpus = p.prepare(cfg.data, layout.data, log=ctx.say, check=tokenizer_check(cfg))
    try:
        check_d0(ctx.manifest, corpus, fresh=rebuilt)
    except InvalidInput:
        if rebuilt:  # made from a changed source: not left behind to be reused by the rerun
            shutil.rmtree(layout.data)
        raise
    tok = corpus.tokenizer
    ctx.evaluation = (
        corpus.holdout
        if spec is None
        else p.prepare_evaluation(spec, tok, layout.data / "eval", log=ctx.say)
    )
    ctx.eval_set = p.evaluation_record(spec, ctx.evaluation)
    corpus_target(cfg, ctx.paradigm.scale, corpus.d0)  # a reachable S_n, before any training
    if cfg.paradigm.fresh:  # F_1..F_{G-1} from the reserve, or the refusal, before training
        from lmcollapse.data.fresh import chunk_size, prepare_fresh

        fresh = prepare_fresh(
            cfg.data,
            tok,
            layout.data / "fresh",
            skip=corpus.d0.num_stories + corpus.holdout.num_stories,
            chunk=chunk_size(cfg.paradigm.fresh, cfg.paradigm.unit, corpus.d0),
            unit=cfg.paradigm.unit,
            count=cfg.run.generations - 1,
            log=ctx.say,
        )
        check_fresh(ctx.manifest, fresh)
    if not layout.config.is_file() or config_is_partial(layout):
        write_config(layout, ctx.manifest, cfg)
    if len(completed(ctx.manifest, layout)) < cfg.run.generations:  # a finished run stays so
        ctx.manifest["status"] = "running"
    ctx.manifest["generations_planned"] = cfg.run.generations
    atomic_write_json(layout.manifest, ctx.manifest, indent=None)


def _reference_row(ctx: _Context) -> None:
    """Generation 0: D0's probe truth and corpus statistics (recomputed if missing)."""
    from lmcollapse.data.stats import corpus_truth
    from lmcollapse.evaluate.corpus import reference
    from lmcollapse.evaluate.probes import truth_probe

    cfg, layout, corpus = ctx.cfg, ctx.layout, ctx.corpus
    tok = corpus.tokenizer
    ctx.truths = [
        corpus_truth(corpus.d0, tok, p.context, what="probe context") for p in cfg.evaluation.probes
    ]
    vocab = cfg.model.vocab_size or tok.vocab_size
    ctx.reference = reference(
        corpus.d0,
        sample_tokens=int(min(cfg.evaluation.stats_tokens, corpus.d0.num_tokens)),
        seed=cfg.run.seed,
        vocab_size=vocab,
    )
    if not layout.distributions(0).is_file():  # also for a run made before they were recorded
        counts = {f"counts_{i}": t.padded(vocab) for i, t in enumerate(ctx.truths)}
        atomic_write_npz(layout.distributions(0), counts)
    if layout.metrics(0).is_file():
        return
    metrics = GenerationMetrics(
        generation=0,
        what="D0, the real corpus (the truth every generation is compared with)",
        perplexity=None,
        loss=None,
        probes=[
            truth_probe(tok, p.context, p.next, truth)
            for p, truth in zip(cfg.evaluation.probes, ctx.truths, strict=True)
        ],
        corpus=ctx.reference.stats,
        train_stories=corpus.d0.num_stories,
        train_tokens=corpus.d0.num_tokens,
    )
    atomic_write_json(layout.metrics(0), metrics.to_plain())
    _write_samples(ctx, 0, corpus.d0)


# ----------------------------------------------------------------------------------------------
# A generation: compose → fit → sample → curate → evaluate → record


def _generation(ctx: _Context, n: int) -> None:
    gen_dir = ctx.layout.generation(n)
    if ctx.main and gen_dir.exists():
        shutil.rmtree(gen_dir)  # an unfinished attempt: redo it from the start
    ctx.state.wait_for_everyone()
    g = Generation(n, {"status": "running", "started": now(), "seconds": {}})
    ctx.manifest["generations"][str(n)] = g.entry
    ctx.save_manifest()
    ctx.say(f"generation {n}/{ctx.cfg.run.generations}")
    for stage in STAGES:
        t0 = time.perf_counter()
        stage(ctx, g)
        if stage in TIMED:
            g.entry["seconds"][TIMED[stage]] = time.perf_counter() - t0
    ctx.state.wait_for_everyone()


def compose(ctx: _Context, g: Generation) -> None:
    """What generation n trains on: the paradigm's shares of |D0| (tokens or stories)."""
    from lmcollapse.data import paradigms
    from lmcollapse.data.packing import TrainingSet

    n = g.n
    needed = ctx.paradigm.needs(n)  # D0 (0), the S_j (j) and fresh F_j (−j) the paradigm reads
    stores = {paradigms.D0: ctx.corpus.d0}
    stores |= {paradigms.generated(j): ctx.corpora.open(j) for j in needed if j > 0}  # verified
    stores |= {paradigms.fresh(-j): _fresh(ctx, -j) for j in needed if j < 0}
    g.composition, chosen = paradigms.compose(
        ctx.paradigm,
        n,
        stores,
        unit=ctx.cfg.paradigm.unit,
        seed=seed_for(ctx.cfg.run.seed, n, "composition"),
    )
    parts = g.composition.parts
    g.data = TrainingSet([stores[p.source] for p in parts], [chosen[p.source] for p in parts])


def _fresh(ctx: _Context, j: int) -> Any:
    """F_j, the fresh real stories that joined after generation j (data/fresh)."""
    from lmcollapse.data.fresh import name
    from lmcollapse.data.store import TokenStore

    return TokenStore.open(ctx.layout.data / "fresh" / name(j))


def fit(ctx: _Context, g: Generation) -> None:
    """A fresh model, fitted by its family; saved by the main process."""
    from lmcollapse.models import build_model, family_of
    from lmcollapse.models.base import FitJob
    from lmcollapse.runtime import seed_everything

    cfg, corpus, n = ctx.cfg, ctx.corpus, g.n
    seed_everything(seed_for(cfg.run.seed, n, "init"))
    g.model = build_model(cfg.model, corpus.tokenizer.vocab_size, corpus.tokenizer.eos_id)
    early = cfg.training.early_stopping and ctx.manifest.get("epochs") is None
    job = FitJob(
        cfg,
        n,
        g.data,
        corpus.d0,
        ctx.paradigm,
        seed=seed_for(cfg.run.seed, n, "data"),
        holdout=corpus.holdout if early else None,
        epochs=ctx.manifest.get("epochs"),
        generation_dir=ctx.layout.generation,
        progress=ctx.progress,
    )
    g.trained = family_of(cfg.model.family).fit(g.model, job)
    if early:
        ctx.manifest["epochs"] = g.trained.best_epoch or g.trained.epochs
    if n == 1:
        ctx.say(g.model.describe())
    if ctx.main:
        g.model.save(ctx.layout.model(n))
    ctx.state.wait_for_everyone()


def sample(ctx: _Context, g: Generation) -> None:
    """Generate S_n: k·|D0| per generation in the paradigm's unit (or sampling.num_sequences);
    under curation, the first pool the curate stage chooses S_n from."""
    from lmcollapse.curation.stage import curating, first_pool, pool_path
    from lmcollapse.sample import corpus_target

    target = corpus_target(ctx.cfg, ctx.paradigm.scale, ctx.corpus.d0)
    if curating(ctx.cfg):
        pool = first_pool(ctx.cfg, target)
        work = ctx.layout.generation(g.n) / "curation"
        g.sampled = None if pool is None else _draw(ctx, g, pool_path(work, 0), pool)
    else:
        g.sampled = _draw(ctx, g, ctx.layout.corpus(g.n), target)
        ctx.corpora.trust(g.n)  # made here: read without re-checking
    ctx.state.wait_for_everyone()


def _draw(ctx: _Context, g: Generation, out: Path, target: dict[str, int], r: int = 0) -> Any:
    """Sample generation n's model into a token store at `out` (round r > 0: a curation pool
    from its own seed)."""
    from lmcollapse.sample import SamplingParams, generate_corpus, sampling_context

    cfg, s = ctx.cfg, ctx.cfg.sampling
    return generate_corpus(
        g.model,
        out,
        **target,
        length=s.length,
        batch_size=s.batch_size,
        context=sampling_context(cfg, g.model),
        eos_id=ctx.corpus.tokenizer.eos_id,
        vocab_size=g.model.shape.vocab_size,
        seed=seed_for(cfg.run.seed, g.n, "sample" if r == 0 else f"sample-{r}"),
        mode=s.mode,
        params=SamplingParams.of(s),
        provenance={"generation": g.n},
        progress=ctx.progress,
    )


def curate(ctx: _Context, g: Generation) -> None:
    """S_n curated (cfg.curation) from the sampled pool(s): nothing to do for `none`."""
    from lmcollapse.curation.stage import CurationJob, curate, curating
    from lmcollapse.rundir import verified_model
    from lmcollapse.sample import corpus_target

    if not curating(ctx.cfg):
        return
    t0 = time.perf_counter()
    cfg, n, work = ctx.cfg, g.n, ctx.layout.generation(g.n) / "curation"
    target = corpus_target(cfg, ctx.paradigm.scale, ctx.corpus.d0)
    job = CurationJob(
        cfg,
        n,
        ctx.layout.corpus(n),
        work,
        target,
        functools.partial(_draw, ctx, g),
        first=g.sampled,
        model=g.model,
        first_model=functools.partial(verified_model, ctx.layout, ctx.manifest, 1),
        d0=ctx.corpus.d0,
        state=ctx.state,
        cache=ctx.curation_cache,
        training=g.data,
        tokenizer=ctx.corpus.tokenizer,
        seed=seed_for(cfg.run.seed, n, "curation"),
    )
    g.curated, g.sampled = curate(job)
    ctx.corpora.trust(n)
    ctx.state.wait_for_everyone()
    g.entry["seconds"]["curate"] = time.perf_counter() - t0  # its extra pools' sampling too


def evaluate(ctx: _Context, g: Generation) -> None:
    """Main process: held-out perplexity, probes (with p̂_n(·|x) saved whole), corpus
    statistics of S_n, samples."""
    if not ctx.main:
        return
    from lmcollapse.evaluate.corpus import corpus_stats
    from lmcollapse.evaluate.probes import probe

    cfg, tok, model, n = ctx.cfg, ctx.corpus.tokenizer, g.model, g.n
    e = cfg.evaluation
    ppl = model.perplexity(
        ctx.evaluation,
        context=min(e.context_length, model.shape.max_positions),
        stride=e.perplexity_stride,
        max_stories=e.max_stories,
        first_token=e.score_first_token,
    )
    dists = model.next_token_distributions([tok.encode(p.context) for p in e.probes])
    probes: list[ProbeResult] = [
        probe(model, tok, p.context, p.next, truth, top_k=10, distribution=d)
        for p, truth, d in zip(e.probes, ctx.truths, dists, strict=True)
    ]
    atomic_write_npz(ctx.layout.distributions(n), {f"p_hat_{i}": d for i, d in enumerate(dists)})
    generated = ctx.corpora.open(n)
    g.metrics = GenerationMetrics(
        generation=n,
        perplexity=ppl.perplexity,
        loss=ppl.loss,
        eval_tokens=ppl.tokens,
        eval_stories=ppl.stories,
        eval_set=ctx.eval_set,
        probes=probes,
        corpus=corpus_stats(generated, ctx.reference, seed=seed_for(cfg.run.seed, n, "stats")),
        train_stories=g.data.num_stories,
        train_tokens=g.data.num_tokens,
    )
    _write_samples(ctx, n, generated)


def record(ctx: _Context, g: Generation) -> None:
    """Main process: metrics.json, then the manifest marks the generation complete."""
    if not ctx.main:
        return
    m, layout, n = g.metrics, ctx.layout, g.n
    assert m is not None and g.trained is not None  # g.sampled: None when nothing was sampled
    m.train, m.sample, m.curation = g.trained, g.sampled, g.curated
    m.composition, m.seconds = g.composition.to_dict(), g.entry["seconds"]
    if g.trained.trained_on is not None:  # the family fitted on something else (expected counts)
        m.train_tokens, m.train_stories = g.trained.tokens, None
        m.composition["trained_on"] = g.trained.trained_on
    atomic_write_json(layout.metrics(n), m.to_plain())
    g.entry.update(
        {
            "status": "complete",
            "finished": now(),
            "model_sha256": sha256_of(layout.model(n)),
            "corpus_checksum": ctx.corpora.open(n).meta["checksum"],
            "metrics_sha256": sha256_of(layout.metrics(n)),
        }
    )
    ctx.save_manifest()
    if time.monotonic() - ctx.outputs_at >= max(OUTPUT_INTERVAL, 10 * ctx.outputs_cost):
        _write_outputs(ctx)  # the run's end writes them in any case
    ctx.say(m.summary())


Stage = Callable[[_Context, Generation], None]
STAGES: tuple[Stage, ...] = (compose, fit, sample, curate, evaluate, record)
TIMED: dict[Stage, str] = {fit: "train", sample: "sample", evaluate: "evaluate"}


def _write_samples(ctx: _Context, n: int, store: Any) -> None:
    """samples.txt: a few whole stories of generation n's corpus (D0 for n = 0), by seed."""
    from lmcollapse.evaluate.corpus import samples_text

    seed = seed_for(ctx.cfg.run.seed, n, "samples")
    text = samples_text(store, ctx.corpus.tokenizer, ctx.cfg.evaluation.num_samples, seed)
    atomic_write_text(ctx.layout.samples(n), text)


def _write_outputs(ctx: _Context) -> None:
    """metrics.csv, figures/ and report.html from the metrics files."""
    from lmcollapse.report import write_report
    from lmcollapse.rundir import metrics_rows

    layout = ctx.layout
    t0 = ctx.outputs_at = time.monotonic()
    atomic_write_text(layout.metrics_csv, csv_text(metrics_rows(load_metrics(layout))))
    if ctx.report:
        write_report([layout.root], layout.report, figures_dir=layout.figures)
    ctx.outputs_cost = time.monotonic() - t0


__all__ = ["STAGES", "Generation", "run", "seed_for"]
