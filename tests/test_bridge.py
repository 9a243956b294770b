"""The theory–experiment bridge: known errors recovered exactly, the trend verdicts, and the
n-gram family through the same pipeline, report and `theory --from-run` as GPT-Neo."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lmcollapse import theory
from lmcollapse.bridge import (
    BridgeResult,
    ProbeBridge,
    SkippedProbe,
    bridge,
    error_trend,
    estimate_errors,
)
from lmcollapse.config import to_plain
from lmcollapse.errors import InvalidInput


def minimal_errors(G: int, V: int, seed: int, scale: float) -> np.ndarray:
    """Random errors with a zero in every generation: Remark B.1's minimal ones."""
    rng = np.random.default_rng(seed)
    a = rng.exponential(scale, size=(G, V))
    a[np.arange(G), rng.integers(0, V, G)] = 0.0
    return a


@pytest.mark.parametrize(
    ("paradigm", "k", "lam"),
    [("replace", 1.0, 0.5), ("accumulate-subsample", 0.5, 0.5), ("mix", 1.0, 0.3)],
)
def test_known_errors_are_recovered_exactly(paradigm, k, lam) -> None:
    counts = np.array([760.0, 50, 120, 0, 70])
    alpha = minimal_errors(30, counts.size, seed=1, scale=20.0)
    p_hat = theory.closed_form(counts, alpha, paradigm, k, lam=lam)
    got, _ = estimate_errors(p_hat, counts, paradigm, k, lam=lam)
    np.testing.assert_allclose(got, alpha, rtol=1e-9, atol=1e-9 * counts.sum())
    result = bridge(p_hat, counts, paradigm, k, lam=lam, tokens={"was": 0})
    assert result.rebuild_error < 1e-12
    np.testing.assert_allclose(
        result.real_data_weight,
        theory.real_data_weight(counts, alpha, paradigm, k, lam=lam),
        rtol=1e-9,
    )
    limit = theory.limit_term(alpha, paradigm, k, lam=lam)[:, 0]
    want = [None if not np.isfinite(v) else v for v in limit]
    assert [None if v is None else pytest.approx(v) for v in want] == result.tokens["was"]["limit"]


@pytest.mark.parametrize("paradigm", ["replace", "accumulate-subsample"])
def test_long_runs_whose_errors_pass_float_range_stay_finite(paradigm) -> None:
    """500 generations of unrelated distributions: the minimal errors compound past 10^308;
    the bridge works in directions and log-totals, so its output is finite JSON."""
    rng = np.random.default_rng(0)
    p_hat = rng.dirichlet(np.full(6, 0.5), size=500) * 0.999 + 0.001 / 6
    result = bridge(p_hat, np.array([50.0, 30, 10, 5, 5, 0]), paradigm, tokens={"a": 0})
    json.dumps(to_plain(result), allow_nan=False)  # finite as it is, not made so by json_safe
    assert result.alpha_cumulative_log10[-1] > (308 if paradigm == "replace" else 100)
    assert result.real_data_weight[-1] < 1e-100 and result.rebuild_error < 1e-9
    assert result.trend["verdict"].startswith("not tending to zero")


def test_the_trend_tells_constant_from_summable_errors() -> None:
    n = np.arange(1, 201, dtype=float)
    growing = 1000 + 5.0 * n  # b[n] grows under Replace: the verdict must not divide by it
    constant = error_trend(np.full(200, 5.0), growing)
    assert constant["verdict"].startswith("not tending to zero")
    assert constant["relative"][-1] == pytest.approx(5.0 / growing[-1])
    summable = error_trend(5.0 / n**2, growing)
    assert summable["slope"] == pytest.approx(-2.0, abs=1e-6)
    assert summable["verdict"].startswith("decaying like n^-2.00: summable")
    assert "too slowly to be summable" in error_trend(5.0 / n)["verdict"]
    assert error_trend(np.zeros(50))["verdict"].startswith("zero")
    assert error_trend(np.ones(3))["verdict"] == "too short to tell"


def test_the_trend_of_a_constant_error_run_is_constant() -> None:
    """Theory-generated Replace run with constant minimal errors: the verdict says so."""
    counts = np.array([760.0, 50, 120, 0, 70])
    alpha = minimal_errors(120, 5, seed=2, scale=3.0)
    alpha *= 10.0 / alpha.sum(axis=1, keepdims=True)  # α[n] = 10 every generation
    p_hat = theory.closed_form(counts, alpha, "replace")
    result = bridge(p_hat, counts, "replace")
    assert result.trend["verdict"].startswith("not tending to zero")
    assert result.trend["slope"] == pytest.approx(0.0, abs=1e-6)


def test_the_bridge_refuses_what_the_theory_does_not_cover() -> None:
    with pytest.raises(InvalidInput, match="theory covers"):
        estimate_errors(np.full((2, 3), 1 / 3), np.ones(3), "accumulate")
    with pytest.raises(InvalidInput, match="k: must be > 0"):  # the paradigms' one validator
        estimate_errors(np.full((2, 3), 1 / 3), np.ones(3), "accumulate-subsample", 0.0)


def test_the_typed_result_is_bridge_json_and_bridge_csv() -> None:
    """from_run's BridgeResult: to_plain(·, json_safe=True) has bridge.json's keys in its order
    (a probe's context first; a skipped probe only its context, N_x and why), rows() bridge.csv's
    rows, one per compared probe and generation."""
    counts = np.array([760.0, 50, 120, 5, 70])
    alpha = minimal_errors(3, counts.size, seed=4, scale=20.0)
    one = bridge(theory.closed_form(counts, alpha, "replace"), counts, "replace", tokens={"a": 0})
    assert isinstance(one, ProbeBridge) and "context" not in to_plain(one)
    probes = [dataclasses.replace(one, context=" there"), SkippedProbe(" here", 0, "never seen")]
    result = BridgeResult("runs/x", [1, 2, 3], probes)
    plain = to_plain(result, json_safe=True)
    assert list(plain) == ["run", "generations", "probes"]
    assert list(plain["probes"][0]) == [
        "context",
        "N_x",
        "paradigm",
        "k",
        "lam",
        "alpha_relative",
        "alpha_total_log10",
        "alpha_cumulative_log10",
        "real_data_weight",
        "real_data_share",
        "shares",
        "rebuild_error",
        "distance_to_limit",
        "distance_to_truth",
        "trend",
        "tokens",
    ]
    assert plain["probes"][1] == {"context": " here", "N_x": 0, "skipped": "never seen"}
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain
    assert result.compared == probes[:1] and result.paradigm == "replace"
    rows = result.rows()
    assert [r["generation"] for r in rows] == [1, 2, 3]
    assert rows[1]["context"] == " there" and rows[1]["p_hat[a]"] == one.tokens["a"]["p_hat"][1]
    assert rows[2]["real_data_share"] == 0.0 and rows[0]["alpha_relative"] == one.alpha_relative[0]


# ----------------------------------------------------------------------------------------------
# The n-gram family through the pipeline.

NGRAM = [
    "model.family=ngram",
    "model.delta=0.05",
    "data.num_stories=150",
    "data.tokenizer_vocab_size=600",
    "sampling.length=200",
    "sampling.mode=story",
    "sampling.batch_size=64",
    "evaluation.num_samples=2",
    "evaluation.stats_tokens=2000",
    "run.generations=4",
]


def lmc(*args: str) -> subprocess.CompletedProcess[str]:
    """`lmcollapse ARGS` in-process (an escaping exception fails the test with its traceback)."""
    from click.testing import CliRunner

    from lmcollapse.cli import main

    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, r.stderr)


def sets(*items: str) -> list[str]:
    out = []
    for item in items:
        out += ["--set", item]
    return out


def test_ngram_runs_through_the_same_pipeline_and_report(tmp_path: Path) -> None:
    run = tmp_path / "ng"
    r = lmc("run", "--quiet", "--out", str(run), *sets(*NGRAM))
    assert r.returncode == 0, r.stderr
    for n in range(5):
        assert (run / f"gen_{n:03d}" / "metrics.json").is_file()
        assert (run / f"gen_{n:03d}" / "probes.npz").is_file()
    m4 = json.loads((run / "gen_004" / "metrics.json").read_text())
    assert (
        m4["perplexity"] > json.loads((run / "gen_001" / "metrics.json").read_text())["perplexity"]
    )
    html = (run / "report.html").read_text()
    assert "Theory next to measurement" in html and html.count("<img") >= 6
    assert (run / "figures" / "theory-ng.png").is_file()
    r = lmc("theory", "--from-run", str(run), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["probes"][0]["context"] == " there" and out["probes"][0]["rebuild_error"] < 1e-9
    assert (run / "theory" / "bridge.csv").read_text().startswith("probe,context,generation")
    r = lmc("probe", str(run), "--context", " there", "--next", " was", "--json")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("paradigm", "k"), [("replace", 1.0), ("accumulate-subsample", 0.5)])
def test_paper_mode_runs_are_the_closed_form_to_1e9(tmp_path: Path, paradigm, k) -> None:
    """Through the whole pipeline: the recorded p̂_n(·|x) of every generation is Eq. (5)/(7)
    of lmcollapse.theory with α_i[n] = δ, from D0's counts."""
    run = tmp_path / "ng"
    extra = [f"paradigm.name={paradigm}", f"paradigm.k={k}", "model.expected_counts=paper"]
    r = lmc("run", "--quiet", "--out", str(run), *sets(*NGRAM, *extra))
    assert r.returncode == 0, r.stderr
    with np.load(run / "gen_000" / "probes.npz") as z:
        counts = z["counts_0"]
    p = []
    for n in range(1, 5):
        with np.load(run / f"gen_{n:03d}" / "probes.npz") as z:
            p.append(z["p_hat_0"])
    want = theory.closed_form(counts, np.full((4, counts.size), 0.05), paradigm, k)
    assert np.max(np.abs(np.array(p) - want)) < 1e-9


def test_chain_mode_runs_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "chain"
    extra = ["paradigm.name=accumulate-subsample", "model.expected_counts=chain"]
    r = lmc("run", "--quiet", "--out", str(run), *sets(*NGRAM, *extra, "run.generations=2"))
    assert r.returncode == 0, r.stderr
    r = lmc("run", "--quiet", "--out", str(run), *sets(*NGRAM, *extra, "run.generations=3"))
    assert r.returncode == 0, r.stderr
    assert (run / "gen_003" / "expected_counts.npz").is_file()
    resumed = json.loads((run / "gen_003" / "metrics.json").read_text())["probes"]
    straight = tmp_path / "straight"
    r = lmc("run", "--quiet", "--out", str(straight), *sets(*NGRAM, *extra, "run.generations=3"))
    assert r.returncode == 0, r.stderr
    assert json.loads((straight / "gen_003" / "metrics.json").read_text())["probes"] == resumed
    # killed inside generation 3, after its counts but before its metrics: redone, same result
    manifest = json.loads((straight / "manifest.json").read_text())
    manifest["generations"]["3"]["status"] = "running"
    (straight / "manifest.json").write_text(json.dumps(manifest))
    (straight / "gen_003" / "metrics.json").unlink()
    (straight / "gen_003" / "expected_counts.npz").write_bytes(b"half-written")
    r = lmc("run", "--quiet", "--out", str(straight), *sets(*NGRAM, *extra, "run.generations=3"))
    assert r.returncode == 0, r.stderr
    assert json.loads((straight / "gen_003" / "metrics.json").read_text())["probes"] == resumed


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["model.order=0"], "model.order: must be >= 1"),
        (["model.delta=0"], "model.delta: 0.0 must be a finite number > 0"),
        (["sampling.temperature=0.9"], "samples faithfully only"),
        (["model.order=12"], "overflows 64-bit n-gram keys"),
        (["model.expected_counts=chain", "model.order=3"], "supports orders 1 and 2"),
        (["model.expected_counts=paper", "model.smoothing=witten-bell"], "needs smoothing"),
    ],
)
def test_bad_ngram_input_is_one_line(tmp_path: Path, items, message) -> None:
    r = lmc("run", "--quiet", "--out", str(tmp_path / "bad"), *sets(*NGRAM, *items))
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()


def test_sweep_runs_every_value_and_overlays_them(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    base = [*NGRAM, "paradigm.name=accumulate-subsample", "run.generations=2"]
    r = lmc("sweep", "paradigm.k=0.5,2", "--quiet", "--out", str(out), *sets(*base))
    assert r.returncode == 0, r.stderr
    for label in ("paradigm.k=0.5", "paradigm.k=2"):
        m = json.loads((out / label / "gen_002" / "metrics.json").read_text())
        assert m["composition"]["parts"]  # each run is a whole run directory
        assert f"  {label}: perplexity" in r.stdout
    cfg = (out / "paradigm.k=2" / "config.yaml").read_text()
    assert "k: 2.0" in cfg
    html = (out / "report.html").read_text()
    assert "paradigm.k=0.5" in html and "paradigm.k=2" in html
    bad = lmc("sweep", "paradigm.kk=1,2", "--out", str(tmp_path / "bad"), *sets(*base))
    assert bad.returncode == 2 and "paradigm.kk" in bad.stderr and "paradigm.k" in bad.stderr
    assert not (tmp_path / "bad").exists()
    bad = lmc("sweep", "paradigm.k", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "expected KEY=V1,V2" in bad.stderr
