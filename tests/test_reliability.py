"""Reliability (issue 12): runs resume from a kill at any point, and refused input changes nothing.

Each test reproduces a defect found by attacking the subcommands, and now passes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import NGRAM, TINY_NEO, lmc
from test_pipeline import metrics_of  # every generation's metrics without the timings


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


def test_a_run_killed_during_data_preparation_resumes(ngram_run: Path, tmp_path: Path) -> None:
    """The manifest is written before the data is prepared, so the rerun resumes the run (it
    used to say 'not empty and not an lmcollapse run') and ends where an unkilled run ends."""
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lmcollapse", "run", "--quiet", "--out", str(killed), *NGRAM]
    _kill_when(cmd, killed / "data" / ".prepare.json")
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "preparing" and not (killed / "data" / "corpus.json").exists()
    again = lmc("run", "--quiet", "--out", str(killed), *NGRAM)
    assert again.returncode == 0, again.stderr
    assert metrics_of(killed) == metrics_of(ngram_run)
    assert json.loads((killed / "manifest.json").read_text())["status"] == "complete"


def test_bad_input_for_a_new_run_still_leaves_nothing(tmp_path: Path) -> None:
    """Recording a new run first must not leave it behind when its data is refused."""
    out = tmp_path / "bad"
    missing = f"data.source={tmp_path / 'missing.txt'}"
    done = lmc("run", "--out", str(out), *NGRAM, "--set", missing)
    assert done.returncode == 2 and done.stderr.startswith("lmcollapse: error:")
    assert "missing.txt" in done.stderr and done.stderr.count("\n") == 1
    assert not out.exists()
    (tmp_path / "empty").mkdir()  # a directory given empty is left empty
    done = lmc("run", "--out", str(tmp_path / "empty"), *NGRAM, "--set", missing)
    assert done.returncode == 2 and list((tmp_path / "empty").iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Never a wrong number with exit 0: what a run reads back is checked against its manifest


def _copy(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / run.name)
    return tmp_path / run.name


def _refused(done: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("lmcollapse: error:") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr and all(p in done.stderr for p in phrases), done.stderr


def _permute(path: Path) -> None:
    tokens = np.load(path, mmap_mode="r+")
    tokens[:] = np.random.default_rng(0).permutation(np.asarray(tokens))
    tokens.flush()


def test_a_changed_corpus_is_refused_on_resume(ngram_run: Path, tmp_path: Path) -> None:
    """Values of gen_002/corpus/tokens.npy permuted in place (same size): resuming used to train
    generation 3 on them with exit 0 (perplexity 18.18 against 9.02)."""
    run = _copy(ngram_run, tmp_path)
    _permute(run / "gen_002" / "corpus" / "tokens.npy")
    more = lmc("run", "--quiet", "--out", str(run), *NGRAM, "--set", "run.generations=3")
    _refused(more, "gen_002/corpus/tokens.npy does not match the checksum", "remove gen_002")
    assert not (run / "gen_003").exists()


def test_d0_or_the_holdout_changed_in_place_is_refused(ngram_run: Path, tmp_path: Path) -> None:
    """Their tokens permuted in place (meta.json untouched): resuming used to measure generation
    3's perplexity on the scrambled holdout (17601.94 against 9.70), and `probe` to count a
    scrambled D0 with exit 0."""
    for store in ("holdout", "d0"):
        run = _copy(ngram_run, tmp_path / store)
        _permute(run / "data" / store / "tokens.npy")
        more = lmc("run", "--quiet", "--out", str(run), *NGRAM, "--set", "run.generations=3")
        _refused(more, "is not the data this run started with", f"{store}_checksum")
        assert not (run / "gen_003").exists()
        _refused(lmc("probe", str(run), "--context", " there"), f"{store}_checksum")


def test_a_rebuilt_d0_from_a_changed_source_is_refused(tmp_path: Path) -> None:
    """data/ deleted and the source file changed: resuming used to rebuild another D0 silently
    (generation 3's truth for ' was' became 0.0 where 0-2 had 0.063)."""
    from lmcollapse.data.stories import generate

    source = tmp_path / "stories.txt"
    source.write_text("\n<|endoftext|>\n".join(generate(200, seed=0)) + "\n<|endoftext|>\n")
    run = tmp_path / "run"
    args = [*NGRAM, "--set", f"data.source={source}", "--set", "data.num_stories=null"]
    assert lmc("run", "--quiet", "--out", str(run), *args).returncode == 0
    shutil.rmtree(run / "data")
    source.write_text("\n<|endoftext|>\n".join(generate(200, seed=1)) + "\n<|endoftext|>\n")
    more = lmc("run", "--quiet", "--out", str(run), *args, "--set", "run.generations=3")
    _refused(more, "is not the data this run started with", "restore the source")
    assert not (run / "gen_003").exists()
    # the rebuilt data is not left behind: `sample` used to decode with its other tokenizer,
    # and a restored source used to meet the same refusal (prepare reused the rebuilt data/)
    assert not (run / "data").exists()
    _refused(lmc("sample", str(run), "-g", "1", "-n", "1"), "data")
    source.write_text("\n<|endoftext|>\n".join(generate(200, seed=0)) + "\n<|endoftext|>\n")
    again = lmc("run", "--quiet", "--out", str(run), *args, "--set", "run.generations=3")
    assert again.returncode == 0, again.stderr


def test_a_damaged_model_is_named_by_sample_and_probe(neo_run: Path, tmp_path: Path) -> None:
    """4 KB overwritten inside model.safetensors: `sample` used to print 'special special …'
    with exit 0, and `probe` to fail without naming the file."""
    run = _copy(neo_run, tmp_path)
    weights = run / "gen_001" / "model" / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.seek(weights.stat().st_size // 2)
        fh.write(b"\x7f" * 4096)
    where = "gen_001/model does not match the SHA-256"
    _refused(lmc("sample", str(run), "-g", "1", "-n", "1"), where)
    _refused(lmc("probe", str(run), "--context", " there", "--next", " was"), where)
    # with no checksum recorded (a run from before 0.3), the loader's own error names the file
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["generations"]["1"]["model_sha256"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    weights.write_bytes(b"\xff" * 64)  # a header that is not one
    _refused(lmc("sample", str(run), "-g", "1", "-n", "1"), "gen_001/model")
    _refused(lmc("probe", str(run), "--context", " there", "--next", " was"), "gen_001/model")


def test_a_hand_edited_config_is_refused_where_it_is_read(ngram_run: Path, tmp_path: Path) -> None:
    """config.yaml edited by hand: `theory --from-run` and `sample` used the edited values."""
    run = _copy(ngram_run, tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("k: 1.0", "k: 3.0"))
    for command in (["theory", "--from-run", str(run)], ["sample", str(run), "-g", "1"]):
        _refused(lmc(*command), "config.yaml was changed after the run wrote it")
    _refused(lmc("run", "--out", str(run), *NGRAM), "config.yaml was changed")


# ----------------------------------------------------------------------------------------------
# Writes stay inside the run: no link is followed, no run file is overwritten by a report


def test_links_in_a_run_directory_are_refused_not_followed(ngram_run: Path, tmp_path: Path) -> None:
    """A run.lock linked to a file outside the run used to get that file overwritten with a
    pid; linked figures/ or theory/ folders were written to outside the run."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    for name in ("run.lock", "run.log"):
        run = _copy(ngram_run, tmp_path / name)
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(outside)
        more = lmc("run", "--quiet", "--out", str(run), *NGRAM, "--set", "run.generations=3")
        _refused(more, f"{name} is a symbolic link")
        assert outside.read_text() == "keep me" and not (run / "gen_003").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _copy(ngram_run, tmp_path / "theory")
    (run / "theory").symlink_to(elsewhere, target_is_directory=True)
    _refused(lmc("theory", "--from-run", str(run)), "theory is a symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_a_report_never_overwrites_a_runs_own_files(ngram_run: Path, tmp_path: Path) -> None:
    run = _copy(ngram_run, tmp_path)
    manifest = (run / "manifest.json").read_text()
    for target in (run / "manifest.json", run / "gen_001" / "model" / "config.json"):
        before = target.read_text()
        _refused(lmc("report", str(run), "--out", str(target)), "is inside the run")
        assert target.read_text() == before
    assert (run / "manifest.json").read_text() == manifest
    done = lmc("report", str(run), "--out", str(run / "report.html"))  # its own place
    assert done.returncode == 0, done.stderr
    other = _copy(ngram_run, tmp_path / "other")  # but not another run's report in its place
    before = (run / "report.html").read_text()
    _refused(lmc("report", str(other), "--out", str(run / "report.html")), "is inside the run")
    _refused(lmc("report", str(run), str(other), "--out", str(run / "report.html")), "inside")
    assert (run / "report.html").read_text() == before
    assert lmc("report", str(run), "--out", str(tmp_path / "r.html")).returncode == 0


# ----------------------------------------------------------------------------------------------
# One line, exit 2, never a traceback: what used to escape


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


DAMAGE = {  # name: (how the run copy is damaged (or None), the command, a phrase of the error)
    "device": (None, ["run", "--set", "run.device=cudafoo"], "run.device: expected auto, cpu"),
    "seed": (None, ["sample", "{run}", "-g", "1", "--seed", str(2**64)], "--seed must be in"),
    "num": (None, ["sample", "{run}", "-g", "1", "--num", "1000000000"], "GiB for the sampler"),
    "length": (None, ["sample", "{run}", "-g", "1", "--length", str(10**12)], "ask for fewer"),
    "metrics": (
        lambda r: _truncate(r / "gen_002" / "metrics.json"),
        ["status", "{run}"],
        "gen_002/metrics.json is damaged",
    ),
    "manifest-list": (
        lambda r: (r / "manifest.json").write_text(
            json.dumps(json.loads((r / "manifest.json").read_text()) | {"generations": []})
        ),
        ["status", "{run}"],
        "its generations are not a mapping",
    ),
    "probes.npz": (
        lambda r: (r / "gen_002" / "probes.npz").write_text("garbage"),
        ["theory", "--from-run", "{run}"],
        "gen_002/probes.npz is damaged",
    ),
    "deep-yaml": (
        lambda r: (r / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000),
        ["config", "check", "{run}/deep.yaml"],
        "nested too deeply",
    ),
    "tokenizer.json": (
        lambda r: (r / "data" / "tokenizer" / "tokenizer.json").write_text("not json"),
        ["probe", "{run}", "--context", " there"],
        "tokenizer.json is not a tokenizer file",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_what_used_to_be_a_traceback_is_one_line(case: str, ngram_run: Path, tmp_path) -> None:
    damage, command, phrase = DAMAGE[case]
    run = _copy(ngram_run, tmp_path)
    if damage is not None:
        damage(run)
    args = [a.replace("{run}", str(run)) for a in command]
    if args[0] == "run":
        args += ["--out", str(tmp_path / "new")]
    _refused(lmc(*args), phrase)


def test_a_damaged_samples_file_still_gives_a_report(ngram_run: Path, tmp_path: Path) -> None:
    run = _copy(ngram_run, tmp_path)
    (run / "gen_001" / "samples.txt").write_bytes(b"\xff\xfe not utf-8")
    done = lmc("report", str(run), "--out", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    assert "\ufffd" in (tmp_path / "r.html").read_text()  # shown, marked undecodable


# ----------------------------------------------------------------------------------------------
# The minor ones


def test_the_second_of_two_runs_started_together_is_told_the_holder(tmp_path: Path) -> None:
    """The loser used to be told 'not an lmcollapse run' about a folder the winner had only
    just created (its lock in it, no manifest yet)."""
    import lmcollapse
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.errors import InvalidInput
    from lmcollapse.rundir import RunLock

    (tmp_path / "r").mkdir()
    cfg = resolve(ExperimentConfig, preset="ngram-demo")
    with (
        RunLock(tmp_path / "r" / "run.lock"),  # the winner, before its manifest
        pytest.raises(InvalidInput, match=f"is being written by pid {os.getpid()}"),
    ):
        lmcollapse.run(cfg, tmp_path / "r", progress=False)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["run.lock"]


def test_temporary_files_left_by_a_killed_writer_are_removed(ngram_run: Path, tmp_path) -> None:
    run = _copy(ngram_run, tmp_path)
    (run / ".manifest.json.x1y2.tmp").write_text("{half")
    assert lmc("run", "--quiet", "--out", str(run), *NGRAM).returncode == 0
    assert not list(run.glob(".*.tmp"))


def test_corpus_stats_refuses_a_negative_seed() -> None:
    done = lmc("corpus", "stats", "--data", "builtin", "--context", " there", "--seed", "-1")
    _refused(done, "--seed")


def test_a_diverged_training_says_so_and_how_to_recover(tmp_path: Path) -> None:
    """It was reported as bad input (exit 2) by whatever met the NaNs first."""
    args = [*TINY_NEO, "--set", "training.learning_rate=1e30", "--set", "run.generations=1"]
    done = lmc("run", "--quiet", "--out", str(tmp_path / "r"), *args)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "generation 1: the training diverged (mean loss nan in epoch 1" in done.stderr
    assert "lower training.learning_rate" in done.stderr
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "diverged" in manifest["error"]


def test_a_full_disk_names_the_file_and_what_to_do(ngram_run: Path, tmp_path, monkeypatch) -> None:
    """It used to print 'No space left on device' with no path (or a temporary file's)."""
    import errno
    import tempfile

    from click.testing import CliRunner

    from lmcollapse.cli import main

    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    target = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(ngram_run), "--out", str(target)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"cannot write or read {target}: No space left on device" in result.output
    assert "check the free space and permissions there" in result.output


def test_bad_input_found_after_a_finished_generation_keeps_the_run(tmp_path: Path) -> None:
    """Refused input of a new run removes what it wrote only while nothing is finished: here
    generation 2 cannot be composed (Mix needs more of S_1 than was generated), and generation
    1 stays, the run marked failed."""
    out = tmp_path / "r"
    args = [*NGRAM, "--set", "paradigm.name=mix", "--set", "paradigm.lam=0.3"]
    args += ["--set", "sampling.mode=stream", "--set", "sampling.num_sequences=20"]
    done = lmc("run", "--quiet", "--out", str(out), *args)
    _refused(done, "generation 2 (mix) needs")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["generations"]["1"]["status"] == "complete"
    assert (out / "gen_001" / "metrics.json").is_file()


def test_a_refused_new_run_leaves_no_empty_parents(tmp_path: Path) -> None:
    """The default --out is runs/<preset>: a refused run used to leave an empty runs/ behind."""
    missing = f"data.source={tmp_path / 'missing.txt'}"
    done = subprocess.run(
        [sys.executable, "-m", "lmcollapse", "run", "--preset", "ngram-demo", "--set", missing],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and not (tmp_path / "runs").exists()
