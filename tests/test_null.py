"""The null test: a near-exact learner with large samples is a fixed point of the pipeline.

An exact bigram model with a tiny additive δ reproduces the transition counts it is trained on,
so generation n's corpus S_n has, in expectation, the statistics of S_1: the end-of-text rate,
the mean story length and the unigram distribution. Whatever drift the pipeline adds of its
own — an end-of-text trained after every cut story, shares that drift with the story length —
shows up as a systematic change over the generations (the Replace cases check that the old
pipeline's step, training on S_1 with its cut stories' separators as endings, is caught). What
is left is sampling noise, and its size follows from the samples. With d(X) a statistic's
deviation from the fixed point:

    d(S_j) = d(T_j) + e_j                        the sample S_j of model j (noise e_j)
    d(T_j) = d(S_{j-1})                          Replace: model j learns S_{j-1} exactly
    d(T_j) = w_0 u_0 + Σ_i w_i (d(S_i) + u_i)     Accumulate-Subsample: token shares w of
                                                 subsamples of D0 (noise u_0) and of S_i (u_i)

and d(T_1) = 0 (model 1 is D0's own counts). The noises are independent, with variances from
the samples: e_j from S_1's per-story variance at S_j's size (delta method over its stories,
independent for a bigram chain that restarts at end-of-text), u from D0's or S_1's per-story
variance at the part's size, with the finite-population factor of drawing without replacement.
So Var(d(S_n) - d(S_1)) is a sum of squared coefficients times variances, computed exactly
below. Every check allows z standard deviations of that difference, z from a 1e-3 false-alarm
rate per generation shared by its checks (Bonferroni over the unigram types). The runs are
seeded, so the test is deterministic.

On the pipeline before unfinished stories were marked (and shares were counted in stories),
every case failed: the end-of-text rate rose 13-22 standard deviations in the first generation
under Replace and 28 by the fifth (one trained end-of-text per cut sequence in stream mode; a
third of the stories hit the 150-token cap in story mode), 4-5 and then 9-11 under
Accumulate-Subsample. Now every |z| of the two rates stays below 1.2.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from lmcollapse import run
from lmcollapse.config import ExperimentConfig, resolve
from lmcollapse.data.packing import TrainingSet
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.models import build_model
from lmcollapse.sample import generate_corpus

G = 5
ALPHA = 1e-3  # false-alarm rate per generation and case, shared by its checks
COMMON = [
    "model.delta=0.0001",
    f"run.generations={G}",
    "evaluation.stats_tokens=5000",
    "evaluation.num_samples=1",
    "evaluation.max_stories=50",
]
STREAM = ["sampling.mode=stream", "sampling.length=400", "sampling.num_sequences=600"]
STORY = ["sampling.mode=story", "sampling.length=150", "sampling.num_sequences=2400"]
SUBSAMPLE = ["paradigm.name=accumulate-subsample", "paradigm.k=1.0"]
CASES = {
    "stream-replace": STREAM,
    "stream-accumulate-subsample": STREAM + SUBSAMPLE,
    "story-replace": STORY,
    "story-accumulate-subsample": STORY + SUBSAMPLE,
}


def finished_by_structure(lens: np.ndarray, length: int, mode: str) -> np.ndarray:
    """Which stories ended by themselves, from the corpus's structure alone: a sequence is
    `length` generated tokens, stored with one more (a separator) when it was cut. Story mode:
    one story per sequence, cut iff it holds length + 1. Stream mode: a sequence's stories are
    consecutive and their stored lengths add up to length (it ended on an end-of-text) or
    length + 1 (its last story was cut)."""
    if mode == "real":
        return np.ones(lens.size, dtype=bool)
    if mode == "story":
        return lens != length + 1
    done = np.ones(lens.size, dtype=bool)
    run_len = 0
    for i, n in enumerate(lens.tolist()):
        run_len += n
        if run_len >= length:
            assert run_len in (length, length + 1), "not a stream-mode corpus of this length"
            done[i] = run_len == length
            run_len = 0
    return done


def ratio(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Σa/Σb over independent units and its standard error (delta method)."""
    r = float(a.sum() / b.sum())
    s = a.size
    return r, float(np.sqrt(np.var(a - r * b, ddof=1) / s) / b.mean())


def corpus_statistics(
    store: TokenStore, length: int, mode: str, types: np.ndarray | None = None
) -> dict[str, object]:
    """End-of-text rate (written end-of-texts per written token), mean stored story length, and
    the content unigram distribution over `types` (default: the content tokens seen at least 100
    times), each with its standard error from the corpus's stories."""
    lens = np.diff(np.asarray(store.offsets))
    done = finished_by_structure(lens, length, mode)
    written = lens - (~done)  # a cut story's separator is not written by the model
    eos = ratio(done.astype(float), written.astype(float))
    mean = (float(lens.mean()), float(lens.std(ddof=1) / np.sqrt(lens.size)))
    tokens = np.asarray(store.tokens, dtype=np.int64)
    story = np.repeat(np.arange(lens.size), lens)
    content = tokens != store.eos_id
    if types is None:
        counts = np.bincount(tokens[content], minlength=store.vocab_size)
        types = np.flatnonzero(counts >= 100)
    top = np.asarray(types)[np.asarray(types) != store.eos_id]
    rank = np.full(store.vocab_size, -1)
    rank[top] = np.arange(top.size)
    keep = content & (rank[tokens] >= 0)
    per_story = np.bincount(
        story[keep] * top.size + rank[tokens[keep]], minlength=lens.size * top.size
    ).reshape(lens.size, top.size)
    content_len = (lens - 1).astype(float)
    unigram = {int(v): ratio(per_story[:, i].astype(float), content_len) for i, v in enumerate(top)}
    return {
        "eos_rate": eos,
        "length_mean": mean,
        "unigram": unigram,
        "tokens": int(lens.sum()),
        "finished": done,
    }


def difference_variances(
    paradigm: str, k: float, generations: int, sample: dict, d0: dict
) -> list[float]:
    """Var(d(S_n) - d(S_1)) for n = 1..generations of a statistic, from its per-token variance
    on S_1 and on D0 (`sample`, `d0`: {"v": per-token variance, "tokens": size}); see the
    module docstring."""
    var: dict[tuple, float] = {}  # independent noises and their variances
    coef: list[dict[tuple, float]] = []  # d(S_j) as coefficients over the noises

    def sampled(n: int, train: dict[tuple, float]) -> dict[tuple, float]:
        var[("e", n)] = sample["v"] / sample["tokens"]
        return train | {("e", n): 1.0}

    coef.append(sampled(1, {}))
    for n in range(2, generations + 1):
        if paradigm == "replace":
            train = dict(coef[n - 2])
        else:  # accumulate-subsample: |D0| tokens, shares 1 : k : ... : k
            w0, wj = 1 / (1 + (n - 1) * k), k / (1 + (n - 1) * k)
            m0, mj = w0 * d0["tokens"], wj * d0["tokens"]
            var[("u0", n)] = d0["v"] / m0 * (1 - m0 / d0["tokens"])
            train = {("u0", n): w0}
            for j in range(1, n):
                var[("u", n, j)] = sample["v"] / mj * max(0.0, 1 - mj / sample["tokens"])
                train[("u", n, j)] = wj
                for key, c in coef[j - 1].items():
                    train[key] = train.get(key, 0.0) + wj * c
        coef.append(sampled(n, train))
    out = []
    for c in coef:
        keys = set(c) | set(coef[0])
        out.append(sum((c.get(q, 0.0) - coef[0].get(q, 0.0)) ** 2 * var[q] for q in keys))
    return out


def per_token(stats: dict, key: str, v: int | None = None) -> dict[str, float]:
    """A statistic's per-token variance on a corpus (its squared standard error times its size)."""
    se = stats[key][1] if v is None else stats[key][v][1]
    return {"v": se**2 * stats["tokens"], "tokens": stats["tokens"]}


def band_variances(stats: dict, d0: dict, paradigm: str, k: float) -> dict[str, object]:
    """For every statistic and generation n, Var(m_n - m_1) (index n - 1)."""

    def of(key: str, v: int | None = None) -> list[float]:
        return difference_variances(
            paradigm, k, len(stats), per_token(stats[1], key, v), per_token(d0, key, v)
        )

    eos = of("eos_rate")
    # the mean length follows the learned end-of-text rate: its band scales with the rate's
    scale = (stats[1]["length_mean"][1] / stats[1]["eos_rate"][1]) ** 2
    return {
        "eos_rate": eos,
        "length_mean": [scale * x for x in eos],
        "unigram": {v: of("unigram", v) for v in stats[1]["unigram"]},
    }


def drift_report(
    first: dict, later: dict, variance: dict, n: int
) -> tuple[list[str], dict[str, float]]:
    """Checks of generation n's statistics against S_1's, given the variances of their
    differences; returns (failures, scores in standard deviations)."""
    per = ALPHA / 3
    z_scalar = float(norm.isf(per / 2))
    failures, scores = [], {}
    for key in ("eos_rate", "length_mean"):
        m1, mn, sd = first[key][0], later[key][0], math.sqrt(variance[key][n - 1])
        scores[key] = (mn - m1) / sd
        if abs(mn - m1) > z_scalar * sd:
            failures.append(f"{key}: {m1:.5g} → {mn:.5g} (allowed ±{z_scalar * sd:.3g})")
    top = list(first["unigram"])  # S_1's frequent content tokens
    z_uni = float(norm.isf(per / (2 * len(top))))
    z = [
        (later["unigram"][v][0] - first["unigram"][v][0]) / math.sqrt(variance["unigram"][v][n - 1])
        for v in top
    ]
    scores["unigram_max_z"] = worst = float(np.max(np.abs(z)))
    if worst > z_uni:
        failures.append(f"unigram: a token's share moved {worst:.1f} SD (allowed {z_uni:.1f})")
    return failures, scores


@pytest.mark.parametrize("case", list(CASES))
def test_a_near_exact_learner_is_a_fixed_point(tmp_path: Path, case: str) -> None:
    cfg = resolve(ExperimentConfig, preset="ngram-demo", overrides=COMMON + CASES[case])
    out = run(cfg, tmp_path / case, progress=False)
    mode, length = cfg.sampling.mode, cfg.sampling.length
    stats: dict[int, dict] = {}
    stores = {n: TokenStore.open(out / f"gen_{n:03d}" / "corpus") for n in range(1, G + 1)}
    for n, store in stores.items():
        types = None if n == 1 else np.array(list(stats[1]["unigram"]))
        stats[n] = corpus_statistics(store, length, mode, types)
    types = np.array(list(stats[1]["unigram"]))
    d0 = corpus_statistics(TokenStore.open(out / "data" / "d0"), length, "real", types)
    bands = band_variances(stats, d0, cfg.paradigm.name, cfg.paradigm.k)
    problems = []
    for n in range(2, G + 1):
        failures, _ = drift_report(stats[1], stats[n], bands, n)
        problems += [f"generation {n}: {f}" for f in failures]
    assert not problems, "\n".join(problems)
    # the stores' own marks are exactly the stories their structure says were cut
    for n, store in stores.items():
        np.testing.assert_array_equal(store.finished(np.arange(len(store))), stats[n]["finished"])
    if cfg.paradigm.name == "replace":  # the negative control: the old step must be caught
        old = old_pipeline_step(cfg, out, tmp_path / "old")
        caught, _ = drift_report(stats[1], corpus_statistics(old, length, mode, types), bands, 2)
        assert any(f.startswith("eos_rate") for f in caught), caught


def old_pipeline_step(cfg: ExperimentConfig, out: Path, tmp: Path) -> TokenStore:
    """Generation 2 as the pipeline made it before unfinished stories were marked: trained on S_1
    with every cut story's separator as an end-of-text, then sampled as the run samples."""
    s1 = TokenStore.open(out / "gen_001" / "corpus")
    with TokenStoreWriter(tmp / "unmarked", vocab_size=s1.vocab_size, eos_id=s1.eos_id) as w:
        for toks, lens in s1.gather(np.arange(len(s1))):
            w.add_flat(toks, lens)  # no marks: every story "ended by itself"
    model = build_model(cfg.model, s1.vocab_size, s1.eos_id)
    model.fit(TrainingSet.whole(TokenStore.open(tmp / "unmarked")))
    s = cfg.sampling
    generate_corpus(
        model,
        tmp / "S2",
        num_sequences=s.num_sequences,
        length=s.length,
        batch_size=s.batch_size,
        context=s.length + 1,
        eos_id=s1.eos_id,
        vocab_size=s1.vocab_size,
        seed=1,
        mode=s.mode,
        progress=False,
    )
    return TokenStore.open(tmp / "S2")
