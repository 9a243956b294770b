"""`lmcollapse run`: the recursive-training experiment, generation after generation, resumable.

    run(resolve(ExperimentConfig, preset="demo"))          # what `lmcollapse run` does

Generation 1 trains on D0 (minus the holdout); every generation is evaluated (held-out
perplexity, probes against the corpus truth with Remark B.1's α*), generates its corpus S_n,
and the next trains on its paradigm's composition of D0 and the S_j. Generation 0 is the
reference row: D0 itself (the truth of every probe, D0's corpus statistics).

A generation is a sequence of named stages (`STAGES`): compose → fit → sample → curate →
evaluate → downstream → record, each a function of the run's context and the generation's
state; a new stage is one more function in that tuple. curate (lmcollapse.curation) does
nothing unless curation.name asks for it, downstream nothing unless evaluation.downstream
lists tasks. fit starts from training.init's weights (generation 1 may be run.first_model).

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
from typing import TYPE_CHECKING, Any

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
    metrics_rows,
    missing_dirs,
    now,
    sha256_of,
    write_config,
)
from lmcollapse.runtime import log, log_to, main_first, say

if TYPE_CHECKING:
    from lmcollapse.evaluate.downstream import EncodedTask
    from lmcollapse.results import DownstreamResult
    from lmcollapse.tracking import Trackers

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
    trackers: Trackers | None = None  # run.trackers (main process)
    tasks: list[EncodedTask] = field(default_factory=list)  # evaluation.downstream (main)
    starts: dict[str, Path] = field(default_factory=dict)  # run.first_model, model.pretrained
    vocab: int = 0  # the run's vocabulary: the tokenizer's, or a checkpoint's padded one

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
    downstream: list[DownstreamResult] | None = None  # one per task (main process)
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
        if main and cfg.run.trackers:
            ctx.trackers = _open_trackers(ctx, todo[0] if todo else cfg.run.generations + 1)
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
    finally:
        if ctx.trackers is not None:
            ctx.trackers.finish()
    return layout.root


def _open_trackers(ctx: _Context, first: int) -> Any:
    """run.trackers, continuing at generation `first` (the recorded generations' optimizer
    steps give the training-loss axis its offset)."""
    from lmcollapse.tracking import Trackers

    before, total = {1: 0}, 0
    for m in load_metrics(ctx.layout):
        n = int(m["generation"])
        if 1 <= n < first:
            total += int((m.get("train") or {}).get("steps") or 0)
            before[n + 1] = total
    new = not any(n in before for n in range(2, first + 1))
    created = str(ctx.manifest.get("created", ""))
    return Trackers.open(ctx.cfg, ctx.layout.root, before, first, new, created)


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
    tasks = []
    finished = len(completed(ctx.manifest, layout)) >= cfg.run.generations
    if cfg.evaluation.downstream and not finished:  # its errors before the data preparation
        from lmcollapse.evaluate.downstream import read_tasks

        seed = seed_for(cfg.run.seed, 0, "downstream-examples")
        tasks = read_tasks(cfg.evaluation.downstream, seed)
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
    ctx.starts = _starting_points(ctx)
    ctx.vocab = _vocabulary(cfg, tok, ctx.starts)
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
    if tasks:
        from lmcollapse.evaluate.downstream import encode_tasks

        ctx.tasks = encode_tasks(tasks, tok)
    if not layout.config.is_file() or config_is_partial(layout):
        write_config(layout, ctx.manifest, cfg)
    if len(completed(ctx.manifest, layout)) < cfg.run.generations:  # a finished run stays so
        ctx.manifest["status"] = "running"
    ctx.manifest["generations_planned"] = cfg.run.generations
    atomic_write_json(layout.manifest, ctx.manifest, indent=None)


def _vocabulary(cfg: ExperimentConfig, tok: Any, starts: dict[str, Path]) -> int:
    """The run's vocabulary: model.vocab_size or the tokenizer's, or a starting checkpoint's
    padded one (OPT: 50,272 rows for 50,265 ids) — what every store, model and probe spans."""
    from lmcollapse.models.pretrained import vocab_of

    sizes = [v for v in map(vocab_of, starts.values()) if v is not None]
    return max([cfg.model.vocab_size or tok.vocab_size, *sizes])


def _starting_points(ctx: _Context) -> dict[str, Path]:
    """run.first_model and model.pretrained as local directories (a hub model fetched once),
    their files' SHA-256 recorded in the manifest when the run starts and checked on resume: a
    resumed run never fine-tunes from weights that changed under it."""
    from lmcollapse.checks import starting_points
    from lmcollapse.models.pretrained import local_dir

    out, recorded = {}, ctx.manifest.setdefault("starting_points", {})
    for spec, what in starting_points(ctx.cfg):
        path = local_dir(spec, what)
        digest = sha256_of(path)
        seen = recorded.setdefault(what, {"source": spec, "sha256": digest})
        if seen.get("sha256") != digest:
            raise InvalidInput(
                f"{what} {spec} is not the model this run started from (its files' SHA-256 "
                "changed): restore it, or start a new run with another --out"
            )
        out[what] = path
    return out


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
    vocab = ctx.vocab
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
    """The generation's model: run.first_model as generation 1, else its starting weights
    (training.init) fitted by its family; saved by the main process."""
    from lmcollapse.models import family_of
    from lmcollapse.models.base import FitJob
    from lmcollapse.models.pretrained import load_pretrained, starting_model
    from lmcollapse.rundir import verified_model
    from lmcollapse.runtime import seed_everything

    cfg, corpus, n = ctx.cfg, ctx.corpus, g.n
    seed_everything(seed_for(cfg.run.seed, n, "init"))
    if not ctx.starts:  # another process than the main one (which checked their SHA-256)
        from lmcollapse.checks import starting_points
        from lmcollapse.models.pretrained import local_dir

        ctx.starts = {what: local_dir(spec, what) for spec, what in starting_points(cfg)}
        ctx.vocab = _vocabulary(cfg, corpus.tokenizer, ctx.starts)
    if n == 1 and cfg.run.first_model:
        t0 = time.perf_counter()
        g.model = load_pretrained(ctx.starts["run.first_model"], "run.first_model")
        note = f"run.first_model {cfg.run.first_model}, loaded (not trained)"
        g.trained = TrainResult(0, 0, 0, time.perf_counter() - t0, trained_on=note)
        ctx.say(f"generation 1 is {cfg.run.first_model}: {g.model.describe()}")
    else:
        tok = corpus.tokenizer
        g.model, start = starting_model(
            cfg,
            n,
            ctx.vocab,
            tok.eos_id,
            lambda: verified_model(ctx.layout, ctx.manifest, n - 1),
            ctx.starts.get("model.pretrained"),
        )
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
            on_step=ctx.trackers.step_logger(n) if ctx.trackers else None,
        )
        g.trained = family_of(g.model.family).fit(g.model, job)
        if early:
            ctx.manifest["epochs"] = g.trained.best_epoch or g.trained.epochs
        if n == 1 or (n == 2 and cfg.run.first_model):
            ctx.say(f"{g.model.describe()}, from {start}")
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
    from lmcollapse.sample import (
        Decoding,
        SamplingParams,
        TrainingPrompts,
        generate_corpus,
        sampling_context,
    )

    cfg, s = ctx.cfg, ctx.cfg.sampling
    prompts = None
    if s.prompt == "training":  # round r of a curation: other blocks first
        order = seed_for(cfg.run.seed, g.n, "prompts" if r == 0 else f"prompts-{r}")
        prompts = TrainingPrompts(g.data, s.prompt_tokens, order)
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
        decoding=Decoding.of(s, prompts),
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


def downstream(ctx: _Context, g: Generation) -> None:
    """Main process: every evaluation.downstream task fine-tuned from the generation's model
    and tested, next to the run's random-init baseline (computed once)."""
    if not ctx.main or not ctx.tasks:
        return
    from lmcollapse.evaluate.downstream import evaluate_tasks
    from lmcollapse.runtime import resolve_device

    t0 = time.perf_counter()
    cfg, n, eos = ctx.cfg, g.n, ctx.corpus.tokenizer.eos_id
    device = resolve_device(cfg.run.device)
    baseline = _downstream_baseline(ctx, device)
    seed = seed_for(cfg.run.seed, n, "downstream")
    g.downstream = evaluate_tasks(ctx.tasks, ctx.layout.model(n), eos, seed=seed, device=device)
    for result, base in zip(g.downstream, baseline, strict=True):
        result.baseline_accuracy, result.baseline_f1_weighted = base.accuracy, base.f1_weighted
    g.entry["seconds"]["downstream"] = time.perf_counter() - t0  # the baseline's too, once
    ctx.say(
        "downstream: "
        + "; ".join(
            f"{r.task} accuracy {r.accuracy:.3f} (random init {r.baseline_accuracy:.3f})"
            for r in g.downstream
        )
    )


def _downstream_baseline(ctx: _Context, device: Any) -> list[Any]:
    """downstream_baseline.json: the tasks on a random init of generation 1's config."""
    import json

    from lmcollapse.evaluate.downstream import evaluate_tasks
    from lmcollapse.results import DownstreamResult

    path = ctx.layout.downstream_baseline
    if path.is_file():
        return [DownstreamResult.from_plain(d) for d in json.loads(path.read_text())["tasks"]]
    ctx.say("downstream: the random-init baseline (once per run)")
    results = evaluate_tasks(
        ctx.tasks,
        ctx.layout.model(1),
        ctx.corpus.tokenizer.eos_id,
        seed=seed_for(ctx.cfg.run.seed, 0, "downstream-baseline"),
        device=device,
        random_init=True,
    )
    record = {
        "what": "a randomly initialised model of generation 1's config, fine-tuned and tested "
        "like every generation's (evaluation.downstream)",
        "config": str(ctx.layout.model(1).relative_to(ctx.layout.root) / "config.json"),
        "tasks": [r.to_plain() for r in results],
    }
    atomic_write_json(path, record)
    return results


def record(ctx: _Context, g: Generation) -> None:
    """Main process: metrics.json, then the manifest marks the generation complete."""
    if not ctx.main:
        return
    m, layout, n = g.metrics, ctx.layout, g.n
    assert m is not None and g.trained is not None  # g.sampled: None when nothing was sampled
    m.train, m.sample, m.curation = g.trained, g.sampled, g.curated
    m.downstream = g.downstream
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
    if ctx.trackers is not None:  # before the manifest: a kill in between redoes (and purges)
        ctx.trackers.generation(n, metrics_rows([m.to_plain()])[0], g.trained.steps)
    ctx.save_manifest()
    if time.monotonic() - ctx.outputs_at >= max(OUTPUT_INTERVAL, 10 * ctx.outputs_cost):
        _write_outputs(ctx)  # the run's end writes them in any case
    ctx.say(m.summary())


Stage = Callable[[_Context, Generation], None]
STAGES: tuple[Stage, ...] = (compose, fit, sample, curate, evaluate, downstream, record)
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

    layout = ctx.layout
    t0 = ctx.outputs_at = time.monotonic()
    atomic_write_text(layout.metrics_csv, csv_text(metrics_rows(load_metrics(layout))))
    if ctx.report:
        write_report([layout.root], layout.report, figures_dir=layout.figures)
    ctx.outputs_cost = time.monotonic() - t0


__all__ = ["STAGES", "Generation", "run", "seed_for"]
