"""Corpus benchmark: token-store write/read rates and the corpus-truth counting rate, each as a
ratio against a baseline measured in the same run (these machines are noisy).

    python benchmarks/bench_corpus.py                 # 60M tokens (about 1 minute on 2 cores)
    python benchmarks/bench_corpus.py --tokens 2e8 --json

Baselines: the store's streaming writer vs np.save + fsync of the whole array from RAM (the
fastest durable write of the same bytes); the store's chunked read vs np.load of the same .npy;
ContinuationCounter over the store vs a plain Python loop over the first 2M tokens (the naive
count, per token) and vs one whole-array numpy expression (needs the corpus in RAM).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lmcollapse.data.stats import count_continuations
from lmcollapse.data.store import TokenStore, TokenStoreWriter

VOCAB = 50_257  # GPT-Neo's vocabulary: uint16 ids


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--tokens", type=float, default=6e7, help="corpus size in tokens (>= 5e7 for the note)"
    )
    ap.add_argument(
        "--dir", type=Path, default=None, help="scratch directory (default: a temp dir)"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    n = int(args.tokens)
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="lmcollapse-bench-"))
    try:
        rng = np.random.default_rng(0)
        # Zipf-like ids with story boundaries every ~200 tokens (EOS = 0), like TinyStories.
        tokens = (rng.zipf(1.2, size=n) % (VOCAB - 1) + 1).astype(np.uint16)
        lengths = rng.integers(100, 300, size=n // 150)
        lengths = lengths[: np.searchsorted(np.cumsum(lengths), n)]
        lengths = np.append(lengths, n - lengths.sum())
        tokens[np.cumsum(lengths) - 1] = 0
        chunk = 1 << 22

        def write_store() -> TokenStore:
            with TokenStoreWriter(scratch / "store", vocab_size=VOCAB, eos_id=0) as w:
                starts = np.concatenate([[0], np.cumsum(lengths)])
                step = 20_000  # stories per add_flat call
                for i in range(0, len(lengths), step):
                    j = min(i + step, len(lengths))
                    w.add_flat(tokens[starts[i] : starts[j]], lengths[i:j])
            return TokenStore.open(scratch / "store")

        store, t_write = _timed(write_store)

        def save_durably() -> None:  # the same durability as the store: written and fsynced
            with open(scratch / "baseline.npy", "wb") as fh:
                np.save(fh, tokens)
                fh.flush()
                os.fsync(fh.fileno())

        _, t_save = _timed(save_durably)

        def read_store() -> int:
            return int(sum(int(c.sum(dtype=np.int64)) for c in store.iter_chunks(chunk)))

        total, t_read = _timed(read_store)
        base_total, t_load = _timed(
            lambda: int(np.load(scratch / "baseline.npy").sum(dtype=np.int64))
        )
        assert total == base_total

        x = int(np.bincount(tokens[:1_000_000]).argsort()[-2])  # a frequent non-EOS token
        counter, t_count = _timed(lambda: count_continuations(store.iter_chunks(chunk), [x], VOCAB))
        counter2, t_count2 = _timed(
            lambda: count_continuations(store.iter_chunks(chunk), [x, x], VOCAB)
        )
        numpy_counts, t_numpy = _timed(
            lambda: np.bincount(tokens[1:][tokens[:-1] == x], minlength=VOCAB)
        )
        assert (numpy_counts == counter.counts).all()
        m = 2_000_000
        head = tokens[:m].tolist()

        def naive() -> dict[int, int]:
            out: dict[int, int] = {}
            for a, b in itertools.pairwise(head):
                if a == x:
                    out[b] = out.get(b, 0) + 1
            return out

        naive_counts, t_naive = _timed(naive)
        head_counter = count_continuations([tokens[:m]], [x], VOCAB)
        assert naive_counts == {i: int(c) for i, c in enumerate(head_counter.counts) if c}

        mb = tokens.nbytes / 1e6
        result = {
            "tokens": n,
            "stories": len(lengths),
            "store_write_tokens_per_s": n / t_write,
            "store_write_MB_per_s": mb / t_write,
            "baseline_np_save_MB_per_s": mb / t_save,
            "write_ratio_vs_np_save": t_save / t_write,
            "store_read_tokens_per_s": n / t_read,
            "baseline_np_load_tokens_per_s": n / t_load,
            "read_ratio_vs_np_load": t_load / t_read,
            "count_tokens_per_s": n / t_count,
            "count_2token_context_tokens_per_s": n / t_count2,
            "baseline_naive_python_tokens_per_s": m / t_naive,
            "count_speedup_vs_naive_python": (n / t_count) / (m / t_naive),
            "baseline_whole_array_numpy_tokens_per_s": n / t_numpy,
            "count_ratio_vs_whole_array_numpy": t_numpy / t_count,
            "N_x": counter.n_x,
            "N_xx": counter2.n_x,
        }
        if args.json:
            print(json.dumps(result, indent=1))
            return
        print(f"corpus: {n:,} tokens, {len(lengths):,} stories, uint16 ({mb:.0f} MB)")
        print(
            f"store write : {n / t_write / 1e6:8.1f} M tokens/s ({mb / t_write:6.0f} MB/s); "
            f"np.save+fsync {mb / t_save:6.0f} MB/s -> ratio {t_save / t_write:.2f}"
        )
        print(
            f"store read  : {n / t_read / 1e6:8.1f} M tokens/s; np.load {n / t_load / 1e6:.1f} M/s "
            f"-> ratio {t_load / t_read:.2f}"
        )
        print(
            f"count x     : {n / t_count / 1e6:8.1f} M tokens/s "
            f"(2-token x: {n / t_count2 / 1e6:.1f} M/s); naive Python {m / t_naive / 1e6:.2f} M/s "
            f"-> {result['count_speedup_vs_naive_python']:.0f}x; "
            f"whole-array numpy {n / t_numpy / 1e6:.1f} M/s -> ratio {t_numpy / t_count:.2f}"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
