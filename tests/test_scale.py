"""The paper-scale tooling: interleaved timing (benchmarks/_timing.py), the data-path benchmark
(benchmarks/scale.py) and the GPU benchmark's CPU behaviour (benchmarks/gpu.py), and the token
store's page release that keeps a pass over a memory-mapped corpus from growing the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmcollapse.data.packing import TrainingSet
from lmcollapse.data.store import TokenStore, TokenStoreWriter

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
import _timing  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


# --- interleaved rounds ------------------------------------------------------------------------


class FakeClock:
    """A clock that each timed function advances by its own scripted durations."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, durations: list[float]):
        it = iter(durations)

        def fn() -> None:
            self.calls.append(name)
            self.now += next(it)

        return fn


def test_race_alternates_the_order_and_reports_the_median_ratio_and_its_range() -> None:
    clock = FakeClock()
    ours = clock.work("ours", [9.0, 1.0, 1.0, 2.0, 1.0, 1.0])  # the first call is the warm-up
    base = clock.work("base", [9.0, 2.0, 3.0, 2.0, 2.0, 2.5])
    r = _timing.race(ours, base, 5, clock=clock)
    assert clock.calls == ["ours", "base"] + ["ours", "base", "base", "ours"] * 2 + ["ours", "base"]
    assert r.ours_s == [1.0, 1.0, 2.0, 1.0, 1.0] and r.base_s == [2.0, 3.0, 2.0, 2.0, 2.5]
    assert r.ratios == [2.0, 3.0, 1.0, 2.0, 2.5]
    assert r.speedup == 2.0 and r.spread == 3.0 and not r.trusted  # one round disagrees 3x
    f = r.fields("train", 100.0)
    assert f["train_speedup"] == 2.0 and f["train_speedup_range"] == [1.0, 3.0]
    assert f["train_tokens_per_s"] == 100.0 and f["hf_train_tokens_per_s"] == 50.0
    assert f["train_rounds"] == 5 and f["train_trusted"] is False


def test_agreeing_rounds_are_trusted_and_too_few_rounds_are_not() -> None:
    clock = FakeClock()
    r = _timing.race(
        clock.work("o", [1.0] * 4), clock.work("b", [1.2, 1.2, 1.3, 1.4]), 3, clock=clock
    )
    assert r.ratios == pytest.approx([1.2, 1.3, 1.4]) and r.trusted
    clock = FakeClock()
    two = _timing.race(clock.work("o", [1.0] * 3), clock.work("b", [2.0] * 3), 2, clock=clock)
    assert two.spread == 1.0 and not two.trusted  # two rounds cannot show a spread
    s = _timing.summary([4.0, 1.0, 2.0])
    assert s == {"median": 2.0, "range": [1.0, 4.0], "spread": 4.0, "rounds": 3}
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        _timing.race(lambda: None, lambda: None, 0)


def test_the_engine_benchmark_reports_median_ratios_with_their_range(tmp_path) -> None:
    out = tmp_path / "engine.json"
    cmd = [sys.executable, str(BENCH / "engine.py"), "--config", "tiny", "--smoke"]
    done = subprocess.run(
        [*cmd, "--rounds", "3", "--json", str(out)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["rounds"] == 3
    tiny = r["configs"]["tiny"]
    for key in ("train", "generate", "eval"):
        lo, hi = tiny[f"{key}_speedup_range"]
        assert 0 < lo <= tiny[f"{key}_speedup"] <= hi and tiny[f"{key}_rounds"] == 3
        assert isinstance(tiny[f"{key}_trusted"], bool)
    lo, hi = tiny["matmul_peak_range"]
    assert lo <= tiny["matmul_peak_flops_per_s"] <= hi
    assert tiny["first_loss_ours"] == pytest.approx(tiny["first_loss_hf"], rel=1e-4)
    assert "range (rounds)" in done.stdout


# --- the token store releases the pages a pass touched -----------------------------------------


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
            inside = len(head) >= 6 and head[-1] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


needs_smaps = pytest.mark.skipif(
    not Path("/proc/self/smaps").is_file(), reason="needs Linux's /proc/self/smaps"
)


def _big_store(path: Path, tokens: int = 20_000_000) -> TokenStore:
    rng = np.random.default_rng(0)
    lens = rng.integers(100, 300, tokens // 200)
    flat = rng.integers(1, 50_000, int(lens.sum())).astype(np.uint16)
    flat[np.cumsum(lens) - 1] = 0
    with TokenStoreWriter(path, vocab_size=50_257, eos_id=0) as w:
        w.add_flat(flat, lens)
    return TokenStore.open(path)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> TokenStore:
    return _big_store(tmp_path_factory.mktemp("big") / "store")


@needs_smaps
def test_a_pass_over_the_store_does_not_keep_its_pages(big: TokenStore) -> None:
    tokens = big.path / "tokens.npy"
    size_kb = tokens.stat().st_size // 1024
    big.release()
    total = sum(int(c.sum(dtype=np.int64)) for c in big.iter_chunks(1 << 20))
    assert _mapped_kb(tokens) < 0.1 * size_kb  # released chunk by chunk
    assert total == int(np.asarray(big.tokens).sum(dtype=np.int64))  # the same data ...
    assert _mapped_kb(tokens) > 0.9 * size_kb  # ... which a plain read of the map keeps
    big.release()
    assert _mapped_kb(tokens) < 0.1 * size_kb
    list(big.gather(np.arange(0, big.num_stories, 3)))
    assert _mapped_kb(tokens) < 0.1 * size_kb


@needs_smaps
def test_an_epoch_of_packed_blocks_maps_nothing_and_reads_the_same_tokens(big) -> None:
    tokens = big.path / "tokens.npy"
    size_kb = tokens.stat().st_size // 1024
    big.release()
    blocks = TrainingSet.whole(big).blocks(512, seed=0)
    peak = 0
    for i in range(len(blocks)):
        blocks[i]
        if i % 97 == 0:
            peak = max(peak, _mapped_kb(tokens))
    assert peak < 0.02 * size_kb  # read with pread: an epoch maps none of the corpus
    stream = np.concatenate([big.story(int(i)) for i in blocks.story[:40]])
    assert np.array_equal(blocks[0][0], stream[:512]) and np.array_equal(
        blocks[1][0], stream[512:1024]
    )
    assert np.array_equal(big.read(5, 1000), np.asarray(big.tokens[5:1005]))
    with pytest.raises(IndexError):
        big.read(big.num_tokens - 1, 2)
    import pickle

    again = pickle.loads(pickle.dumps(big))  # a spawned DataLoader worker's copy: the path only
    assert len(pickle.dumps(big)) < 1000
    assert np.array_equal(again.read(7, 300), big.read(7, 300))


# --- benchmarks/scale.py --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lmcollapse.data.stories import generate
    from lmcollapse.data.tokenizer import train_bpe

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_bpe(generate(300, seed=3), 400, out)
    return out


def test_scale_benchmark_measures_every_stage_at_every_size(tmp_path, small_tokenizer) -> None:
    out = tmp_path / "scale.json"
    cmd = [sys.executable, str(BENCH / "scale.py"), "--stories", "400", "1600", "--rounds", "1"]
    cmd += ["--tokenizer", str(small_tokenizer), "--json", str(out), "--dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(out.read_text())
    assert list(r["sizes"]) == ["400", "1600"] and r["rounds"] == 1
    for size in r["sizes"].values():
        assert set(size["stages"]) == {"prepare", "store", "compose", "pack", "stats", "perplexity"}
        for stage in size["stages"].values():
            assert stage["seconds"] > 0 and stage["peak_rss_mb"] > 10
            assert stage["projected_paper_hours"] > 0
        d = size["details"]
        held = d["prepare"]["holdout_stories"]
        assert d["prepare"]["d0_stories"] + held == size["stories"]
        assert held == round(0.05 * size["stories"])
        assert d["prepare"]["d0_tokens"] == size["d0_tokens"]
        assert d["compose"]["parts"] == 40  # D0 and S_1..S_39
        assert d["compose"]["d0_share"] == pytest.approx(1 / 40, rel=0.1)
        assert abs(d["compose"]["total_tokens"] - size["d0_tokens"]) < 0.02 * size["d0_tokens"]
        assert d["pack"]["blocks"] == (d["pack"]["tokens"] - 1) // 512
        assert d["perplexity"]["perplexity"] == pytest.approx(d["prepare"]["vocab_size"])
    ratio = r["ratios"]["1600/400"]
    assert set(ratio) == set(r["sizes"]["400"]["stages"])
    assert all(x["rounds"] == 1 and x["trusted"] is False for x in ratio.values())
    assert all(x["peak_rss_ratio"] > 0 for x in ratio.values())
    assert not any(tmp_path.glob("lmcollapse-scale-*"))  # the scratch directory is removed
    assert "1,600" in done.stdout and "paper (h)" in done.stdout


# --- benchmarks/gpu.py ----------------------------------------------------------------------------

BLOCK_DATASETS = (  # what the device machine has: no `datasets`
    "import runpy, sys; sys.modules['datasets'] = None; "
    "sys.argv = ['gpu.py'] + sys.argv[1:]; runpy.run_path(sys.argv_path, run_name='__main__')"
)


def _gpu(*args: str, hide_cuda: bool = False) -> subprocess.CompletedProcess[str]:
    code = BLOCK_DATASETS.replace("sys.argv_path", repr(str(BENCH / "gpu.py")))
    env = {**ENV, **({"CUDA_VISIBLE_DEVICES": ""} if hide_cuda else {})}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_gpu_benchmark_without_cuda_exits_0_with_one_line() -> None:
    done = _gpu(hide_cuda=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], done.stdout
    assert done.stderr.strip() == ""


def test_gpu_benchmark_runs_every_path_at_toy_sizes_without_datasets(tmp_path) -> None:
    out = tmp_path / "gpu.json"
    done = _gpu("--device", "cpu", "--smoke", "--rounds", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    tiny = r["configs"]["tiny"]
    for key in ("train_fp16", "hf_train_fp16", "train_bf16", "sample", "sample_slide", "eval"):
        assert tiny[f"{key}_tokens_per_s"] > 0, key
    assert tiny["train_fp16_rounds"] == 2 and len(tiny["train_fp16_speedup_range"]) == 2
    assert tiny["train_fp16_mfu"] > 0 and tiny["train_bf16_mfu"] > 0
    # same weights, same batch: both implementations start from the same loss (fp16 rounding)
    for name in ("fp16", "bf16"):
        ours, hf = tiny[f"train_{name}_loss_first_call"]
        assert ours == pytest.approx(hf, rel=2e-2)
        assert tiny[f"train_{name}_peak_memory_mb"] == 0.0  # a CPU has no GPU memory to count
    assert tiny["fp16_over_bf16"] > 0 and len(tiny["fp16_over_bf16_range"]) == 2
    assert tiny["eval_loss"] == pytest.approx(tiny["eval_loss_uniform"], rel=0.05)
    p = tiny["projection"]
    assert p["generation_h"] == pytest.approx(p["train_h"] + p["sample_h"] + p["eval_h"])
    e2e = r["end_to_end"]
    assert e2e["generations"] == 1 and e2e["seconds"] > 0
    assert set(e2e["stage_seconds"][0]) >= {"train", "sample", "evaluate"}
    assert "end to end" in done.stdout


# --- the n-gram family at a vocabulary where V^2 would not fit ------------------------------------


def test_the_ngram_model_at_a_million_ids_never_needs_v_squared(tmp_path) -> None:
    """V = 2^20: a V x V table would be 8 TB, so counting, sampling, perplexity, probes, the
    corpus statistics and a save/load round trip finishing at all shows that none is built."""
    from lmcollapse.evaluate.corpus import corpus_stats, reference
    from lmcollapse.models import load_model
    from lmcollapse.models.ngram import NGramModel

    V = 1 << 20
    rng = np.random.default_rng(0)
    stories = [
        np.append(rng.choice([5, 77, 4096, V - 1], size=int(n)), 0)
        for n in rng.integers(3, 12, 300)
    ]
    with TokenStoreWriter(tmp_path / "d0", vocab_size=V, eos_id=0) as w:
        for s in stories:
            w.add(s)
    d0 = TokenStore.open(tmp_path / "d0")
    model = NGramModel(V, 0, order=2, delta=0.01).fit(TrainingSet.whole(d0))
    assert model.num_ngrams <= 4 * 5 + 5  # the pairs seen, not V^2
    n_77 = sum(int(np.sum(s[:-1] == 77)) for s in stories)
    n_77_5 = sum(int(np.sum((s[:-1] == 77) & (s[1:] == 5))) for s in stories)
    p = model.distribution([77])
    assert p.shape == (V,) and p.sum() == pytest.approx(1.0)
    assert p[5] == pytest.approx((n_77_5 + 0.01) / (n_77 + V * 0.01))  # Prop. 2.3, α = δ
    seqs = model.sample_sequences(64, 40, seed=0, stop_at_eos=True)
    assert all(s.max() < V for s in seqs) and len(seqs) == 64
    ppl = model.perplexity(d0)
    assert 1 < ppl.perplexity < V and ppl.tokens == d0.num_tokens
    ref = reference(d0, sample_tokens=1_000, vocab_size=V)
    assert corpus_stats(d0, ref).vocab_used == 5  # the four ids and end-of-text
    back = load_model(model.save(tmp_path / "model"))
    assert np.array_equal(back.distribution([77]), p)
