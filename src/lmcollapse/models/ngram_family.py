"""The n-gram family: counting as its fit, and the expected-counts modes with the state they keep.

In `model.expected_counts` chain or paper (footnote 3: no sampling error), generation n ≥ 2 is
not fitted on its drawn training set but on the exact expected counts of what the paradigm
would give it: each generation stores the expected counts of its corpus S_n and their running
sum over S_1..S_n in gen_NNN/expected_counts.npz (generation 1 also D0's counts), and the next
generation combines them in the paradigm's shares (models.ngram.training_table).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

import lmcollapse.models.ngram as ngram
from lmcollapse.artifacts import atomic_write_npz
from lmcollapse.errors import InvalidInput
from lmcollapse.models.base import Family, FitJob
from lmcollapse.models.ngram import CountTable, NGramModel
from lmcollapse.results import TrainResult

EXPECTED = "expected_counts.npz"


class NGramFamily(Family):
    """Exact n-gram models (models.ngram), trained by counting."""

    name = "ngram"
    model_types = (ngram.FORMAT,)

    def check(self, cfg: Any, vocab_size: int) -> list[str]:
        try:
            ngram.check_model(cfg.order, vocab_size, 0, cfg.delta, cfg.smoothing)
        except InvalidInput as exc:
            return [str(exc)]
        return []

    def build(self, cfg: Any, vocab_size: int, eos_id: int) -> NGramModel:
        return NGramModel(vocab_size, eos_id, cfg.order, cfg.delta, cfg.smoothing)

    def load(self, path: Path) -> NGramModel:
        return NGramModel.from_pretrained(path)

    def fit(self, model: Any, job: FitJob) -> TrainResult:
        """Count generation n's training set — or, in an expected-counts mode, install its counts
        from the earlier generations' expected corpora."""
        t0 = time.perf_counter()
        mode, n = job.cfg.model.expected_counts, job.generation
        if mode == "off" or n == 1:
            model.fit(job.data)
        else:
            ngram.from_table(model, _training_table(job))
        if mode != "off":
            _record_expected(model, job)
        tokens = round(float(model.values.sum() + model.base.sum() * model.vocab_size))
        trained_on = None
        if mode != "off" and n > 1:
            trained_on = (
                f"expected counts ({mode}) in the paradigm's exact shares; the sampled stories "
                "above were not used"
            )
        return TrainResult(
            epochs=1,
            steps=0,
            tokens=tokens,
            seconds=time.perf_counter() - t0,
            trained_on=trained_on,
        )


def _where(job: FitJob, n: int) -> Path:
    if job.generation_dir is None:
        raise InvalidInput("expected-counts mode needs the run directory (FitJob.generation_dir)")
    return job.generation_dir(n) / EXPECTED


def _record_expected(model: NGramModel, job: FitJob) -> None:
    """Store S_n's expected counts and their running sum (D0's counts with generation 1)."""
    cfg, n = job.cfg, job.generation
    cap = cfg.sampling.length if cfg.sampling.mode == "story" else None  # story mode: exact
    full = ngram.expected_corpus(
        model,
        cfg.model.expected_counts,
        job.paradigm,
        job.d0.num_stories,
        job.d0.num_tokens if cfg.paradigm.unit == "tokens" else None,
        cap,
    )
    arrays = {"keys": full.keys, "values": full.values, "base": full.base}
    if n == 1:  # D0's counts are stored once, with generation 1's
        cumulative = full
        d0 = ngram.table_of(model)
        arrays |= {"d0_values": d0.values, "d0_base": d0.base}
    else:
        cumulative = _load_expected(job, n - 1)[1] + full
    arrays |= {"cum_values": cumulative.values, "cum_base": cumulative.base}
    atomic_write_npz(_where(job, n), arrays)


def _load_expected(job: FitJob, n: int) -> tuple[CountTable, CountTable, CountTable]:
    """(S_n's expected counts, their sum over generations 1..n, D0's counts)."""
    with np.load(_where(job, n)) as z:
        keys = z["keys"]
        full = CountTable(keys, z["values"], z["base"])
        cumulative = CountTable(keys, z["cum_values"], z["cum_base"])
    with np.load(_where(job, 1)) as z:
        d0 = CountTable(keys, z["d0_values"], z["d0_base"])
    return full, cumulative, d0


def _training_table(job: FitJob) -> CountTable:
    """Generation n's training counts from the expected corpora, in the paradigm's shares."""
    n = job.generation
    last, cumulative, d0 = _load_expected(job, n - 1)
    return ngram.training_table(job.paradigm, n, d0, last, cumulative)
