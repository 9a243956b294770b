"""Real text sources for D0: stories as a stream of strings, never a list in RAM.

A source is one of:
    builtin                       the built-in story world (lmcollapse.data.stories)
    a Hugging Face hub dataset    e.g. roneneldan/TinyStories, read with datasets.load_dataset
    FILE.txt                      TinyStories' text form: stories separated by <|endoftext|>
    FILE.jsonl / FILE.json        one JSON object per line with a text field
    FILE.parquet                  a Parquet table with a text column
    a save_to_disk directory      written by datasets' save_to_disk (a Dataset or DatasetDict)
    a directory of such files     read in sorted file-name order

Hub datasets and local .jsonl/.parquet files go through the same `datasets.load_dataset` call
(local files by builder name and data_files), then the same column check and iteration; only
the .txt form has its own streaming reader. In every source, <|endoftext|> ends a story wherever
it appears (so no stored story has an end-of-text token inside it); stories are stripped, empty
ones skipped, optionally deduplicated (exact text) and capped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmcollapse.data.stories import generate, story
from lmcollapse.data.tokenizer import EOT
from lmcollapse.errors import InvalidInput, first_line

TEXT_SUFFIXES = {".txt": "txt", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
FORMATS_HELP = (
    "use builtin, a hub dataset name, a .txt file (<|endoftext|>-separated), .jsonl/.json, "
    ".parquet, a directory of them, or a datasets save_to_disk directory"
)


@dataclass(frozen=True)
class SourceSpec:
    """Where D0's text comes from (the fields of DataConfig that matter here)."""

    source: str
    split: str = "train"
    text_column: str = "text"
    num_stories: int | None = None
    dedupe: bool = False
    seed: int = 0
    subset: str | None = None  # a hub dataset's configuration (wikitext-2-raw-v1 of wikitext)


def describe(spec: SourceSpec) -> str:
    """One line: what the source is."""
    if spec.source == "builtin":
        return f"built-in story world (seed {spec.seed}, {spec.num_stories} stories)"
    p = Path(spec.source).expanduser()
    if p.exists() or looks_like_path(spec.source):
        return f"local {'directory' if p.is_dir() else 'file'} {p}"
    subset = f", configuration {spec.subset}" if spec.subset else ""
    return f"Hugging Face hub dataset {spec.source} (split {spec.split}{subset})"


def iter_stories(spec: SourceSpec) -> Iterator[str]:
    """The source's stories, stripped, non-empty, deduplicated if asked, capped if asked.

    Raises InvalidInput for a missing source, an unknown format, a missing text column,
    non-text values, or a source without a single story.
    """
    seen: set[bytes] = set()
    count = 0
    for raw in _raw_stories(spec):
        for text in raw.split(EOT) if EOT in raw else (raw,):
            text = text.strip()
            if not text:
                continue
            if spec.dedupe:
                key = _key(text)
                if key in seen:
                    continue
                seen.add(key)
            yield text
            count += 1
            if spec.num_stories is not None and count >= spec.num_stories:
                return
    if count == 0:
        raise InvalidInput(f"source {spec.source!r} has no stories: check the file or the split")


def iter_reserve(spec: SourceSpec, skip: int) -> Iterator[str]:
    """The source's stories after the `skip` that D0 and its holdout took (`iter_stories` of
    the uncapped source, in the same order): the reserve fresh real data is drawn from. The
    built-in world never runs out (its stories after data.num_stories)."""
    if spec.source != "builtin":
        uncapped = dataclasses.replace(spec, num_stories=None)
        yield from itertools.islice(iter_stories(uncapped), skip, None)
        return
    seen = {_key(t) for t in iter_stories(spec)} if spec.dedupe else set()
    for i in itertools.count(spec.num_stories or 0):
        text = story(spec.seed, i).strip()
        if spec.dedupe:
            if _key(text) in seen:
                continue
            seen.add(_key(text))
        if text:
            yield text


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).digest()


def count_stories(spec: SourceSpec) -> int:
    """How many stories `iter_stories` yields: a full pass that also surfaces every input error."""
    if spec.source == "builtin" and not spec.dedupe and spec.num_stories is not None:
        return spec.num_stories  # the world makes exactly this many
    return sum(1 for _ in iter_stories(spec))


def _raw_stories(spec: SourceSpec) -> Iterator[str]:
    if spec.source == "builtin":
        if spec.num_stories is None:
            raise InvalidInput(
                "the built-in story world needs a number of stories (data.num_stories)"
            )
        return generate(spec.num_stories, seed=spec.seed)
    if not spec.source.strip():
        raise InvalidInput(f"empty data source: {FORMATS_HELP}")
    path = Path(spec.source).expanduser()
    if path.is_dir():
        return _from_directory(path, spec)
    if path.is_file():
        return _from_file(path, spec)
    if looks_like_path(spec.source):
        raise InvalidInput(f"data source {spec.source} does not exist: check the path")
    return _from_hub(spec)


def looks_like_path(source: str) -> bool:
    """A name that can only be meant as a local path (not an owner/name hub id)."""
    return (
        source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in TEXT_SUFFIXES
        or source.count("/") > 1
    )


def _from_directory(path: Path, spec: SourceSpec) -> Iterator[str]:
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        return _from_saved(path, spec)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise InvalidInput(
            f"directory {path} has no .txt, .jsonl, .json or .parquet files: {FORMATS_HELP}"
        )
    return (text for f in files for text in _from_file(f, spec))


def _from_file(path: Path, spec: SourceSpec) -> Iterator[str]:
    kind = TEXT_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(
            f"unknown format {path.suffix or '(no extension)'!r} of {path}: {FORMATS_HELP}"
        )
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path} is empty: it has no stories")
    if kind == "txt":
        return _from_txt(path)
    from datasets import load_dataset

    try:
        with quiet_datasets():  # converting a local file: no progress bars or warnings on stderr
            ds = load_dataset(kind, data_files=str(path), split="train")
    except Exception as exc:
        raise InvalidInput(f"cannot read {path} as {kind}: {first_line(exc)}") from None
    return _from_dataset(ds, spec, str(path))


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No datasets progress bars or warnings on stderr for the duration."""
    from datasets.utils import logging as ds_logging

    bars, level = ds_logging.is_progress_bar_enabled(), ds_logging.get_verbosity()
    ds_logging.disable_progress_bar()
    ds_logging.set_verbosity(ds_logging.CRITICAL + 1)
    try:
        yield
    finally:
        ds_logging.set_verbosity(level)
        if bars:
            ds_logging.enable_progress_bar()


def _from_txt(path: Path) -> Iterator[str]:
    """TinyStories' .txt form: stories separated by <|endoftext|> (on a line of its own there;
    iter_stories also splits at a marker inside a line). Must be UTF-8 (a BOM is dropped)."""
    lines: list[str] = []
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip() == EOT:
                    yield "".join(lines)
                    lines = []
                else:
                    lines.append(line)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path} is not UTF-8 text (byte {exc.start}): convert it to UTF-8"
        ) from None
    if lines:
        yield "".join(lines)


def _from_saved(path: Path, spec: SourceSpec) -> Iterator[str]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as exc:
        raise InvalidInput(f"cannot load the saved dataset {path}: {first_line(exc)}") from None
    if isinstance(ds, DatasetDict):
        if spec.split not in ds:
            raise InvalidInput(f"{path} has no split {spec.split!r}; splits are: {', '.join(ds)}")
        ds = ds[spec.split]
    return _from_dataset(ds, spec, str(path))


def _from_hub(spec: SourceSpec) -> Iterator[str]:
    from datasets import load_dataset

    try:
        ds = load_dataset(spec.source, spec.subset, split=spec.split)
    except Exception as exc:  # offline, unknown name, unknown split, ...
        if _offline(exc):
            raise InvalidInput(
                f"cannot load hub dataset {spec.source!r}: the Hugging Face hub is not reachable "
                "(offline). Get the data on a connected machine, then use local files: "
                "--set data.source=PATH (a .txt, .jsonl or .parquet file, or a directory of them)"
            ) from None
        raise InvalidInput(
            f"cannot load hub dataset {spec.source!r} (split {spec.split!r}): {first_line(exc)}; "
            "check the name and the split"
        ) from None
    return _from_dataset(ds, spec, spec.source)


def _offline(exc: BaseException) -> bool:
    import os

    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return True
    text = f"{exc.__class__.__name__} {exc}"
    return any(
        s in text
        for s in (
            "Offline",
            "ConnectionError",
            "Couldn't reach",
            "Max retries",
            "NameResolution",
            "Temporary failure in name resolution",
        )
    )


def _from_dataset(ds: Any, spec: SourceSpec, where: str) -> Iterator[str]:
    if spec.text_column not in ds.column_names:
        raise InvalidInput(
            f"text column {spec.text_column!r} does not exist in {where}; columns are: "
            f"{', '.join(ds.column_names)} (set data.text_column)"
        )
    column = ds.select_columns([spec.text_column])
    for batch in column.iter(batch_size=1024):
        for text in batch[spec.text_column]:
            if text is None:
                continue
            if not isinstance(text, str):
                raise InvalidInput(
                    f"column {spec.text_column!r} of {where} holds {type(text).__name__} values, "
                    "not "
                    "text: choose the column with the stories (data.text_column)"
                )
            yield text
