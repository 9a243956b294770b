"""Generating a corpus from a model (Algorithm 1): pure sampling, every parameter explicit.

Each sequence starts from the end-of-text token with no prompt and draws L tokens from the
model's distribution at temperature 1 with no top-k and no top-p truncation (those are options,
off unless asked for; nothing comes from a library's defaults). While a sequence is within the
context, a static key/value cache makes each step one token's work. Once it is longer than the
context (600 > 512 in the paper), the model sees the last `context` tokens, re-positioned from 0,
exactly as Algorithm 1's queue: with absolute position embeddings that means a full forward pass
of the window per token, which this code does (no approximation).

Modes: `stream` — a sequence runs on across end-of-text for L tokens, and is cut into stories at
its end-of-text tokens when stored; `story` — each sequence stops at its first end-of-text (or
after L tokens). A story that did not end by itself (the last one of a stream sequence, a story
at the length cap) is stored with an end-of-text as its separator and marked unfinished in the
token store: that end-of-text is the model's context boundary, never a training target, so no
generation learns that stories stop where the sampler cut them (README: Fidelity).

Draws are exact: probabilities in float32, the cumulative sums in float64 over blocks of the
vocabulary, so a token of probability 1e-9 is drawn at its rate. Batch b draws from a generator
seeded by (seed, b), so a corpus is the same whatever the batch-to-process assignment; under
`accelerate launch` process r generates batches r, r + W, ... into its own shard, and process 0
joins the shards in batch order.
"""

from __future__ import annotations

import itertools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lmcollapse.config import ExperimentConfig
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.errors import InvalidInput
from lmcollapse.models.gpt_neo import softmax_into

_BLOCK = 512  # vocabulary block of the two-level exact sampler


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is drawn: every parameter explicit (the paper: 1.0, 0, 1.0)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    @classmethod
    def of(cls, sampling: Any) -> SamplingParams:
        """The draw parameters of a SamplingConfig (config.sampling)."""
        return cls(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)

    def check(self) -> None:
        """Raise InvalidInput for values that define no distribution."""
        if not self.temperature > 0:
            raise InvalidInput(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise InvalidInput(f"top_k must be >= 0 (0 = no truncation), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InvalidInput(f"top_p must be in (0, 1] (1 = no truncation), got {self.top_p}")


def sampling_context(cfg: ExperimentConfig, model: Any) -> int:
    """How many tokens the model sees when sampling: Algorithm 1's queue of training.context_length
    tokens, or (sampling.slide false) the whole sequence. One rule for the run's corpora and for
    `lmcollapse sample`."""
    if cfg.sampling.slide:
        return min(cfg.training.context_length, model.shape.max_positions)
    return min(cfg.sampling.length + 1, model.shape.max_positions)


def next_token_probs(logits: Tensor, params: SamplingParams, out: Tensor | None = None) -> Tensor:
    """(B, V) float32 logits → probabilities after temperature, top-k and top-p (each off at its
    neutral value). The logits may be modified in place; `out` is a reusable buffer."""
    x = logits
    if params.temperature != 1.0:
        x.div_(params.temperature)
    if params.top_k and params.top_k < x.shape[-1]:
        kth = torch.topk(x, params.top_k, dim=-1).values[:, -1:]
        x.masked_fill_(x < kth, float("-inf"))
    probs = softmax_into(x, out[: x.shape[0]]) if out is not None else torch.softmax(x, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < params.top_p  # the nucleus, >= 1 token
        probs = torch.zeros_like(probs).scatter_(1, order, sorted_p * keep)
        probs /= probs.sum(dim=-1, keepdim=True)
    return probs


def draw(probs: Tensor, generator: torch.Generator) -> Tensor:
    """One exact draw per row of (B, V) probabilities: (B,) token ids.

    `probs` may be unnormalised (non-negative weights). Two levels: pick a block of the
    vocabulary by its mass (block sums, then their cumulative sum in float64), then a token
    inside the block by a float64 cumulative sum of its probabilities.
    One pass over the probabilities, not a full float64 cumulative sum or torch.multinomial (both
    several times slower at V = 50k); a token's chance is its probability to ~1e-6 relative.
    """
    b, v = probs.shape
    full = (v // _BLOCK) * _BLOCK
    mass = probs[:, :full].reshape(b, -1, _BLOCK).sum(dim=-1)
    if full < v:
        mass = torch.cat([mass, probs[:, full:].sum(dim=-1, keepdim=True)], dim=1)
    cdf = torch.cumsum(mass.double(), dim=-1)
    u = torch.rand(b, 2, generator=generator, dtype=torch.float64, device=probs.device)
    # side="right": the first cumulative sum above the draw, never a zero-mass block or token
    blk = torch.searchsorted(cdf, u[:, :1] * cdf[:, -1:], side="right").clamp_(max=cdf.shape[1] - 1)
    idx = blk * _BLOCK + torch.arange(_BLOCK, device=probs.device)  # (B, BLOCK)
    inside = idx < v
    inner = probs.gather(1, idx.clamp(max=v - 1)).double() * inside
    inner_cdf = torch.cumsum(inner, dim=-1)
    pos = torch.searchsorted(inner_cdf, u[:, 1:] * inner_cdf[:, -1:], side="right")
    pos = pos.clamp_(max=_BLOCK - 1)
    return idx.gather(1, pos)[:, 0].clamp_(max=v - 1)


@torch.no_grad()
def sample_batch(
    model: Any,
    batch: int,
    length: int,
    *,
    eos_id: int,
    context: int,
    generator: torch.Generator,
    params: SamplingParams = SamplingParams(),
    stop_at_eos: bool = False,
) -> list[np.ndarray]:
    """`batch` sequences of up to `length` generated tokens each (the start token excluded)."""
    if length < 1:
        raise InvalidInput(f"sampling length must be >= 1, got {length}")
    if batch < 1:
        raise InvalidInput(f"sampling batch must be >= 1, got {batch}")
    if context < 1:
        raise InvalidInput(f"sampling context must be >= 1 token, got {context}")
    positions, vocab = model.shape.max_positions, model.shape.vocab_size
    if context > positions:
        raise InvalidInput(f"sampling context {context} exceeds the model's {positions} positions")
    if not 0 <= eos_id < vocab:
        raise InvalidInput(
            f"end-of-text id {eos_id} is outside the model's vocabulary [0, {vocab})"
        )
    params.check()
    if getattr(model, "family", None) == "ngram":
        if (params.temperature, params.top_k, params.top_p) != (1.0, 0, 1.0):
            raise InvalidInput(
                "the ngram family samples faithfully only (temperature 1, no top-k/top-p): "
                "set sampling.temperature 1, sampling.top_k 0, sampling.top_p 1"
            )
        if eos_id != model.eos_id:
            raise InvalidInput(f"end-of-text id {eos_id} is not the model's {model.eos_id}")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return model.sample_sequences(batch, length, seed, stop_at_eos=stop_at_eos)
    device = next(model.parameters()).device
    seq = torch.full((batch, length + 1), eos_id, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)  # the sequences the model is running
    alive = torch.ones(batch, dtype=torch.bool, device=device)  # ... and which of them still count
    done_at = torch.full((batch,), length, dtype=torch.long)
    cache = model.new_cache(batch, min(context, length + 1))  # None: recompute every step
    buf = torch.empty(batch, vocab, dtype=torch.float32, device=device)
    probs_buf = torch.empty_like(buf)  # both reused every step: no per-step allocation of (B, V)
    logits = model.next_token_logits(seq[:, :1], cache=cache, out=buf)
    for t in range(1, length + 1):
        tok = draw(next_token_probs(logits, params, probs_buf), generator)
        seq[rows[alive], t] = tok[alive]
        if stop_at_eos:
            ended = alive & (tok == eos_id)
            if bool(ended.any()):
                done_at[rows[ended].cpu()] = t
                alive &= ~ended
                if not bool(alive.any()):
                    break
                if 2 * int(alive.sum()) < len(rows):  # compact rarely: copying the cache costs
                    if cache is not None:
                        cache.keep_rows(alive)
                    rows, tok, alive = rows[alive], tok[alive], alive[alive]
        if t == length:
            break
        if cache is not None and t < context:  # the window still fits: one cached step
            logits = model.next_token_logits(tok[:, None], cache=cache, out=buf)
        else:  # Algorithm 1's queue: the last `context` tokens, positions 0..context-1
            window = seq[rows, max(0, t + 1 - context) : t + 1]
            logits = model.next_token_logits(window, out=buf)
    out = seq[:, 1:].cpu().numpy()
    return [out[i, : int(done_at[i])] for i in range(batch)]


def to_stories(tokens: np.ndarray, eos_id: int) -> list[np.ndarray]:
    """Cut one generated sequence at its end-of-text tokens (each story keeps its own); an
    unfinished last story gets an end-of-text as its separator (`stories_of` says which)."""
    flat, lens, _ = stories_of([tokens], eos_id)
    return np.split(flat, np.cumsum(lens)[:-1]) if lens.size else []


def stories_of(seqs: list[np.ndarray], eos_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every sequence of a batch cut into stories at once, as `to_stories` cuts one:
    (concatenated stories, their lengths, whether each ended by itself). A sequence that ran
    out of length before its end-of-text gives an unfinished last story, closed with an
    end-of-text separator that the model did not write."""
    parts, done = [], []
    for q in seqs:
        if len(q) == 0:
            continue
        parts.append(q)
        ends = int(np.count_nonzero(q == eos_id))
        done.append(np.ones(ends, dtype=bool))
        if q[-1] != eos_id:
            parts.append(np.array([eos_id], dtype=q.dtype))
            done.append(np.zeros(1, dtype=bool))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=bool)
    flat = np.concatenate(parts)
    ends = np.flatnonzero(flat == eos_id)
    lens = np.diff(np.concatenate([[-1], ends])).astype(np.int64)
    return flat, lens, np.concatenate(done)


@dataclass
class SampleResult:
    """What a corpus generation did."""

    sequences: int
    tokens: int  # generated tokens (the start tokens excluded)
    stories: int
    unfinished: int  # stories closed because the sequence ran out of length
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def generate_corpus(
    model: Any,
    out: str | Path,
    *,
    length: int,
    batch_size: int,
    context: int,
    eos_id: int,
    vocab_size: int,
    seed: int,
    num_sequences: int | None = None,
    min_stories: int | None = None,
    min_tokens: int | None = None,
    mode: str = "stream",
    params: SamplingParams = SamplingParams(),
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> SampleResult:
    """Generate a corpus into a token store at `out` (one stored unit per story).

    One target: `num_sequences` sequences; or — with `min_stories` — whole batches until the
    corpus holds at least that many stories (every sequence gives at least one, so this ends);
    or — with `min_tokens` — batches until it holds that many stored tokens, cut after the story
    that reaches it (so the corpus overshoots by less than one story). The corpus is the same
    whatever the number of processes: batch b is seeded by (seed, b), and with a story or token
    target the cut is made in batch order.
    """
    from lmcollapse.runtime import num_processes, process_index, progress_bar

    if sum(x is not None for x in (num_sequences, min_stories, min_tokens)) != 1:
        raise InvalidInput("give exactly one of num_sequences, min_stories and min_tokens")
    if (
        (num_sequences is not None and num_sequences < 1)
        or batch_size < 1
        or (min_stories or 1) < 1
        or (min_tokens or 1) < 1
    ):
        raise InvalidInput("num_sequences, min_stories, min_tokens and batch_size must be >= 1")
    if mode not in ("stream", "story"):
        raise InvalidInput(f"sampling mode must be stream or story, got {mode!r}")
    if model.shape.vocab_size > vocab_size:
        raise InvalidInput(
            f"the model can emit {model.shape.vocab_size} ids but the corpus vocabulary is "
            f"{vocab_size}: give the model's vocabulary"
        )
    rank, world = process_index(), num_processes()
    target = Path(out) if world == 1 else Path(f"{out}.shard{rank}")
    goal = _Goal.of(min_stories, min_tokens)
    prov = {
        **(provenance or {}),
        "sampling": {
            "mode": mode,
            "length": length,
            "seed": seed,
            "temperature": params.temperature,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "context": context,
            "batch_size": batch_size,
            "num_sequences": num_sequences,
            "min_stories": min_stories,
            "min_tokens": min_tokens,
        },
    }
    stats = SampleResult(0, 0, 0, 0, 0.0)
    device = (
        torch.device("cpu")
        if getattr(model, "family", None) == "ngram"
        else next(model.parameters()).device
    )
    t0 = time.perf_counter()
    total = num_sequences if num_sequences is not None else None
    bar = progress_bar(total, "sample", "seq" if total else "story", progress and rank == 0)
    # batch -> [sequences, stories, generated tokens, unfinished stories] (what the store keeps)
    per_batch: dict[str, list[int]] = {}
    last = None  # with a story or token target: the last batch of the corpus, once known
    have = 0  # one process: stored units so far (a token target trims the batch that reaches it)
    with TokenStoreWriter(
        target, vocab_size=vocab_size, eos_id=eos_id, provenance=prov, overwrite=True
    ) as w:
        for round_ in itertools.count():
            b = round_ * world + rank
            rows = (
                batch_size
                if num_sequences is None
                else min(batch_size, num_sequences - b * batch_size)
            )
            if rows > 0:
                g = torch.Generator(device=device).manual_seed(_batch_seed(seed, b))
                seqs = sample_batch(
                    model,
                    rows,
                    length,
                    eos_id=eos_id,
                    context=context,
                    generator=g,
                    params=params,
                    stop_at_eos=mode == "story",
                )
                flat, lens, done = stories_of(seqs, eos_id)
                if world == 1 and goal is not None:
                    flat, lens, done = goal.trim(flat, lens, done, have)
                    have += goal.units(lens)
                w.add_flat(flat, lens, done)
                per_batch[str(b)] = _batch_counts(rows, lens, done)
                bar.update(rows if total else int(lens.size))
            if num_sequences is not None:
                if (round_ + 1) * world * batch_size >= num_sequences:
                    break
                continue
            last = _target_reached(per_batch, round_, world, goal)
            if last is not None:
                break
        w.provenance["batch_counts"] = per_batch
    bar.close()
    if world > 1:
        _join_shards(Path(out), world, device, last, goal)
    kept = TokenStore.open(out).meta["provenance"]["batch_counts"].values()  # after the join
    stats.sequences, stats.stories, stats.tokens, stats.unfinished = (
        sum(c[i] for c in kept) for i in range(4)
    )
    stats.seconds = time.perf_counter() - t0
    return stats


def _batch_counts(rows: int, lens: np.ndarray, done: np.ndarray) -> list[int]:
    """[sequences, stories, generated tokens, unfinished stories] of a stored batch (a separator
    after an unfinished story is stored but was not generated)."""
    cut = int((~done).sum())
    return [rows, int(lens.size), int(lens.sum()) - cut, cut]


@dataclass(frozen=True)
class _Goal:
    """A story or token target for a generated corpus (`tokens`: stored tokens, separators
    included, as a training set counts them)."""

    unit: str
    amount: int

    @classmethod
    def of(cls, min_stories: int | None, min_tokens: int | None) -> _Goal | None:
        if min_stories is not None:
            return cls("stories", min_stories)
        return cls("tokens", min_tokens) if min_tokens is not None else None

    def units(self, lens: np.ndarray) -> int:
        return int(lens.size) if self.unit == "stories" else int(lens.sum())

    def batch_units(self, counts: list[int]) -> int:
        """The units of a batch from its counts (stored tokens = generated + separators)."""
        return counts[1] if self.unit == "stories" else counts[2] + counts[3]

    def trim(
        self, flat: np.ndarray, lens: np.ndarray, done: np.ndarray, have: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A token target keeps a batch's stories up to the one that reaches it; a story target
        keeps whole batches."""
        if self.unit == "stories" or have + int(lens.sum()) <= self.amount:
            return flat, lens, done
        keep = int(np.searchsorted(have + np.cumsum(lens), self.amount)) + 1
        return flat[: int(lens[:keep].sum())], lens[:keep], done[:keep]


def _target_reached(
    per_batch: dict[str, list[int]], round_: int, world: int, goal: _Goal | None
) -> int | None:
    """With a story or token target: the batch (in batch order) where the corpus reaches it."""
    from lmcollapse.runtime import all_gather_object

    assert goal is not None
    counts = {int(b): goal.batch_units(c) for b, c in per_batch.items()}
    if world > 1:
        merged: dict[int, int] = {}
        for part in all_gather_object(counts):
            merged.update(part)
        counts = merged
    cumulative = 0
    for b in range((round_ + 1) * world):
        cumulative += counts.get(b, 0)
        if cumulative >= goal.amount:
            return b
    return None


def _batch_seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch, 0x5A3]).generate_state(1)[0])


def _join_shards(
    out: Path, world: int, device: torch.device, last: int | None, goal: _Goal | None
) -> None:
    """Process 0 writes the shards' stories into `out` in batch order (up to batch `last` when a
    story or token target cut the corpus there; a token target trims that batch); the others
    wait."""
    from lmcollapse.runtime import distributed_state

    state = distributed_state(device)
    state.wait_for_everyone()
    if state.is_main_process:
        shards = [TokenStore.open(f"{out}.shard{r}") for r in range(world)]
        counts = {
            int(b): c for sh in shards for b, c in sh.meta["provenance"]["batch_counts"].items()
        }
        batches = [b for b in sorted(counts) if last is None or b <= last]
        meta = shards[0].meta
        kept: dict[str, list[int]] = {}
        with TokenStoreWriter(
            out,
            vocab_size=meta["vocab_size"],
            eos_id=meta["eos_id"],
            provenance={**meta["provenance"], "shards": world},
            overwrite=True,
        ) as w:
            cursors = [0] * world
            have = 0
            for b in batches:
                r = b % world  # a shard holds its batches in order: read on from its cursor
                n_stories = counts[b][1]
                parts = list(shards[r].gather_marked(np.arange(cursors[r], cursors[r] + n_stories)))
                cursors[r] += n_stories
                flat = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
                lens = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
                done = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, bool)
                if goal is not None:
                    flat, lens, done = goal.trim(flat, lens, done, have)
                    have += goal.units(lens)
                w.add_flat(flat, lens, done)
                kept[str(b)] = _batch_counts(counts[b][0], lens, done)
            w.provenance["batch_counts"] = kept
        for r in range(world):
            shutil.rmtree(f"{out}.shard{r}", ignore_errors=True)
    state.wait_for_everyone()
