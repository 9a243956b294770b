"""The curation stage (issue 13): between sampling S_n and S_n joining the corpus, so under the
accumulating paradigms the curated S_n is what accumulates.

    filter  score every story of a sampled pool and keep those the rule keeps; the pool is
            curation.oversample × what S_n still lacks, and rounds repeat (each from its own
            seed) until the kept stories fill S_n — never a smaller training set
    toedit  token-level editing by a prior model (curation.toedit) of S_n, or of generation n's
            own training set (target previous: nothing is sampled)
    resample  a detector trained on D0 against a pool of curation.pool × S_n weighs every pooled
            story, and S_n is drawn by weight (curation.resample)

The sample stage draws pool 0 (`pool_target` says how much, `pool_path` where); this stage
scores it on the main process, writes the curated S_n to the generation's corpus path, draws
further pools with `CurationJob.draw` on every process when needed (the main process's count of
what is missing is shared, so all processes agree how many rounds there are), and removes the
pools. Scores stream over the pool in batches; nothing holds a corpus in memory.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse.curation.rules import d0_range, keep_best
from lmcollapse.curation.scores import HIGHER_IS_BETTER, TEXT_SCORES, story_scores
from lmcollapse.data.store import TokenStore, TokenStoreWriter, written
from lmcollapse.errors import InvalidInput
from lmcollapse.results import CurationResult, SampleResult

STORY_BATCH = 512  # stories per teacher-forced scoring batch
MAX_GROWTH = 20  # a later pool is at most this many times oversample × what S_n lacks


def curating(cfg: Any) -> bool:
    """Whether the run curates its generated corpora."""
    return cfg.curation.name != "none"


def goal(cfg: Any, target: dict[str, int]) -> tuple[str, int]:
    """What S_n must hold, as (unit, amount): the sampling target in tokens or stories. A
    num_sequences target counts stories in story mode and num_sequences × length tokens in
    stream mode (what that many sequences hold), so a curated S_n is as large as an uncurated."""
    ((key, amount),) = target.items()
    if key == "min_tokens":
        return "tokens", amount
    if key == "min_stories":
        return "stories", amount
    if cfg.sampling.mode == "story":
        return "stories", amount
    return "tokens", amount * cfg.sampling.length


def pool_target(cfg: Any, unit: str, missing: int, rate: float = 1.0) -> dict[str, int]:
    """The sampling target of a pool when S_n still lacks `missing` units: oversample × what
    is missing, divided by the share of sampled units earlier pools gave S_n (`rate`, at least
    1/MAX_GROWTH), so a strict rule needs few rounds, not many."""
    need = cfg.curation.oversample * missing / max(rate, 1 / MAX_GROWTH)
    return {f"min_{unit}": max(1, math.ceil(need))}


def pool_path(work: Path, r: int) -> Path:
    """Where pool r of a generation is sampled."""
    return work / f"pool_{r}"


@dataclass
class CurationJob:
    """What the curation of one generation's corpus needs."""

    cfg: Any  # ExperimentConfig
    generation: int
    out: Path  # the curated S_n (the generation's corpus)
    work: Path  # the pools' directory (removed when done)
    target: dict[str, int]  # corpus_target: what S_n holds
    draw: Callable[[Path, dict[str, int], int], SampleResult]  # pool r (on every process)
    first: SampleResult | None = None  # pool 0, drawn by the sample stage
    model: Any = None  # generation n's LanguageModel
    first_model: Callable[[], Path] | None = None  # generation 1's model directory (verified)
    d0: Any = None  # TokenStore
    state: Any = None  # accelerate's PartialState (None: one process)
    cache: dict[str, Any] = field(default_factory=dict)  # across generations: D0's scores
    training: Any = None  # generation n's TrainingSet (toedit's target previous edits it)
    tokenizer: Any = None  # the run's (data.tokenizer.Tok): decodes stories for curation.detector
    seed: int = 0  # of the strategy's own draws

    @property
    def main(self) -> bool:
        return self.state is None or bool(self.state.is_main_process)

    def reference(self) -> Any:
        """The prior model (curation.reference), loaded once per run and process."""
        if "reference" not in self.cache:
            assert self.first_model is not None
            spec = self.cfg.curation.reference
            self.cache["reference"] = reference_model(spec, self.model, self.first_model)
        return self.cache["reference"]

    def detector(self) -> Any:
        """curation.detector's classifier, loaded once per run on the run's models' device."""
        if "detector" not in self.cache:
            from lmcollapse.curation.hf_detector import HFDetector

            c = self.cfg.curation
            device = getattr(self.model, "device", None)
            self.cache["detector"] = HFDetector.load(c.detector, c.detector_label, device)
        return self.cache["detector"]


def first_pool(cfg: Any, target: dict[str, int]) -> dict[str, int] | None:
    """What the sample stage draws as pool 0 when curating (None: nothing — toedit's target
    previous edits the training set instead)."""
    c = cfg.curation
    if c.name == "filter":
        return pool_target(cfg, *goal(cfg, target))
    if c.name == "resample":
        unit, need = goal(cfg, target)
        return {f"min_{unit}": max(1, math.ceil(c.pool * need))}
    return None if c.target == "previous" else target


def curate(job: CurationJob) -> tuple[CurationResult | None, SampleResult | None]:
    """Curate generation n's sampled pool(s) (or training set) into S_n: (the record — None off
    the main process — and the sampling of all pools together)."""
    name = job.cfg.curation.name
    if name not in ("filter", "toedit", "resample"):
        raise InvalidInput(f"unknown curation {name!r}")
    try:
        if name == "filter":
            return _filter(job)
        main_only = _toedit if name == "toedit" else _resample
        result = _on_main(job, lambda: main_only(job))
        return (result if job.main else None), job.first
    finally:
        if job.main:
            shutil.rmtree(job.work, ignore_errors=True)


def _on_main(job: CurationJob, fn: Callable[[], Any]) -> Any:
    """fn() on the main process, its value and its errors on every process (runtime.main_first),
    so none waits for a main process that failed."""
    from lmcollapse.runtime import main_first

    if job.state is None:
        return fn()
    return main_first(job.state, fn)


def _resample(job: CurationJob) -> CurationResult:
    """Main process: detectors trained on D0 against halves of the pool weigh the other half's
    stories (cross-fitted: no story is weighed by a detector that saw it), or curation.detector
    weighs them all; S_n is drawn by weight (curation.resample)."""
    from lmcollapse.curation.resample import human_log_weights, weighted_draw

    c, t0 = job.cfg.curation, time.perf_counter()
    unit, need = goal(job.cfg, job.target)
    pool = TokenStore.open(pool_path(job.work, 0))
    if c.detector is None:
        log_human, auc = human_log_weights(
            job.d0, pool, max_stories=c.detector_stories, seed=job.seed
        )
    else:
        from lmcollapse.curation.hf_detector import hf_log_weights

        log_human, auc = hf_log_weights(
            job.detector(),
            job.d0,
            pool,
            job.tokenizer,
            max_stories=c.detector_stories,
            seed=job.seed,
        )
    units = pool.lengths() if unit == "tokens" else np.ones(pool.num_stories, np.int64)
    drawn = weighted_draw(c.gamma * log_human, units, need, c.max_repeats, [job.seed, 1])
    store = _write(job, pool.vocab_size, [(pool, drawn)])
    conf = -np.expm1(log_human)  # P(machine-made)
    assert job.first is not None
    return CurationResult(
        strategy="resample",
        rounds=1,
        sampled_stories=pool.num_stories,
        sampled_tokens=job.first.tokens,
        kept_stories=store.num_stories,
        kept_tokens=store.num_tokens,
        kept_share=np.unique(drawn).size / max(pool.num_stories, 1),
        score="detector-confidence",
        pool_score_mean=float(conf.mean()),
        kept_score_mean=float(conf[drawn].mean()),
        detector_auc=auc,
        detector_label=None if c.detector is None else job.detector().label,
        repeated_share=1 - np.unique(drawn).size / max(drawn.size, 1),
        seconds=time.perf_counter() - t0,
    )


def _toedit(job: CurationJob) -> CurationResult:
    """Main process: ToEdit of S_n (target generated, prior curation.reference) or of
    generation n's training set (target previous, prior model n)."""
    from lmcollapse.curation.toedit import edit_parts

    t0 = time.perf_counter()
    if job.cfg.curation.target == "previous":
        prior, sets = job.model, job.training
        parts = list(zip(sets.stores, sets.indices, strict=True))
        source = sets.num_tokens
    else:
        prior, pool = job.reference(), TokenStore.open(pool_path(job.work, 0))
        parts = [(pool, np.arange(pool.num_stories))]
        assert job.first is not None
        source = job.first.tokens
    _can_score(prior)
    context = min(job.cfg.evaluation.context_length, prior.shape.max_positions)
    vocab = max(st.vocab_size for st, _ in parts)
    writer = _writer(job, vocab)
    try:
        counts = edit_parts(parts, prior, writer, cfg=job.cfg, context=context, seed=job.seed)
        store = writer.close()
    except BaseException:
        writer.abort()
        raise
    return CurationResult(
        strategy="toedit",
        rounds=0 if job.first is None else 1,
        sampled_stories=counts.stories,
        sampled_tokens=source,
        kept_stories=store.num_stories,
        kept_tokens=store.num_tokens,
        kept_share=store.num_stories / max(counts.stories, 1),
        edited_share=counts.resampled / max(counts.tokens, 1),
        changed_share=counts.changed / max(counts.tokens, 1),
        deleted_share=counts.deleted / max(counts.tokens, 1),
        seconds=time.perf_counter() - t0,
    )


def _filter(job: CurationJob) -> tuple[CurationResult | None, SampleResult]:
    c = job.cfg.curation
    unit, need = goal(job.cfg, job.target)
    missing, rate, pools, t_cur = need, 1.0, [job.first], 0.0
    tally = {"scored": 0, "accepted": 0, "kept": 0, "kept_tokens": 0, "pool_units": 0}
    tally |= {"pool_sum": 0.0, "pool_finite": 0, "kept_sum": 0.0, "kept_finite": 0}
    writer: Any = None
    try:
        for r in range(c.max_rounds):
            path = pool_path(job.work, r)
            if r:
                pools.append(job.draw(path, pool_target(job.cfg, unit, missing, rate), r))

            def keep(path: Path = path, missing: int = missing) -> tuple[int, float]:
                nonlocal writer, t_cur
                t0 = time.perf_counter()
                pool = TokenStore.open(path)
                writer = writer or _writer(job, pool.vocab_size)
                left = _keep_from(job, pool, unit, missing, writer, tally)
                tally["pool_units"] += pool.num_tokens if unit == "tokens" else pool.num_stories
                shutil.rmtree(path)
                t_cur += time.perf_counter() - t0
                return left, (need - left) / max(tally["pool_units"], 1)

            missing, rate = _on_main(job, keep)  # the main process's count, everywhere
            if missing <= 0:
                break
        else:
            raise InvalidInput(
                f"curation filter: {c.max_rounds} rounds accepted {tally['accepted']} of "
                f"{tally['scored']} sampled stories (rule {c.rule}, score {c.score}), still "
                f"{missing} {unit} short of S_n: raise curation.oversample or "
                "curation.max_rounds, or loosen the rule (curation.keep, curation.q)"
            )
        if writer is not None:
            t0 = time.perf_counter()
            writer.close()
            t_cur += time.perf_counter() - t0
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    sampled = _total(pools)
    if not job.main:
        return None, sampled
    kept = tally["kept"]
    return (
        CurationResult(
            strategy="filter",
            rounds=len(pools),
            sampled_stories=sampled.stories,
            sampled_tokens=sampled.tokens,
            kept_stories=kept,
            kept_tokens=tally["kept_tokens"],
            kept_share=kept / max(sampled.stories, 1),
            acceptance_rate=tally["accepted"] / max(tally["scored"], 1),
            score=c.score,
            pool_score_mean=tally["pool_sum"] / max(tally["pool_finite"], 1),
            kept_score_mean=tally["kept_sum"] / max(tally["kept_finite"], 1),
            seconds=t_cur,
        ),
        sampled,
    )


def _writer(job: CurationJob, vocab_size: int) -> TokenStoreWriter:
    """S_n's writer, in the vocabulary of what it is made from (a pool sampled by a model of a
    padded vocabulary has ids past the tokenizer's)."""
    return TokenStoreWriter(
        job.out,
        vocab_size=vocab_size,
        eos_id=job.d0.eos_id,
        provenance={"generation": job.generation, "curation": job.cfg.curation.name},
        overwrite=True,
    )


def _keep_from(
    job: CurationJob,
    pool: TokenStore,
    unit: str,
    missing: int,
    writer: Any,
    tally: dict[str, Any],
) -> int:
    """Score one pool, choose by the rule, and write the chosen stories (in pool order) until
    S_n is full; returns what S_n still lacks."""
    c = job.cfg.curation
    scores = score_store(job, pool)
    if c.rule == "keep":
        chosen = keep_best(scores, c.keep, HIGHER_IS_BETTER[c.score])
    else:
        key = f"d0:{c.score}:{c.n}:{c.reference}"
        if key not in job.cache:
            job.cache[key] = score_store(job, job.d0)
        chosen = d0_range(scores, job.cache[key], c.q)
    units = pool.lengths()[chosen] if unit == "tokens" else np.ones(chosen.size, np.int64)
    take = chosen[: int(np.searchsorted(np.cumsum(units), missing)) + 1]  # the one reaching it
    for toks, lens, done in pool.gather_marked(take, batch=8192):
        writer.add_flat(toks, lens, done)
    tally["scored"] += scores.size
    tally["accepted"] += chosen.size
    tally["kept"] += take.size
    tally["kept_tokens"] += int(pool.lengths()[take].sum())
    for key, part in (("pool", scores), ("kept", scores[take])):  # an inf perplexity: no mean
        finite = part[np.isfinite(part)]
        tally[f"{key}_sum"] += float(finite.sum())
        tally[f"{key}_finite"] += int(finite.size)
    return missing - int(units[: take.size].sum())


def score_store(job: CurationJob, store: TokenStore) -> np.ndarray:
    """curation.score of every story of a store."""
    c = job.cfg.curation
    if c.score in TEXT_SCORES:
        return story_scores(store, c.score, n=c.n)
    model = job.reference()
    context = min(job.cfg.evaluation.context_length, model.shape.max_positions)
    return perplexity_scores(store, model, context=context)


def perplexity_scores(store: TokenStore, model: Any, *, context: int) -> np.ndarray:
    """Every story's perplexity under `model`: exp of its mean token loss over the tokens the
    model wrote (an unfinished story's closing separator is not one), each token predicted from
    the start token and at most `context` earlier tokens; inf for a story with none."""
    _can_score(model)
    out = np.empty(store.num_stories)
    for lo in range(0, store.num_stories, STORY_BATCH):
        idx = np.arange(lo, min(store.num_stories, lo + STORY_BATCH))
        for toks, lens, done in store.gather_marked(idx, batch=STORY_BATCH):
            logp = model.score_tokens(toks, lens, eos_id=store.eos_id, context=context).logp
            mask = written(lens, done)
            story = np.repeat(np.arange(lens.size), lens)
            loss = np.bincount(story[mask], weights=-logp[mask], minlength=lens.size)
            count = np.bincount(story[mask], minlength=lens.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[idx] = np.where(count > 0, np.exp(loss / np.maximum(count, 1)), np.inf)
    return out


def _write(job: CurationJob, vocab_size: int, parts: list[tuple[Any, Any]]) -> TokenStore:
    """The chosen stories of each (store, indices) part, in order, as S_n."""
    writer = _writer(job, vocab_size)
    try:
        for store, idx in parts:
            for toks, lens, done in store.gather_marked(idx, batch=8192):
                writer.add_flat(toks, lens, done)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _can_score(model: Any) -> None:
    if not hasattr(model, "score_tokens"):
        raise InvalidInput(
            f"{type(model).__name__} models cannot score tokens (no score_tokens): curate with "
            f"a text score ({', '.join(TEXT_SCORES)})"
        )


def _total(pools: list[SampleResult]) -> SampleResult:
    return SampleResult(
        sum(p.sequences for p in pools),
        sum(p.tokens for p in pools),
        sum(p.stories for p in pools),
        sum(p.unfinished for p in pools),
        sum(p.seconds for p in pools),
    )


def reference_model(spec: str, current: Any, first: Callable[[], Path]) -> Any:
    """The prior model curation.reference names — `generation-1` (generation 1's saved model,
    `first()`: the same weights whether the run was resumed or not), or a model directory or
    hub name — on the device of the run's models."""
    from lmcollapse.models import load_model

    if spec == "generation-1":
        model = load_model(first())
    elif Path(spec).is_dir():
        model = load_model(spec)
    else:
        from lmcollapse.models.hf import HFCausalLM

        try:
            model = HFCausalLM.from_pretrained(spec)
        except (OSError, ValueError) as exc:
            raise InvalidInput(
                f"curation.reference {spec!r} does not load as a causal LM "
                f"({exc.__class__.__name__}): give generation-1, a model directory or a hub name"
            ) from None
    if hasattr(model, "to") and getattr(current, "device", None) is not None:
        model = model.to(current.device)
    return model


def uses_reference(cfg: Any) -> bool:
    """Whether the run's curation reads a prior model (curation.reference)."""
    c = cfg.curation
    return (c.name == "filter" and c.score == "reference-perplexity") or (
        c.name == "toedit" and c.target == "generated"
    )


def check_reference(cfg: Any, vocab_size: int) -> None:
    """A reference model given by path or hub name must cover the run's vocabulary (its
    config.json is read, not its weights): refused before any generation trains."""
    spec = cfg.curation.reference
    if not uses_reference(cfg) or spec == "generation-1":
        return
    if Path(spec).is_dir():
        config = Path(spec) / "config.json"
        if not config.is_file():
            raise InvalidInput(
                f"curation.reference {spec} has no config.json: give a model directory, a hub "
                "name or generation-1"
            )
        meta = json.loads(config.read_text(encoding="utf-8"))
        size = meta.get("vocab_size")
    else:
        from transformers import AutoConfig

        try:
            size = getattr(AutoConfig.from_pretrained(spec), "vocab_size", None)
        except (OSError, ValueError):
            raise InvalidInput(
                f"curation.reference {spec!r} is neither a model directory nor a hub model "
                "that loads: give a model directory, a hub name or generation-1"
            ) from None
    if not isinstance(size, int) or size < vocab_size:
        raise InvalidInput(
            f"curation.reference {spec} has a vocabulary of {size} ids, the run's tokenizer "
            f"{vocab_size}: give a model trained with the run's tokenizer (or generation-1)"
        )


__all__ = ["CurationJob", "curate", "curating", "goal", "perplexity_scores", "pool_path"]
