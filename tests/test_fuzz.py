"""Table-driven fuzz of every subcommand (issue 12): malformed YAML, bad config values, broken
tokenizer files and a damaged run directory, each fed to every command that reads it.

Every refusal is exit 2 with exactly one line, `lmcollapse: error: ...`, on stderr, nothing on
stdout, no traceback (the commands run in-process with exceptions not caught, so one that
escapes fails the test with its traceback), and no file in the sandbox created, changed or
removed, but for a refused `run` of a run its own records (the manifest says it failed and
why, the log says so, the lock file names the last holder). A damaged part of a run that a
command does not read is no reason to refuse: those pairs are listed in READS_PAST and must
succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import NGRAM

# ----------------------------------------------------------------------------------------------
# The inputs

YAML_ANY = {  # malformed as YAML, or not a mapping: refused by every config reader
    "syntax": "run: [1, 2\n",
    "tab": "run:\n\tseed: 1\n",
    "deep": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "python-tag": "!!python/object/apply:os.system ['touch PWNED']\n",
    "list": "- 1\n- 2\n",
    "scalar": "just words\n",
    "not-utf8": b"run: {seed: 1}\n\xff\xfe\x00\n",
    "alias-loop": "run: &x {seed: *x}\n",
    "unknown-section": "nosuch: {a: 1}\n",
}
YAML_EXPERIMENT = {  # well-formed YAML, wrong as an experiment config
    "unknown-key": "run: {nosuch: 1}\n",
    "wrong-type": "run: {generations: many}\n",
    "negative": "run: {generations: -3}\n",
    "nan": "training: {learning_rate: .nan}\n",
    "inf-k": "paradigm: {name: accumulate-subsample, k: .inf}\n",
    "huge-seed": "run: {seed: 18446744073709551616}\n",
    "family": "model: {family: nosuch}\n",
    "section-scalar": "run: 3\n",
    "probe-list": "evaluation: {probes: [{context: ' there', next: []}]}\n",
}
SETS = [  # --set values refused by every command that resolves an experiment config
    "run.generations=0",
    "run.device=cudafoo",
    "sampling.temperature=0",
    "nosuch.key=1",
    "run.generations",
    "=3",
    "run.seed=-1",
    "data.holdout_fraction=0.9",
    "training.learning_rate=nan",
    "paradigm.name=nosuch",
    "model.family=hf",  # without model.hf_config
    "evaluation.probes=[{context: ' there', next: [' was']}, 3]",
]
TOKENIZERS: dict[str, Callable[[Path], None]] = {  # a pretrained tokenizer's directory, broken
    "not-json": lambda p: (p / "tokenizer.json").write_text("not json {"),
    "empty-object": lambda p: (p / "tokenizer.json").write_text("{}"),
    "list": lambda p: (p / "tokenizer.json").write_text("[1, 2]"),
    "binary": lambda p: (p / "tokenizer.json").write_bytes(os.urandom(256)),
    "empty-dir": lambda p: None,
}


def _edit_json(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


DAMAGE: dict[str, Callable[[Path], None]] = {  # a finished 2-generation run, damaged
    "manifest-not-json": lambda r: (r / "manifest.json").write_text("{not json"),
    "manifest-list": lambda r: (r / "manifest.json").write_text("[]"),
    "manifest-empty": lambda r: (r / "manifest.json").write_text(""),
    "manifest-missing": lambda r: (r / "manifest.json").unlink(),
    "manifest-newer": lambda r: _edit_json(r / "manifest.json", lambda m: m.update(version=99)),
    "generations-list": lambda r: _edit_json(
        r / "manifest.json", lambda m: m.update(generations=[])
    ),
    "generation-entry": lambda r: _edit_json(
        r / "manifest.json", lambda m: m["generations"].update({"1": "done"})
    ),
    "generation-key": lambda r: _edit_json(
        r / "manifest.json", lambda m: m["generations"].update({"first": {}})
    ),
    "generation-key-zero-padded": lambda r: _edit_json(
        r / "manifest.json", lambda m: m["generations"].update({"01": m["generations"]["1"]})
    ),
    "generation-seconds": lambda r: _edit_json(
        r / "manifest.json", lambda m: m["generations"]["1"].update(seconds=[1], train="x")
    ),
    "config-missing": lambda r: (r / "config.yaml").unlink(),
    "config-garbage": lambda r: (r / "config.yaml").write_text("{{{"),
    "config-edited": lambda r: (r / "config.yaml").write_text(
        (r / "config.yaml").read_text().replace("seed: 0", "seed: 7", 1)
    ),
    "metrics-truncated": lambda r: (r / "gen_001" / "metrics.json").write_text('{"generation": 1'),
    "metrics-list": lambda r: (r / "gen_001" / "metrics.json").write_text("[]"),
    "model-config-missing": lambda r: (r / "gen_001" / "model" / "config.json").unlink(),
    "model-config-garbage": lambda r: (r / "gen_001" / "model" / "config.json").write_text("{"),
    "model-missing": lambda r: shutil.rmtree(r / "gen_001" / "model"),
    "tokenizer-garbage": lambda r: (r / "data" / "tokenizer" / "tokenizer.json").write_text("x"),
    "tokenizer-missing": lambda r: shutil.rmtree(r / "data" / "tokenizer"),
    "corpus-truncated": lambda r: _truncate(r / "gen_001" / "corpus" / "tokens.npy"),
    "corpus-missing": lambda r: shutil.rmtree(r / "gen_001" / "corpus"),
    "d0-truncated": lambda r: _truncate(r / "data" / "d0" / "tokens.npy"),
    "probes-npz": lambda r: (r / "gen_001" / "probes.npz").write_text("garbage"),
    "link": lambda r: _link(r / "gen_001" / "samples.txt", r.parent / "elsewhere.txt"),
}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(0, path.stat().st_size // 2)])


def _link(path: Path, target: Path) -> None:
    target.write_text("outside the run\n")
    path.unlink()
    path.symlink_to(target)


STATS = ["corpus", "stats", "--data", "builtin", "--num-stories", "50"]
SWEEP = "evaluation.num_samples=1,2"  # a key no case above makes bad
RUN_COMMANDS = {  # what reads a run: command -> its arguments ({run}: the damaged copy)
    "run": ["run", "--quiet", "--out", "{run}", *NGRAM],
    "status": ["status", "{run}"],
    "report": ["report", "{run}", "--out", "{new}/report.html"],
    "probe": ["probe", "{run}", "--context", " there"],
    "sample": ["sample", "{run}", "-g", "1", "-n", "2", "--length", "20"],
    "theory": ["theory", "--from-run", "{run}", "--out", "{new}", "--no-figures"],
    "export": ["export", "{run}", "-g", "1", "--format", "jsonl", "--out", "{new}/s1.jsonl"],
}
READS_PAST = {  # (damage, command) where the command does not read the damaged part (or, for
    # a newer run format, only reads it): they succeed. A finished run's `run` only rewrites
    # its report, so it reads no model, corpus or probes.npz.
    # export (jsonl) reads the manifest, the tokenizer and S_1 only.
    *(
        (d, "export")
        for d in (
            "manifest-newer",
            "generation-seconds",
            "config-edited",
            "config-missing",
            "config-garbage",
            "metrics-truncated",
            "metrics-list",
            "model-config-missing",
            "model-config-garbage",
            "model-missing",
            "probes-npz",
            "link",
        )
    ),
    ("config-edited", "probe"),
    ("config-edited", "status"),
    ("config-garbage", "probe"),
    ("config-garbage", "report"),
    ("config-garbage", "status"),
    ("config-missing", "probe"),
    ("config-missing", "report"),
    ("config-missing", "status"),
    ("corpus-missing", "probe"),
    ("corpus-missing", "report"),
    ("corpus-missing", "run"),
    ("corpus-missing", "sample"),
    ("corpus-missing", "status"),
    ("corpus-missing", "theory"),
    ("corpus-truncated", "probe"),
    ("corpus-truncated", "report"),
    ("corpus-truncated", "run"),
    ("corpus-truncated", "sample"),
    ("corpus-truncated", "status"),
    ("corpus-truncated", "theory"),
    ("d0-truncated", "report"),
    ("d0-truncated", "status"),
    ("d0-truncated", "theory"),
    ("link", "probe"),
    ("link", "report"),
    ("link", "sample"),
    ("link", "status"),
    ("manifest-newer", "probe"),
    ("manifest-newer", "report"),
    ("manifest-newer", "sample"),
    ("manifest-newer", "status"),
    ("manifest-newer", "theory"),
    ("metrics-list", "probe"),
    ("metrics-list", "sample"),
    ("metrics-truncated", "probe"),
    ("metrics-truncated", "sample"),
    ("model-config-garbage", "report"),
    ("model-config-garbage", "run"),
    ("model-config-garbage", "status"),
    ("model-config-garbage", "theory"),
    ("model-config-missing", "report"),
    ("model-config-missing", "run"),
    ("model-config-missing", "status"),
    ("model-config-missing", "theory"),
    ("model-missing", "report"),
    ("model-missing", "run"),
    ("model-missing", "status"),
    ("model-missing", "theory"),
    ("probes-npz", "probe"),
    ("probes-npz", "report"),
    ("probes-npz", "run"),
    ("probes-npz", "sample"),
    ("probes-npz", "status"),
    ("tokenizer-garbage", "report"),
    ("tokenizer-garbage", "status"),
    ("tokenizer-garbage", "theory"),
    ("tokenizer-missing", "report"),
    ("tokenizer-missing", "status"),
    ("tokenizer-missing", "theory"),
    ("generation-seconds", "probe"),
    ("generation-seconds", "report"),
    ("generation-seconds", "run"),
    ("generation-seconds", "sample"),
    ("generation-seconds", "status"),
    ("generation-seconds", "theory"),
}


def _cases() -> dict[str, tuple[str, object, list[str]]]:
    """id -> (kind, input, argv template). Templates: {file} a config file, {tok} a tokenizer
    directory, {run} the damaged run, {new} a path that must not come to exist."""
    cases: dict[str, tuple[str, object, list[str]]] = {}
    readers = {
        "run": ["run", "--quiet", "--config", "{file}", "--out", "{new}"],
        "sweep": ["sweep", SWEEP, "--quiet", "--config", "{file}", "--out", "{new}"],
        "config-show": ["config", "show", "--config", "{file}"],
        "config-check": ["config", "check", "{file}"],
        "prepare": ["corpus", "prepare", "--config", "{file}", "--out", "{new}"],
    }
    theory_readers = {
        "theory": ["theory", "--config", "{file}", "--out", "{new}", "--no-figures"],
        "config-check-theory": ["config", "check", "--theory", "{file}"],
    }
    for name, text in YAML_ANY.items():
        for cmd, argv in (readers | theory_readers).items():
            cases[f"yaml-{name}-{cmd}"] = ("yaml", text, argv)
    for name, text in YAML_EXPERIMENT.items():
        for cmd, argv in readers.items():
            cases[f"yaml-{name}-{cmd}"] = ("yaml", text, argv)
    setters = {
        "run": ["run", "--quiet", "--out", "{new}"],
        "sweep": ["sweep", SWEEP, "--quiet", "--out", "{new}"],
        "config-show": ["config", "show"],
        "prepare": ["corpus", "prepare", "--out", "{new}"],
    }
    for i, value in enumerate(SETS):
        for cmd, argv in setters.items():
            cases[f"set{i}-{cmd}"] = ("set", value, [*argv, "--set", value])
    for i, value in enumerate(["run.seed", "=1,2", "run.seed=1,1", "nosuch=1,2", "run.seed=1,-1"]):
        cases[f"sweep-assignment{i}"] = ("none", None, ["sweep", value, "--out", "{new}"])
    for name in TOKENIZERS:
        small = ["--set", "data.num_stories=50"]
        cases[f"tokenizer-{name}-prepare"] = (
            "tok",
            name,
            ["corpus", "prepare", "--tokenizer", "{tok}", "--num-stories", "50", "--out", "{new}"],
        )
        cases[f"tokenizer-{name}-run"] = (
            "tok",
            name,
            ["run", "--quiet", "--out", "{new}", *small, "--set", "data.tokenizer={tok}"],
        )
        cases[f"tokenizer-{name}-stats"] = (
            "tok",
            name,
            [*STATS, "--tokenizer", "{tok}", "--context", "a"],
        )
    cases["usage-presets"] = ("none", None, ["presets", "extra"])
    cases["usage-config-docs"] = ("none", None, ["config", "docs", "--nosuch"])
    cases["usage-status"] = ("none", None, ["status"])
    cases["usage-compare"] = ("none", None, ["compare", "{new}", "{new}"])
    cases["usage-replicates"] = ("none", None, ["run", "--replicates", "0", "--out", "{new}"])
    for damage in DAMAGE:
        for cmd, argv in RUN_COMMANDS.items():
            if (damage, cmd) in READS_PAST and cmd in ("run", "report"):
                continue  # a second or two each (they render the report), and test_pipeline
            cases[f"run-{damage}-{cmd}"] = ("damage", damage, argv)  # runs both on whole runs
    return cases


CASES = _cases()


# ----------------------------------------------------------------------------------------------
# The checks


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under root: a file's sha256, a link's target, or 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[key] = "dir"
        else:
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _set_up(kind: str, value: object, argv: list[str], sandbox: Path, run: Path) -> list[str]:
    if kind == "yaml":
        data = value if isinstance(value, bytes) else str(value).encode()
        (sandbox / "config.yaml").write_bytes(data)
    elif kind == "tok":
        tok = sandbox / "tok"
        tok.mkdir()
        TOKENIZERS[str(value)](tok)
    elif kind == "damage":
        shutil.copytree(run, sandbox / "run", symlinks=True)
        DAMAGE[str(value)](sandbox / "run")
    paths = {
        "{file}": sandbox / "config.yaml",
        "{tok}": sandbox / "tok",
        "{run}": sandbox / "run",
        "{new}": sandbox / "new",
    }
    out = []
    for a in argv:
        for k, v in paths.items():
            a = a.replace(k, str(v))
        out.append(a)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_every_command_refuses_bad_input_in_one_line(
    case: str, ngram_run: Path, tmp_path: Path
) -> None:
    from lmcollapse.cli import main

    kind, value, template = CASES[case]
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    argv = _set_up(kind, value, template, sandbox, ngram_run)
    command = (
        template[0]
        if kind != "damage"
        else next(c for c, a in RUN_COMMANDS.items() if a == template)
    )
    before = _snapshot(sandbox)
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    if kind == "damage" and (value, command) in READS_PAST:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("lmcollapse: error:"), result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == "", result.output
    assert not (sandbox / "new").exists()
    after = _snapshot(sandbox)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    own = {"run/manifest.json", "run/run.lock", "run/run.log"} if command == "run" else set()
    assert changed <= own, f"a refused command changed {sorted(changed - own)}"
    assert not Path("PWNED").exists()


def test_the_table_covers_every_subcommand() -> None:
    from lmcollapse.cli import main

    groups = {"config", "corpus"}
    reached = {" ".join(t[:2]) if t[0] in groups else t[0] for *_, t in CASES.values()}
    everything = {c for c in main.commands if c not in groups} | {
        f"{g} {c}" for g in groups for c in main.commands[g].commands
    }
    assert everything <= reached, everything - reached
    assert yaml.safe_load(YAML_EXPERIMENT["unknown-key"]) == {"run": {"nosuch": 1}}
