"""Detector-weighted importance resampling (Drayson et al., EMNLP 2025, "Machine-generated text
detection prevents language model collapse"; their data_selection_strategy.weighted_sampling).

A detector gives every generated story conf = P(machine-made); story i gets weight
(1 − conf_i)^γ (γ = 10: a story the detector is sure of is all but never drawn), and S_n is
drawn from the pool by weight without replacement from the pool's stories each repeated
max_repeats times — each story at most max_repeats times, as theirs.

The built-in detector is trained each generation: a logistic regression on hashed token 1- and
2-grams (scikit-learn's HashingVectorizer over the ids: BPE ids are the tokenizer's words) of
D0's training stories (real) against the pool's (generated), at most `max_stories` of each;
a fifth of them is held out, and on it the detector's AUC is measured and a Platt sigmoid fitted
(the calibration its probabilities get). It is cross-fitted: each half of the pool is weighed by
a detector trained on the other half, so no story is weighed by a detector that saw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lmcollapse.errors import InvalidInput

FEATURES = 1 << 18  # hashed n-gram buckets
BATCH = 4096  # stories featurised at once


@dataclass
class Detector:
    """A fitted detector: log P(human-made) of a store's stories, and its held-out AUC."""

    vectorizer: Any
    classifier: Any
    platt: Any  # (slope, intercept) of the sigmoid on the classifier's margin
    auc: float

    def log_human(self, store: Any, indices: NDArray[np.int64]) -> NDArray:
        """log(1 − P(machine-made)) of the given stories, computed from the calibrated logit
        z as −log(1 + e^z): exact where the probability rounds to 1 (a weight (1 − conf)^γ
        that would underflow stays a finite log)."""
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty(idx.size)
        a, b = self.platt
        for lo in range(0, idx.size, BATCH):
            x = self.vectorizer.transform(_texts(store, idx[lo : lo + BATCH]))
            z = a * self.classifier.decision_function(x) + b
            out[lo : lo + BATCH] = -np.logaddexp(0.0, z)
        return out


def human_log_weights(
    real: Any, pool: Any, *, max_stories: int, seed: int
) -> tuple[NDArray, float]:
    """log P(human-made) of every pooled story, cross-fitted: the pool is split in two halves
    at random, and each half is weighed by a detector trained on D0 against the other half; the
    two detectors' mean held-out AUC."""
    half = np.random.default_rng([seed, 0]).permutation(pool.num_stories) % 2 == 0
    out, aucs = np.empty(pool.num_stories), []
    for side in (0, 1):
        train_on, weigh = np.flatnonzero(half == side), np.flatnonzero(half != side)
        det = train_detector(real, pool, train_on, max_stories=max_stories, seed=seed + side)
        out[weigh] = det.log_human(pool, weigh)
        aucs.append(det.auc)
    return out, float(np.mean(aucs))


def _texts(store: Any, idx: NDArray[np.int64]) -> list[str]:
    """Stories as space-separated token ids (the end-of-text left out)."""
    eos, out = store.eos_id, []
    for toks, lens in store.gather(idx, batch=BATCH):
        for story in np.split(np.asarray(toks), np.cumsum(lens)[:-1]):
            out.append(" ".join(map(str, story[story != eos].tolist())))
    return out


def train_detector(
    real: Any, generated: Any, allowed: NDArray[np.int64], *, max_stories: int, seed: int
) -> Detector:
    """Fit the built-in detector on D0's stories (label 0) against the `allowed` stories of the
    pool (label 1)."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng([seed, 2])
    m = min(max_stories, real.num_stories, len(allowed))
    if m < 10:
        raise InvalidInput(
            f"the detector needs at least 10 real and 10 generated stories, has {m}: use a "
            "larger D0 or S_n"
        )
    picks = [
        np.sort(rng.choice(real.num_stories, m, replace=False)),
        np.sort(rng.choice(np.asarray(allowed), m, replace=False)),
    ]
    vec = HashingVectorizer(
        token_pattern=r"\S+",
        ngram_range=(1, 2),
        n_features=FEATURES,
        alternate_sign=False,
        norm="l2",
    )
    x = vec.transform(_texts(real, picks[0]) + _texts(generated, picks[1]))
    y = np.repeat([0, 1], m)
    held = np.zeros(2 * m, dtype=bool)
    held[rng.permutation(2 * m)[: max(4, 2 * m // 5)]] = True
    if len(set(y[held])) < 2 or len(set(y[~held])) < 2:
        held = np.arange(2 * m) % 5 == 0  # both classes on both sides
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(x[~held], y[~held])
    margin = clf.decision_function(x[held])[:, None]
    auc = float(roc_auc_score(y[held], margin[:, 0]))
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(margin, y[held])
    return Detector(vec, clf, (float(platt.coef_[0, 0]), float(platt.intercept_[0])), auc)


def weighted_draw(
    log_weights: NDArray, units: NDArray[np.int64], need: int, max_repeats: int, seed: Any
) -> NDArray[np.int64]:
    """Stories drawn by weight, without replacement from each story repeated max_repeats times
    (successive draws ∝ weight among what is left: the Gumbel-top-k form of Efraimidis–Spirakis,
    keys log w + Gumbel noise, exact for weights far below the smallest float), until their
    units (tokens or 1 per story) reach `need`; sorted by story. A weight of 0 (log −inf) is
    never drawn."""
    lw = np.repeat(np.asarray(log_weights, dtype=np.float64), max_repeats)
    item = np.repeat(np.arange(len(log_weights)), max_repeats)
    ok = lw > -np.inf
    lw, item = lw[ok], item[ok]
    keys = lw + np.random.default_rng(seed).gumbel(size=lw.size)  # the largest are drawn first
    order = item[np.argsort(-keys, kind="stable")]
    reach = np.cumsum(np.asarray(units)[order])
    if reach.size == 0 or reach[-1] < need:
        have = int(reach[-1]) if reach.size else 0
        raise InvalidInput(
            f"curation resample: the pool holds {have} units at most max_repeats times each "
            f"(weight > 0), fewer than the {need} S_n needs: raise curation.pool or "
            "curation.max_repeats"
        )
    return np.sort(order[: int(np.searchsorted(reach, need)) + 1])


__all__ = ["Detector", "human_log_weights", "train_detector", "weighted_draw"]
