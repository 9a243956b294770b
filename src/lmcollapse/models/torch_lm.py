"""What every torch language model shares: exact sampling (Algorithm 1), held-out perplexity
(Appendix C.3), next-token distributions for probes, and gradient training as its family's fit.

A subclass (GPT-Neo, the Hugging Face fallback) provides `forward(input_ids, targets=None,
cache=None)`, `next_token_logits(input_ids, cache=None, out=None)`, `token_logprobs(input_ids,
targets, mask)`, `new_cache(batch, capacity)` (None: recompute the window every step),
`save_pretrained(dir)` and a `shape`; this base gives it the `LanguageModel` interface.

Sampling: each sequence starts from the end-of-text token and draws tokens at the given
temperature/top-k/top-p (the paper: 1, none, none). While a sequence fits the context a static
key/value cache makes each step one token's work; past it the model sees the last `context`
tokens re-positioned from 0, Algorithm 1's queue, which with absolute positions is a full
forward pass of the window per token. Draws are exact: probabilities in float32, the cumulative
sums in float64 over blocks of the vocabulary, so a token of probability 1e-9 is drawn at its
rate.

Perplexity: story tokens s_1..s_m (s_m is end-of-text) are predicted from the end-of-text start
token and the story's earlier tokens, the context being at most the previous `context` tokens;
the loss is the mean token loss over all stories' tokens. Stories of up to `context` tokens are
scored exactly, in one window each; a longer story in windows of `context` tokens advancing by
`stride` (default context/2): each token is scored once, in the first window where it is not in
the overlap — the usual sliding-window evaluation, exact for shorter stories, and exact
throughout with stride 1. Windows are sorted by length and packed to a token budget,
right-padded (causal attention: real tokens never see the padding).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from lmcollapse.errors import InvalidInput, RunFailed
from lmcollapse.models.base import Family, FitJob, LanguageModel, SamplingParams, TokenScores
from lmcollapse.results import PerplexityResult

if TYPE_CHECKING:
    from lmcollapse.data.store import TokenStore
    from lmcollapse.results import TrainResult

_BLOCK = 512  # vocabulary block of the two-level exact sampler


def softmax_into(logits: Tensor, out: Tensor, log: bool = False) -> Tensor:
    """(Log-)softmax over the last dimension into `out` (the fused kernel, no allocation)."""
    op = torch.ops.aten._log_softmax.out if log else torch.ops.aten._softmax.out
    return op(logits, -1, False, out=out)


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


def _windows(length: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first scored) over the sequence [EOS] + story of `length` story tokens: input
    positions start..end-1 predict start+1..end; targets up to `first scored` are the overlap,
    already scored by an earlier window. Windows advance by `stride`; the last one ends at the
    end of the story (right-aligned), so it too has a full context."""
    if length <= context:
        return [(0, length, 0)]
    out = [(0, context, 0)]
    scored = context
    while scored < length:
        end = min(scored + stride, length)
        start = max(0, end - context)
        out.append((start, end, scored))
        scored = end
    return out


class TorchLM(nn.Module):
    """The LanguageModel interface of a torch causal LM (see the module docstring)."""

    family = "torch"
    shape: Any

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save(self, path: str | Path) -> Path:
        return self.save_pretrained(path)

    def describe(self) -> str:
        params = sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())
        return f"model: {type(self).__name__}, {params / 1e6:.2f}M parameters"

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode without gradients for the duration, the caller's mode restored after (on
        an error too): what sampling, perplexity and probes need of a model mid-training."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def next_token_distributions(self, contexts: Sequence[Sequence[int]]) -> np.ndarray:
        """p̂(·|x) in float64 for each context, one forward pass each (so a probe's numbers do
        not depend on what else is probed)."""
        vocab, positions = self.shape.vocab_size, self.shape.max_positions
        out = np.empty((len(contexts), vocab))
        with self._evaluating():
            for row, ids in enumerate(contexts):
                out[row] = self._distribution([int(i) for i in ids], vocab, positions)
        return out

    def _distribution(self, ids: list[int], vocab: int, positions: int) -> np.ndarray:
        """p̂(·|x) of one context (checked), float64."""
        if not ids:
            raise InvalidInput("the probe context is empty: give text such as ' there'")
        if max(ids) >= vocab or min(ids) < 0:
            raise InvalidInput(
                f"probe context ids {ids} are outside the model's vocabulary [0, {vocab})"
            )
        if len(ids) > positions:
            raise InvalidInput(
                f"probe context of {len(ids)} tokens exceeds the model's {positions} positions"
            )
        logits = self(torch.tensor([ids], device=self.device))[0, -1].double()
        return torch.softmax(logits, dim=-1).cpu().numpy()

    def sample(
        self,
        batch: int,
        length: int,
        *,
        eos_id: int,
        context: int,
        generator: torch.Generator,
        params: SamplingParams,
        stop_at_eos: bool,
    ) -> list[np.ndarray]:
        with self._evaluating():
            return self._sample(batch, length, eos_id, context, generator, params, stop_at_eos)

    def _sample(
        self,
        batch: int,
        length: int,
        eos_id: int,
        context: int,
        generator: torch.Generator,
        params: SamplingParams,
        stop_at_eos: bool,
    ) -> list[np.ndarray]:
        device, vocab = self.device, self.shape.vocab_size
        seq = torch.full((batch, length + 1), eos_id, dtype=torch.long, device=device)
        rows = torch.arange(batch, device=device)  # the sequences the model is running
        alive = torch.ones(batch, dtype=torch.bool, device=device)  # ... and which still count
        done_at = torch.full((batch,), length, dtype=torch.long)
        cache = self.new_cache(batch, min(context, length + 1))  # None: recompute every step
        buf = torch.empty(batch, vocab, dtype=torch.float32, device=device)
        probs_buf = torch.empty_like(buf)  # both reused every step: no per-step (B, V) allocation
        logits = self.next_token_logits(seq[:, :1], cache=cache, out=buf)
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
                logits = self.next_token_logits(tok[:, None], cache=cache, out=buf)
            else:  # Algorithm 1's queue: the last `context` tokens, positions 0..context-1
                window = seq[rows, max(0, t + 1 - context) : t + 1]
                logits = self.next_token_logits(window, out=buf)
        out = seq[:, 1:].cpu().numpy()
        return [out[i, : int(done_at[i])] for i in range(batch)]

    def perplexity(
        self,
        store: TokenStore,
        *,
        context: int,
        stride: int | None = None,
        max_stories: int | None = None,
        first_token: bool = True,
        batch_tokens: int = 16_384,
    ) -> PerplexityResult:
        """`first_token=False` leaves each story's first token unscored (it has no context but
        the start token)."""
        if context < 1:
            raise InvalidInput(f"evaluation context must be >= 1, got {context}")
        stride = stride or max(1, context // 2)
        if not 0 < stride <= context:
            raise InvalidInput(f"perplexity stride must be in [1, context], got {stride}")
        if context > self.shape.max_positions:
            raise InvalidInput(
                f"evaluation context {context} exceeds the model's {self.shape.max_positions} "
                "positions"
            )
        if store.vocab_size > self.shape.vocab_size:
            raise InvalidInput(
                f"{store.path} has vocabulary {store.vocab_size}, larger than the model's "
                f"{self.shape.vocab_size}"
            )
        n = store.num_stories if max_stories is None else min(max_stories, store.num_stories)
        if n == 0:
            raise InvalidInput(f"{store.path} has no stories to evaluate on")
        lens = np.diff(np.asarray(store.offsets[: n + 1]))
        jobs = []  # (story, start, end, first scored)
        for i in range(n):
            jobs += [(i, *w) for w in _windows(int(lens[i]), context, stride)]
        jobs.sort(key=lambda j: j[2] - j[1], reverse=True)  # a batch's first row is its widest
        total, count, k = 0.0, 0, 0
        with self._evaluating():
            while k < len(jobs):
                width = jobs[k][2] - jobs[k][1]
                batch = jobs[k : k + max(1, batch_tokens // max(width, 1))]
                x, m = self._window_batch(store, batch, width, first_token)
                logp = self.token_logprobs(x[:, :-1], x[:, 1:], m)
                total -= float(logp[m].double().sum())
                count += int(m.sum())
                k += len(batch)
        loss = total / count
        return PerplexityResult(loss, math.exp(loss), count, n)

    def score_tokens(
        self,
        tokens: np.ndarray,
        lens: np.ndarray,
        *,
        eos_id: int,
        context: int,
        top_k: int = 0,
        batch_tokens: int | None = None,
    ) -> TokenScores:
        """Every token scored once, in perplexity's windows (a story longer than `context` in
        windows advancing by context/2, perplexity's default stride); windows packed to a budget
        of at most 8,192 tokens and 256 MB of logits. Ties in the top-k are broken as torch.topk
        breaks them."""
        toks, lens = np.asarray(tokens, dtype=np.int64), np.asarray(lens, dtype=np.int64)
        V, eos = self.shape.vocab_size, eos_id
        if not 1 <= context <= self.shape.max_positions:
            raise InvalidInput(
                f"scoring context must be in [1, {self.shape.max_positions}], got {context}"
            )
        if toks.size and (toks.min() < 0 or toks.max() >= V):
            raise InvalidInput(f"token ids outside the model's vocabulary [0, {V})")
        k = min(top_k, V)
        logp = np.zeros(toks.size)
        ids, probs = np.zeros((toks.size, k), dtype=np.int64), np.zeros((toks.size, k))
        starts = np.cumsum(lens) - lens
        stride = max(1, context // 2)
        jobs = [(i, *w) for i in range(lens.size) for w in _windows(int(lens[i]), context, stride)]
        jobs.sort(key=lambda j: j[2] - j[1], reverse=True)
        budget = batch_tokens or max(context, min(8192, (1 << 26) // V))  # cache-sized
        done = 0
        with self._evaluating():
            while done < len(jobs):
                width = jobs[done][2] - jobs[done][1]
                batch = jobs[done : done + max(1, budget // max(width, 1))]
                done += len(batch)
                x = np.full((len(batch), width), eos, dtype=np.int64)
                rows, cols, where = [], [], []
                for r, (i, start, end, scored) in enumerate(batch):
                    seq = np.concatenate([[eos], toks[starts[i] : starts[i] + lens[i]]])
                    x[r, : end - start] = seq[start:end]
                    rows.append(np.full(end - scored, r))
                    cols.append(np.arange(scored, end) - start)
                    where.append(starts[i] + np.arange(scored, end))
                r_, c_, g = (torch.from_numpy(np.concatenate(a)) for a in (rows, cols, where))
                dev = self.device
                logits = self(torch.from_numpy(x).to(dev))[r_.to(dev), c_.to(dev)].float()
                lp = torch.log_softmax(logits, dim=-1)
                gi = g.numpy()
                target = torch.from_numpy(toks[gi]).to(dev)[:, None]
                logp[gi] = lp.gather(1, target)[:, 0].double().cpu().numpy()
                if k:
                    top = torch.topk(lp, k, dim=-1)
                    ids[gi] = top.indices.cpu().numpy()
                    probs[gi] = top.values.double().exp().cpu().numpy()
        return TokenScores(logp, ids, probs)

    def _window_batch(
        self, store: TokenStore, batch: list[tuple[int, int, int, int]], width: int, first: bool
    ) -> tuple[Tensor, Tensor]:
        """Right-padded windows (input ids with their targets, B × width+1) and the mask of the
        targets they score."""
        eos = store.eos_id
        ids = np.full((len(batch), width + 1), eos, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=bool)
        for r, (i, start, end, scored_from) in enumerate(batch):
            seq = np.concatenate([[eos], store.story(i)])
            ids[r, : end - start + 1] = seq[start : end + 1]
            mask[r, max(scored_from, 0 if first else 1) - start : end - start] = True
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)


class TorchFamily(Family):
    """A family of gradient-trained torch models: fit is `lmcollapse.train.train`."""

    def fit(self, model: LanguageModel, job: FitJob) -> TrainResult:
        from lmcollapse.train import train

        cfg = job.cfg
        try:
            return train(
                model,  # type: ignore[arg-type]
                job.data,
                cfg.training,
                seed=job.seed,
                holdout=job.holdout,
                epochs=job.epochs,
                device=cfg.run.device,
                progress=job.progress,
                on_step=job.on_step,
            )
        except RunFailed as exc:
            raise RunFailed(f"generation {job.generation}: {exc}") from None
