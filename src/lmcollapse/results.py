"""Typed results: what a probe, a corpus, a training run, a sampling run and a generation measured.

Each is a dataclass written through `lmcollapse.config.to_plain(result, json_safe=True)`, so the
schema of metrics.json is these definitions and nothing else: a field whose metadata is
`OMIT_NONE` is left out while None (generation 0 has no training and no top continuations). Reading
metrics back (`GenerationMetrics.from_plain`) is the one place that tolerates what older runs
lack. No torch, no numpy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lmcollapse.config import to_plain

OMIT_NONE = {"omit_none": True}  # field metadata: left out of the plain data while None


class _Plain:
    """Plain data for JSON (NaN and inf as null)."""

    def to_plain(self) -> dict[str, Any]:
        return to_plain(self, json_safe=True)


@dataclass
class NextToken(_Plain):
    """p̂(v|x) of one continuation v, with the corpus truth N_{x;v}/N_x and its α*_{x;v} when
    the probe was given the counts."""

    id: int
    p_hat: float | None
    count: int | None = None
    truth: float | None = None
    alpha: float | None = field(default=None, metadata=OMIT_NONE)  # none where N_x = 0


@dataclass
class ProbeResult(_Plain):
    """One probe (Sec. 3.1.3): p̂(v|x) for the chosen v, the top continuations, and — given the
    corpus counts — N_x and the minimal error α*_x of Remark B.1 (also relative to N_x; None
    when x never occurs)."""

    context: str
    context_tokens: list[str]
    next: dict[str, NextToken]
    # [{"token", "id", "p_hat"}], best first (none for generation 0, which has no model)
    top: list[dict[str, Any]] | None = field(default=None, metadata=OMIT_NONE)
    N_x: int | None = None
    alpha_x: float | None = None
    alpha_x_relative: float | None = None

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> ProbeResult:
        nxt = {
            v: NextToken(**{k: x.get(k) for k in ("id", "p_hat", "count", "truth", "alpha")})
            for v, x in d.get("next", {}).items()
        }
        return cls(
            d["context"],
            list(d.get("context_tokens", [])),
            nxt,
            d.get("top"),
            d.get("N_x"),
            d.get("alpha_x"),
            d.get("alpha_x_relative"),
        )


@dataclass
class CorpusStats(_Plain):
    """Statistics of a corpus (evaluate.corpus: the sample measures, then the whole store, then
    the divergences from D0)."""

    distinct_1: float
    distinct_2: float
    distinct_3: float
    unigram_entropy: float
    vocab_used: int
    tail_mass: float
    tail_coverage: float
    repetition_4: float
    stories: int
    tokens: int
    unfinished_share: float
    story_length_mean: float
    story_length_median: float
    finished_length_mean: float
    eos_rate: float
    kl_unigram_to_d0: float = 0.0
    kl_unigram_from_d0: float = 0.0
    kl_bigram_to_d0: float = 0.0
    kl_bigram_from_d0: float = 0.0

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> CorpusStats:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: d.get(k) for k in names})


@dataclass
class PerplexityResult(_Plain):
    """Held-out perplexity (Appendix C.3): the mean token loss in nats and e^loss."""

    loss: float
    perplexity: float
    tokens: int
    stories: int


@dataclass
class TrainResult(_Plain):
    """What fitting one generation's model did. `trained_on`, when set, says the model learnt
    from something other than the drawn stories (the n-gram family's expected counts): the
    record then reports `tokens` as the training size."""

    epochs: int
    steps: int
    tokens: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    holdout_losses: list[float] = field(default_factory=list)  # per epoch, when evaluated
    best_epoch: int | None = None
    final_lr: float | None = None  # the learning rate after the last optimizer step
    trained_on: str | None = None

    @property
    def tokens_per_second(self) -> float:
        """Training throughput over the whole run."""
        return self.tokens / self.seconds if self.seconds else 0.0

    def record(self) -> dict[str, Any]:
        """metrics.json's `train` entry."""
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_second,
            "losses": self.losses,
            "holdout_losses": self.holdout_losses,
            "best_epoch": self.best_epoch,
        }

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> TrainResult:
        """A `record()` read back."""
        names = ("epochs", "steps", "tokens", "seconds", "losses", "holdout_losses", "best_epoch")
        return cls(**{k: d.get(k) for k in names})


@dataclass
class SampleResult(_Plain):
    """What a corpus generation did."""

    sequences: int
    tokens: int  # generated tokens (the start tokens excluded)
    stories: int
    unfinished: int  # stories closed because the sequence ran out of length
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def record(self) -> dict[str, Any]:
        """metrics.json's `sample` entry."""
        return {
            "sequences": self.sequences,
            "tokens": self.tokens,
            "stories": self.stories,
            "unfinished": self.unfinished,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_second,
        }

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> SampleResult:
        """A `record()` read back."""
        return cls(
            **{k: d.get(k) for k in ("sequences", "tokens", "stories", "unfinished")},
            seconds=d.get("seconds"),
        )


@dataclass
class CurationResult(_Plain):
    """What the curation stage did to generation n's corpus (metrics.json's `curation`): how
    much was sampled and scored, how much the strategy accepted and S_n kept, and its cost."""

    strategy: str
    rounds: int  # sampled pools
    sampled_stories: int
    sampled_tokens: int
    kept_stories: int  # in S_n
    kept_tokens: int
    kept_share: float  # of the sampled stories, the share S_n holds
    acceptance_rate: float | None = field(default=None, metadata=OMIT_NONE)  # accepted / scored
    score: str | None = field(default=None, metadata=OMIT_NONE)
    pool_score_mean: float | None = field(default=None, metadata=OMIT_NONE)
    kept_score_mean: float | None = field(default=None, metadata=OMIT_NONE)
    edited_share: float | None = field(default=None, metadata=OMIT_NONE)  # resampled tokens
    changed_share: float | None = field(default=None, metadata=OMIT_NONE)  # drawn differently
    deleted_share: float | None = field(default=None, metadata=OMIT_NONE)
    detector_auc: float | None = field(default=None, metadata=OMIT_NONE)  # held-out
    detector_label: str | None = field(default=None, metadata=OMIT_NONE)  # curation.detector's
    repeated_share: float | None = field(default=None, metadata=OMIT_NONE)  # drawn again
    seconds: float = 0.0  # scoring, choosing and writing (not sampling: the stage's whole time,
    # later pools' sampling included, is the generation's seconds.curate)

    def columns(self) -> dict[str, Any]:
        """metrics.csv's curation_* columns (the numbers; the strategy is the config's)."""
        return {
            f"curation_{k}": v
            for k, v in to_plain(self).items()
            if k not in ("strategy", "score", "detector_label")
        }

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> CurationResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class DownstreamResult(_Plain):
    """One downstream classification task (evaluate.downstream): the generation's model
    fine-tuned and tested, next to the run's random-init baseline (metrics.json's
    `downstream`, one per task; downstream_baseline.json holds the baseline's own)."""

    task: str
    accuracy: float
    f1_weighted: float
    num_labels: int
    train_examples: int
    test_examples: int
    steps: int
    seconds: float
    baseline_accuracy: float | None = field(default=None, metadata=OMIT_NONE)
    baseline_f1_weighted: float | None = field(default=None, metadata=OMIT_NONE)

    def columns(self) -> dict[str, Any]:
        """metrics.csv's downstream_<task>_* columns."""
        tag = f"downstream_{self.task}"
        return {
            f"{tag}_accuracy": self.accuracy,
            f"{tag}_f1_weighted": self.f1_weighted,
            f"{tag}_baseline_accuracy": self.baseline_accuracy,
            f"{tag}_baseline_f1_weighted": self.baseline_f1_weighted,
        }

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> DownstreamResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class GenerationMetrics(_Plain):
    """One generation's metrics.json (generation 0 is D0 itself: no model, no training)."""

    generation: int
    perplexity: float | None
    loss: float | None
    probes: list[ProbeResult]
    corpus: CorpusStats
    train_stories: int | None
    train_tokens: int | None
    what: str | None = field(default=None, metadata=OMIT_NONE)
    eval_tokens: int | None = field(default=None, metadata=OMIT_NONE)
    eval_stories: int | None = field(default=None, metadata=OMIT_NONE)
    eval_set: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    train: TrainResult | None = field(default=None, metadata=OMIT_NONE)  # as its record()
    composition: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)  # .to_dict()
    sample: SampleResult | None = field(default=None, metadata=OMIT_NONE)  # as its record()
    seconds: dict[str, float] | None = field(default=None, metadata=OMIT_NONE)
    curation: CurationResult | None = field(default=None, metadata=OMIT_NONE)
    downstream: list[DownstreamResult] | None = field(default=None, metadata=OMIT_NONE)

    def to_plain(self) -> dict[str, Any]:
        parts = {"probes": [], "corpus": None, "train": None, "sample": None}
        out = to_plain(dataclasses.replace(self, **parts), json_safe=True)
        out["probes"] = [p.to_plain() for p in self.probes]
        out["corpus"] = self.corpus.to_plain()
        for key, result in (("train", self.train), ("sample", self.sample)):
            if result is not None:
                out[key] = to_plain(result.record(), json_safe=True)
        return {k: out[k] for k in _KEYS if k in out} | out  # the usual order, then any new

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> GenerationMetrics:
        """A metrics.json read back (a run of an older version may lack the newer keys)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"probes", "corpus", "train", "sample"}
        names -= {"curation", "downstream"}
        tasks = d.get("downstream")
        return cls(
            curation=CurationResult.from_plain(d["curation"]) if d.get("curation") else None,
            downstream=[DownstreamResult.from_plain(t) for t in tasks] if tasks else None,
            probes=[ProbeResult.from_plain(p) for p in d.get("probes", [])],
            corpus=CorpusStats.from_plain(d.get("corpus") or {}),
            train=TrainResult.from_record(d["train"]) if d.get("train") else None,
            sample=SampleResult.from_record(d["sample"]) if d.get("sample") else None,
            **{k: d.get(k) for k in names},
        )

    def summary(self) -> str:
        """One line for the run log: perplexity, and every probe's p̂ next to its truth."""
        probes = "; ".join(
            f"p̂({v!r}|{p.context!r}) = {d.p_hat:.3f} (truth {d.truth:.3f})"
            for p in self.probes
            for v, d in p.next.items()
            if d.truth is not None and d.p_hat is not None
        )
        return f"generation {self.generation}: held-out perplexity {self.perplexity:.2f}; {probes}"

    def row(self) -> dict[str, Any]:
        """One flat row of metrics.csv."""
        row: dict[str, Any] = {
            "generation": self.generation,
            "perplexity": self.perplexity,
            "loss": self.loss,
        }
        for i, p in enumerate(self.probes):
            row[f"probe{i}_alpha_x_relative"] = p.alpha_x_relative
            for v, d in p.next.items():
                tag = f"probe{i}_{v.strip() or v}"
                row[f"{tag}_p_hat"] = d.p_hat
                row[f"{tag}_truth"] = d.truth
        for key, value in to_plain(self.corpus).items():
            row[f"corpus_{key}"] = value
        row["train_stories"] = self.train_stories
        row["train_tokens"] = self.train_tokens
        row.update(_composition_columns(self.composition or {}))
        if self.train is not None:
            losses = self.train.losses or []
            row["train_final_loss"] = losses[-1] if losses else None
            row["train_tokens_per_s"] = self.train.tokens_per_second
        if self.curation is not None:
            row.update(self.curation.columns())
        for task in self.downstream or []:
            row.update(task.columns())
        for phase, seconds in (self.seconds or {}).items():
            row[f"seconds_{phase}"] = seconds
        return row


def _composition_columns(comp: dict[str, Any]) -> dict[str, Any]:
    """metrics.csv's view of a training set: the real-data shares, stories and tokens of every
    part (train_<source>_*) and of all generated parts together. Empty for a model that trained
    on expected counts, not on the drawn stories, and for generation 0."""
    if not comp.get("parts") or "trained_on" in comp:
        return {}
    row: dict[str, Any] = {
        "real_token_share": comp.get("real_token_share"),
        "real_story_share": comp.get("real_story_share"),
    }
    generated = [p for p in comp["parts"] if p["source"].startswith("gen_")]
    groups = [(p["source"], [p]) for p in comp["parts"]] + [("generated", generated)]
    fresh = [p for p in comp["parts"] if p["source"].startswith("fresh_")]
    for name, parts in groups + ([("fresh", fresh)] if fresh else []):
        row[f"train_{name}_stories"] = sum(p["count"] for p in parts)
        row[f"train_{name}_tokens"] = (
            sum(p["tokens"] for p in parts) if all("tokens" in p for p in parts) else None
        )
    return row


# metrics.json's keys in the order it has always written them
_KEYS = (
    "generation",
    "what",
    "perplexity",
    "loss",
    "eval_tokens",
    "eval_stories",
    "eval_set",
    "probes",
    "corpus",
    "train",
    "train_stories",
    "train_tokens",
    "composition",
    "sample",
    "curation",
    "seconds",
)
