"""Replicated runs end to end (issue 14) on the tiny n-gram run (helpers.NGRAM): a sweep of
Replace against Accumulate-Subsample with 3 replicates each. aggregate.csv against t intervals
computed by hand from the replicates' metrics.csv, D0 shared byte for byte, seeds that differ,
replicates added without recomputing the others, a replicate killed mid-run, --jobs against the
serial numbers, `lmcollapse compare` against scipy, and the refusals."""

from __future__ import annotations

import csv
import itertools
import json
import math
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from helpers import NGRAM, lmc
from test_pipeline import metrics_of

REPLACE, ACCSUB = "paradigm.name=replace", "paradigm.name=accumulate-subsample"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`lmcollapse sweep paradigm.name=replace,accumulate-subsample --replicates 3`."""
    out = tmp_path_factory.mktemp("replicated") / "sweep"
    done = lmc(
        "sweep",
        "paradigm.name=replace,accumulate-subsample",
        "--quiet",
        "--replicates",
        "3",
        "--out",
        str(out),
        *NGRAM,
    )
    assert done.returncode == 0, done.stderr
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _seed_dirs(run: Path) -> dict[int, Path]:
    return {int(p.name.split("=")[1]): p for p in sorted((run / "replicates").glob("seed=*"))}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _untimed(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """aggregate.csv without its timing columns (which differ from run to run)."""
    return [
        {k: v for k, v in r.items() if "seconds" not in k and "tokens_per_s" not in k} for r in rows
    ]


def test_aggregate_csv_holds_t_intervals_of_the_replicates(sweep_dir: Path) -> None:
    run = sweep_dir / REPLACE
    dirs = _seed_dirs(run)
    assert sorted(dirs) == [0, 1, 2]
    per_seed = {
        s: {int(r["generation"]): r for r in _csv(d / "metrics.csv")} for s, d in dirs.items()
    }
    agg = {int(r["generation"]): r for r in _csv(run / "aggregate.csv")}
    assert sorted(agg) == [0, 1, 2]
    for column in ("perplexity", "corpus_distinct_2", "probe0_alpha_x_relative"):
        for g in (1, 2):
            x = np.array([float(per_seed[s][g][column]) for s in dirs])
            mean, sem = x.mean(), x.std(ddof=1) / math.sqrt(3)
            half = stats.t.ppf(0.975, 2) * sem
            row = agg[g]
            assert row["interval"] == "t" and row["replicates"] == "3"
            assert float(row[f"{column}_mean"]) == pytest.approx(mean, rel=1e-12, abs=1e-12)
            assert float(row[f"{column}_lo"]) == pytest.approx(mean - half, rel=1e-9, abs=1e-12)
            assert float(row[f"{column}_hi"]) == pytest.approx(mean + half, rel=1e-9, abs=1e-12)
            assert row[f"{column}_n"] == "3"
    # generation 1 is the n-gram's exact fit of the shared D0 in every replicate: no spread; S_1
    # differs by seed, so generation 2 does
    assert agg[1]["perplexity_lo"] == agg[1]["perplexity_hi"] == agg[1]["perplexity_mean"]
    assert float(agg[2]["perplexity_lo"]) < float(agg[2]["perplexity_hi"])
    summary = json.loads((run / "aggregate.json").read_text(encoding="utf-8"))
    assert summary["seeds"] == [0, 1, 2] and summary["interval"] == "auto"
    onset = summary["onset"]  # perplexity above 1.5 × generation 1's, replicate by replicate
    for s in dirs:
        ppl = [float(per_seed[s][g]["perplexity"]) for g in (1, 2)]
        assert onset["per_seed"][str(s)] == (2 if ppl[1] > 1.5 * ppl[0] else None)


def test_replicates_share_d0_byte_for_byte_and_differ_in_their_seed(sweep_dir: Path) -> None:
    dirs = _seed_dirs(sweep_dir / ACCSUB)
    data = [_files(d / "data") for d in dirs.values()]
    assert data[0] and all(d == data[0] for d in data[1:])
    ids = {(d / "data" / name).stat().st_ino for d in dirs.values() for name in ["d0/tokens.npy"]}
    assert len(ids) == 1, "D0 is prepared once and hard-linked into every replicate"
    samples = [_files(d / "gen_001") for d in dirs.values()]
    assert len({repr(s) for s in samples}) == 3, "each replicate samples its own S_1"
    import yaml

    seeds = [yaml.safe_load((d / "config.yaml").read_text())["run"]["seed"] for d in dirs.values()]
    assert seeds == list(dirs) == [0, 1, 2]


def test_more_replicates_adds_them_and_recomputes_none(sweep_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(sweep_dir / REPLACE, run)
    before = {p: p.stat().st_mtime_ns for p in run.glob("replicates/seed=*/gen_*/metrics.json")}
    grown = lmc("run", "--quiet", "--out", str(run), *NGRAM, "--replicates", "4")
    assert grown.returncode == 0, grown.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before, "a finished replicate reran"
    assert sorted(_seed_dirs(run)) == [0, 1, 2, 3]
    rows = _csv(run / "aggregate.csv")
    assert [r["replicates"] for r in rows] == ["4", "4", "4"]
    index = json.loads((run / "replicates.json").read_text())
    assert index["seeds"] == [0, 1, 2, 3] and index["status"] == "complete"
    assert "4 replicates (seeds 0, 1, 2, 3)" in grown.stdout
    other = ["--set", "stats.interval=bootstrap", "--set", "stats.resamples=500"]
    again = lmc("run", "--quiet", "--out", str(run), *NGRAM, *other)  # re-aggregated only
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert [r["interval"] for r in _csv(run / "aggregate.csv")[1:]] == ["bootstrap"] * 2


KILLER = textwrap.dedent("""
    import os, signal, sys
    from lmcollapse import pipeline

    def tracked(stage):
        def run_stage(ctx, g):
            if stage.__name__ == "sample" and ctx.cfg.run.seed == 1 and g.n == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # replicate seed=1, mid-generation 2
            return stage(ctx, g)
        return run_stage

    wrapped = {s: tracked(s) for s in pipeline.STAGES}
    pipeline.TIMED = {wrapped[s]: name for s, name in pipeline.TIMED.items()}
    pipeline.STAGES = tuple(wrapped[s] for s in pipeline.STAGES)
    from lmcollapse.cli import main
    main(sys.argv[1:], prog_name="lmcollapse")
""")


def test_a_replicate_killed_mid_run_resumes_to_the_same_numbers(
    sweep_dir: Path, tmp_path: Path
) -> None:
    driver = tmp_path / "killer.py"
    driver.write_text(KILLER, encoding="utf-8")
    run = tmp_path / "run"
    args = ["run", "--quiet", "--out", str(run), "--replicates", "3", *NGRAM]
    killed = subprocess.run([sys.executable, str(driver), *args], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    first = sorted(run.glob("replicates/seed=0/gen_*/metrics.json"))
    assert len(first) == 3 and not (run / "replicates/seed=1/gen_002/metrics.json").exists()
    stamp = {p: p.stat().st_mtime_ns for p in first}
    resumed = lmc(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert {p: p.stat().st_mtime_ns for p in first} == stamp
    whole = sweep_dir / REPLACE
    for s, d in _seed_dirs(whole).items():
        assert metrics_of(run / "replicates" / f"seed={s}") == metrics_of(d), f"seed {s}"
    assert _untimed(_csv(run / "aggregate.csv")) == _untimed(_csv(whole / "aggregate.csv"))


def test_jobs_run_replicates_at_once_to_the_serial_numbers(sweep_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = lmc("run", "--quiet", "--out", str(run), "--replicates", "2", "--jobs", "2", *NGRAM)
    assert done.returncode == 0, done.stderr
    assert sorted(_seed_dirs(run)) == [0, 1]
    whole = sweep_dir / REPLACE
    for s in (0, 1):
        assert metrics_of(run / f"replicates/seed={s}") == metrics_of(
            whole / f"replicates/seed={s}"
        )


def test_compare_gives_welch_and_exact_permutation_p_values(
    sweep_dir: Path, tmp_path: Path
) -> None:
    a, b = sweep_dir / REPLACE, sweep_dir / ACCSUB

    def values(run: Path, g: int) -> list[float]:
        return [
            float(
                next(r for r in _csv(d / "metrics.csv") if r["generation"] == str(g))["perplexity"]
            )
            for d in _seed_dirs(run).values()
        ]

    out = lmc("compare", str(a), str(b), "--json")
    assert out.returncode == 0, out.stderr
    c = json.loads(out.stdout)
    assert c["test"] == "welch" and c["correction"] == "holm"
    rows = {r["generation"]: r for r in c["generations"]}
    assert sorted(rows) == [1, 2]  # generation 0 (D0) has no perplexity
    xa, xb = values(a, 2), values(b, 2)
    expected = stats.ttest_ind(xa, xb, equal_var=False)
    assert rows[2]["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert rows[2]["diff"] == pytest.approx(np.mean(xa) - np.mean(xb), rel=1e-12)
    ci = expected.confidence_interval(0.95)
    assert (rows[2]["lo"], rows[2]["hi"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert rows[1]["p"] == 1.0  # generation 1: the same exact fit of the same D0 everywhere
    ps = [r["p"] for r in c["generations"]]  # Holm over the generations compared
    order = np.argsort(ps)
    held = np.maximum.accumulate([ps[i] * (len(ps) - j) for j, i in enumerate(order)])
    for j, i in enumerate(order):
        assert c["generations"][i]["p_holm"] == pytest.approx(min(1.0, held[j]))

    figure = tmp_path / "cmp.png"
    out = lmc("compare", str(a), str(b), "--test", "permutation", "--figure", str(figure))
    assert out.returncode == 0, out.stderr
    assert "exact permutation test" in out.stdout and f"figure: {figure}" in out.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from lmcollapse.compare import compare_runs

    perm = {r.generation: r for r in compare_runs(a, b, test="permutation").generations}
    pooled = np.array(xa + xb)  # every split of the 6 replicates into 3 + 3, by hand
    observed = abs(np.mean(xa) - np.mean(xb))
    hits = sum(
        abs(pooled[list(i)].mean() - np.delete(pooled, list(i)).mean()) >= observed - 1e-12
        for i in itertools.combinations(range(6), 3)
    )
    assert perm[2].p == hits / 20 and perm[2].p >= 0.1  # 2/20: 3 against 3 cannot go lower
    assert perm[2].diff == rows[2]["diff"]


def test_bad_input_gets_a_one_line_error(sweep_dir: Path, ngram_run: Path, tmp_path: Path) -> None:
    run = sweep_dir / REPLACE
    cases = [
        (("compare", str(ngram_run), str(run)), "is not a replicated run"),
        (("compare", str(run), str(run), "--metric", "perplexty"), "did you mean perplexity"),
        (("run", "--out", str(ngram_run), "--replicates", "2", *NGRAM), "a run of one seed"),
        (("run", "--out", str(tmp_path / "x"), "--replicates", "0", *NGRAM), "--replicates"),
        (("run", "--out", str(run), *NGRAM, "--set", "paradigm.k=2"), "another config"),
    ]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    index = json.loads((damaged / "replicates.json").read_text())
    (damaged / "replicates.json").write_text(json.dumps(index | {"seeds": ["a"]}))
    cases += [
        (("compare", str(tmp_path / "nowhere"), str(run)), "does not exist"),
        (("run", "--out", str(busy), "--replicates", "2", *NGRAM), "is not empty"),
        (("run", "--out", str(run), "--replicates", "2", *NGRAM), "holds 3 replicates"),
        (("compare", str(damaged), str(run)), "is damaged or of another format"),
        (("report", str(damaged), "--out", str(tmp_path / "r.html")), "is damaged"),
        (("status", str(run)), "is a replicated run: give one of its replicates"),
        (
            ("compare", str(run), str(run), "--figure", str(tmp_path / "no" / "f.png")),
            "is not a directory",
        ),
    ]
    for args, message in cases:
        r = lmc(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x").exists() and (busy / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_input_refused_at_set_up_leaves_nothing_of_a_new_replicated_run(tmp_path: Path) -> None:
    """A reserve too small for fresh data is found once D0 is prepared, after the replicated
    run's index is written: a new directory goes again, a given empty one is emptied again."""
    from lmcollapse.data.stories import generate

    src = tmp_path / "stories.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in generate(300, seed=3)))
    args = [*NGRAM, "--set", f"data.source={src}", "--set", "data.num_stories=200"]
    args += ["--set", "paradigm.name=accumulate-subsample", "--set", "paradigm.fresh=0.25"]
    args += ["--set", "run.generations=6", "--replicates", "2"]
    given = tmp_path / "given"
    given.mkdir()
    for out in (tmp_path / "new" / "run", given):
        r = lmc("run", "--quiet", "--out", str(out), *args)
        assert r.returncode == 2 and "fresh corpora" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()
    assert given.is_dir() and not list(given.iterdir())

    sweep = tmp_path / "sweep"  # a sweep's value refused at set-up: the value set up before too
    r = lmc("sweep", "paradigm.fresh=0,0.25", "--quiet", "--out", str(sweep), *args)
    assert r.returncode == 2 and "sweep value paradigm.fresh=0.25" in r.stderr, r.stderr
    assert (
        not (sweep / "paradigm.fresh=0").exists() and not (sweep / "paradigm.fresh=0.25").exists()
    )


def test_reports_draw_a_band_per_replicated_run(sweep_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from lmcollapse.plots import RunMetrics, _line
    from lmcollapse.rundir import load_metrics

    run = sweep_dir / REPLACE
    agg = json.loads((run / "aggregate.json").read_text())
    reps = [load_metrics(d) for d in _seed_dirs(run).values()]
    fig, ax = plt.subplots()
    _line(ax, RunMetrics("r", reps[0], reps, agg), lambda m: m["perplexity"], "perplexity", start=1)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    by_gen = {g["generation"]: g["metrics"].get("perplexity") for g in agg["generations"]}
    assert min(ys) == pytest.approx(min(by_gen[g]["lo"] for g in (1, 2)))
    assert max(ys) == pytest.approx(max(by_gen[g]["hi"] for g in (1, 2)))
    assert len(ax.lines) == 3 + 1  # a thin line per replicate, the mean
    plt.close(fig)
    names = agg["metric_names"]  # every figure's column is aggregated
    assert "probe0_alpha_x_relative" in names and any(n.endswith("_p_hat") for n in names)
    for page in (sweep_dir / "report.html", run / "report.html"):
        html = page.read_text(encoding="utf-8")
        assert "3 replicates (seeds 0, 1, 2)" in html
    assert "Per generation across replicates" in (run / "report.html").read_text()
    assert (run / "figures" / "perplexity.png").is_file()


def test_theory_spread_puts_the_replicates_next_to_the_bridge(sweep_dir: Path) -> None:
    from lmcollapse.bridge import from_run

    run = sweep_dir / ACCSUB
    spread = json.loads((run / "theory_spread.json").read_text(encoding="utf-8"))
    assert spread["paradigm"] == "accumulate-subsample" and spread["seeds"] == [0, 1, 2]
    assert spread["generations"] == [1, 2] and not spread["skipped"]
    dirs = _seed_dirs(run)
    bridges = [from_run(d) for d in dirs.values()]
    rows = {s: {int(r["generation"]): r for r in _csv(d / "metrics.csv")} for s, d in dirs.items()}
    probe = spread["probes"][0]
    assert probe["context"] == bridges[0].compared[0].context
    for t in probe["tokens"]:
        for j, g in enumerate(spread["generations"]):
            x = [bridge.compared[0].tokens[t["token"]]["p_hat"][j] for bridge in bridges]
            column = f"probe0_{t['token'].strip()}_p_hat"  # the same p̂ that metrics.csv holds
            measured = [float(rows[s][g][column]) for s in dirs]
            assert x == pytest.approx(measured, rel=1e-6)
            assert t["p_hat"][j]["mean"] == pytest.approx(np.mean(x), rel=1e-12)
            assert t["p_hat_sd"][j] == pytest.approx(np.std(x, ddof=1), rel=1e-9, abs=1e-15)
            half = stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
            assert t["p_hat"][j]["hi"] == pytest.approx(np.mean(x) + half, rel=1e-9, abs=1e-15)
            limits = [b.compared[0].tokens[t["token"]]["limit"][j] for b in bridges]
            finite = [v for v in limits if v is not None]
            assert t["limit"][j]["n"] == len(finite)
            if finite:
                assert t["limit"][j]["mean"] == pytest.approx(np.mean(finite), rel=1e-12)
    assert probe["tokens"][0]["p_hat_sd"][0] == 0.0  # generation 1: D0's exact fit everywhere
    assert probe["tokens"][0]["p_hat_sd"][1] > 0
    table = _csv(run / "theory_spread.csv")
    assert len(table) == sum(len(p["tokens"]) * 2 for p in spread["probes"])
    assert "Theory next to replicates" in (run / "report.html").read_text(encoding="utf-8")


def test_aggregate_of_20_replicates_takes_the_bootstrap_and_counts_who_reached_a_generation() -> (
    None
):
    from lmcollapse.aggregate import aggregate
    from lmcollapse.uncertainty import bootstrap_interval

    rng = np.random.default_rng(3)
    rows = {}
    for s in range(20):  # replicate s reaches generation 3 unless s is 19
        ppl = [10.0, 10.0 * (1 + rng.random()), 10.0 * (1 + 2 * rng.random())]
        rows[s] = [{"generation": g + 1, "perplexity": p, "note": "x"} for g, p in enumerate(ppl)]
    rows[19] = rows[19][:2]
    agg = aggregate(rows, method="auto", resamples=2000, tau=0.5, seed=7)
    by_gen = {g.generation: g for g in agg.generations}
    assert [g.replicates for g in agg.generations] == [20, 20, 19]
    assert agg.metric_names == ["perplexity"]  # text columns are not aggregated
    two = by_gen[2].metrics["perplexity"]
    x = [r[1]["perplexity"] for r in rows.values()]
    assert two.method == "bootstrap" and two.n == 20
    import zlib

    key = [7, 2, zlib.crc32(b"perplexity")]  # each metric and generation its own draws
    assert (two.mean, two.lo, two.hi) == bootstrap_interval(x, 0.95, 2000, key)
    three = by_gen[3].metrics["perplexity"]
    assert three.method == "t" and three.n == 19  # below 20 values: t
    expected = {
        str(s): next((r["generation"] for r in rs[1:] if r["perplexity"] > 15.0), None)
        for s, rs in rows.items()
    }
    assert agg.onset.per_seed == expected
    hits = [v for v in expected.values() if v is not None]
    assert agg.onset.collapsed == len(hits) and agg.onset.median == float(np.median(hits))
    assert agg.onset.mean == pytest.approx(np.mean(hits))
    csv_row = agg.rows()[1]
    assert csv_row["interval"] == "bootstrap" and csv_row["perplexity_n"] == 20
