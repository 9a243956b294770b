"""Shared by the reliability tests: two tiny runs' arguments and the command in a subprocess."""

from __future__ import annotations

import subprocess
import sys

NGRAM = [
    "--preset",
    "ngram-demo",
    *("--set", "data.num_stories=400"),
    *("--set", "data.tokenizer_vocab_size=500"),
    *("--set", "run.generations=2"),
    *("--set", "sampling.length=200"),
    *("--set", "sampling.batch_size=100"),  # S_n in several batches (a kill test's point)
    *("--set", "evaluation.stats_tokens=3000"),
]
TINY_NEO_SETTINGS = [  # a GPT-Neo of 2 × 16 on 120 built-in stories: seconds per generation
    "data.num_stories=120",
    "data.tokenizer_vocab_size=600",
    "model.num_layers=2",
    "model.hidden_size=16",
    "model.num_heads=2",
    "model.max_position_embeddings=64",
    "model.window_size=16",
    "training.batch_size=8",
    "training.micro_batch_size=8",
    "training.context_length=64",
    "training.epochs=1",
    "training.learning_rate=3e-3",
    "sampling.length=48",
    "sampling.batch_size=16",
    "evaluation.context_length=64",
    "evaluation.max_stories=10",
    "evaluation.num_samples=2",
    "evaluation.stats_tokens=2000",
]
TINY_NEO = [
    "--preset",
    "demo",
    *(x for s in [*TINY_NEO_SETTINGS, "run.generations=2"] for x in ("--set", s)),
]


def lmc(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """`lmcollapse ARGS` as a user runs it, but in-process (an interpreter start saved per call):
    the same one-line errors and exit codes; an exception that escapes fails the test with its
    traceback. `fresh_lmc` starts a new interpreter where a test needs one."""
    from click.testing import CliRunner

    from lmcollapse.cli import main

    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, r.stderr)


def fresh_lmc(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """`lmcollapse ARGS` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "lmcollapse", *args], capture_output=True, text=True, timeout=timeout
    )
