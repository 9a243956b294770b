"""`lmcollapse run` end to end on a tiny config: every paradigm, resume, refusals, the
inspection commands and the report in a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import NGRAM, TINY_NEO_SETTINGS, lmc
from lmcollapse.cli import main

TINY = [*TINY_NEO_SETTINGS, "run.generations=3"]


def sets(*extra: str) -> list[str]:
    out = []
    for item in [*TINY, *extra]:
        out += ["--set", item]
    return out


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def metrics_of(run: Path) -> list[dict]:
    """Every generation's metrics without the timings (which differ from run to run)."""
    out = []
    for d in sorted(run.glob("gen_*")):
        m = json.loads((d / "metrics.json").read_text())
        m.pop("seconds", None)
        for key in ("train", "sample"):
            if key in m:
                for t in ("seconds", "tokens_per_s"):
                    m[key].pop(t, None)
        out.append(m)
    return out


@pytest.fixture(scope="module")
def replace_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "replace"
    result = run_cli("run", "--quiet", "--out", str(out), *sets())
    assert result.exit_code == 0, result.output
    return out


def test_a_run_leaves_everything_behind(replace_run: Path) -> None:
    out = replace_run
    for name in [
        "config.yaml",
        "manifest.json",
        "metrics.csv",
        "report.html",
        "run.log",
        "data/corpus.json",
        "figures/probes.png",
        "figures/perplexity.png",
        "figures/alpha.png",
        "figures/diversity.png",
        "figures/lengths.png",
        "gen_000/metrics.json",
    ]:
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and sorted(manifest["generations"]) == ["1", "2", "3"]
    from lmcollapse.data.store import TokenStore
    from lmcollapse.models import load_model

    for n in (1, 2, 3):
        gen = out / f"gen_{n:03d}"
        assert (gen / "samples.txt").read_text().count("--- story") == 2
        store = TokenStore.open(gen / "corpus")
        assert store.meta["checksum"] == manifest["generations"][str(n)]["corpus_checksum"]
        assert load_model(gen / "model").shape.vocab_size == store.vocab_size
        m = json.loads((gen / "metrics.json").read_text())
        assert m["perplexity"] > 1 and m["probes"][0]["next"][" was"]["truth"] > 0.5
        # Replace: generation n trains on all of S_{n-1} and nothing else
        parts = m["composition"]["parts"]
        expected = "d0" if n == 1 else f"gen_{n - 1:03d}"
        assert [p["source"] for p in parts] == [expected] and parts[0]["count"] == parts[0][
            "available"
        ]
    d0_stories = json.loads((out / "data/corpus.json").read_text())["d0"]["stories"]
    assert all(
        TokenStore.open(out / f"gen_{n:03d}/corpus").num_stories >= d0_stories for n in (1, 2)
    )
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("generation,perplexity")
    g0 = json.loads((out / "gen_000/metrics.json").read_text())
    assert (
        g0["perplexity"] is None
        and g0["probes"][0]["next"][" was"]["p_hat"] == g0["probes"][0]["next"][" was"]["truth"]
    )


@pytest.mark.parametrize(
    ("paradigm", "extra"),
    [
        ("accumulate-subsample", ["paradigm.k=0.5"]),
        ("accumulate", ["paradigm.k=0.5"]),
        ("mix", ["paradigm.lam=0.25"]),
    ],
)
def test_every_paradigm_composes_its_training_sets(
    tmp_path: Path, paradigm: str, extra: list[str]
) -> None:
    """Composition is the family's no concern: the exact n-gram (seconds) stands in for all."""
    out = tmp_path / paradigm
    settings = [
        x for e in ["run.generations=3", f"paradigm.name={paradigm}", *extra] for x in ("--set", e)
    ]
    result = run_cli("run", "--quiet", "--out", str(out), *NGRAM, *settings)
    assert result.exit_code == 0, result.output
    m3 = json.loads((out / "gen_003/metrics.json").read_text())
    parts = {p["source"]: p for p in m3["composition"]["parts"]}
    u = json.loads((out / "data/corpus.json").read_text())["d0"]["tokens"]
    longest = {  # a part is its token share to within one story (the longest of its source)
        p["source"]: int(np.diff(np.load(_store_of(out, p["source"]) / "offsets.npy")).max())
        for p in parts.values()
    }
    comp = m3["composition"]
    assert comp["unit"] == "tokens" and comp["total_tokens"] == m3["train_tokens"]
    assert comp["real_token_share"] == pytest.approx(parts["d0"]["tokens"] / comp["total_tokens"])
    if paradigm == "accumulate-subsample":  # k = 0.5, n = 3: D0 1/2, S_1 and S_2 1/4 each
        assert set(parts) == {"d0", "gen_001", "gen_002"}
        for source, share in (("d0", 0.5), ("gen_001", 0.25), ("gen_002", 0.25)):
            assert abs(parts[source]["tokens"] - share * u) <= longest[source] / 2
        assert abs(comp["total_tokens"] - u) <= sum(longest.values()) / 2
    elif paradigm == "accumulate":
        assert all(p["count"] == p["available"] for p in parts.values()) and len(parts) == 3
        assert all(p["tokens"] == p["available_tokens"] for p in parts.values())
    else:  # mix λ = 0.25: a quarter D0, the rest S_2
        assert set(parts) == {"d0", "gen_002"}
        assert abs(parts["d0"]["tokens"] - u / 4) <= longest["d0"] / 2
        assert abs(parts["gen_002"]["tokens"] - 3 * u / 4) <= longest["gen_002"] / 2
    import csv

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    row3 = rows[3]
    assert float(row3["real_token_share"]) == pytest.approx(comp["real_token_share"])
    for source, part in parts.items():  # stories and tokens of every part
        assert int(row3[f"train_{source}_stories"]) == part["count"]
        assert int(row3[f"train_{source}_tokens"]) == part["tokens"]
    generated = [p for p in parts.values() if p["source"] != "d0"]
    assert int(row3["train_generated_tokens"]) == sum(p["tokens"] for p in generated)


def _store_of(run: Path, source: str) -> Path:
    return run / "data/d0" if source == "d0" else run / source / "corpus"


def test_resume_refuses_a_changed_config_and_accepts_more_generations(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert run_cli("run", "--quiet", "--out", str(out), *sets("run.generations=1")).exit_code == 0
    changed = lmc(
        "run",
        "--quiet",
        "--out",
        str(out),
        *sets("run.generations=1", "training.learning_rate=1e-3", "paradigm.k=2"),
    )
    assert changed.returncode == 2
    assert "differs in: paradigm.k, training.learning_rate" in changed.stderr
    before = (out / "gen_001/metrics.json").read_bytes()
    longer = run_cli("run", "--quiet", "--out", str(out), *sets("run.generations=2"))
    assert longer.exit_code == 0 and (out / "gen_002/metrics.json").is_file()
    assert (
        out / "gen_001/metrics.json"
    ).read_bytes() == before  # a finished generation is not redone
    never = lmc(
        "run", "--quiet", "--resume", "never", "--out", str(out), *sets("run.generations=2")
    )
    assert never.returncode == 2 and "already holds a run" in never.stderr


def test_a_second_process_is_locked_out(tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "locked"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "lmcollapse-run", "generations": {}}))
    from lmcollapse.config import ExperimentConfig, dump_yaml, resolve

    (out / "config.yaml").write_text(
        dump_yaml(resolve(ExperimentConfig, preset="demo", overrides=TINY))
    )
    with open(out / "run.lock", "w") as fh:
        fh.write("12345")
        fh.flush()
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        busy = lmc("run", "--quiet", "--out", str(out), *sets())
    assert busy.returncode == 2 and "is being written by pid 12345" in busy.stderr


def test_bad_run_input_is_one_line_and_nothing_is_lost(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    other_tool = tmp_path / "other"
    other_tool.mkdir()
    (other_tool / "manifest.json").write_text('{"format": "something-else"}')
    a_file = tmp_path / "file"
    a_file.write_text("keep")
    env_offline = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cases = [
        (["run", "--preset", "nope"], "unknown preset 'nope': choose one of"),
        (["run", "--set", "trainig.epochs=2"], "trainig: unknown key (did you mean training?)"),
        (
            ["run", "--set", "training.epoch=2"],
            "training.epoch: unknown key (did you mean training.epochs?)",
        ),
        (["run", "--out", str(a_file)], "exists and is not a directory"),
        (["run", "--out", "/proc/lmcollapse-cannot-write-here"], "cannot write to /proc"),
        (["run", "--out", str(foreign)], "is not empty and not an lmcollapse run"),
        (
            ["run", "--out", str(other_tool)],
            "is not an lmcollapse run (its manifest.json is someone else's)",
        ),
        (["status", str(foreign)], "is not an lmcollapse run (no manifest.json)"),
    ]
    for args, message in cases:  # in-process (offline, as conftest sets it): a traceback fails
        out = run_cli(*args)
        assert out.exit_code == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and message in out.stderr, (args, out.stderr)
    offline = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmcollapse",
            "run",
            "--preset",
            "paper-1m",
            "--out",
            str(tmp_path / "p"),
        ],
        capture_output=True,
        text=True,
        env=env_offline,
        timeout=300,
    )
    assert offline.returncode == 2
    assert "offline" in offline.stderr and "data.source=" in offline.stderr
    assert offline.stderr.count("\n") == 1
    assert (foreign / "notes.txt").read_text() == "mine" and a_file.read_text() == "keep"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "p").exists()


def test_inspection_commands(replace_run: Path) -> None:
    status = json.loads(run_cli("status", str(replace_run), "--json").output)
    assert status["generations_done"] == [1, 2, 3] and status["status"] == "complete"
    text = run_cli("status", str(replace_run)).output
    assert "generation   3: perplexity" in text
    probed = json.loads(
        run_cli(
            "probe", str(replace_run), "--context", " there", "--next", " was", " were", "--json"
        ).output
    )
    m2 = json.loads((replace_run / "gen_002/metrics.json").read_text())
    g2 = probed["generations"][1]
    assert g2["generation"] == 2
    assert g2["next"][" was"]["p_hat"] == pytest.approx(
        m2["probes"][0]["next"][" was"]["p_hat"], rel=1e-9
    )
    assert probed["truth"][" was"] == pytest.approx(m2["probes"][0]["next"][" was"]["truth"])
    sampled = json.loads(
        run_cli("sample", str(replace_run), "--generation", "2", "--num", "3", "--json").output
    )
    assert len(sampled["stories"]) == 3
    again = json.loads(run_cli("sample", str(replace_run), "-g", "2", "-n", "3", "--json").output)
    assert again["stories"] == sampled["stories"]  # seeded
    bad = lmc("sample", str(replace_run), "--generation", "9")
    assert bad.returncode == 2 and "generation 9" in bad.stderr and "is not finished" in bad.stderr
    bad = lmc("probe", str(replace_run), "--context", " there", "--next", " wasn't")
    assert bad.returncode == 2 and "tokenizes as" in bad.stderr


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(
        "Chromium is needed for the report test: .ci/run installs Debian's chromium"
    )


def test_report_in_a_real_headless_browser(tmp_path: Path, replace_run: Path) -> None:
    other = tmp_path / "copy"
    shutil.copytree(replace_run, other, ignore=shutil.ignore_patterns("run.lock"))
    page = tmp_path / "both.html"
    assert run_cli("report", str(replace_run), str(other), "--out", str(page)).exit_code == 0
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: opens offline
    for html in (replace_run / "report.html", page):
        dom = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                html.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        # every figure decoded and shown: the five run figures and one theory figure per run
        n = 5 + (2 if html == page else 1)
        assert html.read_text().count("<img") == n
        assert f'data-figures="{n}/{n}"' in dom.stdout, dom.stdout[:500]
        assert "data-errors" not in dom.stdout
        assert (
            "Figure 2." in dom.stdout
            and "Figure 3." in dom.stdout
            and "Samples (Table 1)" in dom.stdout
            and "Theory next to measurement" in dom.stdout
        )


def test_accelerate_launch_runs_the_pipeline_with_two_processes(
    tmp_path: Path, launch_two_processes: list[str]
) -> None:
    out = tmp_path / "ddp"
    cmd = [
        *launch_two_processes,
        "-m",
        "lmcollapse",
        "run",
        "--quiet",
        "--out",
        str(out),
        *sets("run.generations=2", "run.device=cpu", "training.micro_batch_size=4"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and sorted(manifest["generations"]) == ["1", "2"]
    assert (out / "report.html").is_file() and not list(out.glob("gen_*/corpus.shard*"))
    m2 = json.loads((out / "gen_002/metrics.json").read_text())
    assert m2["perplexity"] > 1 and m2["composition"]["parts"][0]["source"] == "gen_001"
    # Refused input under two processes: each says so in one line (none waits on the other),
    # and the run is left as it was.
    before = (out / "manifest.json").read_text()
    changed = [*cmd, "--set", "training.learning_rate=1e-3"]
    refused = subprocess.run(changed, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert refused.stderr.count("was run with another config (differs in: training.") == 2
    assert (out / "manifest.json").read_text() == before
    # Input refused by the main process alone, in its set-up (a probe token the trained
    # tokenizer splits): the other process is told, rather than waiting at a barrier for ever.
    fresh = [*cmd[: cmd.index("--out") + 1], str(tmp_path / "new"), *cmd[cmd.index("--out") + 2 :]]
    probe = "evaluation.probes=[{context: ' there', next: [' xyzzyq']}]"
    refused = subprocess.run([*fresh, "--set", probe], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and refused.stderr.count("is not one token") == 2
    assert not (tmp_path / "new").exists()
