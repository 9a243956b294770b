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
from lmcollapse.config.downstream import DownstreamTask
from lmcollapse.config.stats import StatsConfig
from lmcollapse.paradigms import FRESH, check_fresh, check_rate, check_share

ExperimentParadigm = Literal["replace", "accumulate-subsample", "accumulate", "mix"]
Tracker = Literal["tensorboard", "wandb"]
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
    pretrained: str | None = None
    """A causal LM's weights (a Hugging Face model directory or hub name, e.g. facebook/opt-125m)
    that training.init pretrained starts every generation from, and training.init previous
    starts generation 1 from. Its config.json decides the family: a GPT-Neo checkpoint runs in
    the fast engine, any other causal LM through transformers (the hf family); the architecture
    fields here are then ignored. Its tokenizer must be data.tokenizer (the ids are checked)."""
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
        if self.family == "hf" and not (self.hf_config or self.pretrained):
            out.append(
                "hf_config: family hf needs a config name or path (e.g. a model directory), or "
                "model.pretrained"
            )
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
    subset: str | None = None
    """A hub dataset's configuration (load_dataset's second argument), e.g. wikitext-2-raw-v1
    of wikitext; null: none."""
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

    init: Literal["scratch", "pretrained", "previous"] = "scratch"
    """Where each generation's weights start: `scratch`, a fresh random init (the paper);
    `pretrained`, model.pretrained's weights every generation (fine-tuning, as Shumailov et al.
    2024 fine-tune OPT-125m); `previous`, generation n−1's trained weights (generation 1 from
    run.first_model, else model.pretrained, else a random init)."""

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
    """`auto`: fp16 autocast with a grad scaler on CUDA (as the paper), fp32 on CPU. fp16 and bf16
    run on a CPU too (the same autocast and scaler path: slow, but it shows overflows early)."""

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
    """Sequences sampled in parallel per device (under beam search, prompts: each runs
    num_beams rows)."""
    strategy: Literal["ancestral", "greedy", "beam"] = "ancestral"
    """`ancestral`: draw every token from the model's distribution (the paper; temperature,
    top_k and top_p apply). `greedy`: the most likely token. `beam`: beam search with
    num_beams beams, the best beam kept (transformers' generate with do_sample false, as
    Shumailov et al. 2024). greedy and beam are deterministic: they need prompts
    (sampling.prompt training) and stop at a sequence's end-of-text (mode story)."""
    num_beams: int = 5
    """beam: beams kept per prompt (>= 1; 1 is greedy)."""
    repetition_penalty: float = 1.0
    """Greedy, beam and prompted sampling: transformers' repetition penalty (a seen token's
    logit divided by it when positive, multiplied when negative; 1: none; Shumailov et al. use
    3.0)."""
    length_penalty: float = 1.0
    """beam: a finished beam's score is its log-probability / length^length_penalty."""
    early_stopping: bool = False
    """beam: stop a prompt's search once num_beams beams have finished (transformers'
    early_stopping true), instead of when no running beam can do better."""
    min_new_tokens: int = 0
    """No end-of-text before this many generated tokens (with `length` the bounds of a
    sequence; Shumailov et al. generate exactly 64: min_new_tokens = length = 64)."""
    prompt: Literal["none", "training"] = "none"
    """`none`: every sequence starts from the end-of-text token alone (the paper). `training`:
    each sequence is prompted with prompt_tokens consecutive tokens of generation n's own
    training set — its packed blocks, in a seeded order, repeated if S_n needs more — and only
    the continuation is stored (Shumailov et al. prompt with every 64-token training block)."""
    prompt_tokens: int = 64
    """prompt training: tokens per prompt; prompt_tokens + length must fit the model."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = _at_least("num_sequences", self.num_sequences, 1) + _at_least(
            "length", self.length, 1
        )
        out += _positive("temperature", self.temperature) + _at_least("top_k", self.top_k, 0)
        out += _in_unit_interval("top_p", self.top_p, open_low=True, open_high=False)
        out += _at_least("batch_size", self.batch_size, 1)
        out += _at_least("num_beams", self.num_beams, 1)
        out += _positive("repetition_penalty", self.repetition_penalty)
        if not math.isfinite(self.length_penalty):
            out.append(f"length_penalty: must be a finite number, got {self.length_penalty!r}")
        out += _at_least("min_new_tokens", self.min_new_tokens, 0)
        if self.min_new_tokens > self.length:
            out.append(
                f"min_new_tokens: {self.min_new_tokens} exceeds sampling.length={self.length}"
            )
        out += _at_least("prompt_tokens", self.prompt_tokens, 1)
        if self.strategy != "ancestral" and self.prompt == "none":
            out.append(
                f"strategy: {self.strategy} is deterministic, so from the end-of-text start "
                "token every sequence would be the same one: set sampling.prompt training"
            )
        if (self.strategy != "ancestral" or self.prompt != "none") and self.mode != "story":
            out.append(
                "mode: prompted or greedy/beam generation stops at a sequence's end-of-text, as "
                "transformers' generate does: set sampling.mode story"
            )
        return out

    def describe(self) -> str:
        """One line on how S_n is drawn (the report states the strategy)."""
        s = self
        if s.strategy == "ancestral":
            cuts = [f"temperature {s.temperature:g}"]
            cuts.append(f"top-k {s.top_k}" if s.top_k else "no top-k")
            cuts.append(f"top-p {s.top_p:g}" if s.top_p < 1 else "no top-p")
            how = f"ancestral ({', '.join(cuts)})"
        elif s.strategy == "greedy":
            how = f"greedy (repetition penalty {s.repetition_penalty:g})"
        else:
            how = (
                f"beam search ({s.num_beams} beams, repetition penalty "
                f"{s.repetition_penalty:g}, length penalty {s.length_penalty:g})"
            )
        bounds = f"{s.min_new_tokens}-{s.length}" if s.min_new_tokens else f"up to {s.length}"
        if s.prompt == "training":
            start = f"prompted with {s.prompt_tokens} tokens of the generation's training set"
        else:
            start = "from the end-of-text token"
        return f"{how}, {bounds} tokens per sequence, {start}, mode {s.mode}"


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
    downstream: tuple[DownstreamTask, ...] = ()
    """Downstream classification tasks every generation's model is fine-tuned and tested on
    (the authors' code: CoLA, SST-2, QQP, MRPC, QNLI, RTE, IMDB, Yelp-5), with a randomly
    initialised model of the same config as the run's baseline. Empty: none."""
    subset: str | None = None
    """The evaluation source's hub configuration (null: data.subset when evaluation.source is
    data.source)."""
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
        names = [t.name for t in self.downstream]
        out += [
            f"downstream: task name {n!r} is given twice"
            for n in sorted(set(names))
            if names.count(n) > 1
        ]
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
    first_model: str | None = None
    """A causal LM (a Hugging Face model directory or hub name, e.g. roneneldan/TinyStories-1M)
    that is generation 1 instead of a model trained on D0: it is evaluated, probed and samples
    S_1 like a trained one; later generations train as configured. Its tokenizer must be
    data.tokenizer (the ids are checked). null: generation 1 trains on D0."""
    trackers: tuple[Tracker, ...] = ()
    """Experiment trackers, through accelerate's: `tensorboard` (event files in RUN/trackers/)
    and `wandb` (offline unless WANDB_MODE says otherwise; no account needed). They get every
    generation's metrics and every optimizer step's training loss."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = _at_least("generations", self.generations, 1)
        if self.first_model is not None and not self.first_model.strip():
            out.append("first_model: must not be empty (null, a model directory or a hub name)")
        out += [
            f"trackers: {t!r} is named twice"
            for t in sorted(set(self.trackers))
            if self.trackers.count(t) > 1
        ]
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
        return out + self._check_starts() + self._check_decoding()

    def _check_starts(self) -> list[str]:
        """Where weights come from (training.init, model.pretrained, run.first_model)."""
        out, init, m = [], self.training.init, self.model
        if init == "pretrained" and not m.pretrained:
            out.append(
                "training.init: pretrained needs model.pretrained (a causal LM's directory or "
                "hub name, e.g. facebook/opt-125m)"
            )
        if m.family == "ngram":
            if init != "scratch":
                out.append(
                    f"training.init: {init} is for the gradient-trained families; the ngram "
                    "family counts every generation's data afresh"
                )
            if m.pretrained:
                out.append("model.pretrained: the ngram family has no pretrained weights")
            if self.evaluation.downstream:
                out.append(
                    "evaluation.downstream: the ngram family has no transformer to put a "
                    "classification head on"
                )
            if self.run.first_model and m.expected_counts != "off":
                out.append(
                    "run.first_model: the expected counts need generation 1 to be an n-gram: "
                    "set model.expected_counts off"
                )
        if m.pretrained and init == "scratch":
            out.append(
                "model.pretrained: no generation starts from it with training.init scratch: "
                "set training.init pretrained (or previous), or model.pretrained null"
            )
        if m.pretrained and init == "previous" and self.run.first_model:
            out.append(
                "model.pretrained: unused: with run.first_model, training.init previous starts "
                "generation 2 from generation 1 (set model.pretrained null)"
            )
        fresh = init == "scratch" or (
            init == "previous" and not m.pretrained and not self.run.first_model
        )  # some generation is a fresh model of model.*'s architecture
        if m.family == "hf" and not m.hf_config and fresh:
            out.append(
                "model.hf_config: a generation starts from a random init of family hf: give "
                "model.hf_config (a config name or path), or start from weights "
                "(training.init pretrained with model.pretrained)"
            )
        for i, task in enumerate(self.evaluation.downstream):
            if not m.pretrained and task.max_length > m.max_position_embeddings:
                out.append(
                    f"evaluation.downstream[{i}].max_length: {task.max_length} exceeds "
                    f"model.max_position_embeddings={m.max_position_embeddings}"
                )
        return out

    def _check_decoding(self) -> list[str]:
        """What greedy, beam and prompted generation need of the model and the paradigm."""
        s, out = self.sampling, []
        if s.strategy == "ancestral" and s.prompt == "none":
            unused = [
                f"sampling.{k}"
                for k, default in (
                    ("min_new_tokens", 0),
                    ("repetition_penalty", 1.0),
                    ("length_penalty", 1.0),
                    ("early_stopping", False),
                )
                if getattr(s, k) != default
            ]
            if unused:
                out.append(
                    f"{unused[0]}: the paper's pure sampling from the start token has no "
                    f"{unused[0].split('.')[1]}: set sampling.prompt training or "
                    "sampling.strategy greedy/beam, or leave it at its default"
                )
            return out
        if s.strategy != "ancestral" and (s.temperature, s.top_k, s.top_p) != (1.0, 0, 1.0):
            out.append(
                f"sampling.strategy: {s.strategy} takes no temperature, top_k or top_p (they "
                "shape ancestral sampling): leave them at 1, 0, 1"
            )
        if s.strategy != "ancestral" and self.curation.name in ("filter", "resample"):
            out.append(
                f"curation.name: {self.curation.name} samples more pools than S_n, but "
                f"{s.strategy} decoding gives the same continuation of the same prompt every "
                "time: use sampling.strategy ancestral, or curation none/toedit"
            )
        if self.model.family == "ngram":
            out.append(
                "sampling: the ngram family samples from the start token only: set "
                "sampling.strategy ancestral and sampling.prompt none"
            )
        fixed = self.training.init == "scratch" or not self.model.pretrained  # our architecture
        need = s.length + (s.prompt_tokens if s.prompt == "training" else 1)
        if fixed and need > self.model.max_position_embeddings:
            out.append(
                f"sampling.length: a prompt ({s.prompt_tokens if s.prompt == 'training' else 1} "
                f"tokens) and {s.length} new ones do not fit model.max_position_embeddings="
                f"{self.model.max_position_embeddings} (prompted generation has no sliding window)"
            )
        return out
