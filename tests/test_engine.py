"""The model engine against references: transformers' logits, cross-entropy, Algorithm 1, exact
sampling, closed-form perplexity and Remark B.1 by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmcollapse.config import ModelConfig, TrainingConfig
from lmcollapse.data.packing import TrainingSet
from lmcollapse.data.stats import count_continuations
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.errors import InvalidInput
from lmcollapse.models import GPTNeo, build_model, load_model, model_config
from lmcollapse.models.gpt_neo import hf_config
from lmcollapse.models.torch_lm import TorchLM, draw, next_token_probs
from lmcollapse.results import PerplexityResult
from lmcollapse.sample import (
    SamplingParams,
    generate_corpus,
    sample_batch,
    stories_of,
)
from lmcollapse.train import param_groups, train


def small(vocab: int = 97, window: int = 5, positions: int = 64, layers: int = 4) -> GPTNeo:
    torch.manual_seed(0)
    return GPTNeo(
        hf_config(
            vocab_size=vocab,
            hidden_size=32,
            num_layers=layers,
            num_heads=4,
            max_positions=positions,
            window_size=window,
        )
    )


def hf_twin(model: GPTNeo):
    from transformers import GPTNeoForCausalLM

    hf = GPTNeoForCausalLM(model.config).eval()
    missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.endswith("attn.attention.bias") for k in missing)
    return hf


def write_store(path: Path, stories: list[list[int]], vocab: int) -> TokenStore:
    with TokenStoreWriter(path, vocab_size=vocab, eos_id=0) as w:
        for s in stories:
            w.add(np.asarray(s, dtype=np.int64))
    return TokenStore.open(path)


def test_logits_equal_transformers_also_past_the_local_window() -> None:
    model = small().eval()
    x = torch.randint(0, 97, (3, 50))  # 50 > window 5: the local layers' band matters
    with torch.no_grad():
        ours, theirs = model(x), hf_twin(model)(x).logits
    assert (ours - theirs).abs().max() < 1e-4
    with torch.no_grad():  # the band changes the logits: a wrong window would be caught
        wider = GPTNeo(
            hf_config(
                vocab_size=97,
                hidden_size=32,
                num_layers=4,
                num_heads=4,
                max_positions=64,
                window_size=50,
            )
        )
        wider.load_state_dict(model.state_dict())
        assert (wider(x) - ours).abs().max() > 1e-3


def test_kv_cache_gives_the_same_logits_as_a_full_pass() -> None:
    model = small().eval()
    x = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(2, 40)
        steps = [model(x[:, :17], cache=cache)] + [
            model(x[:, t : t + 1], cache=cache) for t in range(17, 40)
        ]
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-5


def test_fused_loss_and_gradients_equal_cross_entropy() -> None:
    model = small()
    x = torch.randint(0, 97, (2, 30))
    y = torch.randint(0, 97, (2, 30))
    y[0, :5] = -100  # ignored targets
    loss = model(x, y)
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref = F.cross_entropy(model(x).reshape(-1, 97), y.reshape(-1), ignore_index=-100)
    ref.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    for n, p in model.named_parameters():
        assert (ours[n] - p.grad).abs().max() < 1e-6, n


def test_a_target_whose_probability_underflows_keeps_its_exact_loss() -> None:
    from lmcollapse.models.gpt_neo import FusedLinearCrossEntropy

    h = torch.tensor([[200.0, 0.0], [1.0, 0.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # logits (200, 0, -200) and (1, 0, -1)
    y = torch.tensor([2, 0])
    loss = FusedLinearCrossEntropy.apply(h, w, y, -100, False)
    assert float(loss) == pytest.approx(float(F.cross_entropy(h @ w.T, y)), rel=1e-6)
    assert float(loss) > 199  # -log p = 400 for the first row: not inf


def test_hugging_face_round_trip(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = small().eval()
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    x = torch.randint(0, 97, (2, 20))
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m")).eval()
    with torch.no_grad():
        assert (hf(x).logits - model(x)).abs().max() < 1e-4
        hf.save_pretrained(str(tmp_path / "from_hf"))  # and back: any HF GPT-Neo checkpoint loads
        again = load_model(tmp_path / "from_hf")
        assert isinstance(again, GPTNeo)
        assert (again(x) - model(x)).abs().max() < 1e-5


def test_sampling_draws_tiny_probabilities_at_their_rate() -> None:
    v = 2000
    logits = torch.zeros(1, v)
    logits[0, 1234] = float(np.log(1e-3 * (v - 2) / (1 - 1e-3)))  # p = 1e-3 after softmax...
    logits[0, 7] = float("-inf")  # ... and one impossible token
    p = torch.softmax(logits, -1)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(v)
    for _ in range(20):
        batch = next_token_probs(logits.expand(10_000, -1).clone(), SamplingParams())
        counts += torch.bincount(draw(batch, g), minlength=v)
    expected = 200_000 * float(p[0, 1234])
    assert abs(float(counts[1234]) - expected) < 5 * expected**0.5  # 200 ± 71
    assert counts[7] == 0
    assert (counts > 0).sum() > 0.99 * (v - 1)  # no truncation: every possible token shows up
    top1 = next_token_probs(logits.clone(), SamplingParams(top_k=1))  # 1234 has the largest logit
    assert torch.nonzero(top1[0]).flatten().tolist() == [1234]
    nucleus = next_token_probs(torch.tensor([[3.0, 2.0, 1.0, -5.0]]), SamplingParams(top_p=0.5))
    assert nucleus[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(InvalidInput, match="temperature must be > 0"):
        SamplingParams(temperature=0).check()


def test_sliding_window_is_algorithm_1() -> None:
    model = small(positions=16).eval()
    context, length = 8, 30  # the window slides after 8 tokens
    out = sample_batch(
        model, 3, length, eos_id=0, context=context, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(
        5
    )  # Algorithm 1, literally: the last `context` tokens, no cache
    seq = torch.zeros(3, length + 1, dtype=torch.long)
    with torch.no_grad():
        for t in range(1, length + 1):
            window = seq[:, max(0, t - context) : t]
            seq[:, t] = draw(next_token_probs(model(window)[:, -1].clone(), SamplingParams()), g)
    assert np.array_equal(np.stack(out), seq[:, 1:].numpy())


def test_story_mode_and_stream_splitting() -> None:
    one = stories_of([np.array([5, 6, 0, 7, 0, 8])], 0)  # the last story, cut, gets a separator
    assert one[0].tolist() == [5, 6, 0, 7, 0, 8, 0] and one[1].tolist() == [3, 2, 2]
    assert stories_of([np.array([5, 0])], 0)[1].tolist() == [2]
    flat, lens, finished = stories_of(
        [np.array([5, 6, 0, 7, 0, 8]), np.array([9, 0]), np.array([4, 4])], 0
    )
    assert flat.tolist() == [5, 6, 0, 7, 0, 8, 0, 9, 0, 4, 4, 0]
    assert lens.tolist() == [3, 2, 2, 2, 3] and finished.tolist() == [1, 1, 0, 1, 0]
    model = small().eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform over 97 tokens: EOS comes now and then
    rows = sample_batch(
        model,
        20,
        60,
        eos_id=0,
        context=32,
        generator=torch.Generator().manual_seed(0),
        stop_at_eos=True,
    )
    for r in rows:
        assert len(r) == 60 or (r[-1] == 0 and (r[:-1] != 0).all())
    assert sum(len(r) < 60 for r in rows) >= 8  # P(no EOS in 60 draws) = (96/97)^60 ≈ 0.54


def test_uniform_model_perplexity_is_the_vocabulary_size(tmp_path: Path) -> None:
    model = small(vocab=50, positions=64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    rng = np.random.default_rng(0)
    stories = [
        [*rng.integers(1, 50, int(n)).tolist(), 0] for n in rng.integers(3, 150, 30)
    ]  # some > context
    store = write_store(tmp_path / "h", stories, 50)
    result = model.perplexity(store, context=32, stride=8)
    assert result.perplexity == pytest.approx(50.0, rel=1e-5)
    assert result.tokens == sum(len(s) for s in stories)  # every token scored exactly once


def test_perplexity_matches_a_per_story_loop(tmp_path: Path) -> None:
    model = small(vocab=60, positions=64).eval()
    rng = np.random.default_rng(1)
    stories = [[*rng.integers(1, 60, int(n)).tolist(), 0] for n in rng.integers(2, 40, 25)]
    store = write_store(tmp_path / "h", stories, 60)
    total, count = 0.0, 0
    with torch.no_grad():
        for s in stories:
            ids = torch.tensor([[0, *s]])
            logp = torch.log_softmax(model(ids[:, :-1]), -1)[0]
            total -= float(logp.gather(1, ids[0, 1:, None]).sum())
            count += len(s)
    assert model.perplexity(store, context=64, batch_tokens=100).loss == pytest.approx(
        total / count, rel=1e-5
    )


def test_probe_and_alpha_match_hand_computation(tmp_path: Path) -> None:
    from lmcollapse.evaluate.probes import probe

    class ToyTok:  # " there"=3, " was"=4, " were"=5
        vocab_size = 10

        def encode(self, text: str) -> list[int]:
            return {" there": [3], " was": [4], " were": [5], " wasn't": [4, 9]}[text]

        def token_strings(self, ids: list[int]) -> list[str]:
            return [str(i) for i in ids]

    model = small(vocab=10)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # p̂ = 1/10 for every token
    store = write_store(tmp_path / "d0", [[3, 4, 0], [3, 4, 0], [3, 5, 1, 0], [3, 4, 3, 4, 0]], 10)
    truth = count_continuations(store.iter_chunks(), [3], 10)  # N = (was 4, were 1): N_x = 5
    out = probe(model, ToyTok(), " there", [" was", " were"], truth)
    assert out.N_x == 5 and out.next[" was"].truth == pytest.approx(0.8)
    assert out.next[" was"].p_hat == pytest.approx(0.1)
    # Remark B.1 by hand: α* = max_i (N_i - p̂ N)/p̂ = (4 - 0.5)/0.1 = 35; α_i = p̂(α* + N) - N_i
    assert out.alpha_x == pytest.approx(35.0)
    assert out.next[" was"].alpha == pytest.approx(0.0, abs=1e-9)
    assert out.next[" were"].alpha == pytest.approx(0.1 * 40 - 1)
    with pytest.raises(InvalidInput, match=r"not one token .* tokenizes as \['4', '9'\]"):
        probe(model, ToyTok(), " there", [" wasn't"], truth)


TINY_SHAPE = ModelConfig(
    num_layers=2, hidden_size=16, num_heads=2, max_position_embeddings=64, window_size=16
)


def early_stopping(max_epochs: int) -> TrainingConfig:
    """Early stopping on the held-out loss with patience 1, tiny batches."""
    return TrainingConfig(
        learning_rate=3e-3,
        batch_size=8,
        micro_batch_size=8,
        context_length=32,
        early_stopping=True,
        max_epochs=max_epochs,
        patience=1,
    )


def _easy_stories(n: int, seed: int = 0) -> list[list[int]]:
    """Short stories from a tiny grammar: 1-4 tokens counting up from a start token, then EOS."""
    rng = np.random.default_rng(seed)
    return [
        [*range(int(s), int(s) + int(k)), 0]
        for s, k in zip(rng.integers(1, 6, n), rng.integers(1, 5, n), strict=True)
    ]


def test_training_learns_to_end_stories_and_is_deterministic(tmp_path: Path) -> None:
    store = write_store(tmp_path / "d0", _easy_stories(400), 12)
    cfg = TrainingConfig(
        learning_rate=3e-3, batch_size=16, micro_batch_size=8, context_length=32, epochs=4
    )
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(
            ModelConfig(
                num_layers=2,
                hidden_size=32,
                num_heads=4,
                max_position_embeddings=64,
                window_size=16,
            ),
            12,
            0,
        )
        result = train(model, TrainingSet.whole(store), cfg, seed=0, progress=False)
        weights.append(model.state_dict())
    assert all(
        torch.equal(weights[0][k], weights[1][k]) for k in weights[0]
    )  # same seed, same weights
    assert result.losses[-1] < result.losses[0] and result.epochs == 4
    model.eval()
    rows = sample_batch(
        model,
        200,
        20,
        eos_id=0,
        context=32,
        generator=torch.Generator().manual_seed(0),
        stop_at_eos=True,
    )
    ended = [len(r) < 20 and r[-1] == 0 for r in rows]
    assert np.mean(ended) > 0.95  # the end-of-text token was a trained target


def test_early_stopping_keeps_the_best_epoch(tmp_path: Path) -> None:
    store = write_store(tmp_path / "d0", _easy_stories(300), 12)
    held = write_store(tmp_path / "h", _easy_stories(40, seed=1), 12)
    cfg = early_stopping(max_epochs=6)
    torch.manual_seed(0)
    model = build_model(TINY_SHAPE, 12, 0)
    result = train(model, TrainingSet.whole(store), cfg, seed=0, holdout=held, progress=False)
    assert result.best_epoch == int(np.argmin(result.holdout_losses)) + 1
    assert model.perplexity(held, context=32).loss == pytest.approx(
        min(result.holdout_losses), rel=1e-6
    )


def test_weight_decay_spares_biases_and_layer_norms() -> None:
    model = small()
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(
        not names[id(p)].endswith("bias") and "ln_" not in names[id(p)] for p in decay["params"]
    )
    assert {names[id(p)] for p in no_decay["params"]} >= {
        "transformer.ln_f.weight",
        "transformer.h.0.mlp.c_fc.bias",
    }
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_generated_corpus_is_seeded_and_stored_as_stories(tmp_path: Path) -> None:
    model = small(vocab=40, positions=32).eval()
    kw = {
        "num_sequences": 10,
        "length": 50,
        "batch_size": 4,
        "context": 16,
        "eos_id": 0,
        "vocab_size": 40,
        "progress": False,
    }
    a = generate_corpus(model, tmp_path / "a", seed=1, **kw)
    generate_corpus(model, tmp_path / "b", seed=1, **kw)
    generate_corpus(model, tmp_path / "c", seed=2, **kw)
    sa, sb, sc = (TokenStore.open(tmp_path / n) for n in "abc")
    assert sa.checksum() == sb.checksum() != sc.checksum()
    assert a.sequences == 10 and a.tokens == 500 and sa.num_stories == a.stories
    assert all(
        sa.story(i)[-1] == 0 and (sa.story(i)[:-1] != 0).all() for i in range(sa.num_stories)
    )
    # stream mode: stored = generated tokens + one separator per unfinished story, each marked
    assert sa.num_tokens == a.tokens + a.unfinished and sa.unfinished.size == a.unfinished > 0
    ends = np.cumsum(sa.lengths())  # a sequence is 50 generated tokens: its cut story ends it
    cut = set(sa.unfinished.tolist())
    total = 0
    for i, end in enumerate(ends):  # walk the sequences: 50 tokens, or 51 with a separator
        seq_len = end - total
        if seq_len >= 50:
            assert (seq_len == 51) == (i in cut) and seq_len in (50, 51)
            total = end
        else:
            assert i not in cut


def test_bad_engine_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not fit the tokenizer's 100 ids"):
        build_model(ModelConfig(vocab_size=50, num_layers=2, num_heads=4), 100, 0)
    model = small(positions=32)
    with pytest.raises(InvalidInput, match="exceeds the model's 32 positions"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(InvalidInput, match="sampling context 64 exceeds the model's 32 positions"):
        sample_batch(model, 1, 5, eos_id=0, context=64, generator=torch.Generator())
    with pytest.raises(InvalidInput, match="sampling length must be >= 1"):
        sample_batch(model, 1, 0, eos_id=0, context=16, generator=torch.Generator())
    store = write_store(tmp_path / "s", _easy_stories(50), 12)
    with pytest.raises(InvalidInput, match="context 64 exceeds the model's 32 positions"):
        model.perplexity(store, context=64)
    with pytest.raises(InvalidInput, match="does not fit the model's"):
        train(
            small(vocab=10),
            TrainingSet.whole(store),
            TrainingConfig(batch_size=8, micro_batch_size=8, context_length=16),
            seed=0,
            progress=False,
        )
    with pytest.raises(InvalidInput, match="context_length=64 exceeds the model's 32 positions"):
        train(
            model,
            TrainingSet.whole(store),
            TrainingConfig(batch_size=8, micro_batch_size=8, context_length=64),
            seed=0,
            progress=False,
        )


def test_presets_are_the_papers_models() -> None:
    m1 = build_model(model_config("paper-1m"), 50257, 50256)
    assert (
        m1.shape.num_layers,
        m1.shape.hidden_size,
        m1.shape.num_heads,
        m1.shape.window_size,
    ) == (8, 64, 16, 256)
    assert m1.shape.attention_layers == ("global", "local") * 4 and m1.config.eos_token_id == 50256
    n_params = sum(p.numel() for p in {id(p): p for p in m1.parameters()}.values())
    assert 3.6e6 < n_params < 3.8e6  # TinyStories-1M: 3.7M with its 50k embedding
    assert model_config("paper-33m").hidden_size == 768


def test_experiment_presets_use_the_named_model_sizes() -> None:
    from lmcollapse.config import ExperimentConfig, resolve

    for preset, size in [
        ("demo", "tiny"),
        ("paper-1m", "paper-1m"),
        ("paper-33m", "paper-33m"),
        ("demo-accumulate-subsample", "tiny"),
        ("paper-1m-accumulate-subsample", "paper-1m"),
        ("paper-33m-accumulate-subsample", "paper-33m"),
    ]:
        assert resolve(ExperimentConfig, preset=preset).model == model_config(size), preset


def test_a_story_target_stops_at_the_first_batch_that_reaches_it(tmp_path: Path) -> None:
    model = small(vocab=40, positions=32).eval()
    kw = {
        "length": 30,
        "batch_size": 4,
        "context": 16,
        "eos_id": 0,
        "vocab_size": 40,
        "seed": 3,
        "progress": False,
    }
    r = generate_corpus(model, tmp_path / "s", min_stories=13, **kw)
    store = TokenStore.open(tmp_path / "s")
    counts = store.meta["provenance"]["batch_counts"]
    stories = [counts[str(b)][1] for b in range(len(counts))]
    assert store.num_stories == r.stories == sum(stories) >= 13
    assert sum(stories[:-1]) < 13  # the batch before the last did not reach it
    full = generate_corpus(model, tmp_path / "f", num_sequences=4 * len(counts), **kw)
    assert (
        full.stories == r.stories and TokenStore.open(tmp_path / "f").checksum() == store.checksum()
    )
    with pytest.raises(InvalidInput, match="exactly one of num_sequences, min_stories and"):
        generate_corpus(model, tmp_path / "x", **kw)


def test_a_token_target_cuts_after_the_story_that_reaches_it(tmp_path: Path) -> None:
    """S_n of k·|D0| tokens (paradigm.unit tokens): whole batches until the target, the last one
    trimmed after the story that reaches it; the kept stories are the full corpus's first ones."""
    model = small(vocab=40, positions=32).eval()
    kw = {"length": 30, "batch_size": 4, "context": 16, "eos_id": 0, "vocab_size": 40, "seed": 3}
    r = generate_corpus(model, tmp_path / "t", min_tokens=200, progress=False, **kw)
    store = TokenStore.open(tmp_path / "t")
    lens = store.lengths()
    assert store.num_tokens >= 200 > store.num_tokens - lens[-1]  # overshoot < one story
    batches = store.meta["provenance"]["batch_counts"]
    full = generate_corpus(
        model, tmp_path / "f", num_sequences=4 * len(batches), **kw, progress=False
    )
    whole = TokenStore.open(tmp_path / "f")
    assert full.stories > r.stories
    np.testing.assert_array_equal(whole.tokens[: store.num_tokens], store.tokens)
    np.testing.assert_array_equal(whole.unfinished[whole.unfinished < r.stories], store.unfinished)
    assert r.stories == store.num_stories and r.tokens + r.unfinished == store.num_tokens


def test_fused_loss_over_many_chunks_without_grad_and_under_autocast(monkeypatch) -> None:
    import lmcollapse.models.gpt_neo as gn

    monkeypatch.setattr(gn, "CE_CHUNK_TOKENS", 7)  # 60 tokens: 9 chunks, the last partial
    model = small()
    x, y = torch.randint(0, 97, (3, 20)), torch.randint(0, 97, (3, 20))
    y[1, 3:9] = -100  # ignored targets across a chunk boundary
    loss = model(x, y)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref = F.cross_entropy(model(x).reshape(-1, 97), y.reshape(-1), ignore_index=-100)
    ref.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert all((grads[n] - p.grad).abs().max() < 1e-6 for n, p in model.named_parameters())
    with torch.no_grad():
        assert float(model(x, y)) == pytest.approx(float(ref.detach()), rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x, y)
    assert float(low.detach()) == pytest.approx(float(ref.detach()), rel=3e-2)
    with pytest.raises(InvalidInput, match=r"target ids must be in \[0, 97\) or -100"):
        model(x, torch.full((3, 20), -5))


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path: Path, monkeypatch) -> None:
    store = write_store(tmp_path / "d0", _easy_stories(200), 12)
    losses = iter([3.0, 2.0, 2.5, 2.6, 2.7])
    snapshots = []

    def fake_perplexity(model, *_, **__):  # the held-out loss of each epoch, chosen here
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return PerplexityResult(next(losses), 0.0, 0, 0)

    monkeypatch.setattr(TorchLM, "perplexity", fake_perplexity)
    cfg = early_stopping(max_epochs=5)
    torch.manual_seed(0)
    model = build_model(TINY_SHAPE, 12, 0)
    result = train(model, TrainingSet.whole(store), cfg, seed=0, holdout=store, progress=False)
    assert (
        result.epochs == 3 and result.best_epoch == 2 and result.holdout_losses == [3.0, 2.0, 2.5]
    )
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)  # epoch 2's weights
    assert not all(torch.equal(final[k], snapshots[2][k]) for k in final)


def test_accumulated_micro_batches_equal_one_batch(tmp_path: Path) -> None:
    store = write_store(tmp_path / "d0", _easy_stories(300), 12)
    states = []
    for micro in (16, 8, 4):
        torch.manual_seed(0)
        model = build_model(TINY_SHAPE, 12, 0)
        cfg = TrainingConfig(
            batch_size=16,
            micro_batch_size=micro,
            context_length=32,
            epochs=1,
            grad_clip=None,
            learning_rate=1e-2,
        )
        train(model, TrainingSet.whole(store), cfg, seed=0, progress=False)
        states.append(model.state_dict())
    for other in states[1:]:
        assert all((states[0][k] - other[k]).abs().max() < 1e-5 for k in other)


def test_learning_rate_schedules() -> None:
    from lmcollapse.train import lr_lambda

    const, cos, lin = (lr_lambda(s, 2, 10) for s in ("constant", "cosine", "linear"))
    assert [const(s) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]  # linear warmup over 2 steps
    assert lin(2) == 1.0 and lin(6) == pytest.approx(0.5) and lin(10) == 0.0
    assert (
        cos(2) == pytest.approx(1.0)
        and cos(6) == pytest.approx(0.5)
        and cos(10) == pytest.approx(0.0)
    )


def test_untied_checkpoints_load_with_their_own_output_layer(tmp_path: Path) -> None:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    cfg = GPTNeoConfig(
        vocab_size=50,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        max_position_embeddings=32,
        window_size=8,
        attention_types=[[["global", "local"], 1]],
        tie_word_embeddings=False,
    )
    torch.manual_seed(1)
    hf = GPTNeoForCausalLM(cfg).eval()
    hf.save_pretrained(str(tmp_path / "u"))
    ours = load_model(tmp_path / "u").eval()
    assert ours.lm_head.weight is not ours.transformer.wte.weight
    x = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        assert (ours(x) - hf(x).logits).abs().max() < 1e-5
    ours.save_pretrained(tmp_path / "again")
    assert (load_model(tmp_path / "again")(x) - ours(x)).abs().max() < 1e-6


def test_any_hugging_face_causal_lm_through_the_fallback(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    ).save_pretrained(str(tmp_path / "cfg"))
    store = write_store(tmp_path / "d0", _easy_stories(200), 12)
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="hf", hf_config=str(tmp_path / "cfg")), 12, 0)
    assert model.shape.vocab_size == 12 and model.new_cache(2, 8) is None
    cfg = TrainingConfig(
        learning_rate=3e-3, batch_size=8, micro_batch_size=8, context_length=32, epochs=1
    )
    result = train(model, TrainingSet.whole(store), cfg, seed=0, progress=False)
    assert result.losses[0] < np.log(12)
    assert model.perplexity(store, context=32, max_stories=20).perplexity < 12
    rows = sample_batch(
        model.eval(), 3, 10, eos_id=0, context=16, generator=torch.Generator().manual_seed(0)
    )
    assert [len(r) for r in rows] == [10, 10, 10]
    model.save_pretrained(tmp_path / "saved")
    again = load_model(tmp_path / "saved")
    x = torch.randint(0, 12, (1, 9))
    with torch.no_grad():
        assert (again(x) - model(x)).abs().max() < 1e-5


def test_bad_sampling_input(tmp_path: Path) -> None:
    model = small(vocab=40, positions=32).eval()
    g = torch.Generator()
    for kwargs, message in [
        ({"context": 0}, "context must be >= 1"),
        ({"eos_id": 40}, "end-of-text id 40 is outside"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            sample_batch(model, 2, 5, **{"eos_id": 0, "context": 16, "generator": g, **kwargs})
    with pytest.raises(InvalidInput, match="batch must be >= 1"):
        sample_batch(model, 0, 5, eos_id=0, context=16, generator=g)
    with pytest.raises(
        InvalidInput, match="the model can emit 40 ids but the corpus vocabulary is 30"
    ):
        generate_corpus(
            model,
            tmp_path / "s",
            num_sequences=2,
            length=4,
            batch_size=2,
            context=16,
            eos_id=0,
            vocab_size=30,
            seed=0,
            progress=False,
        )
    with pytest.raises(InvalidInput, match=r"hidden_size: 30 is not divisible by num_heads=4"):
        build_model(ModelConfig(num_layers=2, hidden_size=30, num_heads=4), 50, 0)
    with pytest.raises(InvalidInput, match="attention_pattern"):
        build_model(ModelConfig(num_layers=2, attention_pattern=("global", "locall")), 50, 0)
