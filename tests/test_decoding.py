"""lmcollapse.decoding against transformers' `generate`: greedy and beam search give the same
sequences, through our GPT-Neo engine (key/value cache, reordered by select_rows) and through a
wrapped transformers model (no cache, the whole sequence recomputed each step).

A tiny random GPT-Neo (2 layers × 32, vocabulary 100, 64 positions), initialised with a wider
spread than usual so that its next-token distributions are peaked (no near-ties for float
rounding to flip). The end-of-text token is one the model generates often, so hypotheses finish
during beam search and the finished-hypotheses bookkeeping decides the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lmcollapse.decoding import decode
from lmcollapse.errors import InvalidInput
from lmcollapse.models.base import SamplingParams
from lmcollapse.models.gpt_neo import GPTNeo
from lmcollapse.models.hf import HFCausalLM

VOCAB, POSITIONS, MAX_NEW = 100, 64, 20
LENGTHS = (3, 5, 5, 8, 3, 12)  # mixed: equal lengths are batched together, order is kept


class Tiny:
    """The reference transformers model, our engine loading its checkpoint, the wrapped model."""

    def __init__(self, path: Path) -> None:
        from transformers import GPTNeoConfig, GPTNeoForCausalLM

        torch.manual_seed(0)
        config = GPTNeoConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            max_position_embeddings=POSITIONS,
            attention_types=[[["global", "local"], 1]],
            window_size=8,
            intermediate_size=None,
            embed_dropout=0.0,
            attention_dropout=0.0,
            resid_dropout=0.0,
            initializer_range=0.2,
            bos_token_id=0,
            eos_token_id=0,
        )
        self.hf = GPTNeoForCausalLM(config).float().eval()
        self.hf.save_pretrained(str(path))
        self.neo = GPTNeo.from_pretrained(path)
        self.wrapped = HFCausalLM(self.hf)
        rng = np.random.default_rng(0)
        self.prompts = [rng.integers(1, VOCAB, size=n) for n in LENGTHS]
        # end-of-text: the 3rd most frequent token of greedy continuations of random prompts
        x = torch.from_numpy(rng.integers(0, VOCAB, size=(50, 6)))
        with torch.no_grad():
            g = self.hf.generate(
                x,
                attention_mask=torch.ones_like(x),
                do_sample=False,
                max_new_tokens=12,
                pad_token_id=0,
                eos_token_id=None,
            )
        counts = np.bincount(g[:, 6:].reshape(-1).numpy(), minlength=VOCAB)
        self.eos = int(np.argsort(counts, kind="stable")[-3])

    def reference(self, prompt: np.ndarray, **kwargs: Any) -> np.ndarray:
        """transformers' continuation of one prompt, up to and including end-of-text."""
        ids = torch.from_numpy(prompt)[None]
        with torch.no_grad():
            out = self.hf.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=MAX_NEW,
                pad_token_id=self.eos,
                eos_token_id=self.eos,
                **kwargs,
            )[0, ids.shape[1] :].numpy()
        end = np.flatnonzero(out == self.eos)
        return out[: end[0] + 1] if end.size else out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return Tiny(tmp_path_factory.mktemp("decoding") / "tiny-neo")


def _models(t: Tiny) -> list[Any]:
    return [t.neo, t.wrapped]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"repetition_penalty": 3.0},
        {"min_new_tokens": 8},
        {"repetition_penalty": 1.5, "min_new_tokens": 3},
    ],
)
def test_greedy_matches_transformers(tiny: Tiny, kwargs: dict[str, Any]) -> None:
    ref = [tiny.reference(p, num_beams=1, **kwargs) for p in tiny.prompts]
    for model in _models(tiny):
        got = decode(
            model,
            tiny.prompts,
            strategy="greedy",
            max_new_tokens=MAX_NEW,
            eos_id=tiny.eos,
            **kwargs,
        )
        assert _same(got, ref), type(model).__name__
        assert all(s.dtype == np.int64 for s in got)
    if kwargs.get("min_new_tokens"):
        assert all(tiny.eos not in s[: kwargs["min_new_tokens"]] for s in ref)


def test_min_new_tokens_masks_exactly_until_then(tiny: Tiny) -> None:
    """min_new_tokens = k where greedy would stop with its k-th token: that end-of-text is
    masked, as in transformers, and the continuation runs on."""
    free = decode(
        tiny.neo, tiny.prompts, strategy="greedy", max_new_tokens=MAX_NEW, eos_id=tiny.eos
    )
    i, k = min(((i, s.size) for i, s in enumerate(free) if s[-1] == tiny.eos), key=lambda t: t[1])
    assert k < MAX_NEW
    ref = tiny.reference(tiny.prompts[i], num_beams=1, min_new_tokens=k)
    assert ref.size > k
    for model in _models(tiny):
        got = decode(
            model,
            [tiny.prompts[i]],
            strategy="greedy",
            max_new_tokens=MAX_NEW,
            eos_id=tiny.eos,
            min_new_tokens=k,
        )
        assert np.array_equal(got[0], ref)


BEAM_CASES = [
    {"num_beams": 3},
    {"num_beams": 5},
    {"num_beams": 3, "repetition_penalty": 3.0},
    {"num_beams": 5, "repetition_penalty": 3.0},
    {"num_beams": 3, "length_penalty": -1.0},
    {"num_beams": 3, "length_penalty": 2.0, "early_stopping": True},
    {"num_beams": 5, "early_stopping": True, "repetition_penalty": 1.3},
    {"num_beams": 5, "min_new_tokens": 6, "early_stopping": "never"},
    {"num_beams": 3, "min_new_tokens": 4, "length_penalty": 0.0, "repetition_penalty": 2.0},
    # the last two differ only in how long a running beam may still improve (see below)
    {"num_beams": 2, "length_penalty": 2.0, "repetition_penalty": 3.0, "early_stopping": False},
    {"num_beams": 2, "length_penalty": 2.0, "repetition_penalty": 3.0, "early_stopping": "never"},
]


@pytest.fixture(scope="module")
def beam_results(tiny: Tiny) -> list[tuple[dict[str, Any], list[np.ndarray]]]:
    """Each beam case with transformers' continuations of every prompt."""
    return [(case, [tiny.reference(p, **case) for p in tiny.prompts]) for case in BEAM_CASES]


@pytest.mark.parametrize("which", ["neo", "wrapped"])
def test_beam_search_matches_transformers(
    tiny: Tiny, beam_results: list[tuple[dict[str, Any], list[np.ndarray]]], which: str
) -> None:
    model = getattr(tiny, which)
    assert (model.new_cache(1, 4) is None) == (which == "wrapped")  # both paths are exercised
    for case, ref in beam_results:
        got = decode(
            model, tiny.prompts, strategy="beam", max_new_tokens=MAX_NEW, eos_id=tiny.eos, **case
        )
        assert _same(got, ref), (which, case, got, ref)


def test_beam_search_exercises_finished_hypotheses(
    tiny: Tiny, beam_results: list[tuple[dict[str, Any], list[np.ndarray]]]
) -> None:
    """Hypotheses finish by end-of-text before the length limit (the finished set decides the
    result), others run to the limit; the options change results; beam search is not greedy."""
    outs = [s for _, ref in beam_results for s in ref]
    ended = [s[-1] == tiny.eos and tiny.eos not in s[:-1] for s in outs]
    cut = [s.size == MAX_NEW and tiny.eos not in s for s in outs]
    assert all(e or c for e, c in zip(ended, cut, strict=True))  # nothing after an end-of-text
    assert sum(e and s.size < MAX_NEW for e, s in zip(ended, outs, strict=True)) >= 10
    assert sum(cut) >= 5
    results = [ref for _, ref in beam_results]
    assert not _same(results[0], results[2])  # repetition penalty
    assert not _same(results[0], results[4])  # length penalty
    assert not _same(results[-2], results[-1])  # early_stopping="never" searches on
    greedy = decode(
        tiny.neo, tiny.prompts, strategy="greedy", max_new_tokens=MAX_NEW, eos_id=tiny.eos
    )
    assert not _same(greedy, results[0])


def test_one_beam_is_greedy_and_batching_keeps_order(tiny: Tiny) -> None:
    common = {"max_new_tokens": MAX_NEW, "eos_id": tiny.eos, "repetition_penalty": 2.0}
    greedy = decode(tiny.neo, tiny.prompts, strategy="greedy", **common)
    assert _same(decode(tiny.neo, tiny.prompts, strategy="beam", num_beams=1, **common), greedy)
    assert _same(decode(tiny.neo, tiny.prompts, strategy="greedy", batch_size=1, **common), greedy)
    beams = decode(tiny.neo, tiny.prompts, strategy="beam", num_beams=3, **common)
    one_by_one = [
        decode(tiny.neo, [p], strategy="beam", num_beams=3, **common)[0] for p in tiny.prompts
    ]
    assert _same(beams, one_by_one)
    assert decode(tiny.neo, [], strategy="greedy", **common) == []


def test_ancestral_is_reproducible_and_top1_is_greedy(tiny: Tiny) -> None:
    common = {"max_new_tokens": MAX_NEW, "eos_id": tiny.eos, "strategy": "ancestral"}

    def sample(model: Any, seed: int, **kwargs: Any) -> list[np.ndarray]:
        gen = torch.Generator().manual_seed(seed)
        return decode(model, tiny.prompts, generator=gen, **common, **kwargs)

    first = sample(tiny.neo, 1)
    assert _same(first, sample(tiny.neo, 1))
    assert _same(first, sample(tiny.wrapped, 1))  # cache and no cache: the same draws
    assert not _same(first, sample(tiny.neo, 2))
    assert all(s.size == MAX_NEW or (s.size and s[-1] == tiny.eos) for s in first)
    top1 = SamplingParams(top_k=1)
    for extra in ({}, {"repetition_penalty": 3.0, "min_new_tokens": 5}):
        greedy = decode(
            tiny.neo,
            tiny.prompts,
            strategy="greedy",
            max_new_tokens=MAX_NEW,
            eos_id=tiny.eos,
            **extra,
        )
        assert _same(sample(tiny.neo, 3, params=top1, **extra), greedy)
    torch.manual_seed(5)
    a = decode(tiny.neo, tiny.prompts, **common)  # no generator: seeded from torch's
    torch.manual_seed(5)
    assert _same(a, decode(tiny.neo, tiny.prompts, **common))


def test_mode_restored_without_gradients(tiny: Tiny) -> None:
    tiny.neo.train()
    try:
        decode(
            tiny.neo,
            tiny.prompts[:2],
            strategy="beam",
            num_beams=2,
            max_new_tokens=3,
            eos_id=tiny.eos,
        )
        assert tiny.neo.training
    finally:
        tiny.neo.eval()
    assert all(p.grad is None for p in tiny.neo.parameters())


def test_select_rows_reorders_and_duplicates_the_cache(tiny: Tiny) -> None:
    neo = tiny.neo
    x = torch.from_numpy(np.stack([tiny.prompts[1], tiny.prompts[2]]))  # two of length 5
    with torch.no_grad():
        cache = neo.new_cache(2, 8)
        neo.next_token_logits(x, cache=cache)
        cache.select_rows(torch.tensor([1, 1, 0]))
        assert cache.length == 5 and cache.layers[0].k.shape[0] == 3
        nxt = torch.tensor([[7], [9], [11]])
        got = neo.next_token_logits(nxt, cache=cache)
        want = neo.next_token_logits(torch.cat([x[[1, 1, 0]], nxt], dim=1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("prompts", "kwargs", "match"),
    [
        (None, {"num_beams": 0, "strategy": "beam"}, "num_beams"),
        (None, {"num_beams": 3, "strategy": "greedy"}, "num_beams"),
        (None, {"max_new_tokens": 0}, "max_new_tokens"),
        (None, {"min_new_tokens": -1}, "min_new_tokens"),
        (None, {"repetition_penalty": 0.0}, "repetition_penalty"),
        (None, {"repetition_penalty": -1.0}, "repetition_penalty"),
        (None, {"strategy": "topk"}, "strategy"),
        (None, {"early_stopping": "sometimes", "strategy": "beam", "num_beams": 2}, "early"),
        (None, {"batch_size": 0}, "batch_size"),
        (None, {"eos_id": VOCAB}, "eos_id"),
        (None, {"strategy": "ancestral", "params": SamplingParams(temperature=0.0)}, "temper"),
        ([np.array([], dtype=np.int64)], {}, "non-empty"),
        ([np.array([[1, 2]])], {}, "1-D"),
        ([np.array([1, VOCAB])], {}, "vocabulary"),
        ([np.array([-1, 2])], {}, "vocabulary"),
        ([np.array([1.0, 2.0])], {}, "integers"),
        ([np.arange(1, 60)], {"max_new_tokens": 6}, "positions"),
    ],
)
def test_bad_arguments(
    tiny: Tiny, prompts: list[np.ndarray] | None, kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"strategy": "greedy", "max_new_tokens": 4, "eos_id": tiny.eos}
    args.update(kwargs)
    for model in _models(tiny):
        with pytest.raises(InvalidInput, match=match) as err:
            decode(model, tiny.prompts[:2] if prompts is None else prompts, **args)
        assert "\n" not in str(err.value)


def test_needs_a_torch_model() -> None:
    with pytest.raises(InvalidInput, match="torch language model"):
        decode(object(), [np.array([1])], strategy="greedy", max_new_tokens=1, eos_id=0)  # type: ignore[arg-type]
