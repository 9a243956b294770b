"""A new model family is one module and one registration: a unigram family (the class pair
below, about 60 lines) runs through `lmcollapse.run` unchanged, and its numbers are the closed
forms of a unigram model with additive smoothing."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lmcollapse.artifacts import atomic_dir
from lmcollapse.data.store import TokenStore, written
from lmcollapse.errors import InvalidInput
from lmcollapse.models.base import FAMILIES, Family, FitJob, register
from lmcollapse.results import PerplexityResult, TrainResult


class Unigram:
    """p̂(v) = (N_v + δ)/(N + Vδ) whatever the context."""

    family = "unigram"

    def __init__(self, vocab_size: int, eos_id: int, delta: float = 1.0) -> None:
        self.shape = type("Shape", (), {"vocab_size": vocab_size, "max_positions": 2**31 - 1})
        self.eos_id, self.delta, self.counts = eos_id, delta, np.zeros(vocab_size)
        self.device = torch.device("cpu")

    def probs(self) -> np.ndarray:
        return (self.counts + self.delta) / (self.counts.sum() + self.delta * self.counts.size)

    def next_token_distributions(self, contexts: Any) -> np.ndarray:
        return np.tile(self.probs(), (len(contexts), 1))

    def sample(self, batch: int, length: int, *, generator: Any, stop_at_eos: bool, **_: Any):
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        rows = rng.choice(self.counts.size, size=(batch, length), p=self.probs())
        if not stop_at_eos:
            return list(rows)
        ends = [np.flatnonzero(r == self.eos_id) for r in rows]
        return [r[: e[0] + 1] if e.size else r for r, e in zip(rows, ends, strict=True)]

    def perplexity(self, store: TokenStore, *, max_stories=None, first_token=True, **_: Any):
        n = store.num_stories if max_stories is None else min(max_stories, store.num_stories)
        toks, lens, done = next(store.gather_marked(np.arange(n), batch=n))
        scored = written(lens, done)
        scored[np.cumsum(lens) - lens] &= first_token  # each story's first token, if asked
        logp = np.log(self.probs()[toks[scored]])
        return PerplexityResult(-logp.mean(), math.exp(-logp.mean()), logp.size, n)

    def save(self, path: Any) -> Path:
        with atomic_dir(path) as tmp:
            meta = {"model_type": "lmcollapse-unigram", "eos": self.eos_id, "delta": self.delta}
            (tmp / "config.json").write_text(json.dumps(meta))
            np.save(tmp / "counts.npy", self.counts)
        return Path(path)

    def describe(self) -> str:
        return f"unigram model over {self.counts.size} tokens, δ = {self.delta:g}"


class UnigramFamily(Family):
    name = "unigram"
    model_types = ("lmcollapse-unigram",)

    def build(self, cfg: Any, vocab_size: int, eos_id: int) -> Unigram:
        return Unigram(vocab_size, eos_id, cfg.delta)

    def fit(self, model: Unigram, job: FitJob) -> TrainResult:
        t0 = time.perf_counter()
        for store, idx in zip(job.data.stores, job.data.indices, strict=True):
            for toks, lens, done in store.gather_marked(np.asarray(idx)):
                model.counts += np.bincount(toks[written(lens, done)], minlength=model.counts.size)
        return TrainResult(1, 0, int(model.counts.sum()), time.perf_counter() - t0)

    def load(self, path: Path) -> Unigram:
        meta = json.loads((path / "config.json").read_text())
        model = Unigram(0, meta["eos"], meta["delta"])
        model.counts = np.load(path / "counts.npy")
        model.shape.vocab_size = model.counts.size
        return model


@pytest.fixture
def unigram_family():
    from lmcollapse.config.experiment import MODEL_FAMILIES

    register(UnigramFamily())
    yield
    FAMILIES.pop("unigram")
    MODEL_FAMILIES.discard("unigram")


def test_a_new_family_runs_through_the_pipeline(tmp_path: Path, unigram_family: None) -> None:
    import lmcollapse
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.models import load_model
    from lmcollapse.rundir import load_metrics

    sets = ["model.family=unigram", "model.delta=0.5", "data.num_stories=200"]
    sets += ["data.tokenizer_vocab_size=500", "run.generations=2", "sampling.length=300"]
    cfg = resolve(ExperimentConfig, preset="ngram-demo", overrides=sets)
    out = lmcollapse.run(cfg, tmp_path / "run", progress=False)
    gen1 = load_metrics(out)[1]
    model = load_model(out / "gen_001" / "model")
    assert isinstance(model, Unigram)
    d0 = TokenStore.open(out / "data" / "d0")  # generation 1 counts D0's written tokens
    toks, lens, done = next(d0.gather_marked(np.arange(d0.num_stories), batch=d0.num_stories))
    counts = np.bincount(toks[written(lens, done)], minlength=model.counts.size)
    np.testing.assert_array_equal(model.counts, counts)
    p = (counts + 0.5) / (counts.sum() + 0.5 * counts.size)
    for d in gen1["probes"][0]["next"].values():
        assert d["p_hat"] == pytest.approx(p[d["id"]], rel=1e-12)
    held = TokenStore.open(out / "data" / "holdout")
    h = next(held.gather_marked(np.arange(held.num_stories), batch=held.num_stories))[0]
    assert gen1["perplexity"] == pytest.approx(math.exp(-np.log(p[h]).mean()), rel=1e-12)
    assert gen1["train_tokens"] == int(counts.sum()) == gen1["train"]["tokens"]
    assert load_metrics(out)[2]["composition"]["parts"][0]["source"] == "gen_001"  # Replace


def test_an_unknown_family_is_refused_by_the_config(tmp_path: Path) -> None:
    from lmcollapse.config import ExperimentConfig, resolve

    with pytest.raises(InvalidInput, match=r"model\.family: unknown model family 'unigram'"):
        resolve(ExperimentConfig, preset="ngram-demo", overrides=["model.family=unigram"])
    register(UnigramFamily())  # once registered, the same config resolves
    try:
        cfg = resolve(ExperimentConfig, preset="ngram-demo", overrides=["model.family=unigram"])
        assert cfg.model.family == "unigram"
    finally:
        from lmcollapse.config.experiment import MODEL_FAMILIES

        FAMILIES.pop("unigram")
        MODEL_FAMILIES.discard("unigram")
