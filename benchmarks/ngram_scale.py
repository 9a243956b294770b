"""The n-gram family at GPT-Neo's vocabulary: `ngram-tinystories` on N synthetic stories.

    python benchmarks/ngram_scale.py --stories 100000 400000           # ~6 min on 2 cores
    python benchmarks/ngram_scale.py --stories 2100000 --generations 2 --json ngram.json

The preset as it ships (exact bigram, additive δ = 0.01, Replace, S_n as many tokens as D0 in
stories of up to 600 tokens) on the built-in world with a 50,257-id tokenizer (scale.py's: a
world BPE padded to GPT-Neo's size), evaluated on D0's holdout. For each size: seconds per
generation by stage (train = counting, sample, evaluate: perplexity, probes, corpus statistics),
tokens counted and sampled, and seconds per million tokens — which must stay flat as the corpus
grows (linear time), with nothing of size V^2 = 2.5e9 anywhere. Generation 1 is left out of the
per-generation figures when there are later ones (it counts D0, which has another length
distribution than the sampled corpora).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import world_tokenizer


def run_size(stories: int, generations: int, scratch: Path, tokenizer: str) -> dict[str, Any]:
    from lmcollapse import run
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.rundir import load_metrics

    sets = {
        "data.source": "builtin",
        "data.num_stories": stories,
        "data.tokenizer": tokenizer,
        "evaluation.source": "holdout",
        "run.generations": generations,
    }
    cfg = resolve(
        ExperimentConfig,
        preset="ngram-tinystories",
        overrides=[f"{k}={v}" for k, v in sets.items()],
    )
    t0 = time.perf_counter()
    out = run(cfg, scratch / f"ngram-{stories}", progress=False)
    wall = time.perf_counter() - t0
    metrics = [m for m in load_metrics(out) if m["generation"] >= 1]
    later = metrics[1:] or metrics
    per_gen = [sum(m["seconds"].values()) for m in later]
    tokens = [m["train_tokens"] for m in later]
    result = {
        "stories": stories,
        "generations": generations,
        "wall_seconds": wall,
        "d0_tokens": metrics[0]["train_tokens"],
        "per_generation": [
            {
                "generation": m["generation"],
                **m["seconds"],
                "trained_tokens": m["train_tokens"],
                "sampled_tokens": (m.get("sample") or {}).get("tokens"),
                "perplexity": m["perplexity"],
            }
            for m in metrics
        ],
        "seconds_per_generation": statistics.median(per_gen),
        "seconds_per_million_tokens": statistics.median(
            s / t * 1e6 for s, t in zip(per_gen, tokens, strict=True)
        ),
    }
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stories", type=int, nargs="+", default=[100_000, 400_000])
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--tokenizer", help="a saved tokenizer directory (default: scale.py's)")
    ap.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="lmcollapse-ngram-"))
    try:
        tokenizer = args.tokenizer or str(world_tokenizer(scratch / "tokenizer"))
        results = []
        for n in sorted(args.stories):
            r = run_size(n, args.generations, scratch, tokenizer)
            results.append(r)
            print(
                f"{n:>9,} stories, D0 {r['d0_tokens']:>12,} tokens: "
                f"{r['seconds_per_generation']:7.1f} s per generation "
                f"({r['seconds_per_million_tokens']:.2f} s per M tokens); "
                + ", ".join(
                    f"gen {g['generation']}: train {g['train']:.1f} sample {g['sample']:.1f} "
                    f"evaluate {g['evaluate']:.1f}"
                    for g in r["per_generation"]
                ),
                flush=True,
            )
        if args.json:
            args.json.write_text(json.dumps({"runs": results}, indent=1) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
