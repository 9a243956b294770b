"""Engine benchmark: our GPT-Neo engine against the Hugging Face baseline the published code uses,
in one process and one run, same config, batch and seed.

    python benchmarks/engine.py                        # both configs, 5 rounds (~12 min, 2 cores)
    python benchmarks/engine.py --config tiny --rounds 7 --json results.json

For each config (`paper-1m` at context 512 with the GPT-Neo vocabulary of 50,257; `tiny`, the CPU
preset with a 2,048-token vocabulary):
    train     tokens/s of forward + backward + AdamW step: GPTNeo(x, y) with the fused output
              projection and cross-entropy vs GPTNeoForCausalLM(input_ids, labels)
    generate  tokens/s of pure sampling with a KV cache, same batch and length, the context
              kept whole as generate() keeps it: sample_batch vs
              generate(do_sample=True, top_k=0, top_p=1.0, temperature=1.0); for paper-1m also
              at the paper's length 600 (generate600), and with Algorithm 1's sliding window,
              which generate() does not do (a full forward pass of 512 tokens per token past 512)
    eval      tokens/s of held-out perplexity over whole stories: our batched perplexity vs a
              per-story HF loss loop
    flops     training FLOP/s (6 × parameters + attention, per token) as a fraction of the
              machine's measured fp32 matmul peak (a 2048 × 2048 product)
Each comparison runs ours and the baseline back to back in `--rounds` short rounds (see
_timing.py: the order alternates, the ratio is taken per round): the JSON's `*_speedup` is the
median ratio, `*_speedup_range` its range over the rounds, and `*_trusted` false when the rounds
disagree by more than 1.5x (the table flags those). Weights are equal in both implementations,
so the losses printed next to the speeds must agree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.models import PRESETS, build_model, model_config
from lmcollapse.sample import sample_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import flag, race, repeated, summary

CONFIGS: dict[str, dict[str, Any]] = {
    "paper-1m": {
        "preset": "paper-1m",
        "vocab": 50_257,
        "context": 512,
        "train_batch": 8,
        "gen_batch": 200,  # the paper's generation batch
        "gen_length": 32,
        "paper_length": (8, 600),  # batch, length: the paper's 600 tokens
        "eval_stories": 64,
        "steps": 2,
    },
    "tiny": {
        "preset": "tiny",
        "vocab": 2_048,
        "context": 256,
        "train_batch": 32,
        "gen_batch": 64,
        "gen_length": 200,
        "eval_stories": 200,
        "steps": 5,
    },
}


SMOKE: dict[str, dict[str, Any]] = {  # --smoke: every path at toy sizes (the tests)
    "tiny": {**CONFIGS["tiny"], "train_batch": 4, "gen_batch": 8, "gen_length": 16, "steps": 1}
    | {"eval_stories": 12, "context": 128},
    "paper-1m": {**CONFIGS["paper-1m"], "train_batch": 1, "gen_batch": 2, "gen_length": 8}
    | {"paper_length": (1, 520), "eval_stories": 4, "steps": 1},
}


def matmul_peak(rounds: int = 5) -> dict[str, float]:
    """fp32 matmul FLOP/s of a 2048 x 2048 product: median and range over rounds."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return summary([2 * 2048**3 / t for t in repeated(lambda: a @ b, max(rounds, 5))])


def _hf_twin(ours: torch.nn.Module) -> torch.nn.Module:
    from transformers import GPTNeoForCausalLM

    hf = GPTNeoForCausalLM(ours.config)
    hf.load_state_dict(ours.state_dict(), strict=False)
    return hf


def bench_train(spec: dict[str, Any], rounds: int) -> dict[str, Any]:
    torch.manual_seed(0)
    ours = build_model(model_config(spec["preset"]), spec["vocab"], 0)
    hf = _hf_twin(ours)
    x = torch.randint(0, spec["vocab"], (spec["train_batch"], spec["context"] + 1))
    tokens = spec["train_batch"] * spec["context"]
    opt_o = torch.optim.AdamW(
        ours.parameters(), lr=5e-4, betas=(0.9, 0.95), weight_decay=0.1, foreach=True
    )
    opt_h = torch.optim.AdamW(hf.parameters(), lr=5e-4, betas=(0.9, 0.95), weight_decay=0.1)
    losses = {}

    def step_ours() -> None:
        for _ in range(spec["steps"]):
            loss = ours(x[:, :-1], x[:, 1:])
            loss.backward()
            opt_o.step()
            opt_o.zero_grad(set_to_none=True)
            losses.setdefault("ours", float(loss.detach()))

    def step_hf() -> None:
        for _ in range(spec["steps"]):
            out = hf(input_ids=x[:, :-1], labels=x[:, :-1])  # HF shifts the labels inside
            out.loss.backward()
            opt_h.step()
            opt_h.zero_grad(set_to_none=True)
            losses.setdefault("hf", float(out.loss.detach()))

    r = race(step_ours, step_hf, rounds)
    params = sum(p.numel() for n, p in ours.named_parameters() if "wpe" not in n)
    s = ours.shape
    flops_per_token = 6 * params + 6 * s.num_layers * spec["context"] * s.hidden_size
    work = tokens * spec["steps"]
    return {
        **r.fields("train", work),
        "train_flops_per_s": flops_per_token * work / r.ours_median_s,
        "first_loss_ours": losses["ours"],
        "first_loss_hf": losses["hf"],
    }


def bench_generate(
    spec: dict[str, Any],
    b: int,
    length: int,
    rounds: int,
    slide: bool = False,
    prefix: str = "generate",
) -> dict[str, Any]:
    """Ours (context = the model's window when `slide`, Algorithm 1; else the whole sequence, as
    transformers' generate keeps it) against generate() at the same batch and length."""
    torch.manual_seed(0)
    ours = build_model(model_config(spec["preset"]), spec["vocab"], 0).eval()
    hf = _hf_twin(ours).eval()
    context = spec["context"] if slide else length + 1

    def gen_ours() -> None:
        sample_batch(
            ours,
            b,
            length,
            eos_id=0,
            context=context,
            generator=torch.Generator().manual_seed(0),
        )

    def gen_hf() -> None:
        with torch.no_grad():
            hf.generate(
                torch.zeros((b, 1), dtype=torch.long),
                attention_mask=torch.ones((b, 1), dtype=torch.long),
                do_sample=True,
                top_k=0,
                top_p=1.0,
                temperature=1.0,
                max_new_tokens=length,
                min_new_tokens=length,
                pad_token_id=0,
                eos_token_id=None,
            )

    return race(gen_ours, gen_hf, rounds).fields(prefix, b * length)


def bench_slide(spec: dict[str, Any], b: int, length: int) -> dict[str, float]:
    """Algorithm 1's sliding window at the paper's length: a full forward pass of the window per
    token past the context. Reported as tokens/s (transformers' generate does not slide)."""
    torch.manual_seed(0)
    ours = build_model(model_config(spec["preset"]), spec["vocab"], 0).eval()
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()  # one call: it is long (a full window pass per token past 512)
    sample_batch(ours, b, length, eos_id=0, context=spec["context"], generator=g)
    return {"generate600_slide_tokens_per_s": b * length / (time.perf_counter() - t0)}


def bench_eval(spec: dict[str, Any], scratch: Path, rounds: int) -> dict[str, Any]:
    torch.manual_seed(0)
    ours = build_model(model_config(spec["preset"]), spec["vocab"], 0).eval()
    hf = _hf_twin(ours).eval()
    rng = np.random.default_rng(0)
    path = scratch / f"eval-{spec['preset']}"
    with TokenStoreWriter(path, vocab_size=spec["vocab"], eos_id=0, overwrite=True) as w:
        for _ in range(spec["eval_stories"]):
            n = int(rng.integers(60, min(300, spec["context"] - 2)))  # + EOS fits the positions
            w.add(np.append(rng.integers(1, spec["vocab"], n), 0))
    store = TokenStore.open(path)
    ours_result: dict[str, float] = {}

    def eval_ours() -> None:
        ours_result.update(ours.perplexity(store, context=spec["context"]).to_plain())

    hf_total = [0.0, 0]

    def eval_hf() -> None:  # the per-story loop of the published code
        hf_total[:] = [0.0, 0]
        with torch.no_grad():
            for i in range(store.num_stories):
                ids = torch.from_numpy(np.concatenate([[0], store.story(i)]).astype(np.int64))[None]
                out = hf(input_ids=ids, labels=ids)
                n = ids.shape[1] - 1
                hf_total[0] += float(out.loss) * n
                hf_total[1] += n

    r = race(eval_ours, eval_hf, rounds)
    return {
        **r.fields("eval", ours_result["tokens"]),
        "eval_loss_ours": ours_result["loss"],
        "eval_loss_hf": hf_total[0] / hf_total[1],
    }


def run_config(name: str, scratch: Path, rounds: int, smoke: bool = False) -> dict[str, Any]:
    """One config, ours against HF, in this process."""
    spec = (SMOKE if smoke else CONFIGS)[name]
    peak = matmul_peak(rounds)
    r: dict[str, Any] = {
        "spec": spec,
        "model": PRESETS[spec["preset"]],
        "rounds": rounds,
        "matmul_peak_flops_per_s": peak["median"],
        "matmul_peak_range": peak["range"],
    }
    r.update(bench_train(spec, rounds))
    r["train_fraction_of_peak"] = r["train_flops_per_s"] / peak["median"]
    r.update(bench_generate(spec, spec["gen_batch"], spec["gen_length"], rounds))
    if spec.get("paper_length"):  # the paper's 600 tokens past a 512 context
        b, length = spec["paper_length"]
        r.update(bench_generate(spec, b, length, max(3, rounds // 2), prefix="generate600"))
        r.update(bench_slide(spec, b, length))
    r.update(bench_eval(spec, scratch, rounds))
    return r


def report(name: str, r: dict[str, Any]) -> None:
    spec = r["spec"]
    print(f"\n{name}: vocabulary {spec['vocab']}, context {spec['context']}")
    print(f"  {'':11} {'ours tok/s':>11} {'HF tok/s':>11} {'speedup':>8}  range (rounds)")
    keys = ["train", "generate", "eval"] + (["generate600"] if "generate600_speedup" in r else [])
    for key in keys:
        lo, hi = r[key + "_speedup_range"]
        print(
            f"  {key:11} {r[key + '_tokens_per_s']:11,.0f} "
            f"{r['hf_' + key + '_tokens_per_s']:11,.0f} "
            f"{r[key + '_speedup']:7.2f}x  {lo:.2f}-{hi:.2f} ({r[key + '_rounds']})"
            f"{flag(r[key + '_trusted'])}"
        )
    if "generate600_slide_tokens_per_s" in r:
        print(
            f"  generate600 with Algorithm 1's sliding window: "
            f"{r['generate600_slide_tokens_per_s']:,.0f} tok/s (generate() does not slide)"
        )
    print(
        f"  training {r['train_flops_per_s'] / 1e9:.1f} GFLOP/s = "
        f"{r['train_fraction_of_peak']:.0%} of the "
        f"{r['matmul_peak_flops_per_s'] / 1e9:.0f} GFLOP/s matmul peak (median; "
        f"{r['matmul_peak_range'][0] / 1e9:.0f}-{r['matmul_peak_range'][1] / 1e9:.0f}); "
        "first losses ours "
        f"{r['first_loss_ours']:.4f} / HF {r['first_loss_hf']:.4f}; "
        f"eval loss {r['eval_loss_ours']:.4f} / {r['eval_loss_hf']:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds per comparison (default 5)"
    )
    ap.add_argument("--smoke", action="store_true", help="toy sizes: every path in seconds")
    ap.add_argument("--quiet", action="store_true", help="no table (used for the subprocesses)")
    args = ap.parse_args()
    results: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "torch": torch.__version__,
        "configs": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="lmcollapse-engine-bench-"))
    try:
        if args.config == "all":  # each config in a fresh process: no state carried over
            for name in CONFIGS:
                part = scratch / f"{name}.json"
                cmd = [sys.executable, __file__, "--config", name, "--json", str(part), "--quiet"]
                cmd += ["--rounds", str(args.rounds)] + (["--smoke"] if args.smoke else [])
                subprocess.run(cmd, check=True)
                results["configs"][name] = json.loads(part.read_text())["configs"][name]
        else:
            results["configs"][args.config] = run_config(
                args.config, scratch, args.rounds, args.smoke
            )
        if not args.quiet:
            for name, r in results["configs"].items():
                report(name, r)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
