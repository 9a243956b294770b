"""`lmcollapse corpus prepare` and `corpus stats` as users run them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lmcollapse.cli import main
from lmcollapse.config import to_plain
from lmcollapse.data.prepare import holdout_indices
from lmcollapse.data.stats import count_continuations, source_stats
from lmcollapse.errors import InvalidInput


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
            ["corpus", "prepare", "--set", "paradigm.lam=1.5", "--out", str(tmp_path / "o7")],
            "paradigm.lam: must be in [0, 1] (the real-data share of mix), got 1.5",
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
            "unexpected extra argument (stray)",
        ),
    ]
    for args, message in cases:
        code, err = bad(*args)
        assert code == 2 and message in err, (args, err)
    assert not any((tmp_path / f"o{i}").exists() for i in ("5", "6", "7"))


def test_next_takes_several_values_in_either_spelling(builtin_corpus) -> None:
    path = str(builtin_corpus.path)
    a = run(
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
    b = run(
        "corpus",
        "stats",
        "--data",
        path,
        "--next",
        " was",
        "--context",
        " there",
        "--next",
        " were",
        "--json",
    )
    assert json.loads(a.output)["next"] == json.loads(b.output)["next"]
    assert list(json.loads(a.output)["next"]) == [" was", " were"]


def test_an_interrupted_prepare_finishes_on_the_next_call(tmp_path: Path, monkeypatch) -> None:
    from lmcollapse.config import DataConfig
    from lmcollapse.data import prepare as prep
    from lmcollapse.data.store import TokenStoreWriter

    data = DataConfig(num_stories=300, tokenizer_vocab_size=300)
    closes = {"n": 0}
    real_close = TokenStoreWriter.close

    def crash_after_holdout(self):
        closes["n"] += 1
        if closes["n"] == 2:  # holdout published, d0 not yet: the process "dies" here
            raise KeyboardInterrupt
        return real_close(self)

    monkeypatch.setattr(TokenStoreWriter, "close", crash_after_holdout)
    with contextlib.suppress(KeyboardInterrupt):
        prep.prepare(data, tmp_path / "c")
    assert (tmp_path / "c" / "holdout" / "meta.json").is_file() and not (
        tmp_path / "c" / "d0"
    ).exists()
    assert not prep.is_prepared(tmp_path / "c")
    monkeypatch.setattr(TokenStoreWriter, "close", real_close)
    done = prep.prepare(data, tmp_path / "c")
    assert (done.d0.num_stories, done.holdout.num_stories) == (285, 15)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "corpus.json",
        "d0",
        "holdout",
        "tokenizer",
    ]
    # pieces without corpus.json or the intent of an unfinished prepare are nobody's to delete
    other = DataConfig(num_stories=300, tokenizer_vocab_size=300, seed=1)
    (tmp_path / "c" / "corpus.json").unlink()
    with pytest.raises(InvalidInput, match="is not empty and not a prepared corpus"):
        prep.prepare(other, tmp_path / "c")
    assert (tmp_path / "c" / "d0" / "meta.json").is_file()
    # an unfinished attempt (its intent written) with another config is discarded, not mixed in
    (tmp_path / "c" / ".prepare.json").write_text(json.dumps(to_plain(data)))
    again = prep.prepare(other, tmp_path / "c")
    assert again.info["data"]["seed"] == 1 and again.d0.meta["provenance"]["data"]["seed"] == 1


def test_dedupe_keeps_duplicates_out_of_the_holdout(tmp_path: Path, write) -> None:
    from lmcollapse.config import DataConfig
    from lmcollapse.data.prepare import prepare

    lines = [
        json.dumps({"text": f"Story {i % 40}. The end."}) for i in range(400)
    ]  # 10 copies each
    src = write("dups.jsonl", "\n".join(lines))
    done = prepare(
        DataConfig(source=str(src), dedupe=True, tokenizer_vocab_size=300, holdout_fraction=0.25),
        tmp_path / "c",
    )
    d0, held = _hashes(done.d0), _hashes(done.holdout)
    assert (done.d0.num_stories, done.holdout.num_stories) == (30, 10) and not d0 & held


def test_input_errors_come_before_any_write(tmp_path: Path, write) -> None:
    (tmp_path / "mixed").mkdir()
    write("mixed/a.txt", "one story\n<|endoftext|>\n")
    write("mixed/b.jsonl", json.dumps({"body": "no text column"}))
    for data, message in [
        (str(tmp_path / "mixed"), "text column 'text' does not exist"),
        (str(write("n.jsonl", json.dumps({"text": 5}))), "holds int values, not text"),
    ]:
        code, err = bad("corpus", "prepare", "--data", data, "--out", str(tmp_path / "o"))
        assert code == 2 and message in err
        assert not (tmp_path / "o").exists()
    code, err = bad("corpus", "prepare", "--num-stories", "1", "--out", str(tmp_path / "o"))
    assert code == 2 and "num_stories: D0 needs at least 2 stories" in err
    a_file = write("taken", "keep")
    code, err = bad("corpus", "prepare", "--num-stories", "20", "--out", str(a_file))
    assert code == 2 and "is not a directory" in err and a_file.read_text() == "keep"
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / ".prepare.json").write_text("{}")
    code, err = bad("corpus", "stats", "--data", str(tmp_path / "half"), "--context", " there")
    assert code == 2 and "unfinished prepare: run it again" in err


def test_prepare_never_deletes_what_it_did_not_make(tmp_path: Path) -> None:
    """A folder with someone's files in it (even in tokenizer/ or d0/) is refused untouched, as
    `run` refuses one; so is an empty --out (it would write into the current directory)."""
    (tmp_path / "p" / "tokenizer").mkdir(parents=True)
    (tmp_path / "p" / "d0").mkdir()
    precious = tmp_path / "p" / "tokenizer" / "notes.txt"
    precious.write_text("precious")
    code, err = bad("corpus", "prepare", "--num-stories", "50", "--out", str(tmp_path / "p"))
    assert code == 2 and "is not empty and not a prepared corpus" in err
    assert precious.read_text() == "precious" and (tmp_path / "p" / "d0").is_dir()
    assert sorted(x.name for x in (tmp_path / "p").iterdir()) == ["d0", "tokenizer"]
    code, err = bad("corpus", "prepare", "--num-stories", "50", "--out", "")
    assert code == 2 and "the output directory is empty" in err


def test_source_stats_from_python_is_what_the_command_prints(builtin_corpus) -> None:
    path, tok = str(builtin_corpus.path), builtin_corpus.tokenizer
    result = source_stats(path, " there", [" was", " were"], 3)
    printed = run("corpus", "stats", "--data", path, "--context", " there", "--next", " was")
    args = ["--data", path, "--context", " there", "--next", " was", " were", "--top", "3"]
    cli = run("corpus", "stats", *args, "--json")
    assert result == json.loads(cli.output) and result["data"] == f"{path}/d0"
    d0 = builtin_corpus.d0
    counter = count_continuations(d0.iter_chunks(), tok.encode(" there"), tok.vocab_size)
    assert result["N_x"] == counter.n_x and f"N_x = {counter.n_x:,}" in printed.output
    was = tok.encode(" was")[0]
    assert result["next"][" was"] == {
        "id": was,
        "count": counter.counts[was],
        "p": counter.counts[was] / counter.n_x,
    }
    store = source_stats(f"{path}/d0", " there", [" was"], tokenizer=f"{path}/tokenizer")
    assert store["N_x"] == counter.n_x and store["data"] == f"{path}/d0"
