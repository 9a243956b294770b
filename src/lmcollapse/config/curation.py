"""The curation section (issue 13): what happens to a generated corpus S_n before it joins the
training data — the paper's remedy (Sec. 4), quality over quantity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

SCORES = ("reference-perplexity", "length", "distinct-n", "entropy", "repetition")


@dataclass(frozen=True)
class CurationConfig:
    """What is done to each generated corpus S_n before it joins the corpus (Sec. 4's remedy)."""

    name: Literal["none", "filter", "toedit", "resample"] = "none"
    """`none`: S_n joins as sampled (the paper). `filter`: score every generated story and keep
    those the rule keeps, sampling more until S_n is as large as the paradigm needs. `toedit`:
    token-level editing (Zhu et al. 2024) of the text curation.target names. `resample`:
    detector-weighted resampling (Drayson et al. 2025) of a pool of curation.pool × S_n."""
    score: str = "entropy"
    """filter: the per-story score — `reference-perplexity` (the story's perplexity under
    curation.reference; lower is better), `distinct-n` (distinct n-grams / n-grams in the story,
    n = curation.n), `entropy` (bits of the story's unigram distribution), `repetition` (share of
    its 4-grams that repeat an earlier one; lower is better) or `length` (tokens)."""
    rule: Literal["keep", "d0-range"] = "keep"
    """filter: `keep` the best curation.keep share of each sampled pool; `d0-range` keeps the
    stories whose score lies in D0's central (1 − q) range of the same score."""
    keep: float = 0.8
    """filter, rule keep: the share of each pool kept, in (0, 1]."""
    q: float = 0.1
    """filter, rule d0-range: the share of D0's own stories outside the range (q/2 each side),
    in [0, 1)."""
    n: int = 2
    """filter, score distinct-n: the n."""
    oversample: float = 1.25
    """filter: the first pool is oversample × S_n (>= 1); while the kept stories fall short,
    another pool of oversample × what is missing, divided by the share earlier pools gave S_n
    (the acceptance rate is recorded)."""
    max_rounds: int = 20
    """filter: sampling rounds before a rule that keeps too little is refused."""
    reference: str = "generation-1"
    """The prior model of score reference-perplexity and of toedit on generated text:
    `generation-1` (the model trained on real data) or a path or hub name of a causal LM with
    the run's tokenizer."""
    p_max: float = 0.99
    """toedit: tokens the prior gives p(x_i | x_<i) >= p_max are resampled, in (0, 1]."""
    top_k: int = 8
    """toedit: a resampled token is drawn from the prior's top_k candidates (the original one
    stays a candidate)."""
    beta: float = 1.0
    """toedit: the temperature of that draw (weights p^(1/beta)), > 0."""
    p_min: float | None = None
    """toedit: tokens with p <= p_min are deleted (null: none; ToEdit's ablation uses 0.001)."""
    target: Literal["generated", "previous"] = "generated"
    """toedit: `generated` edits S_n (prior: curation.reference); `previous` is ToEdit's
    recursive setting — nothing is sampled, S_n is generation n's own training set edited by
    model n, so generation 2 trains on D0 edited by model 1 and every generation stays anchored
    in D0."""
    gamma: float = 10.0
    """resample: story weights (1 − P(machine-made))^gamma, >= 0."""
    pool: float = 1.5
    """resample: the pool sampled, as a multiple of S_n (>= 1)."""
    max_repeats: int = 3
    """resample: the most times one story is drawn into S_n."""
    detector_stories: int = 20_000
    """resample: real and generated stories (each) the built-in detector is trained on, at
    most; a fifth of them is held out for its AUC and calibration (with curation.detector, the
    AUC is measured on a fifth)."""
    detector: str | None = None
    """resample: a Hugging Face sequence classifier (a directory holding it and its tokenizer,
    or a hub name) that gives P(machine-made) of each story, decoded and re-encoded with its
    own tokenizer, truncated from the left (Drayson et al.); null: the built-in detector,
    trained each generation on D0 against the pool."""
    detector_label: str | None = None
    """resample with curation.detector: the classifier's label of machine-made text (null: the
    label whose name says machine, AI, generated, fake, ...; of LABEL_0/LABEL_1, LABEL_1)."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = []
        if self.score not in SCORES:
            out.append(f"score: unknown score {self.score!r}: choose one of {', '.join(SCORES)}")
        if not (math.isfinite(self.keep) and 0 < self.keep <= 1):
            out.append(f"keep: must be in (0, 1], got {self.keep!r}")
        if not (math.isfinite(self.q) and 0 <= self.q < 1):
            out.append(f"q: must be in [0, 1), got {self.q!r}")
        if self.n < 1:
            out.append(f"n: must be >= 1, got {self.n}")
        if not (math.isfinite(self.oversample) and self.oversample >= 1):
            out.append(f"oversample: must be >= 1, got {self.oversample!r}")
        if self.max_rounds < 1:
            out.append(f"max_rounds: must be >= 1, got {self.max_rounds}")
        if not (math.isfinite(self.p_max) and 0 < self.p_max <= 1):
            out.append(f"p_max: must be in (0, 1], got {self.p_max!r}")
        if self.top_k < 1:
            out.append(f"top_k: must be >= 1, got {self.top_k}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            out.append(f"beta: must be > 0, got {self.beta!r}")
        if self.p_min is not None and not (0 <= self.p_min < min(self.p_max, 1)):
            out.append(f"p_min: must be in [0, p_max), got {self.p_min!r}")
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            out.append(f"gamma: must be >= 0, got {self.gamma!r}")
        if not (math.isfinite(self.pool) and self.pool >= 1):
            out.append(f"pool: must be >= 1, got {self.pool!r}")
        if self.max_repeats < 1:
            out.append(f"max_repeats: must be >= 1, got {self.max_repeats}")
        if self.detector_stories < 10:
            out.append(f"detector_stories: must be >= 10, got {self.detector_stories}")
        if self.detector is not None and not self.detector.strip():
            out.append("detector: must not be empty (null, a classifier's directory or hub name)")
        if not self.reference.strip():
            out.append("reference: must not be empty (generation-1, a path or a hub name)")
        return out


def curation_cross_checks(cfg: Any) -> list[str]:
    """What the curation section cannot be with the rest of an ExperimentConfig."""
    c, out = cfg.curation, []
    if c.name != "none" and cfg.model.expected_counts != "off":
        out.append(
            "curation.name: the expected counts train on the previous model's counts, not on "
            "S_n, so curation would change nothing: set model.expected_counts off"
        )
    if c.name == "toedit" and c.target == "previous" and cfg.paradigm.name != "replace":
        out.append(
            "curation.target: previous (ToEdit's recursive setting) edits the whole training "
            "set into S_n, which only replace trains on alone: use paradigm.name replace"
        )
    return out
