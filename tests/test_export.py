"""`lmcollapse export`: a generation's corpus (S_n, or D0) as jsonl, parquet or a hub dataset
directory that `datasets.load_dataset` reads back row for row as the token store holds it; the
refusals of bad input; atomic, streamed writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import NGRAM, lmc
from lmcollapse.data.store import TokenStore
from lmcollapse.data.tokenizer import Tok
from lmcollapse.errors import InvalidInput
from lmcollapse.export import HF_DATA_FILE, default_path, export_corpus

COLUMNS = ["text", "unfinished", "tokens", "generation"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-generation n-gram run (read only: tests that damage it copy it first)."""
    out = tmp_path_factory.mktemp("export") / "run"
    done = lmc("run", "--quiet", "--out", str(out), *NGRAM)
    assert done.returncode == 0, done.stderr
    return out


def store_of(run: Path, n: int) -> TokenStore:
    return TokenStore.open(run / "data" / "d0" if n == 0 else run / f"gen_{n:03d}" / "corpus")


def expected_rows(run: Path, n: int) -> list[dict]:
    """What the export must hold, story by story from the store (no shared code with it)."""
    store, tok = store_of(run, n), Tok(run / "data" / "tokenizer")
    finished = store.finished(np.arange(store.num_stories))
    rows = []
    for i in range(store.num_stories):
        story = store.story(i).tolist()
        assert story[-1] == store.eos_id  # every story of a store ends with end-of-text
        rows.append(
            {
                "text": tok.decode(story[:-1]),
                "unfinished": not finished[i],
                "tokens": len(story) - 1,
                "generation": n,
            }
        )
    return rows


def load(path: Path, fmt: str, cache: Path):
    import datasets

    if fmt == "hf":
        return datasets.load_dataset(str(path), split="train", cache_dir=str(cache))
    builder = "json" if fmt == "jsonl" else "parquet"
    return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=str(cache))


def assert_matches(ds, run: Path, n: int) -> None:
    assert ds.column_names == COLUMNS
    assert {k: v.dtype for k, v in ds.features.items()} == {
        "text": "string",
        "unfinished": "bool",
        "tokens": "int64",
        "generation": "int64",
    }
    want = expected_rows(run, n)
    assert len(ds) == store_of(run, n).num_stories == len(want)
    assert ds.to_list() == want


def exports(run: Path) -> list[Path]:
    """What lies in the run's export folder."""
    return sorted((run / "export").iterdir()) if (run / "export").is_dir() else []


def refused(*args: str) -> str:
    """Run the command; it must fail with exit 2 and one line, which is returned."""
    done = lmc(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmcollapse: error:"), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------
# What an export holds


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
@pytest.mark.parametrize("n", [0, 1])
def test_export_reads_back_as_the_store(run: Path, tmp_path: Path, fmt: str, n: int) -> None:
    out = tmp_path / f"gen{n}.{fmt}"
    done = lmc("export", str(run), "--generation", str(n), "--format", fmt, "--out", str(out))
    assert done.returncode == 0, done.stderr
    store = store_of(run, n)
    assert str(out) in done.stdout and f"{store.num_stories:,} stories" in done.stdout
    assert (out / HF_DATA_FILE).is_file() if fmt == "hf" else out.is_file()
    assert_matches(load(out, fmt, tmp_path / "cache"), run, n)


def test_generated_corpora_have_both_kinds_of_story(run: Path) -> None:
    """The comparison above is only a test of the unfinished flags if S_n holds both."""
    flags = {r["unfinished"] for r in expected_rows(run, 1)}
    assert flags == {True, False}
    assert not any(r["unfinished"] for r in expected_rows(run, 0))  # real stories all end


def test_the_last_generation_and_the_result(run: Path, tmp_path: Path) -> None:
    store = store_of(run, 2)
    done = export_corpus(run, 2, "parquet", tmp_path / "g2.parquet")
    assert done.path == tmp_path / "g2.parquet" and Path(done) == done.path  # os.PathLike
    assert (done.format, done.generation, done.rows) == ("parquet", 2, store.num_stories)
    assert done.tokens == int((store.lengths() - 1).sum())
    assert done.unfinished == store.unfinished.size
    assert_matches(load(done.path, "parquet", tmp_path / "cache"), run, 2)


def test_chunks_bound_the_row_groups_and_change_nothing(run: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    rows = store_of(run, 1).num_stories
    small = export_corpus(run, 1, "parquet", tmp_path / "small.parquet", chunk_stories=64)
    meta = pq.ParquetFile(small.path).metadata
    assert meta.num_rows == rows and meta.num_row_groups == -(-rows // 64)
    assert all(meta.row_group(i).num_rows <= 64 for i in range(meta.num_row_groups))
    assert pq.read_table(small.path).to_pylist() == expected_rows(run, 1)
    a = export_corpus(run, 1, "jsonl", tmp_path / "a.jsonl", chunk_stories=7)
    b = export_corpus(run, 1, "jsonl", tmp_path / "b.jsonl")
    assert a.path.read_bytes() == b.path.read_bytes()
    assert [json.loads(line) for line in a.path.read_text(encoding="utf-8").splitlines()] == (
        expected_rows(run, 1)
    )


def test_hf_directory_has_a_dataset_card(run: Path, tmp_path: Path) -> None:
    import yaml

    out = export_corpus(run, 1, "hf", tmp_path / "hf").path
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "README.md",
        HF_DATA_FILE,
    ]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": HF_DATA_FILE}]}
    ]
    assert [f["name"] for f in header["dataset_info"]["features"]] == COLUMNS
    assert header["dataset_info"]["splits"][0]["num_examples"] == store_of(run, 1).num_stories
    tok = Tok(run / "data" / "tokenizer")
    body = card.split("---\n", 2)[2]
    for phrase in [str(run), "generation 1", tok.fingerprint(), *(f"`{c}`" for c in COLUMNS)]:
        assert phrase in body, phrase


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_default_out_is_in_the_run(run: Path, tmp_path: Path, fmt: str) -> None:
    want = default_path(run, 2, fmt)
    assert want == run / "export" / {"jsonl": "gen_002.jsonl", "parquet": "gen_002.parquet"}.get(
        fmt, "gen_002_hf"
    )
    try:
        done = lmc("export", str(run), "-g", "2", "--format", fmt)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{want}: ") and want.exists()
        assert len(load(want, fmt, tmp_path / "cache")) == store_of(run, 2).num_stories
    finally:  # the run is shared by the module's tests
        shutil.rmtree(run / "export", ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written


def test_not_a_run(tmp_path: Path) -> None:
    line = refused("export", str(tmp_path / "nope"), "-g", "1", "--format", "hf")
    assert "does not exist" in line
    (tmp_path / "empty").mkdir()
    line = refused("export", str(tmp_path / "empty"), "-g", "1", "--format", "jsonl")
    assert "not an lmcollapse run" in line and "manifest.json" in line
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_replicated_run_names_its_replicates(tmp_path: Path) -> None:
    root = tmp_path / "rep"
    (root / "replicates" / "seed=0").mkdir(parents=True)
    (root / "replicates.json").write_text("{}", encoding="utf-8")
    line = refused("export", str(root), "-g", "1", "--format", "jsonl")
    assert "replicated run" in line and f"{root / 'replicates'}/seed=S" in line


def test_a_generation_not_completed(run: Path) -> None:
    line = refused("export", str(run), "--generation", "3", "--format", "jsonl")
    assert "generation 3" in line and "completed: 0, 1, 2" in line
    assert not exports(run)


def test_unknown_format_and_negative_generation(run: Path) -> None:
    assert "csv" in refused("export", str(run), "-g", "1", "--format", "csv")
    assert "-1" in refused("export", str(run), "-g", "-1", "--format", "jsonl")
    refused("export", str(run), "--format", "jsonl")  # --generation is required


@pytest.mark.parametrize("n", [0, 1])
def test_a_damaged_corpus_is_refused(run: Path, tmp_path: Path, n: int) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    tokens = (copy / "data" / "d0" if n == 0 else copy / "gen_001" / "corpus") / "tokens.npy"
    data = bytearray(tokens.read_bytes())
    data[-1] ^= 1  # one token id changed: the store still opens, its checksum differs
    tokens.write_bytes(bytes(data))
    line = refused("export", str(copy), "-g", str(n), "--format", "jsonl")
    assert "d0" in line if n == 0 else "checksum" in line
    assert not exports(copy)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_an_existing_out_needs_force(run: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    if fmt == "hf":
        export_corpus(run, 0, "hf", out)  # an earlier export, of another generation
    else:
        out.write_text("keep me\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in [out, *out.rglob("*")] if p.is_file()}
    line = refused("export", str(run), "-g", "1", "--format", fmt, "--out", str(out))
    assert "already exists" in line and "--force" in line
    assert {p: p.read_bytes() for p in [out, *out.rglob("*")] if p.is_file()} == before
    done = lmc("export", str(run), "-g", "1", "--format", fmt, "--out", str(out), "--force")
    assert done.returncode == 0, done.stderr
    assert_matches(load(out, fmt, tmp_path / "cache"), run, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]  # no temporaries left


def test_force_replaces_only_an_export_of_its_kind(run: Path, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine", encoding="utf-8")
    args = ["export", str(run), "-g", "1", "--force"]
    assert "not an hf export" in refused(*args, "--format", "hf", "--out", str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert "is a directory" in refused(*args, "--format", "jsonl", "--out", str(tmp_path / "mine"))
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert "not a directory" in refused(*args, "--format", "hf", "--out", str(tmp_path / "file"))


def test_the_run_itself_is_never_an_out(run: Path) -> None:
    manifest = (run / "manifest.json").read_bytes()
    args = ["export", str(run), "-g", "1", "--force"]
    assert "replace the run" in refused(*args, "--format", "hf", "--out", str(run))
    assert "replace the run" in refused(*args, "--format", "hf", "--out", str(run.parent))
    line = refused(*args, "--format", "jsonl", "--out", str(run / "manifest.json"))
    assert "inside the run directory" in line and str(run / "export") in line
    assert (run / "manifest.json").read_bytes() == manifest


# ----------------------------------------------------------------------------------------------
# Atomic writes


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_a_failure_leaves_no_output(
    run: Path, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lmcollapse.export as export

    old = tmp_path / "old"
    export_corpus(run, 0, fmt, old) if fmt == "hf" else old.write_text("old\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in [old, *old.rglob("*")] if p.is_file()}
    real = export.iter_story_batches

    def failing(*args, **kwargs):
        batches = real(*args, **kwargs)
        yield next(batches)  # the first chunk is written, then the disk "fails"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "iter_story_batches", failing)
    with pytest.raises(OSError, match="No space"):
        export_corpus(run, 1, fmt, tmp_path / "new", chunk_stories=50)
    with pytest.raises(OSError, match="No space"):
        export_corpus(run, 1, fmt, old, force=True, chunk_stories=50)
    assert {p: p.read_bytes() for p in [old, *old.rglob("*")] if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["old"]  # no new output, no temporaries


def test_the_library_refuses_what_the_cli_does(run: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown export format"):
        export_corpus(run, 1, "csv", tmp_path / "x")
    with pytest.raises(InvalidInput, match="not completed"):
        export_corpus(run, -1, "jsonl", tmp_path / "x")
    with pytest.raises(InvalidInput, match="chunk_stories"):
        export_corpus(run, 1, "jsonl", tmp_path / "x", chunk_stories=0)
    assert list(tmp_path.iterdir()) == []
