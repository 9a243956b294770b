"""Mixed precision on a CPU: bf16 autocast training and evaluation, and the fp16 + GradScaler
path that CUDA runs (torch autocasts fp16 on a CPU too, and has a CPU GradScaler), against fp32
from the same weights and data. What a GPU run would find in hour 5 — an fp16 overflow, a scaler
that never settles — shows here on a tiny config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lmcollapse.config import ModelConfig, TrainingConfig
from lmcollapse.data.packing import TrainingSet
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.models import build_model
from lmcollapse.runtime import cpu_fp16_supported, make_accelerator
from lmcollapse.train import train

VOCAB = 64

needs_cpu_fp16 = pytest.mark.skipif(
    not cpu_fp16_supported(),
    reason=f"torch {torch.__version__} has no fp16 autocast or GradScaler on CPU (needs >= 2.3)",
)


def _store(path: Path, n: int = 600, seed: int = 0) -> TokenStore:
    """Stories from a small Markov grammar (learnable, so the losses fall and can be compared)."""
    rng = np.random.default_rng(seed)
    with TokenStoreWriter(path, vocab_size=VOCAB, eos_id=0) as w:
        for _ in range(n):
            start, length = int(rng.integers(1, 20)), int(rng.integers(5, 30))
            story = (start + 3 * np.arange(length) + rng.integers(0, 2, length)) % (VOCAB - 1) + 1
            w.add(np.append(story, 0))
    return TokenStore.open(path)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        num_layers=2, hidden_size=32, num_heads=4, max_position_embeddings=64, window_size=16
    )
    return build_model(cfg, VOCAB, 0)


def _train(store: TokenStore, precision: str) -> tuple[torch.nn.Module, list[float]]:
    cfg = TrainingConfig(
        learning_rate=3e-3,
        batch_size=16,
        micro_batch_size=8,
        context_length=32,
        epochs=2,
        precision=precision,
    )
    model = _model()
    result = train(model, TrainingSet.whole(store), cfg, seed=0, device="cpu", progress=False)
    return model, result.losses


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[TokenStore, TokenStore]:
    root = tmp_path_factory.mktemp("precision")
    return _store(root / "train"), _store(root / "held", n=100, seed=1)


@pytest.fixture(scope="module")
def fp32(corpus: tuple[TokenStore, TokenStore]) -> tuple[torch.nn.Module, list[float]]:
    return _train(corpus[0], "fp32")


def test_bf16_training_and_evaluation_follow_fp32(corpus, fp32) -> None:
    train_store, held = corpus
    model32, losses32 = fp32
    model16, losses16 = _train(train_store, "bf16")
    assert losses32[1] < 0.8 * losses32[0]  # it learned: the comparison means something
    assert losses16 == pytest.approx(losses32, rel=0.03)
    assert losses16 != losses32  # bf16 really ran: its rounding shows in the losses
    ref = model32.eval().perplexity(held, context=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model32.perplexity(held, context=32)
    assert low.loss == pytest.approx(ref.loss, rel=0.02) and low.loss != ref.loss
    assert low.tokens == ref.tokens
    # the bf16-trained weights evaluate (in fp32) about as well as the fp32-trained ones
    assert model16.eval().perplexity(held, context=32).loss == pytest.approx(ref.loss, rel=0.05)


@needs_cpu_fp16
def test_fp16_training_with_a_grad_scaler_follows_fp32(corpus, fp32) -> None:
    _, losses32 = fp32
    _, losses16 = _train(corpus[0], "fp16")
    assert losses16 == pytest.approx(losses32, rel=0.03) and losses16 != losses32


@needs_cpu_fp16
def test_fp16_on_cpu_is_accelerates_own_autocast_and_scaler_path() -> None:
    acc = make_accelerator("fp16", "cpu")
    assert isinstance(acc.scaler, torch.amp.GradScaler) and acc.scaler.get_scale() == 2.0**16
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt = acc.prepare(model, opt)
    seen: list[torch.dtype] = []
    block = acc.unwrap_model(model).transformer.h[0].mlp.c_fc
    block.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    x = torch.randint(1, VOCAB, (4, 17))
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(x[:, :-1], x[:, 1:])
    assert seen == [torch.float16]  # the prepared forward autocasts to fp16
    acc.backward(loss * 1e6)  # scaled by 2^16 on top: the fp16 gradients overflow
    opt.step()
    assert acc.scaler.get_scale() == 2.0**15  # an inf step backs the scale off ...
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    opt.zero_grad()
    acc.backward(model(x[:, :-1], x[:, 1:]))
    opt.step()  # ... and a finite one is taken
    assert not all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _forward_dtype(acc) -> torch.dtype:
    model = acc.prepare(_model())
    seen: list[torch.dtype] = []
    acc.unwrap_model(model).transformer.h[0].mlp.c_fc.register_forward_hook(
        lambda _m, _i, out: seen.append(out.dtype)
    )
    x = torch.randint(1, VOCAB, (2, 9))
    model(x[:, :-1], x[:, 1:])
    return seen[0]


@pytest.mark.parametrize("order", [("fp16", "bf16", "fp32"), ("bf16", "fp16", "auto")])
def test_a_later_training_may_use_another_precision(order) -> None:
    """accelerate keeps one precision per process; make_accelerator starts it again, and the
    new one's forward and scaler are its own."""
    want = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    for precision in order:
        if precision == "fp16" and not cpu_fp16_supported():
            continue
        acc = make_accelerator(precision, "cpu")
        assert acc.mixed_precision == {"fp32": "no", "auto": "no"}.get(precision, precision)
        assert (acc.scaler is not None) == (precision == "fp16")
        assert _forward_dtype(acc) == want.get(precision, torch.float32)
