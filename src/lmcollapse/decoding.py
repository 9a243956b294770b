"""Prompted generation by greedy search, beam search or ancestral sampling, for the torch models.

What: `decode` continues each prompt (token ids) with one of three strategies and returns the
continuations (the prompt excluded; one that ends by itself ends with its end-of-text token, one
cut at `max_new_tokens` has none):
- "greedy": the most likely token at every step;
- "beam": beam search with `num_beams` beams, the best finished hypothesis returned;
- "ancestral": a draw from the model's distribution at every step (temperature, top-k and top-p
  from `params`, the paper's pure sampling by default), by the engine's exact sampler.
Repetition penalty, `min_new_tokens`, `length_penalty` and `early_stopping` mean what they mean
in transformers' `model.generate` (5.x), and greedy and beam search give the same sequences as
`generate(do_sample=False, num_beams=..., ...)` (tests/test_decoding.py checks it): the repetition
penalty acts on every token of the prompt and of the continuation so far (on the logits in greedy
search and sampling, on the log-probabilities in beam search, as transformers does), and
end-of-text is masked until `min_new_tokens` tokens are out. Beam search with one beam is greedy
search, as in transformers.

Why: the collapse literature does not all sample the way the paper does (Algorithm 1: pure
sampling from an empty prompt). Shumailov et al. (2024, Nature) generate each generation's data
by 5-beam search with a repetition penalty, prompted by blocks of the training data; Drayson et al.
compare greedy, beam, top-k and top-p decoding. This module reproduces those set-ups with the
project's own models.

How:

    from lmcollapse.decoding import decode
    outs = decode(model, [np.array([50256, 464, 3290])], strategy="beam", num_beams=5,
                  repetition_penalty=3.0, max_new_tokens=64, eos_id=50256)

`model` is a `TorchLM` (`GPTNeo`, whose key/value cache beam search reorders with
`KVCache.select_rows`, or `HFCausalLM`, which recomputes the whole sequence each step). Prompts of
equal length are batched together (`batch_size` prompts at a time; the models take no attention
mask, so there is no padding) and the output keeps the input order. A prompt plus
`max_new_tokens` must fit the model's positions: there is no sliding window here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from lmcollapse.errors import InvalidInput
from lmcollapse.models.base import PAPER_SAMPLING, SamplingParams
from lmcollapse.models.torch_lm import TorchLM, draw, next_token_probs

Strategy = Literal["ancestral", "greedy", "beam"]
STRATEGIES: tuple[str, ...] = ("ancestral", "greedy", "beam")
_NEG = -1.0e9  # transformers' "impossible" beam score, kept so the arithmetic is the same


def decode(
    model: TorchLM,
    prompts: Sequence[np.ndarray],
    *,
    strategy: Strategy,
    max_new_tokens: int,
    eos_id: int,
    min_new_tokens: int = 0,
    num_beams: int = 1,
    repetition_penalty: float = 1.0,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    params: SamplingParams | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 32,
) -> list[np.ndarray]:
    """The continuation (int64 token ids, prompt excluded) of each prompt, in input order.

    `num_beams`, `length_penalty` and `early_stopping` (True, False or "never") are beam search's;
    `params` and `generator` are ancestral sampling's (default: pure sampling, and a generator
    seeded from torch's global generator, so `torch.manual_seed` makes a call reproducible), and
    greedy and beam search ignore them. `batch_size` counts prompts (a beam batch runs
    batch_size × num_beams rows). Raises InvalidInput for arguments that cannot work.
    """
    ids = _check(
        model,
        prompts,
        strategy,
        max_new_tokens,
        eos_id,
        min_new_tokens,
        num_beams,
        repetition_penalty,
        early_stopping,
        batch_size,
    )
    device = model.device
    if strategy == "ancestral":
        params = PAPER_SAMPLING if params is None else params
        params.check()
        generator = _generator(generator, device)
    out: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(ids)
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(ids):
        by_length.setdefault(p.size, []).append(i)
    with model._evaluating():
        for rows in by_length.values():
            for s in range(0, len(rows), batch_size):
                chunk = rows[s : s + batch_size]
                x = torch.from_numpy(np.stack([ids[i] for i in chunk])).to(device)
                if strategy == "beam" and num_beams > 1:
                    got = _beam_search(
                        model,
                        x,
                        num_beams=num_beams,
                        max_new=max_new_tokens,
                        eos_id=eos_id,
                        min_new=min_new_tokens,
                        penalty=repetition_penalty,
                        length_penalty=length_penalty,
                        early_stopping=early_stopping,
                    )
                else:
                    got = _extend(
                        model,
                        x,
                        _sampler(params, generator) if strategy == "ancestral" else _argmax,
                        max_new=max_new_tokens,
                        eos_id=eos_id,
                        min_new=min_new_tokens,
                        penalty=repetition_penalty,
                    )
                for i, seq in zip(chunk, got, strict=True):
                    out[i] = seq
    return out


# ----------------------------------------------------------------------------------------------
# Checks


def _check(
    model: TorchLM,
    prompts: Sequence[np.ndarray],
    strategy: str,
    max_new_tokens: int,
    eos_id: int,
    min_new_tokens: int,
    num_beams: int,
    repetition_penalty: float,
    early_stopping: bool | str,
    batch_size: int,
) -> list[np.ndarray]:
    """The prompts as 1-D int64 arrays, after every argument is checked (InvalidInput)."""
    if not isinstance(model, TorchLM):
        raise InvalidInput(
            f"decoding needs a torch language model (GPT-Neo or hf), got {type(model).__name__}"
        )
    vocab, positions = model.shape.vocab_size, model.shape.max_positions
    if strategy not in STRATEGIES:
        raise InvalidInput(
            f"decoding strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
        )
    if num_beams < 1:
        raise InvalidInput(f"num_beams must be >= 1, got {num_beams}")
    if num_beams > 1 and strategy != "beam":
        raise InvalidInput(f"num_beams={num_beams} needs strategy='beam', got {strategy!r}")
    if max_new_tokens < 1:
        raise InvalidInput(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if min_new_tokens < 0:
        raise InvalidInput(f"min_new_tokens must be >= 0, got {min_new_tokens}")
    if not repetition_penalty > 0:
        raise InvalidInput(f"repetition_penalty must be > 0 (1 = none), got {repetition_penalty}")
    if early_stopping not in (True, False, "never"):
        raise InvalidInput(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= eos_id < vocab:
        raise InvalidInput(f"eos_id {eos_id} is outside the model's vocabulary [0, {vocab})")
    ids = []
    for i, p in enumerate(prompts):
        a = np.asarray(p)
        if a.ndim != 1 or a.size == 0:
            raise InvalidInput(f"prompt {i} must be a non-empty 1-D array of token ids")
        if a.dtype.kind not in "iu":
            raise InvalidInput(f"prompt {i} has {a.dtype} values: token ids are integers")
        if a.min() < 0 or a.max() >= vocab:
            raise InvalidInput(f"prompt {i} has token ids outside the vocabulary [0, {vocab})")
        if a.size + max_new_tokens > positions:
            raise InvalidInput(
                f"prompt {i} of {a.size} tokens + max_new_tokens {max_new_tokens} exceeds the "
                f"model's {positions} positions"
            )
        ids.append(a.astype(np.int64))
    return ids


def _generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """The caller's generator (on the model's device), or one seeded from torch's global one."""
    if generator is None:
        seed = int(torch.randint(0, 2**62, (1,)))
        return torch.Generator(device=device).manual_seed(seed)
    if torch.device(generator.device).type != device.type:
        raise InvalidInput(
            f"the generator is on {generator.device} but the model on {device}: make it with "
            f"torch.Generator(device={str(device)!r})"
        )
    return generator


# ----------------------------------------------------------------------------------------------
# Logits processing (transformers' RepetitionPenalty- and MinNewTokensLengthLogitsProcessor)


def _process(
    scores: Tensor, seqs: Tensor, new: int, *, penalty: float, min_new: int, eos_id: int
) -> Tensor:
    """Scores (R, V) for the next token after seqs (R, t), `new` tokens of them generated: every
    token id in seqs has its score divided by `penalty` if positive, multiplied if negative (once,
    however often it occurs); end-of-text is impossible while new < min_new."""
    if penalty != 1.0:
        picked = scores.gather(1, seqs)
        picked = torch.where(picked < 0, picked * penalty, picked / penalty)
        scores = scores.scatter(1, seqs, picked)
    if new < min_new:
        scores = scores.clone() if penalty == 1.0 else scores
        scores[:, eos_id] = float("-inf")
    return scores


def _argmax(scores: Tensor) -> Tensor:
    """Greedy choice: the first of the highest scores (torch.argmax, as transformers)."""
    return torch.argmax(scores, dim=-1)


def _sampler(
    params: SamplingParams | None, generator: torch.Generator | None
) -> Callable[[Tensor], Tensor]:
    """Ancestral choice: one exact draw per row after temperature, top-k and top-p."""
    assert params is not None and generator is not None

    def choose(scores: Tensor) -> Tensor:
        return draw(next_token_probs(scores, params), generator)

    return choose


def _logits(model: TorchLM, ids: Tensor, cache: object) -> Tensor:
    """Float32 logits (R, V) of the token after ids (R, t), through the cache if there is one."""
    return model.next_token_logits(ids, cache=cache).float()


# ----------------------------------------------------------------------------------------------
# Greedy search and ancestral sampling (transformers' _sample)


def _extend(
    model: TorchLM,
    x: Tensor,
    choose: Callable[[Tensor], Tensor],
    *,
    max_new: int,
    eos_id: int,
    min_new: int,
    penalty: float,
) -> list[np.ndarray]:
    """Continue every row of x (B, T) one token at a time, `choose` picking each token from the
    processed scores (B', V) of the rows still running; a row stops after its end-of-text."""
    b, t0 = x.shape
    seq = torch.empty(b, t0 + max_new, dtype=torch.long, device=x.device)
    seq[:, :t0] = x
    rows = torch.arange(b, device=x.device)  # the rows of seq still running
    lengths = torch.full((b,), max_new, dtype=torch.long)
    cache = model.new_cache(b, t0 + max_new)  # None: recompute the whole sequence each step
    logits = _logits(model, x, cache)
    for step in range(max_new):
        cur = t0 + step
        scores = _process(
            logits, seq[rows, :cur], step, penalty=penalty, min_new=min_new, eos_id=eos_id
        )
        tok = choose(scores)
        seq[rows, cur] = tok
        ended = tok == eos_id
        if bool(ended.any()):
            lengths[rows[ended].cpu()] = step + 1
            keep = ~ended
            if not bool(keep.any()):
                break
            rows, tok = rows[keep], tok[keep]
            if cache is not None:
                cache.keep_rows(keep)
        if step + 1 == max_new:
            break
        if cache is not None:
            logits = _logits(model, tok[:, None], cache)
        else:
            logits = _logits(model, seq[rows, : cur + 1], None)
    out = seq[:, t0:].cpu().numpy()
    return [out[i, : int(lengths[i])] for i in range(b)]


# ----------------------------------------------------------------------------------------------
# Beam search (transformers' _beam_search, one end-of-text token, do_sample=False)


def _gather(t: Tensor, index: Tensor) -> Tensor:
    """t (B, K, ...) at beams index (B, K'): (B, K', ...)."""
    while index.dim() < t.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(t, index, dim=1)


def _beam_search(
    model: TorchLM,
    x: Tensor,
    *,
    num_beams: int,
    max_new: int,
    eos_id: int,
    min_new: int,
    penalty: float,
    length_penalty: float,
    early_stopping: bool | str,
) -> list[np.ndarray]:
    """The best hypothesis of a `num_beams` beam search from each row of x (B, T).

    transformers' algorithm step for step: the 2·num_beams best continuations of all beams by
    summed (processed) log-probabilities; those ending in end-of-text or at the length limit are
    finished (only the top num_beams of them are candidates, scored sum / length**length_penalty,
    where length counts generated tokens), the best num_beams unfinished ones run on. A prompt is
    done when every finished slot is filled and no running beam can beat the worst finished one
    (the best running score over the current length, or over max_new when early_stopping is
    "never" with length_penalty > 0) or, with early_stopping=True, as soon as every slot is filled.
    """
    b, t0 = x.shape
    nb, k, total, dev = num_beams, 2 * num_beams, t0 + max_new, x.device
    running = torch.full((b, nb, total), eos_id, dtype=torch.long, device=dev)
    running[:, :, :t0] = x[:, None]
    finished = running.clone()
    run_scores = torch.zeros((b, nb), dtype=torch.float32, device=dev)
    run_scores[:, 1:] = _NEG  # only the first beam's continuations at the first step
    fin_scores = torch.full((b, nb), _NEG, dtype=torch.float32, device=dev)
    fin_len = torch.zeros((b, nb), dtype=torch.long, device=dev)
    is_fin = torch.zeros((b, nb), dtype=torch.bool, device=dev)
    improvable = torch.ones((b, 1), dtype=torch.bool, device=dev)
    top_mask = torch.arange(k, device=dev) < nb
    offset = torch.arange(b, device=dev)[:, None] * nb  # beam (i, j) is flat row i·nb + j

    cache = model.new_cache(b, total)
    logits = _logits(model, x, cache)  # the prompt once per row, then copied to its beams
    expand = torch.arange(b, device=dev).repeat_interleave(nb)
    logits = logits[expand]
    if cache is not None:
        cache.select_rows(expand)
    for step in range(max_new):
        cur = t0 + step
        logp = torch.log_softmax(logits, dim=-1)
        logp = _process(
            logp,
            running.reshape(b * nb, total)[:, :cur],
            step,
            penalty=penalty,
            min_new=min_new,
            eos_id=eos_id,
        )
        vocab = logp.shape[-1]
        acc = (logp.view(b, nb, vocab) + run_scores[:, :, None]).view(b, nb * vocab)
        top_scores, top_idx = torch.topk(acc, k)
        parent, tok = top_idx // vocab, top_idx % vocab  # (b, k)
        cand = _gather(running, parent)
        cand[:, :, cur] = tok
        hits = (tok == eos_id) | (cur + 1 >= total)  # end-of-text or the length limit

        # the best num_beams unfinished continuations run on
        live_scores = top_scores + hits.to(torch.float32) * _NEG
        nxt = torch.topk(live_scores, k=nb)[1]
        running = _gather(cand, nxt)
        run_scores = _gather(live_scores, nxt)
        parents = _gather(parent, nxt)

        # finished hypotheses among the top num_beams join the finished set if they beat it
        just = hits & top_mask[None, :]
        f = top_scores / ((cur + 1 - t0) ** length_penalty)
        f += (torch.all(is_fin, dim=-1, keepdim=True) & (early_stopping is True)).to(
            torch.float32
        ) * _NEG
        f += (~improvable).to(torch.float32) * _NEG
        f += (~just) * _NEG
        m_scores = torch.cat((fin_scores, f), dim=1)
        best = torch.topk(m_scores, k=nb)[1]
        finished = _gather(torch.cat((finished, cand), dim=1), best)
        fin_scores = _gather(m_scores, best)
        fin_len = _gather(torch.cat((fin_len, torch.full_like(tok, step + 1)), dim=1), best)
        is_fin = _gather(torch.cat((is_fin, just), dim=1), best)

        # can a running beam still beat the worst finished one? (transformers' heuristic)
        never = early_stopping == "never" and length_penalty > 0.0
        best_len = max_new if never else step + 1
        best_running = run_scores[:, :1] / (best_len**length_penalty)
        worst = torch.where(is_fin, torch.min(fin_scores, dim=1, keepdim=True)[0], _NEG)
        improvable = improvable & torch.any(best_running > worst, dim=-1, keepdim=True)
        all_full = bool(torch.all(is_fin)) and early_stopping is True
        if not bool(improvable.any()) or all_full or bool(hits.all()):
            break
        if cache is not None:
            cache.select_rows((parents + offset).reshape(-1))
            logits = _logits(model, running[:, :, cur].reshape(-1, 1), cache)
        else:
            logits = _logits(model, running.reshape(b * nb, total)[:, : cur + 1], None)
    out, lengths = finished[:, 0, t0:].cpu().numpy(), fin_len[:, 0].cpu().numpy()
    return [out[i, : int(lengths[i])] for i in range(b)]
