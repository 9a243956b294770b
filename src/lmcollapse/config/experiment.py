"""The experiment configuration: one frozen dataclass per concern, defaults from the paper.

Defaults are the paper's hyperparameters (Appendix C.1.2-C.3) and its 1M model (C.2); presets in
`lmcollapse/presets/*.yaml` change what differs (the demo preset is small enough for a laptop CPU).
`lmcollapse config docs` prints every field with its type, default and the docstring below it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from lmcollapse.config.curation import CurationConfig, curation_cross_checks
from lmcollapse.config.stats import StatsConfig
from lmcollapse.paradigms import FRESH, check_fresh, check_rate, check_share

ExperimentParadigm = Literal["replace", "accumulate-subsample", "accumulate", "mix"]
AttentionType = Literal["global", "local"]


def _positive(name: str, value: float | None, *, allow_none: bool = False) -> list[str]:
    if value is None:
        return [] if allow_none else [f"{name}: must be set"]
    if not math.isfinite(value) or value <= 0:
        return [f"{name}: must be > 0, got {value!r}"]
    return []


def _at_least(name: str, value: int | None, low: int) -> list[str]:
    if value is not None and value < low:
        return [f"{name}: must be >= {low}, got {value!r}"]
    return []


def _in_unit_interval(name: str, value: float, *, open_low: bool, open_high: bool) -> list[str]:
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (math.isfinite(value) and low_ok and high_ok):
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        return [f"{name}: must be in {lo}0, 1{hi}, got {value!r}"]
    return []


# The model families a config may name: the three built in, and every family registered with
# lmcollapse.models.register (which adds its name here).
MODEL_FAMILIES: set[str] = {"gpt-neo", "hf", "ngram"}


@dataclass(frozen=True)
class ModelConfig:
    """The language model trained at every generation (Appendix C.2)."""

    family: str = "gpt-neo"
    """Model family, one of those registered in lmcollapse.models. `gpt-neo` is the paper's
    architecture (TinyStories-1M/33M) in the fast engine; `hf` is any Hugging Face causal-LM
    config (model.hf_config) through transformers — a slower, generic fallback; `ngram` is an
    exact n-gram model (model.order, model.smoothing, model.delta) whose additive smoothing is
    the paper's error α_i = δ, hundreds of generations in minutes."""
    hf_config: str | None = None
    """For family `hf`: a config name or path for AutoConfig (its vocabulary is replaced by the
    tokenizer's); the architecture fields below are then ignored."""
    num_layers: int = 8
    """Transformer blocks (8 for TinyStories-1M, 4 for TinyStories-33M)."""
    hidden_size: int = 64
    """Width of the residual stream (64 for 1M, 768 for 33M)."""
    num_heads: int = 16
    """Attention heads; hidden_size must be divisible by it."""
    max_position_embeddings: int = 2048
    """Learned positions; the training/evaluation context may not exceed it."""
    window_size: int = 256
    """Attention window (tokens, the current one included) of the `local` layers."""
    attention_pattern: tuple[AttentionType, ...] = ("global", "local")
    """Attention type per layer, repeated to num_layers (GPT-Neo alternates global and local)."""
    vocab_size: int | None = None
    """Embedding rows; null takes the tokenizer's vocabulary size (50257 for the GPT-Neo one)."""
    order: int = 2
    """ngram: tokens per n-gram (2: a bigram model, next token given the previous one)."""
    smoothing: Literal["additive", "witten-bell"] = "additive"
    """ngram: `additive` (p̂ = (N_{h;v} + δ)/(N_h + Vδ), Prop. 2.3 with α_i = δ) or
    `witten-bell` (interpolated with the lower orders, an error that is not uniform — the
    contrast)."""
    delta: float = 1.0
    """ngram: the additive count δ > 0 (for witten-bell, of the unigram at the bottom)."""
    expected_counts: Literal["off", "chain", "paper"] = "off"
    """ngram, orders 1-2, additive: `off` trains generation n on its sampled corpus; `chain`
    trains it on the exact expected counts of generation n-1's stream (footnote 3: no sampling
    error); `paper` on the counts the paper's count form assumes (generation j's data carries
    its counts plus its error, N + α). Sampled corpora are still made, for statistics."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        if self.family not in MODEL_FAMILIES:
            return [
                f"family: unknown model family {self.family!r}: choose one of "
                f"{', '.join(sorted(MODEL_FAMILIES))}"
            ]
        if self.family == "ngram":
            return self._check_ngram()
        if self.family not in ("gpt-neo", "hf"):  # a registered family checks its own fields
            return []
        out = _at_least("num_layers", self.num_layers, 1) + _at_least(
            "num_heads", self.num_heads, 1
        )
        if self.family == "hf" and not self.hf_config:
            out.append("hf_config: family hf needs a config name or path (e.g. a model directory)")
        out += _at_least("hidden_size", self.hidden_size, 1) + _at_least(
            "window_size", self.window_size, 1
        )
        out += _at_least("max_position_embeddings", self.max_position_embeddings, 1)
        out += _at_least("vocab_size", self.vocab_size, 2)
        if self.num_heads >= 1 and self.hidden_size % self.num_heads:
            out.append(
                f"hidden_size: {self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        if not self.attention_pattern:
            out.append("attention_pattern: must name at least one layer type, e.g. [global, local]")
        elif self.num_layers % len(self.attention_pattern):
            out.append(
                f"attention_pattern: its length {len(self.attention_pattern)} must divide "
                f"num_layers={self.num_layers}"
            )
        if self.expected_counts != "off":
            out.append("expected_counts: only the ngram family has expected counts")
        return out

    def _check_ngram(self) -> list[str]:
        out = _at_least("order", self.order, 1) + _at_least("vocab_size", self.vocab_size, 2)
        if not (math.isfinite(self.delta) and self.delta > 0):
            out.append(
                f"delta: {self.delta} must be a finite number > 0 (the paper's form needs every "
                "p̂ > 0; "
                "δ is the error α_i of every token)"
            )
        if self.expected_counts != "off" and self.order > 2:
            out.append(
                f"expected_counts: {self.expected_counts} supports orders 1 and 2 (a Markov "
                f"chain on tokens), not order {self.order}"
            )
        if self.expected_counts != "off" and self.smoothing != "additive":
            out.append(f"expected_counts: {self.expected_counts} needs smoothing additive")
        return out


@dataclass(frozen=True)
class DataConfig:
    """The finite real corpus D0, its held-out split and the tokenizer (Sec. 3.1.1)."""

    source: str = "builtin"
    """`builtin` (the story world shipped with the package), a Hugging Face hub dataset name such
    as roneneldan/TinyStories, or a local path (.txt, .jsonl, .parquet, a directory of them, or a
    datasets.save_to_disk directory)."""
    split: str = "train"
    """Dataset split to read from a hub or save_to_disk source."""
    text_column: str = "text"
    """Column (or JSON field) that holds each story's text."""
    num_stories: int | None = None
    """How many stories D0 has: the built-in world makes this many; a real source is capped at it
    (null: all of it)."""
    dedupe: bool = False
    """Drop exact duplicate stories before splitting."""
    seed: int = 0
    """Seed of D0 itself: the built-in world's stories and the held-out split (kept apart from
    run.seed so that runs with different seeds share one D0)."""
    holdout_fraction: float = 0.05
    """Seeded share of D0's stories held out for validation and early stopping (5% in the paper);
    never trained on by any generation."""
    tokenizer: str = "train"
    """`train` a byte-level BPE on D0, or a pretrained tokenizer's hub name or local path (the
    paper uses the GPT-Neo tokenizer of roneneldan/TinyStories-33M)."""
    tokenizer_vocab_size: int = 8192
    """Vocabulary size of a tokenizer trained on D0 (ignored for a pretrained tokenizer)."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = []
        if not (math.isfinite(self.holdout_fraction) and 0 < self.holdout_fraction <= 0.5):
            out.append(f"holdout_fraction: must be in (0, 0.5], got {self.holdout_fraction!r}")
        if not 0 <= self.seed < 2**63:  # what every random generator downstream takes
            out.append(f"seed: must be in [0, 2^63), got {self.seed}")
        out += _at_least("tokenizer_vocab_size", self.tokenizer_vocab_size, 258)
        if self.num_stories is not None and self.num_stories < 2:
            out.append(
                f"num_stories: D0 needs at least 2 stories (one held out), got {self.num_stories}"
            )
        if not self.source.strip():
            out.append("source: must not be empty (use builtin, a hub dataset name or a path)")
        if self.source == "builtin" and self.num_stories is None:
            out.append("num_stories: the built-in story world needs a number of stories")
        return out


@dataclass(frozen=True)
class ParadigmConfig:
    """What each generation trains on (Sec. 2.1.1, Figure 1)."""

    name: ExperimentParadigm = "replace"
    """`replace`: generation n trains only on generation n-1's output. `accumulate-subsample`:
    D0 plus k·|D0| generated data per generation, subsampled to |D0|. `accumulate`: train on all
    of it. `mix`: a fixed real share `lam` plus the previous generation's output."""
    k: float = 1.0
    """Accumulation rate k > 0: each generation adds k·|D0| generated data to the corpus."""
    lam: float = 0.5
    """Mix(λ): the share of every training set drawn from D0, in [0, 1] (λ = 0 is Replace, λ = 1
    trains on D0 alone: the all-real control)."""
    unit: Literal["tokens", "stories"] = "tokens"
    """What shares and sizes count: `tokens` (the paper's count form and fixed budget: under
    Accumulate-Subsample and Mix generation n trains on |D0| tokens, D0's share 1/(1+(n-1)k) or λ
    of them, to within half a story per part; with sampling.num_sequences null S_j holds k·|D0|
    tokens, so Replace trains on |D0| tokens too) or `stories` (story counts, as before version
    0.2: the token shares then drift with the generated story length)."""
    fresh: float = 0.0
    """Fresh real data r >= 0: after each generation, r·|D0| (in `unit`) of new real stories
    join the corpus — drawn in order from a reserve of the source that D0 and the holdout never
    touch (data/fresh/) — under replace, accumulate-subsample and accumulate. Under
    Accumulate-Subsample generation n's real share is then (1+(n-1)r)/(1+(n-1)(k+r)). 0: none
    (the paper)."""

    def check(self) -> list[str]:
        """Problems the types cannot catch, each naming its field: lmcollapse.paradigms' checks of
        k and λ — both, whichever paradigm is named, so that a stray bad value is caught too."""
        out = check_rate(self.k, "k") + check_share(self.lam, "lam") + check_fresh(self.fresh)
        if self.fresh and self.name not in FRESH:
            out.append(
                f"fresh: {self.name} fixes the real share at λ; fresh data joins {', '.join(FRESH)}"
            )
        return out


@dataclass(frozen=True)
class TrainingConfig:
    """Training of every generation from a fresh random init (Appendix C.1.2)."""

    learning_rate: float = 5e-4
    """AdamW learning rate."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW (beta1, beta2)."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay, on weight matrices and embeddings (the Hugging Face
    Trainer's split)."""
    decay_norms_and_biases: bool = False
    """Also decay biases and LayerNorm weights: Algorithm 1 read literally (AdamW over all of
    m'.parameters with weight decay 0.1) instead of the Trainer's split."""
    eos_target: bool = True
    """Train the end-of-text a story ends with as a target, so models learn to stop. false: no
    end-of-text is a target — the pad = eos collator of some published code, whose models never
    stop (for measuring that pitfall). A cut story's separator is never a target either way."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate schedule after warmup (the paper keeps it constant)."""
    warmup_steps: int = 0
    """Linear warmup steps (optimizer updates)."""
    batch_size: int = 320
    """Effective batch in sequences per optimizer update, reached by gradient accumulation."""
    micro_batch_size: int = 32
    """Sequences per forward/backward pass on one device; batch_size must be a multiple of it."""
    context_length: int = 512
    """Tokens per training block; stories are packed into blocks separated by end-of-text."""
    epochs: int = 3
    """Passes over each generation's training set (reused for all generations)."""
    early_stopping: bool = False
    """Choose the number of epochs for generation 1 by early stopping on the held-out split and
    reuse it for later generations, as the paper does (then `epochs` is ignored; a cosine or
    linear schedule of generation 1 then spans max_epochs)."""
    max_epochs: int = 10
    """Upper bound on epochs when early stopping."""
    patience: int = 1
    """Epochs without held-out improvement before early stopping ends."""
    grad_clip: float | None = 1.0
    """Gradient-norm clipping (null: none)."""
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """`auto`: fp16 autocast with a grad scaler on CUDA (as the paper), fp32 on CPU."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = _positive("learning_rate", self.learning_rate) + _at_least(
            "warmup_steps", self.warmup_steps, 0
        )
        out += [f"betas: each must be in [0, 1), got {b!r}" for b in self.betas if not 0 <= b < 1]
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            out.append(f"weight_decay: must be >= 0, got {self.weight_decay!r}")
        out += _at_least("batch_size", self.batch_size, 1) + _at_least(
            "micro_batch_size", self.micro_batch_size, 1
        )
        if (
            self.batch_size >= 1
            and self.micro_batch_size >= 1
            and self.batch_size % self.micro_batch_size
        ):
            out.append(
                f"batch_size: {self.batch_size} is not a multiple of micro_batch_size="
                f"{self.micro_batch_size}"
            )
        out += _at_least("context_length", self.context_length, 2)
        out += _at_least("epochs", self.epochs, 1) + _at_least("max_epochs", self.max_epochs, 1)
        out += _at_least("patience", self.patience, 1)
        out += _positive("grad_clip", self.grad_clip, allow_none=True)
        return out


@dataclass(frozen=True)
class SamplingConfig:
    """Generation of each synthetic corpus (Algorithm 1): every parameter explicit."""

    num_sequences: int | None = None
    """Sequences generated per generation (1,000,000 in the paper; times k under the
    accumulating paradigms). null: S_n holds as much as D0 (k·|D0| under the accumulating
    paradigms) in paradigm.unit — batches until that many tokens, cut after the story that
    reaches it (unit tokens), or whole batches until that many stories (unit stories)."""
    length: int = 600
    """Tokens per sequence (600 in the paper; the context slides past 512)."""
    mode: Literal["stream", "story"] = "stream"
    """`stream`: each sequence runs on across end-of-text for `length` tokens and is split into
    stories when stored (Algorithm 1). `story`: stop each sequence at its end-of-text token."""
    slide: bool = True
    """true: past training.context_length tokens the model sees only the last context_length
    (Algorithm 1's queue, exact — a full forward pass of the window per token). false: the
    context grows to the whole sequence (what transformers' generate does; length + 1 must fit
    the model's positions) — far cheaper at 600 > 512."""
    temperature: float = 1.0
    """Softmax temperature; 1 is the paper's faithful sampling."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 disables it (the paper: no truncation)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1 disables it (the paper: no truncation)."""
    batch_size: int = 200
    """Sequences sampled in parallel per device."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = _at_least("num_sequences", self.num_sequences, 1) + _at_least(
            "length", self.length, 1
        )
        out += _positive("temperature", self.temperature) + _at_least("top_k", self.top_k, 0)
        out += _in_unit_interval("top_p", self.top_p, open_low=True, open_high=False)
        out += _at_least("batch_size", self.batch_size, 1)
        return out


@dataclass(frozen=True)
class ProbeConfig:
    """A next-token probe p̂_n(v|x) (Figure 2): a context and the tokens to follow."""

    context: str = " there"
    """Context text x; it must encode to at least one token (leading spaces matter)."""
    next: tuple[str, ...] = (" was", " were")
    """Continuations v whose probability is tracked against the corpus truth N_{x;v}/N_x."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = [] if self.context else ["context: must not be empty"]
        if not self.next:
            out.append("next: list at least one continuation")
        out += [f"next[{i}]: must not be empty" for i, v in enumerate(self.next) if not v]
        return out


@dataclass(frozen=True)
class EvaluationConfig:
    """What is measured on every generation (Sec. 3.1.3, Appendix C.3)."""

    probes: tuple[ProbeConfig, ...] = (ProbeConfig(),)
    """Next-token probes; the default is the paper's x = " there", v ∈ {" was", " were"}."""
    source: str = "holdout"
    """Where held-out perplexity is measured: `holdout` (D0's held-out split), or a real text
    source like data.source — a hub dataset such as roneneldan/TinyStories (Figure 3 uses its
    validation split), a local file or directory, or a token store made with the run's
    tokenizer — tokenized once with the run's tokenizer into the run's data/eval/ and streamed.
    Early stopping always uses the holdout, and the probe truth is always D0's counts."""
    split: str = "validation"
    """Split of a hub or save_to_disk evaluation source."""
    text_column: str | None = None
    """Column (or JSON field) holding the evaluation source's text (null: data.text_column)."""
    context_length: int = 512
    """A held-out token's context is at most this many previous tokens of its story (C.3)."""
    perplexity_stride: int | None = None
    """Stories longer than context_length are scored in windows advancing by this many tokens
    (null: context_length / 2; 1: exact, context_length times the cost)."""
    max_stories: int | None = None
    """Evaluate perplexity on at most this many held-out stories (null: all)."""
    num_samples: int = 5
    """Generated stories kept per generation as samples (Table 1)."""
    score_first_token: bool = True
    """Score every story's first token, predicted from the end-of-text start token (bos = eos,
    as generation starts). false: C.3 read literally — a first token has no context, so only
    tokens 2..m are scored (what a per-story loss without a start token computes)."""
    stats_tokens: int = 1_000_000
    """Tokens sampled (whole stories, by seed) from every corpus for its statistics (distinct-n,
    entropy, tail, KL): the same budget for D0 and each S_n, so they compare like with like."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = _at_least("context_length", self.context_length, 1)
        out += _at_least("perplexity_stride", self.perplexity_stride, 1)
        if self.perplexity_stride is not None and self.perplexity_stride > self.context_length:
            out.append(f"perplexity_stride: {self.perplexity_stride} exceeds context_length")
        out += _at_least("max_stories", self.max_stories, 1) + _at_least(
            "num_samples", self.num_samples, 0
        )
        out += _at_least("stats_tokens", self.stats_tokens, 1000)
        if not self.source.strip():
            out.append("source: must not be empty (holdout, a hub dataset name or a path)")
        elif self.source == "builtin":
            out.append(
                "source: the built-in world's held-out stories are D0's holdout: use holdout"
            )
        if not self.split.strip():
            out.append("split: must not be empty (e.g. validation)")
        return out


@dataclass(frozen=True)
class RunConfig:
    """The run as a whole: how long, which seed, where it goes."""

    generations: int = 40
    """Generations to train (40 in the paper); generation 1 trains on D0."""
    seed: int = 0
    """The seed every random choice derives from (data split, init, sampling); replicate i of
    a replicated run has seed + i."""
    replicates: int = 1
    """Runs of the experiment that share D0 (data.seed) and differ in run.seed, each a run
    directory under RUN/replicates/seed=S/, aggregated into RUN/aggregate.csv (1: one run in
    RUN itself). A larger number adds replicates to a replicated run."""
    jobs: int = 1
    """Replicates run at once, in their own processes, the cores shared among them."""
    out: str | None = None
    """Run directory (null: runs/<preset name>)."""
    device: str = "auto"
    """`auto` (CUDA if available, else CPU), `cpu`, `cuda` or `cuda:N`."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = _at_least("generations", self.generations, 1)
        out += _at_least("replicates", self.replicates, 1) + _at_least("jobs", self.jobs, 1)
        if not 0 <= self.seed <= 2**63 - self.replicates:  # every random generator takes it
            out.append(f"seed: must be in [0, 2^63 - run.replicates], got {self.seed}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            out.append(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        return out


@dataclass(frozen=True)
class ExperimentConfig:
    """One recursive-training experiment: the paper's Sec. 3 setup and its variations."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model family and architecture."""
    data: DataConfig = field(default_factory=lambda: DataConfig(num_stories=10_000))
    """The real corpus D0, holdout and tokenizer."""
    paradigm: ParadigmConfig = field(default_factory=ParadigmConfig)
    """Training-set composition per generation."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Optimisation of every generation."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Generation of the synthetic corpora."""
    curation: CurationConfig = field(default_factory=CurationConfig)
    """What is done to each generated corpus before it joins the training data."""
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    """Perplexity, probes and samples."""
    run: RunConfig = field(default_factory=RunConfig)
    """Generations, seed, replicates, output."""
    stats: StatsConfig = field(default_factory=StatsConfig)
    """Intervals across replicates, and the collapse onset."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = []
        limit = self.model.max_position_embeddings
        if self.training.context_length > limit:
            out.append(
                f"training.context_length: {self.training.context_length} exceeds "
                f"model.max_position_embeddings={limit}"
            )
        s = self.sampling
        if self.model.family == "ngram" and not self.training.eos_target:
            out.append(
                "training.eos_target: false is for the gradient-trained families; the ngram "
                "family counts every end-of-text a model wrote"
            )
        out += curation_cross_checks(self)
        if self.paradigm.fresh and self.model.expected_counts != "off":
            out.append(
                "paradigm.fresh: the expected counts take real data as D0's counts; with fresh "
                "stories set model.expected_counts off"
            )
        if self.model.family == "ngram" and (s.temperature, s.top_k, s.top_p) != (1.0, 0, 1.0):
            out.append(
                "sampling: the ngram family samples faithfully only — set sampling.temperature "
                "1, sampling.top_k 0, sampling.top_p 1"
            )
        if not self.sampling.slide and self.sampling.length + 1 > limit:
            out.append(
                f"sampling.slide: false needs sampling.length + 1 = {self.sampling.length + 1} "
                f"<= model.max_position_embeddings={limit}"
            )
        if self.evaluation.context_length > limit:
            out.append(
                f"evaluation.context_length: {self.evaluation.context_length} exceeds "
                f"model.max_position_embeddings={limit}"
            )
        return out
