"""Real-text sources, each on files the test writes; hub names go through the same datasets path
(and fail cleanly offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmcollapse.data.sources import SourceSpec, describe, iter_stories
from lmcollapse.errors import InvalidInput

TXT = (
    "Once upon a time\nthere was a cat.\n<|endoftext|>\n\n<|endoftext|>\n"
    "A dog ran.\n<|endoftext|>\nLast one, no end marker."
)


def stories(source: str | Path, **kw) -> list[str]:
    return list(iter_stories(SourceSpec(str(source), **kw)))


def test_tinystories_txt_form(write) -> None:
    f = write("ts.txt", TXT)
    assert stories(f) == [
        "Once upon a time\nthere was a cat.",
        "A dog ran.",
        "Last one, no end marker.",
    ]


def test_jsonl_with_any_text_field(write) -> None:
    rows = [{"story": "one", "id": 1}, {"story": "two", "id": 2}, {"story": "  ", "id": 3}]
    f = write("s.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert stories(f, text_column="story") == ["one", "two"]
    with pytest.raises(
        InvalidInput,
        match=r"text column 'text' does not exist in .*columns are: (story, id|id, story)",
    ):
        stories(f)


def test_parquet_and_save_to_disk(tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a b", "c d", "e f"], "n": [1, 2, 3]})
    ds.to_parquet(str(tmp_path / "s.parquet"))
    assert stories(tmp_path / "s.parquet") == ["a b", "c d", "e f"]
    ds.save_to_disk(str(tmp_path / "saved"))
    assert stories(tmp_path / "saved") == ["a b", "c d", "e f"]
    datasets.DatasetDict({"train": ds, "validation": ds.select([1])}).save_to_disk(
        str(tmp_path / "dd")
    )
    assert stories(tmp_path / "dd", split="validation") == ["c d"]
    with pytest.raises(InvalidInput, match="has no split 'test'; splits are: train, validation"):
        stories(tmp_path / "dd", split="test")


def test_directory_of_files_in_name_order_with_dedupe_and_cap(write, tmp_path: Path) -> None:
    write("data/b.jsonl", json.dumps({"text": "from b"}) + "\n")
    write("data/a.txt", "from a\n<|endoftext|>\nfrom b\n<|endoftext|>\n")
    write("data/notes.md", "ignored")
    assert stories(tmp_path / "data") == ["from a", "from b", "from b"]
    assert stories(tmp_path / "data", dedupe=True) == ["from a", "from b"]
    assert stories(tmp_path / "data", num_stories=1) == ["from a"]
    assert describe(SourceSpec(str(tmp_path / "data"))).startswith("local directory")


def test_builtin_source_is_the_story_world() -> None:
    got = stories("builtin", num_stories=3, seed=5)
    from lmcollapse.data.stories import generate

    assert got == list(generate(3, seed=5))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jsonl", "does not exist: check the path"),
        (lambda d: d / "nope" / "deeper", "does not exist"),
        (lambda d: _touch(d / "empty.txt", ""), "has no stories"),
        (lambda d: _touch(d / "blank.jsonl", ""), "cannot read|has no stories"),
        (lambda d: _touch(d / "data.csv", "text\nhello\n"), "unknown format '.csv'"),
        (lambda d: _touch(d / "bad.jsonl", "{not json\n"), "cannot read .*bad.jsonl as json"),
        (
            lambda d: (d / "emptydir").mkdir() or d / "emptydir",
            "has no .txt, .jsonl, .json or .parquet files",
        ),
        (lambda d: "", "empty data source"),
        (lambda d: "nobody/no-such-dataset", "cannot load hub dataset 'nobody/no-such-dataset'"),
    ],
)
def test_bad_sources_get_a_clear_message(tmp_path: Path, make, message: str) -> None:
    source = make(tmp_path)
    with pytest.raises(InvalidInput, match=message):
        stories(source)


def _touch(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_end_of_text_ends_a_story_wherever_it_is(write) -> None:
    f = write("inline.jsonl", json.dumps({"text": "First.<|endoftext|>Second."}) + "\n")
    assert stories(f) == ["First.", "Second."]
    crlf = write("crlf.txt", "\ufeffOne\r\nline two\r\n<|endoftext|>\r\nTwo<|endoftext|>Three\r\n")
    assert stories(crlf) == ["One\nline two", "Two", "Three"]  # BOM dropped, newlines normalised
    (bad_bytes := write("latin.txt", "")).write_bytes(b"caf\xe9\n")
    with pytest.raises(InvalidInput, match="is not UTF-8 text"):
        stories(bad_bytes)


def test_non_text_values_are_refused_not_dropped(write) -> None:
    f = write("n.jsonl", json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": 7}) + "\n")
    with pytest.raises(InvalidInput, match=r"column 'text' of .* holds int values, not text"):
        stories(f)
    assert stories(
        write("none.jsonl", json.dumps({"text": None}) + "\n" + json.dumps({"text": "x"}))
    ) == ["x"]


def test_count_stories_is_a_full_checking_pass(write, tmp_path: Path) -> None:
    from lmcollapse.data.sources import count_stories

    write("d/a.txt", "a\n<|endoftext|>\nb\n")
    write("d/b.jsonl", json.dumps({"other": 1}))
    with pytest.raises(InvalidInput, match="text column"):
        count_stories(SourceSpec(str(tmp_path / "d")))
    assert count_stories(SourceSpec("builtin", num_stories=12)) == 12
    assert count_stories(SourceSpec(str(write("c.txt", "x\n<|endoftext|>\nx\n")), dedupe=True)) == 1
