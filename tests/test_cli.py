"""The command line, called as users call it: outputs checked against the theory API, and bad
input ending in one line on stderr with exit status 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from lmcollapse import __version__, theory
from lmcollapse.cli import main


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in group.commands.items():
        out += (
            _commands(cmd, (*prefix, name)) if isinstance(cmd, click.Group) else [(*prefix, name)]
        )
    return out


def test_version_and_module_entry_point() -> None:
    assert run("--version").output.strip() == f"lmcollapse, version {__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "lmcollapse", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout


@pytest.mark.parametrize("command", _commands(main))
def test_every_subcommand_has_help(command: tuple[str, ...]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_theory_default_is_the_papers_case_for_both_paradigms(tmp_path: Path) -> None:
    out = tmp_path / "theory"
    result = run("theory", "--out", str(out))
    assert result.exit_code == 0, result.output
    for name in [
        "config.yaml",
        "theory.json",
        "trajectories.csv",
        "real_weight.csv",
        "figures/trajectories.png",
        "figures/convergence.png",
        "figures/k_sweep.png",
        "figures/real_weight.png",
    ]:
        assert (out / name).stat().st_size > 0
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = json.loads((out / "theory.json").read_text())
    assert [s["name"] for s in data["scenarios"]] == [
        "replace",
        "accumulate-subsample k=0.1",
        "accumulate-subsample k=1",
        "accumulate-subsample k=10",
    ]
    counts = np.array(data["config"]["probe"]["counts"])
    truth = dict(zip(data["tokens"], data["truth"], strict=True))
    assert truth[" was"] == pytest.approx(0.76) and truth[" were"] == pytest.approx(0.05)
    alpha = np.array(data["alpha"])
    assert alpha.shape == (40, 8)
    assert alpha.sum(axis=1).mean() == pytest.approx(0.05 * counts.sum(), rel=0.2)
    # The written trajectories are the closed form of Eq. (5)/(7) for the written errors ...
    for sc in data["scenarios"]:
        expected = theory.closed_form(counts, alpha, sc["paradigm"], sc["k"])
        np.testing.assert_allclose(np.array(sc["p_hat"]), expected, rtol=1e-12)
        # ... and the summary's "left the band" is the first generation outside it.
        i = data["tokens"].index(" was")
        outside = np.flatnonzero(np.abs(expected[:, i] - 0.76) > 0.05)
        assert sc["summary"]["targets"][" was"]["left_band_at"] == outside[0] + 1
    rep = data["scenarios"][0]["summary"]
    assert rep["real_weight_horizon"] < 0.01  # Replace: D0 has all but vanished by n = 10^4
    assert all(
        s["summary"]["real_weight_horizon"] > 0.5 for s in data["scenarios"][1:]
    )  # ~ 1/log n
    assert "replace: p̂(' was') left the ±0.05 band at n=" in result.output

    rows = list(csv.DictReader((out / "trajectories.csv").open()))
    assert len(rows) == 4 * 40 * 8
    row = next(
        r
        for r in rows
        if r["scenario"] == "replace" and r["generation"] == "40" and r["token"] == " was"
    )
    assert float(row["p_hat"]) == pytest.approx(data["scenarios"][0]["p_hat"][39][0], rel=1e-12)
    assert yaml.safe_load((out / "config.yaml").read_text())["generations"] == 40


def test_theory_flags_config_and_json(tmp_path: Path) -> None:
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("errors:\n  kind: constant\n  scale: 0.1\ngenerations: 10\n")
    result = run(
        "theory",
        "--config",
        str(cfg_file),
        "--paradigm",
        "replace",
        "--paradigm",
        "mix",
        "--lam",
        "0.5",
        "--token",
        " was=3",
        "--token",
        " were=1",
        "--target",
        " was",
        "--horizon",
        "100",
        "--set",
        "generations=12",
        "--out",
        str(tmp_path / "o"),
        "--json",
        "--no-figures",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["scenarios"]
    assert set(summary) == {"replace", "mix λ=0.5"}
    # Constant uniform errors of 0.1·N_x = 0.4: Replace at n=12 is (3 + 12·0.2)/(4 + 12·0.4)
    assert summary["replace"]["targets"][" was"]["p_last"] == pytest.approx(5.4 / 8.8)
    assert not (tmp_path / "o" / "figures").exists()
    shown = run("theory", "--config", str(cfg_file), "--k", "2", "--show-config")
    assert yaml.safe_load(shown.output)["k"] == [2.0]


def _bad(*args: str) -> tuple[int, str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "lmcollapse", *args], capture_output=True, text=True
    )
    return out.returncode, out.stdout, out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["theory", "--k", "0"], "k[0]: must be > 0"),
        (["theory", "--k", "-1", "--generations", "0"], "generations: must be >= 1"),
        (["theory", "--paradigm", "recycle"], "Invalid value for '--paradigm'"),
        (
            ["theory", "--token", " was=-3", "--token", " were=1"],
            "probe.counts[0]: must be a finite number >= 0",
        ),
        (["theory", "--token", "was"], "expected LABEL=COUNT"),
        (["theory", "--token", " is=3"], "probe.targets: ' was' is not one of the tokens"),
        (["theory", "--set", "errors.kind=gaussian"], "errors.kind: expected one of"),
        (["theory", "--set", "nonsense"], "expected KEY=VALUE"),
        (["theory", "--config", "/nonexistent/t.yaml"], "config file not found"),
        (["theory", "--frobnicate"], "--frobnicate"),
        (["config", "show", "--preset", "nope"], "unknown preset 'nope'"),
        (["config", "show", "--set", "paradigm.k=0"], "paradigm.k: must be > 0"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, stdout, stderr = _bad(*args)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("lmcollapse: error: ")
    assert message in stderr
    assert "Traceback" not in stderr and stdout == ""


def test_invalid_config_file_names_the_key(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("paradigm:\n  name: replace\n  k: 0\ntraining:\n  learning_rat: 1.0e-3\n")
    code, _, stderr = _bad("config", "check", str(f))
    assert code == 2
    assert "paradigm.k: must be > 0" in stderr
    assert "training.learning_rat: unknown key (did you mean training.learning_rate?)" in stderr
    f.write_text("errors: {kind: [\n")
    code, _, stderr = _bad("theory", "--config", str(f))
    assert code == 2 and "invalid YAML at line" in stderr and str(f) in stderr


def test_bad_input_leaves_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert (
        run(
            "theory", "--out", str(out), "--no-figures", "--generations", "5", "--horizon", "5"
        ).exit_code
        == 0
    )
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, _ = _bad("theory", "--out", str(out), "--k", "0")
    assert code == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    code, _, stderr = _bad("theory", "--out", str(a_file))
    assert code == 2 and "is not a directory" in stderr and a_file.read_text() == "keep me"


def test_config_show_check_docs_and_presets(tmp_path: Path) -> None:
    shown = run("config", "show", "--preset", "demo", "--set", "paradigm.k=0.5")
    data = yaml.safe_load(shown.output)
    assert data["paradigm"]["k"] == 0.5 and data["run"]["generations"] == 5
    f = tmp_path / "c.yaml"
    f.write_text(shown.output)
    assert run("config", "check", str(f)).output.strip() == f"{f}: ok"
    docs = run("config", "docs").output
    assert "paradigm.k  (a number; default 1.0)" in docs and "Accumulation rate" in docs
    assert "data.num_stories  (an integer or null; default 10000)" in docs  # the parent's default
    assert "errors.kind" in run("config", "docs", "--theory").output
    listing = run("presets").output
    assert "demo" in listing and "paper-33m" in listing and "TinyStories" in listing


@pytest.mark.parametrize(
    "args",
    [
        ["--error-scale", "0"],  # no errors at all: no limit term anywhere
        ["--errors", "bursts", "--set", "errors.burst_probability=0.001", "--horizon", "50"],
        ["--paradigm", "accumulate-subsample", "--generations", "1", "--horizon", "1"],
    ],
)
def test_theory_without_any_defined_limit_still_writes_everything(
    tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "o"
    result = run("theory", *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len(list((out / "figures").glob("*.png"))) == 4
    data = json.loads((out / "theory.json").read_text())
    assert data["scenarios"][0]["summary"]["max_abs_to_limit_last"] is None


def test_theory_json_matches_the_api_everywhere(tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = [
        "--paradigm",
        "replace",
        "--paradigm",
        "accumulate-subsample",
        "--paradigm",
        "mix",
        "--k",
        "0.5",
        "--lam",
        "0.25",
        "--horizon",
        "300",
        "--no-figures",
    ]
    assert run("theory", *args, "--out", str(out)).exit_code == 0
    data = json.loads((out / "theory.json").read_text())
    counts = np.array(data["config"]["probe"]["counts"])
    g = data["generations"]
    from lmcollapse.config import TheoryConfig, from_plain
    from lmcollapse.theory_experiment import error_sequence

    alpha_h = error_sequence(from_plain(TheoryConfig, data["config"]), 300)
    np.testing.assert_array_equal(np.array(data["alpha"]), alpha_h[:g])
    grid = np.array(data["horizon_generations"])
    weights_csv = list(csv.DictReader((out / "real_weight.csv").open()))
    assert [int(r["generation"]) for r in weights_csv] == grid.tolist()
    for sc in data["scenarios"]:
        kw = {"k": sc["k"], "lam": sc["lam"]}
        p_h = theory.closed_form(counts, alpha_h, sc["paradigm"], **kw)
        lim_h = theory.limit_term(alpha_h, sc["paradigm"], **kw)
        w_h = theory.real_data_weight(counts, alpha_h, sc["paradigm"], **kw)
        limit = np.array([[np.nan if v is None else v for v in row] for row in sc["limit"]])
        np.testing.assert_allclose(limit, lim_h[:g], rtol=1e-12)
        np.testing.assert_allclose(sc["real_weight"], w_h[:g], rtol=1e-12)
        np.testing.assert_allclose(
            sc["real_share"], theory.real_data_share(g, sc["paradigm"], **kw)
        )
        np.testing.assert_allclose(sc["horizon_real_weight"], w_h[grid - 1], rtol=1e-12)
        dist = np.max(np.abs(p_h - lim_h)[grid - 1], axis=1)
        np.testing.assert_allclose(sc["horizon_max_abs_to_limit"][1:], dist[1:], rtol=1e-12)
        np.testing.assert_allclose(
            [float(r[sc["name"]]) for r in weights_csv], w_h[grid - 1], rtol=1e-12
        )


@pytest.mark.parametrize(
    ("args", "messages", "absent"),
    [
        (
            ["--k", "-1", "--generations", "0"],
            ["k[0]: must be > 0", "generations: must be >= 1"],
            [],
        ),
        (
            ["--token", " was=abc", "--target", " was"],
            ["probe.counts[0]: expected a number"],
            ["counts for"],
        ),
        (["--target", " was", "--target", " was"], ["probe.targets: must be distinct"], []),
        (["--error-scale", "1e306"], ["errors.scale:", "overflows"], []),
        (
            ["--paradigm", "replace", "--k", "2"],
            ["--k has no effect without --paradigm accumulate-subsample"],
            [],
        ),
        (["--out", ""], ["--out is empty"], []),
    ],
)
def test_theory_input_problems_are_reported_together_and_precisely(
    tmp_path: Path, args: list[str], messages: list[str], absent: list[str]
) -> None:
    code, _, stderr = _bad("theory", *args, "--no-figures")
    assert code == 2 and stderr.count("\n") == 1, stderr
    for m in messages:
        assert m in stderr
    for m in absent:
        assert m not in stderr


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text("generations: 10\ngenerations: 20\n")
    code, _, stderr = _bad("theory", "--config", str(f))
    assert code == 2 and "duplicate key 'generations'" in stderr and "line 2" in stderr


@pytest.mark.parametrize("command", [["run"], ["sweep", "paradigm.k=1,2"]])
def test_an_empty_preset_is_refused_not_read_as_the_demo(command: list[str], tmp_path) -> None:
    result = CliRunner().invoke(main, [*command, "--preset", "", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown preset ''" in result.output
    assert not (tmp_path / "o").exists()
