"""Generating a corpus from a model (Algorithm 1): pure sampling, every parameter explicit.

Each sequence starts from the end-of-text token with no prompt and draws L tokens from the
model's distribution at temperature 1 with no top-k and no top-p truncation (those are options,
off unless asked for; nothing comes from a library's defaults). While a sequence is within the
context, a static key/value cache makes each step one token's work. Once it is longer than the
context (600 > 512 in the paper), the model sees the last `context` tokens, re-positioned from 0,
exactly as Algorithm 1's queue: with absolute position embeddings that means a full forward pass
of the window per token, which this code does (no approximation).

Modes: `stream` — a sequence runs on across end-of-text for L tokens, and is cut into stories at
its end-of-text tokens when stored (the last, unfinished story gets an end-of-text: in the paper's
concatenated corpus the next sequence's start token follows it); `story` — each sequence stops at
its first end-of-text (or after L tokens, then ended the same way).

Draws are exact: probabilities in float32, the cumulative sums in float64 over blocks of the
vocabulary, so a token of probability 1e-9 is drawn at its rate. Batch b draws from a generator
seeded by (seed, b), so a corpus is the same whatever the batch-to-process assignment; under
`accelerate launch` process r generates batches r, r + W, ... into its own shard, and process 0
joins the shards in batch order.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

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

    def check(self) -> None:
        """Raise InvalidInput for values that define no distribution."""
        if not self.temperature > 0:
            raise InvalidInput(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise InvalidInput(f"top_k must be >= 0 (0 = no truncation), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InvalidInput(f"top_p must be in (0, 1] (1 = no truncation), got {self.top_p}")


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
    blk = torch.searchsorted(cdf, u[:, :1] * cdf[:, -1:]).clamp_(max=cdf.shape[1] - 1)
    idx = blk * _BLOCK + torch.arange(_BLOCK, device=probs.device)  # (B, BLOCK)
    inside = idx < v
    inner = probs.gather(1, idx.clamp(max=v - 1)).double() * inside
    inner_cdf = torch.cumsum(inner, dim=-1)
    pos = torch.searchsorted(inner_cdf, u[:, 1:] * inner_cdf[:, -1:]).clamp_(max=_BLOCK - 1)
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
    positions = model.shape.max_positions
    if context > positions:
        raise InvalidInput(f"sampling context {context} exceeds the model's {positions} positions")
    params.check()
    device = next(model.parameters()).device
    seq = torch.full((batch, length + 1), eos_id, dtype=torch.long, device=device)
    active = torch.arange(batch, device=device)  # rows still generating (story mode drops rows)
    done_at = torch.full((batch,), length, dtype=torch.long)
    cache = model.new_cache(batch, min(context, length + 1))  # None: recompute every step
    buf = torch.empty(batch, model.shape.vocab_size, dtype=torch.float32, device=device)
    probs_buf = torch.empty_like(buf)  # both reused every step: no per-step allocation of (B, V)
    logits = model.next_token_logits(seq[:, :1], cache=cache, out=buf)
    for t in range(1, length + 1):
        tok = draw(next_token_probs(logits, params, probs_buf), generator)
        seq[active, t] = tok
        if stop_at_eos:
            ended = tok == eos_id
            if bool(ended.any()):
                done_at[active[ended].cpu()] = t
                keep = ~ended
                active, tok = active[keep], tok[keep]
                if active.numel() == 0:
                    break
                if cache is not None:
                    cache.keep_rows(keep)
        if t == length:
            break
        if cache is not None and t < context:  # the window still fits: one cached step
            logits = model.next_token_logits(tok[:, None], cache=cache, out=buf)
        else:  # Algorithm 1's queue: the last `context` tokens, positions 0..context-1
            logits = model.next_token_logits(seq[active, max(0, t + 1 - context) : t + 1], out=buf)
    rows = seq[:, 1:].cpu().numpy()
    return [rows[i, : int(done_at[i])] for i in range(batch)]


def to_stories(tokens: np.ndarray, eos_id: int) -> list[np.ndarray]:
    """Cut one generated sequence at its end-of-text tokens (each story keeps its own); an
    unfinished last story is closed with end-of-text, the separator that follows it in the
    paper's concatenated corpus."""
    ends = np.flatnonzero(tokens == eos_id)
    stories = np.split(tokens, ends + 1)
    if len(stories[-1]) == 0:
        stories.pop()
    elif stories[-1][-1] != eos_id:
        stories[-1] = np.append(stories[-1], eos_id)
    return stories


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
    num_sequences: int,
    length: int,
    batch_size: int,
    context: int,
    eos_id: int,
    vocab_size: int,
    seed: int,
    mode: str = "stream",
    params: SamplingParams = SamplingParams(),
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> SampleResult:
    """Generate `num_sequences` sequences into a token store at `out` (one story per unit)."""
    from lmcollapse.runtime import num_processes, process_index

    if num_sequences < 1 or batch_size < 1:
        raise InvalidInput("num_sequences and batch_size must be >= 1")
    if mode not in ("stream", "story"):
        raise InvalidInput(f"sampling mode must be stream or story, got {mode!r}")
    rank, world = process_index(), num_processes()
    n_batches = -(-num_sequences // batch_size)
    mine = list(range(rank, n_batches, world))
    target = Path(out) if world == 1 else Path(f"{out}.shard{rank}")
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
            "batches": mine,
            "batch_size": batch_size,
        },
    }
    stats = SampleResult(0, 0, 0, 0, 0.0)
    t0 = time.perf_counter()
    bar = _progress(len(mine) * batch_size, progress and rank == 0)
    batch_stories: dict[str, int] = {}  # stories per batch, for joining shards in batch order
    with TokenStoreWriter(
        target, vocab_size=vocab_size, eos_id=eos_id, provenance=prov, overwrite=True
    ) as w:
        for b in mine:
            before = stats.stories
            rows = min(batch_size, num_sequences - b * batch_size)
            g = torch.Generator(device=next(model.parameters()).device).manual_seed(
                _batch_seed(seed, b)
            )
            for seq in sample_batch(
                model,
                rows,
                length,
                eos_id=eos_id,
                context=context,
                generator=g,
                params=params,
                stop_at_eos=mode == "story",
            ):
                stories = to_stories(seq, eos_id)
                stats.unfinished += int(len(seq) == 0 or seq[-1] != eos_id)
                stats.tokens += len(seq)
                stats.stories += len(stories)
                for s in stories:
                    w.add(s)
            stats.sequences += rows
            batch_stories[str(b)] = stats.stories - before
            bar.update(rows)
        w.provenance["batch_stories"] = batch_stories
    bar.close()
    if world > 1:
        _join_shards(Path(out), world, n_batches, next(model.parameters()).device)
    stats.seconds = time.perf_counter() - t0
    return stats


def _batch_seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch, 0x5A3]).generate_state(1)[0])


def _join_shards(out: Path, world: int, n_batches: int, device: torch.device) -> None:
    """Process 0 writes the shards' stories into `out` in batch order; the others wait."""
    from lmcollapse.runtime import distributed_state

    state = distributed_state(device)
    state.wait_for_everyone()
    if state.is_main_process:
        shards = [TokenStore.open(f"{out}.shard{r}") for r in range(world)]
        meta = shards[0].meta
        with TokenStoreWriter(
            out,
            vocab_size=meta["vocab_size"],
            eos_id=meta["eos_id"],
            provenance={**meta["provenance"], "shards": world},
            overwrite=True,
        ) as w:
            cursors = [0] * world
            for b in range(n_batches):
                r = b % world
                shard = shards[r]  # holds its batches in order: read on from its cursor
                n_stories = shard.meta["provenance"]["batch_stories"][str(b)]
                idx = np.arange(cursors[r], cursors[r] + n_stories)
                for toks, lens in shard.gather(idx):
                    w.add_flat(toks, lens)
                cursors[r] += n_stories
        for r in range(world):
            shutil.rmtree(f"{out}.shard{r}", ignore_errors=True)
    state.wait_for_everyone()


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sample", unit="seq", disable=not enabled, dynamic_ncols=True)
