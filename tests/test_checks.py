"""Input checked before the work it would waste (issue 12, defects 5 and 9): probes and the model
against the tokenizer before D0 is encoded, an hf_config that must load as a causal LM, every
sweep value before the first generation of any, and the output's writability up front."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import NGRAM
from lmcollapse.checks import check_writable, preflight, tokenizer_check
from lmcollapse.cli import main
from lmcollapse.config import ExperimentConfig, resolve
from lmcollapse.data.prepare import prepare
from lmcollapse.errors import InvalidInput

SMALL = ["data.num_stories=200", "data.tokenizer_vocab_size=500"]


def _cfg(*overrides: str) -> ExperimentConfig:
    return resolve(ExperimentConfig, preset="ngram-demo", overrides=[*SMALL, *overrides])


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_probe_the_tokenizer_splits_is_refused_before_d0_is_encoded(tmp_path: Path) -> None:
    """It used to surface after the whole data preparation (hours at paper scale)."""
    cfg = _cfg("evaluation.probes=[{context: ' there', next: [' xyzzyq']}]")
    out = tmp_path / "data"
    with pytest.raises(InvalidInput, match=r"probes\[0\] token ' xyzzyq' is not one token"):
        prepare(cfg.data, out, check=tokenizer_check(cfg))
    assert (out / "tokenizer" / "tokenizer.json").is_file()  # trained: it had to be
    assert not (out / "d0").exists() and not (out / "corpus.json").exists()


def test_with_a_pretrained_tokenizer_nothing_is_written(builtin_corpus, tmp_path: Path) -> None:
    tok = builtin_corpus.path / "tokenizer"
    cfg = _cfg(f"data.tokenizer={tok}", "evaluation.probes=[{context: 'x', next: [' qqzzq']}]")
    with pytest.raises(InvalidInput, match="is not one token"):
        prepare(cfg.data, tmp_path / "data", check=tokenizer_check(cfg))
    assert not (tmp_path / "data").exists()
    done = _cli(
        "run",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
        *(x for o in SMALL for x in ("--set", o)),
        "--preset",
        "ngram-demo",
        "--set",
        f"data.tokenizer={tok}",
        "--set",
        "evaluation.probes=[{context: 'x', next: [' qqzzq']}]",
    )
    assert done.exit_code == 2 and "is not one token" in done.stderr
    assert not (tmp_path / "run").exists()
    empty = _cfg(f"data.tokenizer={tok}", "evaluation.probes=[{context: ' ', next: [' was']}]")
    tokenizer_check(empty)(builtin_corpus.tokenizer)  # ' ' is a token of this vocabulary


def test_an_hf_config_must_load_as_a_causal_lm(tmp_path: Path) -> None:
    from transformers import DistilBertConfig, GPT2Config

    DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32).save_pretrained(
        str(tmp_path / "encoder")
    )
    GPT2Config(n_embd=16, n_layer=1, n_head=2).save_pretrained(str(tmp_path / "gpt2"))
    for where, phrase in [
        (tmp_path / "encoder", "is a distilbert config, which has no causal-LM model"),
        (tmp_path / "missing", "does not load"),
    ]:
        cfg = _cfg("model.family=hf", f"model.hf_config={where}")
        with pytest.raises(InvalidInput, match=phrase):
            preflight(cfg, tmp_path / "run")
        done = _cli(
            "run",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
            *NGRAM[:2],
            "--set",
            "model.family=hf",
            "--set",
            f"model.hf_config={where}",
        )
        assert done.exit_code == 2 and phrase in done.stderr
        assert not (tmp_path / "run").exists()  # refused before the data was prepared
    preflight(_cfg("model.family=hf", f"model.hf_config={tmp_path / 'gpt2'}"), tmp_path / "run")


def test_a_sweep_checks_every_value_before_the_first_generation(tmp_path: Path) -> None:
    """The second value's probe token is two tokens in its smaller vocabulary: the sweep used
    to find out after the first value's whole run."""
    out = tmp_path / "sweep"
    args = ["--preset", "ngram-demo", *(x for s in SMALL for x in ("--set", s))]
    done = _cli("sweep", "data.tokenizer_vocab_size=500,258", "--quiet", "--out", str(out), *args)
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("lmcollapse: error: sweep value data.tokenizer_vocab_size=258:")
    assert not out.exists()  # the first value, set up by this call, is gone again: a
    # corrected rerun starts clean (it used to be refused: "run with another config")
    done = _cli(
        "sweep",
        "data.tokenizer_vocab_size=500",
        "--quiet",
        "--out",
        str(out),
        *args,
        "--set",
        "run.generations=1",
    )
    assert done.exit_code == 0, done.output
    manifest = json.loads((out / "data.tokenizer_vocab_size=500" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    # a value whose run directory cannot be one is found before anything is set up
    (out / "data.tokenizer_vocab_size=259").write_text("in the way")
    done = _cli("sweep", "data.tokenizer_vocab_size=260,259", "--quiet", "--out", str(out), *args)
    assert done.exit_code == 2 and "=259: run directory" in done.stderr
    assert not (out / "data.tokenizer_vocab_size=260").exists()


def test_an_unwritable_target_is_found_before_the_work(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInput, match="is not a directory"):
        check_writable(blocker / "run")
    check_writable(tmp_path / "a" / "b")  # the nearest existing folder takes a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # and nothing is left

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(InvalidInput, match=r"cannot write to .* \(Read-only file system\)"):
        check_writable(tmp_path / "run")
    done = _cli("run", "--quiet", "--out", str(tmp_path / "run"), *NGRAM)
    assert done.exit_code == 2 and "Read-only file system" in done.stderr


def test_a_kill_before_the_manifest_leaves_a_directory_that_starts_again(tmp_path: Path) -> None:
    """Only the lock, the log and the config, as a kill before the manifest's first write
    leaves them: the rerun used to say 'not empty and not an lmcollapse run'."""
    out = tmp_path / "r"
    out.mkdir()
    for name in ("run.lock", "run.log", "config.yaml", ".manifest.json.x1.tmp"):
        (out / name).write_text("")
    assert preflight(_cfg(), out)["generations"] == {}  # a new run
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not empty and not an lmcollapse run"):
        preflight(_cfg(), out)


def test_setting_up_a_finished_run_leaves_it_finished(ngram_run: Path, tmp_path: Path) -> None:
    """A sweep sets every value up first; a finished value used to read 'running' after it."""
    import shutil

    from lmcollapse.pipeline import run

    copy = tmp_path / "run"
    shutil.copytree(ngram_run, copy)
    cfg = resolve(ExperimentConfig, config=copy / "config.yaml")
    run(cfg, copy, set_up_only=True, progress=False)
    assert json.loads((copy / "manifest.json").read_text())["status"] == "complete"
