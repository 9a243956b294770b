"""The training function, unchanged, under accelerate with two processes on the CPU (DDP over
gloo): both processes train in step and one model is saved.

accelerate 1.x starts several CPU processes with `--multi_gpu --num_processes 2` on a machine
without GPUs (its `--cpu` flag alone starts one process and expects mpirun for more); the
Accelerator built with cpu=True then runs DistributedType.MULTI_CPU over gloo."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    from pathlib import Path
    import numpy as np, torch
    from accelerate import PartialState
    from lmcollapse.config import ModelConfig, TrainingConfig
    from lmcollapse.data.packing import TrainingSet
    from lmcollapse.data.store import TokenStore, TokenStoreWriter
    from lmcollapse.models import build_model
    from lmcollapse.runtime import num_processes, process_index
    from lmcollapse.train import train

    out = Path(sys.argv[1])
    state = PartialState(cpu=True)
    if state.is_main_process:
        rng = np.random.default_rng(0)
        with TokenStoreWriter(out / "d0", vocab_size=16, eos_id=0) as w:
            for _ in range(300):
                w.add(np.append(rng.integers(1, 16, int(rng.integers(2, 10))), 0))
    state.wait_for_everyone()
    torch.manual_seed(0)
    shape = ModelConfig(num_layers=2, hidden_size=16, num_heads=2, max_position_embeddings=32,
                        window_size=8)
    model = build_model(shape, 16, 0)
    cfg = TrainingConfig(batch_size=8, micro_batch_size=2, context_length=16, epochs=2,
                         learning_rate=1e-2, schedule="linear")
    data = TrainingSet.whole(TokenStore.open(out / "d0"))
    total = 2 * (len(data.blocks(16, seed=0)) // 8)
    result = train(model, data, cfg, seed=0, progress=False, max_steps=total // 2)
    weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    facts = {"world": num_processes(), "steps": result.steps, "tokens": result.tokens,
             "weights": hashlib.sha256(weights).hexdigest(), "final_lr": result.final_lr,
             "total": total}
    (out / f"rank{process_index()}.json").write_text(json.dumps(facts))
    if state.is_main_process:
        model.save_pretrained(out / "model")
    from lmcollapse.sample import generate_corpus
    generate_corpus(model.eval(), out / "s1", num_sequences=10, length=12, batch_size=3, context=16,
                    eos_id=0, vocab_size=16, seed=7, progress=False)
    generate_corpus(model, out / "s2", min_stories=25, length=12, batch_size=3, context=16,
                    eos_id=0, vocab_size=16, seed=7, progress=False)
    generate_corpus(model, out / "s3", min_tokens=100, length=12, batch_size=3, context=16,
                    eos_id=0, vocab_size=16, seed=7, progress=False)
""")


def test_two_processes_train_one_model(tmp_path: Path, launch_two_processes: list[str]) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*launch_two_processes, str(script), str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP kept the replicas identical
    assert ranks[0]["steps"] == ranks[1]["steps"] == ranks[0]["total"] // 2 > 0
    # the linear schedule is half way after half the steps (not run twice as fast by two processes)
    expected = 1e-2 * (1 - ranks[0]["steps"] / ranks[0]["total"])
    assert ranks[0]["final_lr"] == pytest.approx(expected, rel=1e-6)
    saved = [p for p in tmp_path.iterdir() if (p / "config.json").is_file()]
    assert [p.name for p in saved] == ["model"]
    from lmcollapse.models import load_model

    model = load_model(tmp_path / "model").eval()
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 16)
    # the corpus sampled by two processes (batches 0, 2 / 1, 3) is the one sampled by one
    from lmcollapse.data.store import TokenStore
    from lmcollapse.sample import generate_corpus

    generate_corpus(
        model,
        tmp_path / "single",
        num_sequences=10,
        length=12,
        batch_size=3,
        context=16,
        eos_id=0,
        vocab_size=16,
        seed=7,
        progress=False,
    )
    two, one = TokenStore.open(tmp_path / "s1"), TokenStore.open(tmp_path / "single")
    assert two.meta["provenance"]["shards"] == 2
    assert two.checksum() == one.checksum() and np.array_equal(two.offsets, one.offsets)
    assert not list(tmp_path.glob("s1.shard*"))
    # with a story target, two processes cut the corpus where one process stops
    generate_corpus(model, tmp_path / "single2", min_stories=25, length=12, batch_size=3,
                    context=16, eos_id=0, vocab_size=16, seed=7, progress=False)  # fmt: skip
    two, one = TokenStore.open(tmp_path / "s2"), TokenStore.open(tmp_path / "single2")
    assert two.checksum() == one.checksum() and one.num_stories >= 25
    # with a token target, too — trimmed inside the last batch, the marks of cut stories kept
    generate_corpus(model, tmp_path / "single3", min_tokens=100, length=12, batch_size=3,
                    context=16, eos_id=0, vocab_size=16, seed=7, progress=False)  # fmt: skip
    two, one = TokenStore.open(tmp_path / "s3"), TokenStore.open(tmp_path / "single3")
    assert two.checksum() == one.checksum() and np.array_equal(two.offsets, one.offsets)
    assert np.array_equal(two.unfinished, one.unfinished) and one.unfinished.size > 0
    assert 100 <= one.num_tokens < 100 + one.lengths()[-1]
    assert two.meta["provenance"]["batch_counts"] == one.meta["provenance"]["batch_counts"]
