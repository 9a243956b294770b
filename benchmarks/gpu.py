"""GPU benchmark: one command on a CUDA machine for the paper's models at context 512.

    python benchmarks/gpu.py                      # paper-1m and paper-33m, ~5 min on one H200
    python benchmarks/gpu.py --json gpu.json --rounds 5
    python benchmarks/gpu.py --device cpu --smoke # every code path at toy sizes (the tests)

On a machine without CUDA it prints one line and exits 0. It needs torch, transformers and
lmcollapse — not `datasets` (the engine imports it lazily, only for hub and file sources).

For each of paper-1m and paper-33m (GPT-Neo vocabulary 50,257, context 512):
    peak        matmul FLOP/s measured on the spot (8192^2 products) in fp16, bf16 and tf32
                (TF32 on for that product only: the pipeline computes fp32 in fp32)
    train       tokens/s of forward + backward + AdamW step under autocast, fp16 with a
                GradScaler (the paper's precision) and bf16, ours (GPTNeo) against
                GPTNeoForCausalLM with the same weights in each; MFU = model FLOP/s / that
                dtype's peak; and fp16's speed over bf16's on our engine
    sample      tokens/s of pure sampling with the KV cache, batch 200, the paper's 600 tokens,
                sliding (Algorithm 1: a full window pass per token past 512) and not
    eval        tokens/s of held-out perplexity over whole stories (~220 tokens, TinyStories')
    memory      peak GPU memory of each of the above
Then an end-to-end run of the pipeline (paper-1m, 2 generations of a small Replace run on the
built-in world) with its stage times, and the projected hours per generation at paper scale:
3 epochs over |D0| = 470M tokens, 600M sampled tokens, and perplexity on 4.7M validation tokens.

Comparisons run interleaved in rounds (_timing.py): each reports its median ratio and range,
flagged when the rounds disagree by more than 1.5x.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import flag, race, repeated, summary

PAPER = {"d0_tokens": 470e6, "epochs": 3, "sampled_tokens": 600e6, "eval_tokens": 4.7e6}
CONFIGS = {
    "paper-1m": {"preset": "paper-1m", "train_batch": 64},
    "paper-33m": {"preset": "paper-33m", "train_batch": 32},
}
FULL = {"vocab": 50_257, "context": 512, "gen_batch": 200, "gen_length": 600, "steps": 5}
FULL |= {"eval_stories": 2_000, "matmul": 8192, "e2e": True}
SMOKE = {"vocab": 512, "context": 64, "gen_batch": 4, "gen_length": 80, "steps": 1}
SMOKE |= {"eval_stories": 20, "matmul": 256, "e2e": True}
SMOKE_CONFIGS = {"tiny": {"preset": "tiny", "train_batch": 2}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> float:
    """Peak GPU memory since the last reset, MB (0 on a CPU)."""
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**20


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


@contextlib.contextmanager
def _tf32(device: torch.device) -> Any:
    """TF32 matmuls for the duration only: the pipeline never turns them on, so the rest of
    the benchmark measures fp32 as a run computes it."""
    m = torch.backends.cuda.matmul
    if device.type != "cuda":
        yield
        return
    new_api = hasattr(m, "fp32_precision")  # torch >= 2.9; the legacy flag is deprecated there
    old = m.fp32_precision if new_api else m.allow_tf32
    if new_api:
        m.fp32_precision = "tf32"
    else:
        m.allow_tf32 = True
    try:
        yield
    finally:
        if new_api:
            m.fp32_precision = old
        else:
            m.allow_tf32 = old


def matmul_peaks(device: torch.device, n: int, rounds: int) -> dict[str, dict[str, Any]]:
    """FLOP/s of an n x n product per dtype: median and range over rounds."""
    out = {}
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32}
    for name, dtype in dtypes.items():
        if device.type == "cpu" and dtype == torch.float16:
            dtype = torch.float32  # CPU fp16 matmul is emulated: no meaningful peak
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)

        def product(a: torch.Tensor = a, b: torch.Tensor = b) -> None:
            for _ in range(4):
                a @ b
            _sync(device)

        with _tf32(device) if name == "tf32" else contextlib.nullcontext():
            out[name] = summary([4 * 2 * n**3 / t for t in repeated(product, rounds)])
    return out


def _models(preset: str, vocab: int, device: torch.device) -> tuple[Any, Any]:
    """Ours and GPTNeoForCausalLM with the same weights, on the device."""
    from transformers import GPTNeoForCausalLM

    from lmcollapse.models import build_model, model_config

    torch.manual_seed(0)
    ours = build_model(model_config(preset), vocab, 0).to(device)
    hf = GPTNeoForCausalLM(ours.config)
    hf.load_state_dict(ours.state_dict(), strict=False)
    hf.config.use_cache = False  # training and scoring: no key/value cache to build
    return ours, hf.to(device)


def _flops_per_token(model: Any, context: int) -> float:
    """6 x parameters (position embeddings excluded) + attention's 6 x layers x context x width."""
    params = sum(p.numel() for n, p in model.named_parameters() if "wpe" not in n)
    s = model.shape
    return 6 * params + 6 * s.num_layers * context * s.hidden_size


def _train_step(model: Any, hf: bool, dtype: torch.dtype, x: torch.Tensor, steps: int) -> Any:
    """A callable running `steps` optimizer steps under autocast (fp16 with a GradScaler)."""
    device = x.device
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.95), weight_decay=0.1)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    losses: list[float] = []

    def step() -> None:
        for _ in range(steps):
            with torch.autocast(device.type, dtype=dtype):
                if hf:
                    loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss
                else:
                    loss = model(x[:, :-1], x[:, 1:])
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        _sync(device)

    step.losses = losses  # type: ignore[attr-defined]
    return step


def bench_train(
    spec: dict[str, Any], sizes: dict[str, Any], device: torch.device, rounds: int, peaks: Any
) -> dict[str, Any]:
    ours, hf = _models(spec["preset"], sizes["vocab"], device)
    ours.train()
    hf.train()
    x = torch.randint(0, sizes["vocab"], (spec["train_batch"], sizes["context"] + 1), device=device)
    tokens = spec["train_batch"] * sizes["context"] * sizes["steps"]
    flops = _flops_per_token(ours, sizes["context"]) * tokens
    out: dict[str, Any] = {}
    steps = {  # (impl, precision) -> a callable of `steps` optimizer steps
        (impl, name): _train_step(model, impl == "hf", dtype, x, sizes["steps"])
        for impl, model in (("ours", ours), ("hf", hf))
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16))
    }
    for name in ("fp16", "bf16"):  # ours against HF, interleaved, in each precision
        r = race(steps["ours", name], steps["hf", name], rounds)
        key = f"train_{name}"
        out.update(r.fields(key, tokens))
        out[f"{key}_mfu"] = flops / r.ours_median_s / peaks[name]["median"]
        out[f"hf_{key}_mfu"] = flops / r.base_median_s / peaks[name]["median"]
        out[f"{key}_loss_first_call"] = [steps["ours", name].losses[0], steps["hf", name].losses[0]]
        for impl in ("ours", "hf"):  # each side alone: the other's buffers are not counted
            _reset_memory(device)
            steps[impl, name]()
            out[f"{'hf_' if impl == 'hf' else ''}{key}_peak_memory_mb"] = _peak_memory(device)
    # the precisions on our engine, interleaved the same way: fp16's speed over bf16's
    p = race(steps["ours", "fp16"], steps["ours", "bf16"], rounds)
    out["fp16_over_bf16"] = p.speedup
    out["fp16_over_bf16_range"] = [min(p.ratios), max(p.ratios)]
    out["fp16_over_bf16_trusted"] = p.trusted
    return out


def bench_sample(
    spec: dict[str, Any], sizes: dict[str, Any], device: torch.device, rounds: int
) -> dict[str, Any]:
    from lmcollapse.sample import sample_batch

    ours, _ = _models(spec["preset"], sizes["vocab"], device)
    ours.eval()
    b, length, context = sizes["gen_batch"], sizes["gen_length"], sizes["context"]
    out: dict[str, Any] = {}
    for slide in (False, True):
        window = context if slide else length + 1
        if window > ours.shape.max_positions:
            continue

        def gen(window: int = window) -> None:
            g = torch.Generator(device=device).manual_seed(0)
            sample_batch(ours, b, length, eos_id=0, context=window, generator=g)
            _sync(device)

        _reset_memory(device)
        s = summary([b * length / t for t in repeated(gen, max(2, rounds // 2))])
        key = "sample_slide" if slide else "sample"
        out[f"{key}_tokens_per_s"] = s["median"]
        out[f"{key}_tokens_per_s_range"] = s["range"]
        out[f"{key}_peak_memory_mb"] = _peak_memory(device)
    return out


def bench_eval(
    spec: dict[str, Any], sizes: dict[str, Any], device: torch.device, rounds: int, scratch: Path
) -> dict[str, Any]:
    from lmcollapse.data.store import TokenStore, TokenStoreWriter

    ours, _ = _models(spec["preset"], sizes["vocab"], device)
    rng = np.random.default_rng(0)
    path = scratch / f"eval-{spec['preset']}"
    with TokenStoreWriter(path, vocab_size=sizes["vocab"], eos_id=0, overwrite=True) as w:
        for _ in range(sizes["eval_stories"]):
            n = int(min(rng.geometric(1 / 220), sizes["context"] - 2))  # TinyStories-like
            w.add(np.append(rng.integers(1, sizes["vocab"], max(n, 1)), 0))
    store = TokenStore.open(path)
    holder: dict[str, Any] = {}

    def evaluate() -> None:
        holder["r"] = ours.perplexity(store, context=sizes["context"])
        _sync(device)

    _reset_memory(device)
    s = summary([store.num_tokens / t for t in repeated(evaluate, max(2, rounds // 2))])
    return {
        "eval_tokens_per_s": s["median"],
        "eval_tokens_per_s_range": s["range"],
        "eval_peak_memory_mb": _peak_memory(device),
        "eval_loss": holder["r"].loss,
        "eval_loss_uniform": math.log(sizes["vocab"]),
    }


def project(r: dict[str, Any]) -> dict[str, float]:
    """Hours per generation at the paper's scale from the measured rates (fp16 training,
    sliding-window sampling as Algorithm 1, whole-story evaluation)."""
    sample = r.get("sample_slide_tokens_per_s") or r["sample_tokens_per_s"]
    hours = {
        "train_h": PAPER["epochs"] * PAPER["d0_tokens"] / r["train_fp16_tokens_per_s"] / 3600,
        "sample_h": PAPER["sampled_tokens"] / sample / 3600,
        "eval_h": PAPER["eval_tokens"] / r["eval_tokens_per_s"] / 3600,
    }
    hours["generation_h"] = sum(hours.values())
    hours["forty_generations_days"] = 40 * hours["generation_h"] / 24
    return hours


def end_to_end(device: torch.device, scratch: Path, smoke: bool) -> dict[str, Any]:
    """A mini pipeline run on the device: paper-1m on 20,000 world stories with a 50,257-id
    tokenizer, 2 generations of 4,000 sampled sequences of 600 tokens (the demo preset at toy
    sizes, 1 generation, when smoke)."""
    from scale import world_tokenizer  # GPT-Neo's 50,257 ids, as the paper's output layer

    from lmcollapse import run
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.rundir import load_metrics

    sets: dict[str, Any] = {
        "data": {"source": "builtin", "num_stories": 20_000},
        "training": {"epochs": 1, "batch_size": 64, "micro_batch_size": 64},
        "sampling": {"num_sequences": 4_000, "length": 600, "batch_size": 200},
        "evaluation": {"source": "holdout", "max_stories": 1_000, "stats_tokens": 200_000},
        "run": {"generations": 2, "device": str(device)},
    }
    preset = "paper-1m"
    if not smoke:
        sets["data"]["tokenizer"] = str(world_tokenizer(scratch / "tokenizer"))
    else:
        preset = "demo"
        sets["data"] = {"source": "builtin", "num_stories": 300, "tokenizer": "train"}
        sets["data.tokenizer_vocab_size"] = 1500  # the probes' " was" and " were" are tokens
        sets["training"] = {"epochs": 1, "batch_size": 8, "micro_batch_size": 8}
        sets["sampling"] = {"num_sequences": 16, "length": 64, "batch_size": 8}
        sets["evaluation"] = {"source": "holdout", "max_stories": 20, "stats_tokens": 2_000}
        sets["run"] = {"generations": 1, "device": str(device)}
    flat = {}
    for key, value in sets.items():
        if isinstance(value, dict) and "." not in key:
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    cfg = resolve(ExperimentConfig, preset=preset, overrides=[f"{k}={v}" for k, v in flat.items()])
    t0 = time.perf_counter()
    out = run(cfg, scratch / "e2e", progress=False)
    seconds = time.perf_counter() - t0
    metrics = load_metrics(out)
    rows = [m.get("seconds") or {} for m in metrics if m.get("generation", 0) >= 1]
    return {
        "preset": preset,
        "overrides": flat,
        "seconds": seconds,
        "generations": len(rows),
        "stage_seconds": rows,
        "perplexity": [m.get("perplexity") for m in metrics],
    }


def report(results: dict[str, Any]) -> None:
    print(f"\n{results['device_name']}, torch {results['torch']}")
    for name, r in results["configs"].items():
        peaks = r["peaks"]
        print(
            f"\n{name}: matmul peak fp16 {peaks['fp16']['median'] / 1e12:.1f}, bf16 "
            f"{peaks['bf16']['median'] / 1e12:.1f}, tf32 {peaks['tf32']['median'] / 1e12:.1f} "
            "TFLOP/s"
        )
        for name in ("fp16", "bf16"):
            k = f"train_{name}"
            lo, hi = r[k + "_speedup_range"]
            print(
                f"  train {name}  ours {r[k + '_tokens_per_s']:12,.0f} tok/s (MFU "
                f"{r[k + '_mfu']:.1%}, {r[k + '_peak_memory_mb']:,.0f} MB)  HF "
                f"{r['hf_' + k + '_tokens_per_s']:12,.0f} (MFU {r['hf_' + k + '_mfu']:.1%}, "
                f"{r['hf_' + k + '_peak_memory_mb']:,.0f} MB)  {r[k + '_speedup']:.2f}x  "
                f"{lo:.2f}-{hi:.2f} ({r[k + '_rounds']}){flag(r[k + '_trusted'])}"
            )
        lo, hi = r["fp16_over_bf16_range"]
        print(
            f"  fp16 / bf16 training speed (ours) {r['fp16_over_bf16']:.2f}x {lo:.2f}-{hi:.2f}"
            f"{flag(r['fp16_over_bf16_trusted'])}"
        )
        for key, what in (("sample", "whole context"), ("sample_slide", "sliding window")):
            if f"{key}_tokens_per_s" in r:
                print(
                    f"  sample ({what}, batch {results['sizes']['gen_batch']}, "
                    f"{results['sizes']['gen_length']} tokens) "
                    f"{r[key + '_tokens_per_s']:12,.0f} tok/s; peak memory "
                    f"{r[key + '_peak_memory_mb']:,.0f} MB"
                )
        print(
            f"  eval {r['eval_tokens_per_s']:12,.0f} tok/s; peak memory "
            f"{r['eval_peak_memory_mb']:,.0f} MB"
        )
        p = r["projection"]
        print(
            f"  paper scale, per generation: train {p['train_h']:.2f} h + sample "
            f"{p['sample_h']:.2f} h + eval {p['eval_h']:.3f} h = {p['generation_h']:.2f} h; "
            f"40 generations {p['forty_generations_days']:.1f} days"
        )
    e2e = results.get("end_to_end")
    if e2e:
        print(
            f"\nend to end ({e2e['preset']}, {e2e['generations']} generations): "
            f"{e2e['seconds']:.0f} s; per generation {e2e['stage_seconds']}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (--smoke)")
    ap.add_argument("--smoke", action="store_true", help="toy sizes: every path, in seconds")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end pipeline run")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"benchmarks/gpu.py: no CUDA device (torch {torch.__version__}, "
            f"cuda {torch.version.cuda or 'not built'}): nothing to measure on this machine"
        )
        return 0
    device = torch.device(args.device)
    sizes = SMOKE if args.smoke else FULL
    configs = SMOKE_CONFIGS if args.smoke else CONFIGS
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results: dict[str, Any] = {
        "device_name": name,
        "torch": torch.__version__,
        "rounds": args.rounds,
        "sizes": sizes,
        "configs": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="lmcollapse-gpu-bench-"))
    try:
        peaks = matmul_peaks(device, sizes["matmul"], args.rounds)
        for cname, spec in configs.items():
            r: dict[str, Any] = {"peaks": peaks}
            r.update(bench_train(spec, sizes, device, args.rounds, peaks))
            r.update(bench_sample(spec, sizes, device, args.rounds))
            r.update(bench_eval(spec, sizes, device, args.rounds, scratch))
            r["projection"] = project(r)
            results["configs"][cname] = r
            if args.json:  # what was measured survives a later failure or the time limit
                args.json.write_text(json.dumps(results, indent=1) + "\n")
        if sizes["e2e"] and not args.no_e2e:
            results["end_to_end"] = end_to_end(device, scratch, args.smoke)
        report(results)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
