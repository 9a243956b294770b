"""Reliability (issue 12): runs resume from a kill at any point, and refused input changes nothing.

Each test reproduces a defect found by attacking the subcommands, and now passes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NGRAM = [
    "--preset",
    "ngram-demo",
    "--set",
    "data.num_stories=400",
    "--set",
    "data.tokenizer_vocab_size=500",
    "--set",
    "run.generations=2",
    "--set",
    "sampling.length=200",
    "--set",
    "evaluation.stats_tokens=3000",
]
TIMING = {"seconds", "tokens_per_s"}


def _lmc(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lmcollapse", *args], capture_output=True, text=True, timeout=timeout
    )


def _metrics(run: Path) -> list[dict]:
    """Every generation's metrics without the timings."""
    out = []
    for d in sorted(run.glob("gen_[0-9][0-9][0-9]")):
        m = json.loads((d / "metrics.json").read_text())
        m.pop("seconds", None)
        for part in ("train", "sample"):
            for key in TIMING:
                m.get(part, {}).pop(key, None)
        out.append(m)
    return out


def _kill_when(cmd: list[str], appears: Path, timeout: float = 120.0) -> None:
    """Start `cmd`, SIGKILL it the moment `appears` exists (polling every 5 ms)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while not appears.exists():
            assert proc.poll() is None, f"finished before {appears} appeared"
            assert time.monotonic() - t0 < timeout, f"{appears} never appeared"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


def test_a_run_killed_during_data_preparation_resumes(tmp_path: Path) -> None:
    """The manifest is written before the data is prepared, so the rerun resumes the run (it
    used to say 'not empty and not an lmcollapse run') and ends where an unkilled run ends."""
    whole = tmp_path / "whole"
    assert _lmc("run", "--quiet", "--out", str(whole), *NGRAM).returncode == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lmcollapse", "run", "--quiet", "--out", str(killed), *NGRAM]
    _kill_when(cmd, killed / "data" / ".prepare.json")
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "preparing" and not (killed / "data" / "corpus.json").exists()
    again = _lmc("run", "--quiet", "--out", str(killed), *NGRAM)
    assert again.returncode == 0, again.stderr
    assert _metrics(killed) == _metrics(whole)
    assert json.loads((killed / "manifest.json").read_text())["status"] == "complete"


def test_bad_input_for_a_new_run_still_leaves_nothing(tmp_path: Path) -> None:
    """Recording a new run first must not leave it behind when its data is refused."""
    out = tmp_path / "bad"
    missing = f"data.source={tmp_path / 'missing.txt'}"
    done = _lmc("run", "--out", str(out), *NGRAM, "--set", missing)
    assert done.returncode == 2 and done.stderr.startswith("lmcollapse: error:")
    assert "missing.txt" in done.stderr and done.stderr.count("\n") == 1
    assert not out.exists()
    (tmp_path / "empty").mkdir()  # a directory given empty is left empty
    done = _lmc("run", "--out", str(tmp_path / "empty"), *NGRAM, "--set", missing)
    assert done.returncode == 2 and list((tmp_path / "empty").iterdir()) == []
