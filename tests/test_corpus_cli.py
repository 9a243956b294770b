"""`lmcollapse corpus prepare` and `corpus stats` as users run them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from lmcollapse.cli import main
from lmcollapse.data.prepare import holdout_indices
from lmcollapse.data.stats import count_continuations


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def bad(*args: str) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-m", "lmcollapse", *args], capture_output=True, text=True
    )
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    return out.returncode, out.stderr


def _hashes(store) -> set[bytes]:
    return {hashlib.blake2b(store.story(i).tobytes()).digest() for i in range(store.num_stories)}


def test_prepare_splits_without_leakage_and_is_idempotent(tmp_path: Path, write) -> None:
    lines = [json.dumps({"text": f"Story number {i}. It was a good day."}) for i in range(200)]
    src = write("stories.jsonl", "\n".join(lines))
    out = tmp_path / "corpus"
    args = ["corpus", "prepare", "--data", str(src), "--vocab-size", "300", "--out", str(out)]
    first = run(*args)
    assert first.exit_code == 0, first.output
    info = json.loads((out / "corpus.json").read_text())
    assert (info["d0"]["stories"], info["holdout"]["stories"]) == (190, 10)  # round(0.05 · 200)
    from lmcollapse.data.prepare import open_prepared

    prep = open_prepared(out)
    d0, held = _hashes(prep.d0), _hashes(prep.holdout)
    assert not d0 & held and len(d0 | held) == 200  # disjoint, together all of D0
    expected = np.setdiff1d(np.arange(200), holdout_indices(200, 0.05, 0))
    np.testing.assert_array_equal(  # d0 keeps the source order of its stories
        [
            int(prep.tokenizer.decode(prep.d0.story(i)[:-1].tolist()).split()[2][:-1])
            for i in range(190)
        ],
        expected,
    )
    mtime = (out / "d0" / "tokens.npy").stat().st_mtime_ns
    again = run(*args)
    assert again.exit_code == 0 and "reusing the prepared corpus" in again.stderr
    assert (out / "d0" / "tokens.npy").stat().st_mtime_ns == mtime
    code, err = bad(*args[:-2], "--holdout", "0.1", "--out", str(out))
    assert code == 2 and "differs in: data.holdout_fraction" in err


def test_stats_text_and_json_match_a_direct_count(builtin_corpus) -> None:
    path = str(builtin_corpus.path)
    result = run(
        "corpus",
        "stats",
        "--data",
        path,
        "--context",
        " there",
        "--next",
        " was",
        " were",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    tok = builtin_corpus.tokenizer
    counter = count_continuations(
        builtin_corpus.d0.iter_chunks(), tok.encode(" there"), tok.vocab_size
    )
    assert data["N_x"] == counter.n_x
    assert data["next"][" was"]["count"] == counter.counts[tok.encode(" was")[0]]
    assert data["next"][" were"]["p"] == counter.counts[tok.encode(" were")[0]] / counter.n_x
    assert [t["token"] for t in data["top"]][:2] == [" was", " were"] and len(data["top"]) == 9
    text = run(
        "corpus", "stats", "--data", path, "--context", " there", "--next", " was", "--top", "3"
    )
    assert f"N_x = {counter.n_x:,}" in text.output and "top 3 continuations" in text.output
    # the same numbers from the store directly and from the text source re-tokenized
    tok_dir = str(builtin_corpus.path / "tokenizer")
    store = run(
        "corpus",
        "stats",
        "--data",
        f"{path}/d0",
        "--tokenizer",
        tok_dir,
        "--context",
        " there",
        "--json",
    )
    assert json.loads(store.output)["N_x"] == counter.n_x
    raw = run(
        "corpus",
        "stats",
        "--data",
        "builtin",
        "--tokenizer",
        tok_dir,
        "--context",
        " there",
        "--json",
    )
    assert json.loads(raw.output)["N_x"] > counter.n_x  # the raw source includes the holdout


def test_bad_corpus_input(tmp_path: Path, write, builtin_corpus) -> None:
    path = str(builtin_corpus.path)
    tok = str(builtin_corpus.path / "tokenizer")
    cases = [
        (
            [
                "corpus",
                "prepare",
                "--data",
                str(tmp_path / "none.txt"),
                "--out",
                str(tmp_path / "o"),
            ],
            "does not exist",
        ),
        (
            ["corpus", "prepare", "--data", str(write("e.txt", "")), "--out", str(tmp_path / "o2")],
            "has no stories",
        ),
        (
            [
                "corpus",
                "prepare",
                "--data",
                str(write("x.csv", "a")),
                "--out",
                str(tmp_path / "o3"),
            ],
            "unknown format",
        ),
        (
            [
                "corpus",
                "prepare",
                "--data",
                str(write("s.jsonl", '{"body": "x"}')),
                "--out",
                str(tmp_path / "o4"),
            ],
            "text column 'text' does not exist",
        ),
        (
            ["corpus", "prepare", "--holdout", "0.6", "--out", str(tmp_path / "o5")],
            "holdout_fraction: must be in (0, 0.5]",
        ),
        (
            ["corpus", "prepare", "--holdout", "0", "--out", str(tmp_path / "o5")],
            "holdout_fraction: must be in (0, 0.5]",
        ),
        (
            ["corpus", "prepare", "--set", "paradigm.k=0", "--out", str(tmp_path / "o6")],
            "paradigm.k: must be > 0",
        ),
        (
            ["corpus", "prepare", "--set", "paradigm.lam=1", "--out", str(tmp_path / "o7")],
            "paradigm.lam: must be in [0, 1)",
        ),
        (["corpus", "stats", "--data", path, "--context", ""], "the context is empty"),
        (
            ["corpus", "stats", "--data", path, "--context", " there", "--next", ""],
            "the next token is empty",
        ),
        (
            ["corpus", "stats", "--data", path, "--context", " there", "--next", " wasn't"],
            "is not one token in this vocabulary: it tokenizes as [' was'",
        ),
        (["corpus", "stats", "--data", "builtin", "--context", " there"], "--tokenizer is needed"),
        (
            ["corpus", "stats", "--data", path, "--tokenizer", tok, "--context", " there"],
            "leave out --tokenizer",
        ),
        (
            ["corpus", "stats", "--data", path, "--context", " there", "stray"],
            "unexpected argument 'stray'",
        ),
    ]
    for args, message in cases:
        code, err = bad(*args)
        assert code == 2 and message in err, (args, err)
    assert not any((tmp_path / f"o{i}").exists() for i in ("5", "6", "7"))
