"""Paper-scale data path: every data stage of a run on N synthetic stories, no model training.

    python benchmarks/scale.py --stories 25000 100000               # 3 rounds, ~1.5 min
    python benchmarks/scale.py --stories 2100000 --rounds 1 --json scale.json  # TinyStories' size
    python benchmarks/scale.py --stories 100000 --tokenizer ~/gpt-neo-tokenizer

The corpus is N stories of the built-in world (lmcollapse.data.stories), tokenized with a
50,257-id tokenizer as GPT-Neo's is (uint16 ids, end-of-text = a special token): by default a
byte-level BPE trained on 20,000 of the world's stories, its vocabulary padded with tokens that
never occur to GPT-Neo's 50,257 (as most of GPT-Neo's ids never occur in TinyStories);
`--tokenizer` takes any saved tokenizer directory instead (GPT-Neo's, on a connected machine).
Stages, each in a fresh process so that its peak RSS is its own:

    prepare     `lmcollapse corpus prepare`: stories generated, 5% held out, encoded into D0's
                and the holdout's token stores (the paper preset's data config)
    store       the token store: its checksum recomputed over the whole memory map, then 10% of
                the stories gathered in random order (a generation's random access)
    compose     Accumulate-Subsample at n = 40, k = 1: D0 and S_1..S_39 (simulated by stored
                copies of D0: hard links, so the disk holds one) each give 1/40 of |D0|'s tokens
    pack        that training set packed into 512-token blocks; one epoch's blocks read
    stats       corpus statistics: D0's reference (1M-token sample, tail over the whole store),
                one corpus compared with it, and the probe's N_x, N_{x;v} counted over D0
    perplexity  held-out perplexity's windows and batches at context 512 over the holdout, with
                a model that costs nothing (the data side of evaluation alone)

Peak RSS per stage (`peak_rss_mb`: ru_maxrss, memory-mapped pages the stage touched included;
`peak_anon_mb`: its heap alone, sampled) must not grow with N, and seconds must grow linearly. With
several --stories the sizes run interleaved in rounds (the order alternating), and the report
gives per stage the median of (seconds per token at N_i) / (seconds per token at N_1) with its
range, and the peak-RSS ratio; a ratio whose rounds disagree by more than 1.5x is flagged. The
last column projects each stage's time to the paper's corpus (470M GPT-Neo tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import MAX_SPREAD, flag

STAGES = ("prepare", "store", "compose", "pack", "stats", "perplexity")
PAPER_TOKENS = 470_000_000  # TinyStories' training split in GPT-Neo tokens
GPT_NEO_VOCAB = 50_257
CONTEXT = 512
GENERATION = 40  # Accumulate-Subsample at generation 40: D0 and 39 generated corpora


# --- the corpus's tokenizer ----------------------------------------------------------------------


def world_tokenizer(out: Path, vocab: int = GPT_NEO_VOCAB) -> Path:
    """A byte-level BPE trained on 20,000 world stories, padded with never-occurring special
    tokens to `vocab` ids: GPT-Neo's vocabulary size, its uint16 ids and its one end-of-text."""
    from tokenizers import AddedToken, Tokenizer

    from lmcollapse.data.stories import generate
    from lmcollapse.data.tokenizer import train_bpe

    trained = out.with_name(out.name + "-bpe")
    tok = train_bpe(generate(20_000, seed=1), 8192, trained)
    backend = Tokenizer.from_file(str(trained / "tokenizer.json"))
    pad = vocab - backend.get_vocab_size(with_added_tokens=True)
    backend.add_special_tokens([AddedToken(f"<|unused{i}|>", special=True) for i in range(pad)])
    out.mkdir(parents=True, exist_ok=True)
    backend.save(str(out / "tokenizer.json"))
    for f in tok.path.iterdir():
        if f.name != "tokenizer.json":
            shutil.copy2(f, out / f.name)
    shutil.rmtree(trained)
    return out


# --- the stages (each run in its own process by `_child`) ---------------------------------------


def _data_config(stories: int, tokenizer: str) -> Any:
    from lmcollapse.config import DataConfig

    return DataConfig(
        source="builtin", num_stories=stories, holdout_fraction=0.05, tokenizer=tokenizer
    )


def stage_prepare(work: Path, stories: int, tokenizer: str) -> dict[str, Any]:
    from lmcollapse.data.prepare import prepare

    out = work / "corpus"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "generated", ignore_errors=True)  # links to the previous round's D0
    corpus = prepare(_data_config(stories, tokenizer), out)
    return {
        "d0_stories": corpus.d0.num_stories,
        "d0_tokens": corpus.d0.num_tokens,
        "holdout_stories": corpus.holdout.num_stories,
        "vocab_size": corpus.tokenizer.vocab_size,
        "d0_mb_on_disk": (corpus.d0.path / "tokens.npy").stat().st_size / 1e6,
    }


def _d0(work: Path) -> Any:
    from lmcollapse.data.store import TokenStore

    return TokenStore.open(work / "corpus" / "d0")


def stage_store(work: Path, **_: Any) -> dict[str, Any]:
    d0 = _d0(work)
    assert d0.checksum() == d0.meta["checksum"], "the store's checksum does not verify"
    rng = np.random.default_rng(0)
    chosen = rng.choice(d0.num_stories, size=max(1, d0.num_stories // 10), replace=False)
    gathered = sum(int(t.size) for t, _ in d0.gather(chosen))
    return {"gathered_tokens": gathered}


def _generated_copies(work: Path) -> dict[str, Any]:
    """D0 and S_1..S_39 as token stores: the copies are hard links of D0's files."""
    from lmcollapse.data.paradigms import D0, generated
    from lmcollapse.data.store import TokenStore

    src = work / "corpus" / "d0"
    stores = {D0: TokenStore.open(src)}
    for j in range(1, GENERATION):
        dst = work / "generated" / f"S{j:03d}"
        if not dst.is_dir():
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for f in src.iterdir():
                os.link(f, tmp / f.name)
            tmp.rename(dst)
        stores[generated(j)] = TokenStore.open(dst)
    return stores


def stage_compose(work: Path, **_: Any) -> dict[str, Any]:
    from lmcollapse.data.paradigms import compose
    from lmcollapse.paradigms import AccumulateSubsample

    stores = _generated_copies(work)
    t0 = time.perf_counter()
    comp, chosen = compose(AccumulateSubsample(k=1.0), GENERATION, stores, seed=0)
    seconds = time.perf_counter() - t0
    np.savez(work / "chosen.npz", **chosen)
    return {
        "seconds_without_links": seconds,
        "parts": len(comp.parts),
        "total_tokens": comp.total_tokens,
        "d0_share": comp.token_share("d0"),
    }


def stage_pack(work: Path, **_: Any) -> dict[str, Any]:
    from lmcollapse.data.packing import TrainingSet

    stores = _generated_copies(work)
    with np.load(work / "chosen.npz") as z:
        chosen = {k: z[k] for k in z.files}
    training = TrainingSet([stores[k] for k in chosen], [chosen[k] for k in chosen])
    blocks = training.blocks(CONTEXT, seed=0)
    total = 0
    for i in range(len(blocks)):
        total += int(blocks[i][1, -1])  # read every block (the DataLoader's work)
    return {"blocks": len(blocks), "tokens": training.num_tokens, "checksum": total}


def stage_stats(work: Path, tokenizer: str, **_: Any) -> dict[str, Any]:
    from lmcollapse.data.stats import corpus_truth
    from lmcollapse.data.tokenizer import Tok
    from lmcollapse.evaluate.corpus import corpus_stats, reference

    d0 = _d0(work)
    ref = reference(d0, sample_tokens=1_000_000, seed=0)
    stats = corpus_stats(d0, ref, seed=1)
    truth = corpus_truth(d0, Tok(work / "corpus" / "tokenizer"), " there")
    return {"distinct_2": stats.distinct_2, "N_x": truth.n_x}


def _free_lm(vocab: int) -> Any:
    """TorchLM's perplexity with a model that predicts uniformly at no cost: the windows,
    sorting and batching of evaluation alone."""
    import torch

    from lmcollapse.models.hf import HFShape
    from lmcollapse.models.torch_lm import TorchLM

    class Free(TorchLM):
        def __init__(self) -> None:
            super().__init__()
            self.shape = HFShape(vocab, 2048)
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # TorchLM.device reads a parameter

        def token_logprobs(self, x: Any, y: Any, mask: Any) -> Any:
            return torch.full(y.shape, -float(np.log(vocab)))

    return Free()


def stage_perplexity(work: Path, **_: Any) -> dict[str, Any]:
    from lmcollapse.data.store import TokenStore

    held = TokenStore.open(work / "corpus" / "holdout")
    result = _free_lm(held.vocab_size).perplexity(held, context=CONTEXT)
    return {"tokens": result.tokens, "perplexity": result.perplexity}


IMPORTS = {  # what each stage imports, loaded before its clock starts
    "prepare": ["lmcollapse.data.prepare"],
    "store": ["lmcollapse.data.store"],
    "compose": ["lmcollapse.data.paradigms", "lmcollapse.paradigms"],
    "pack": ["lmcollapse.data.packing", "lmcollapse.data.paradigms"],
    "stats": ["lmcollapse.data.stats", "lmcollapse.evaluate.corpus"],
    "perplexity": ["lmcollapse.models.torch_lm", "lmcollapse.models.hf"],
}


class _AnonPeak:
    """Peak anonymous memory (RssAnon: the heap, not memory-mapped file pages), sampled every
    20 ms in a thread. ru_maxrss counts the pages of the memory-mapped stores a stage touched
    too, which the kernel can drop at any time; this is the memory a stage really holds."""

    def __init__(self) -> None:
        import threading

        self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    @staticmethod
    def _now() -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._now())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._now())


def _child(stage: str, work: Path, stories: int, tokenizer: str) -> None:
    """Run one stage in this process and print its seconds and peak memory as one JSON line."""
    import importlib

    for module in IMPORTS[stage]:
        importlib.import_module(module)
    fn = globals()[f"stage_{stage}"]
    anon = _AnonPeak()
    t0 = time.perf_counter()
    extra = fn(work, stories=stories, tokenizer=tokenizer)
    seconds = extra.pop("seconds_without_links", None) or time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    result = {"seconds": seconds, "peak_rss_mb": peak_kb / 1024, "peak_anon_mb": anon.stop()}
    print(json.dumps({**result, **extra}))


# --- the driver --------------------------------------------------------------------------------


def run_stage(stage: str, work: Path, stories: int, tokenizer: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", stage, "--work", str(work)]
    cmd += ["--stories", str(stories), "--tokenizer", tokenizer]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(
    sizes: list[int], rounds: int, scratch: Path, tokenizer: str, say: Any = print
) -> dict[str, Any]:
    """Every stage at every size, in `rounds` rounds; the sizes alternate order per round."""
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {n: {s: [] for s in STAGES} for n in sizes}
    for r in range(rounds):
        for n in sizes if r % 2 == 0 else sizes[::-1]:
            work = scratch / f"n{n}"
            for stage in STAGES:
                res = run_stage(stage, work, n, tokenizer)
                runs[n][stage].append(res)
                say(
                    f"round {r + 1}/{rounds}  {n:>9,} stories  {stage:<10} "
                    f"{res['seconds']:8.2f} s  {res['peak_rss_mb']:7.0f} MB "
                    f"(heap {res['peak_anon_mb']:.0f} MB)"
                )
    return summarize(sizes, runs)


def summarize(sizes: list[int], runs: dict[int, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per size and stage: median seconds and peak RSS (with ranges), tokens, and the
    projection to the paper's corpus; per later size: its ratios to the first size."""
    out: dict[str, Any] = {"sizes": {}, "ratios": {}, "max_spread": MAX_SPREAD}
    tokens = {n: runs[n]["prepare"][0]["d0_tokens"] for n in sizes}
    for n in sizes:
        table = {}
        for stage in STAGES:
            secs = [x["seconds"] for x in runs[n][stage]]
            rss = [x["peak_rss_mb"] for x in runs[n][stage]]
            table[stage] = {
                "seconds": statistics.median(secs),
                "seconds_range": [min(secs), max(secs)],
                "peak_rss_mb": max(rss),
                "peak_anon_mb": max(x["peak_anon_mb"] for x in runs[n][stage]),
                "projected_paper_hours": statistics.median(secs) * PAPER_TOKENS / tokens[n] / 3600,
            }
        out["sizes"][str(n)] = {
            "stories": n,
            "d0_tokens": tokens[n],
            "stages": table,
            "details": {s: runs[n][s][0] for s in STAGES},
        }
    first = sizes[0]
    for n in sizes[1:]:
        ratio = {}
        for stage in STAGES:
            a, b = runs[first][stage], runs[n][stage]
            per_round = [  # time per token at n over time per token at the first size
                (y["seconds"] / tokens[n]) / (x["seconds"] / tokens[first])
                for x, y in zip(a, b, strict=True)
            ]
            spread = max(per_round) / min(per_round)
            ratio[stage] = {
                "time_per_token_ratio": statistics.median(per_round),
                "time_per_token_ratio_range": [min(per_round), max(per_round)],
                "peak_rss_ratio": max(y["peak_rss_mb"] for y in b)
                / max(x["peak_rss_mb"] for x in a),
                "peak_anon_ratio": max(y["peak_anon_mb"] for y in b)
                / max(x["peak_anon_mb"] for x in a),
                "rounds": len(per_round),
                "trusted": len(per_round) >= 3 and spread <= MAX_SPREAD,
            }
        out["ratios"][f"{n}/{first}"] = ratio
    return out


def report(result: dict[str, Any]) -> None:
    sizes = list(result["sizes"].values())
    print("\nstage        " + "".join(f"{s['stories']:>22,}" for s in sizes) + "   paper (h)")
    print("             " + "".join(f"{'s':>13}{'MB':>9}" for _ in sizes))
    for stage in STAGES:
        cells = "".join(
            f"{s['stages'][stage]['seconds']:13.2f}{s['stages'][stage]['peak_rss_mb']:9.0f}"
            for s in sizes
        )
        print(f"{stage:<13}{cells}   {sizes[-1]['stages'][stage]['projected_paper_hours']:9.3f}")
    print("D0 tokens    " + "".join(f"{s['d0_tokens']:>22,}" for s in sizes))
    for key, ratio in result["ratios"].items():
        print(f"\n{key} stories: time per token (median, range, rounds) and peak RSS ratio")
        for stage, r in ratio.items():
            lo, hi = r["time_per_token_ratio_range"]
            print(
                f"  {stage:<11} {r['time_per_token_ratio']:5.2f}  {lo:.2f}-{hi:.2f} "
                f"({r['rounds']})   RSS {r['peak_rss_ratio']:.2f}  heap "
                f"{r['peak_anon_ratio']:.2f}{flag(r['trusted'])}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stories", type=int, nargs="+", default=[25_000, 100_000])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--tokenizer", help="a saved tokenizer directory (default: see above)")
    ap.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")
    ap.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.work, args.stories[0], args.tokenizer)
        return
    if min(args.stories) < 100 or args.rounds < 1:
        ap.error("--stories must be >= 100 and --rounds >= 1")
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="lmcollapse-scale-"))
    try:
        tokenizer = args.tokenizer or str(world_tokenizer(scratch / "tokenizer"))
        result = measure(sorted(args.stories), args.rounds, scratch, tokenizer)
        result.update(
            {"tokenizer": args.tokenizer or "world BPE padded to 50,257", "rounds": args.rounds}
        )
        report(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
