"""SIGKILL at each point of a generation resumes to the metrics of an uninterrupted run (issue 12).

A small driver runs `lmcollapse run` in a subprocess with one low-level function wrapped so that
the process kills itself (SIGKILL: no cleanup, no finally) at an exact point of generation 2:
mid-training (at an optimizer step), mid-sampling (after S_2's first batch reached its writer),
mid-evaluation (after p̂_2's distributions are written, before the corpus statistics), after
gen_002/metrics.json is written but before the manifest says so, and while the final report is
written (its temporary file complete, not yet renamed). The same command then resumes. Data
preparation has its own test (test_reliability). No product code knows about these points.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpers import NGRAM, TINY_NEO
from test_pipeline import metrics_of

DRIVER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from lmcollapse import artifacts, pipeline, train
    from lmcollapse.data import store

    point, argv = sys.argv[1], sys.argv[2:]
    at = {"stage": None, "n": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def during(stage):
        return at["stage"] == stage and at["n"] == 2

    def tracked(stage):
        def run_stage(ctx, g):
            at["stage"], at["n"] = stage.__name__, g.n
            return stage(ctx, g)
        return run_stage

    wrapped = {s: tracked(s) for s in pipeline.STAGES}
    pipeline.TIMED = {wrapped[s]: name for s, name in pipeline.TIMED.items()}
    pipeline.STAGES = tuple(wrapped[s] for s in pipeline.STAGES)

    if point == "training":
        lr_lambda = train.lr_lambda
        def patched(*a, **k):
            f = lr_lambda(*a, **k)
            return lambda step: die() if during("fit") and step == 2 else f(step)
        train.lr_lambda = patched
    elif point == "sampling":
        add_flat = store.TokenStoreWriter.add_flat
        def patched(self, *a, **k):
            add_flat(self, *a, **k)
            if during("sample"):
                die()
        store.TokenStoreWriter.add_flat = patched
    elif point == "evaluation":
        write_npz = pipeline.atomic_write_npz
        def patched(path, arrays):
            write_npz(path, arrays)
            if during("evaluate"):
                die()
        pipeline.atomic_write_npz = patched
    elif point == "after-metrics":
        write_json = pipeline.atomic_write_json
        def patched(path, obj, **k):
            write_json(path, obj, **k)
            if during("record") and Path(path).name == "metrics.json":
                die()
        pipeline.atomic_write_json = patched
    elif point == "report":
        replace = os.replace
        def patched(src, dst, *a, **k):
            if Path(dst).name == "report.html" and at["n"] == 2 and at["stage"] == "record":
                die()  # the final report: its temporary file is complete, not yet renamed
            return replace(src, dst, *a, **k)
        artifacts.os.replace = patched
    from lmcollapse.cli import main
    main(argv, prog_name="lmcollapse")
""")
POINTS = {  # point -> the run it interrupts
    "training": TINY_NEO,
    "sampling": NGRAM,
    "evaluation": NGRAM,
    "after-metrics": NGRAM,
    "report": NGRAM,
}


def _killed(out: Path, args: list[str], driver: Path, point: str) -> int:
    """The run, killed at `point`, in a subprocess: its exit status."""
    cmd = [sys.executable, str(driver), point, "run", "--quiet", "--out", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300).returncode


def _cli(*args: str) -> Any:
    """The same command resumed, in-process (a second interpreter start saved)."""
    from lmcollapse.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_any_point_resumes_to_the_same_metrics(
    point: str, ngram_run: Path, neo_run: Path, tmp_path: Path
) -> None:
    args = POINTS[point]
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    out = tmp_path / "run"
    assert _killed(out, args, driver, point) == -signal.SIGKILL, "the kill point was never reached"
    at_kill = (out / "report.html").read_text(encoding="utf-8")  # generation 1's
    status = json.loads(_cli("status", str(out), "--json").stdout)
    assert status["generations_done"] == ([1, 2] if point == "report" else [1])
    resumed = _cli("run", "--quiet", "--out", str(out), *args)
    assert resumed.exit_code == 0, resumed.output
    whole = neo_run if args is TINY_NEO else ngram_run
    assert metrics_of(out) == metrics_of(whole)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete"
    final = (out / "report.html").read_text(encoding="utf-8")
    assert final.rstrip().endswith("</html>") and final != at_kill  # the final one, whole
    assert not list(out.rglob(".*.tmp")), "a killed writer's temporary file was left behind"
