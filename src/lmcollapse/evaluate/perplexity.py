"""Perplexity on held-out real stories, each story separately (Appendix C.3).

Story tokens s_1..s_m (s_m is end-of-text) are predicted from the end-of-text start token and the
story's earlier tokens: the token loss of s_t is -log p̂(s_t | EOS, s_1..s_{t-1}), the context
being at most the previous `context` tokens. The validation loss L is the mean token loss over all
stories' tokens and the perplexity is e^L. Stories of up to `context` tokens are scored exactly,
in one window each. A longer story is scored in windows of `context` tokens advancing by `stride`
(default context/2, evaluation.perplexity_stride): each token is scored once, in the first window
where it is not in the overlap, so every token after the first window sees between
context - stride + 1 and context earlier tokens — the usual Hugging Face sliding-window
evaluation, an approximation of the paper's per-token context only for stories longer than the
context (stride 1 makes it exact, at context times the cost).

Batched: windows are sorted by length and packed to a token budget, right-padded (causal
attention means real tokens never see the padding), and only real positions reach the output
projection.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lmcollapse.data.store import TokenStore
from lmcollapse.errors import InvalidInput


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


@torch.no_grad()
def perplexity(
    model: Any,
    store: TokenStore,
    *,
    context: int = 512,
    stride: int | None = None,
    max_stories: int | None = None,
    batch_tokens: int = 16_384,
    first_token: bool = True,
) -> dict[str, float]:
    """{"loss": mean token loss (nats), "perplexity": e^loss, "tokens", "stories"}.
    `first_token=False` leaves each story's first token unscored (it has no context but the
    start token)."""
    if context < 1:
        raise InvalidInput(f"evaluation context must be >= 1, got {context}")
    if getattr(model, "family", None) == "ngram":  # exact: n - 1 tokens of context suffice
        return model.perplexity(store, max_stories, first_token=first_token)
    stride = stride or max(1, context // 2)
    if not 0 < stride <= context:
        raise InvalidInput(f"perplexity stride must be in [1, context], got {stride}")
    positions = getattr(getattr(model, "shape", None), "max_positions", None)
    if positions is not None and context > positions:
        raise InvalidInput(
            f"evaluation context {context} exceeds the model's {positions} positions"
        )
    vocab = getattr(getattr(model, "shape", None), "vocab_size", None)
    if vocab is not None and store.vocab_size > vocab:
        raise InvalidInput(
            f"{store.path} has vocabulary {store.vocab_size}, larger than the model's {vocab}"
        )
    n = store.num_stories if max_stories is None else min(max_stories, store.num_stories)
    if n == 0:
        raise InvalidInput(f"{store.path} has no stories to evaluate on")
    eos = store.eos_id
    lens = np.diff(np.asarray(store.offsets[: n + 1]))
    jobs = []  # (story, start, end, first scored)
    for i in range(n):
        jobs += [(i, *w) for w in _windows(int(lens[i]), context, stride)]
    jobs.sort(
        key=lambda j: j[2] - j[1], reverse=True
    )  # longest first: a batch's first row is its widest
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    k = 0
    while k < len(jobs):
        width = jobs[k][2] - jobs[k][1]
        batch = jobs[k : k + max(1, batch_tokens // max(width, 1))]
        ids = np.full((len(batch), width + 1), eos, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=bool)
        for r, (i, start, end, first) in enumerate(batch):
            seq = np.concatenate([[eos], store.story(i)])
            ids[r, : end - start + 1] = seq[start : end + 1]
            mask[r, max(first, 0 if first_token else 1) - start : end - start] = True
        x = torch.from_numpy(ids).to(device)
        m = torch.from_numpy(mask).to(device)
        logp = model.token_logprobs(x[:, :-1], x[:, 1:], m)
        total -= float(logp[m].double().sum())
        count += int(m.sum())
        k += len(batch)
    model.train(was_training)
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count, "stories": n}
