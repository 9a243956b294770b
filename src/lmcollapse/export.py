"""`lmcollapse export`: one generation's corpus of a run as a dataset `datasets.load_dataset`
reads — S_n (generation n >= 1, the stories the next generations train on) or D0 (generation 0,
the prepared real corpus).

    lmcollapse export RUN --generation 3 --format jsonl     # RUN/export/gen_003.jsonl
    lmcollapse export RUN --generation 0 --format parquet   # D0: RUN/export/gen_000.parquet
    lmcollapse export RUN --generation 3 --format hf --out DIR [--force]

    from lmcollapse.export import export_corpus
    done = export_corpus("runs/demo", 3, "hf")               # done.path, done.rows

One row per story, in store order: `text` (the story decoded with the run's tokenizer, without
the end-of-text that ends every story in a token store), `unfinished` (the story did not end by
itself: a sequence cut at its length, a story at the length cap; README: Fidelity), `tokens`
(its length in tokens, end-of-text not counted) and `generation`. Formats: `jsonl` (one JSON
object per line), `parquet` (row groups of at most `chunk_stories` rows), `hf` (a directory laid
out as a Hugging Face hub dataset repository: data/train-00000-of-00001.parquet and a README.md
dataset card whose YAML header declares the config, so `load_dataset(DIR)` or a `push` to the hub
works as is).

The corpus is read from its memory map and decoded `chunk_stories` stories at a time, so RAM use
does not grow with the corpus. Only completed generations are exported, after checking their
tokens against the checksums the manifest recorded (D0 and the tokenizer too), and the output is
written beside its target and renamed into place: a failure leaves no half-written export.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse.artifacts import atomic_dir, atomic_path
from lmcollapse.errors import InvalidInput
from lmcollapse.rundir import RunLayout, completed, read_manifest, verified_corpus

FORMATS = ("jsonl", "parquet", "hf")
DIRECTORY_FORMATS = {"hf"}  # written as a directory; the others as one file
CHUNK_STORIES = 10_000  # stories decoded at once; one parquet row group each
HF_DATA_FILE = "data/train-00000-of-00001.parquet"
EXPORT_DIR = "export"

# the columns, as the dataset card and the parquet schema give them
COLUMNS = {
    "text": "the story, decoded with the run's tokenizer, without its end-of-text token",
    "unfinished": "true if the story did not end by itself (cut at the sampling length or the "
    "length cap): its end is not the model's",
    "tokens": "the story's length in tokens (end-of-text not counted)",
    "generation": "the generation whose corpus it is (0: the real corpus D0)",
}


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_corpus` wrote; usable as a path (os.PathLike)."""

    path: Path
    format: str
    generation: int
    rows: int
    tokens: int
    unfinished: int

    def __fspath__(self) -> str:
        return os.fspath(self.path)


def default_path(run_dir: str | Path, generation: int, fmt: str) -> Path:
    """RUN/export/gen_NNN.jsonl, gen_NNN.parquet or gen_NNN_hf/."""
    name = RunLayout(Path(run_dir)).generation(generation).name
    suffix = {"jsonl": ".jsonl", "parquet": ".parquet", "hf": "_hf"}[fmt]
    return Path(run_dir) / EXPORT_DIR / f"{name}{suffix}"


def export_corpus(
    run_dir: str | Path,
    generation: int,
    fmt: str,
    out: str | Path | None = None,
    force: bool = False,
    *,
    chunk_stories: int = CHUNK_STORIES,
) -> ExportResult:
    """Write generation `generation`'s corpus of the run in `run_dir` (0: D0) as `fmt` (jsonl,
    parquet or hf) to `out` (default: `default_path`); an existing `out` is replaced only with
    `force`. Every input is checked before anything is written."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if chunk_stories < 1:
        raise InvalidInput(f"chunk_stories must be >= 1, got {chunk_stories}")
    layout, manifest = _open_run(Path(run_dir))
    store, tok = _corpus(layout, manifest, generation)
    target = Path(out) if out is not None else default_path(layout.root, generation, fmt)
    _check_target(target, layout.root, fmt, force)
    unfinished = int(store.unfinished.size)  # a store that cannot say is refused here
    tokens = store.num_tokens - _ended(store)
    batches = iter_story_batches(store, tok, generation, chunk_stories)
    if fmt == "jsonl":
        _write_jsonl(target, batches)
    elif fmt == "parquet":
        _write_parquet(target, batches)
    else:
        about = _about(layout, manifest, generation, store, tok)
        with atomic_dir(target) as tmp:
            (tmp / HF_DATA_FILE).parent.mkdir(parents=True)
            about["num_bytes"] = _stream_parquet(tmp / HF_DATA_FILE, batches)
            (tmp / "README.md").write_text(dataset_card(about), encoding="utf-8")
            _fsync_file(tmp / "README.md")
    return ExportResult(target, fmt, generation, store.num_stories, tokens, unfinished)


def iter_story_batches(
    store: Any, tok: Any, generation: int, chunk_stories: int = CHUNK_STORIES
) -> Iterator[dict[str, list[Any]]]:
    """The stories of a token store as column batches (text, unfinished, tokens, generation) of
    at most `chunk_stories` rows, in store order; each story without its final end-of-text."""
    offsets, eos = store.offsets, store.eos_id
    for start in range(0, store.num_stories, chunk_stories):
        stop = min(start + chunk_stories, store.num_stories)
        bounds = np.asarray(offsets[start : stop + 1], dtype=np.int64)
        toks = np.asarray(store.tokens[bounds[0] : bounds[-1]])  # this chunk only, (tokens,)
        lo, hi = bounds[:-1] - bounds[0], bounds[1:] - bounds[0]
        ends = (hi > lo) & (toks[np.maximum(hi - 1, 0)] == eos) if toks.size else hi > lo
        hi = hi - ends  # every story ends with end-of-text (a cut one's is a separator)
        ids = [toks[a:b].tolist() for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
        yield {
            "text": tok.backend.decode_batch(ids, skip_special_tokens=False),
            "unfinished": (~store.finished(np.arange(start, stop))).tolist(),
            "tokens": (hi - lo).tolist(),
            "generation": [generation] * (stop - start),
        }


def dataset_card(about: dict[str, Any]) -> str:
    """README.md of an hf export: a YAML header declaring the config, data file and features
    (so `datasets.load_dataset(DIR)` reads it), then what the data is and what its columns mean."""
    import yaml

    header = {
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": HF_DATA_FILE}],
            }
        ],
        "dataset_info": {
            "features": [
                {"name": "text", "dtype": "string"},
                {"name": "unfinished", "dtype": "bool"},
                {"name": "tokens", "dtype": "int64"},
                {"name": "generation", "dtype": "int64"},
            ],
            "splits": [
                {
                    "name": "train",
                    "num_bytes": about.get("num_bytes", 0),
                    "num_examples": about["rows"],
                }
            ],
        },
        "tags": ["lmcollapse", "model-collapse", "synthetic" if about["generation"] else "real"],
    }
    n = about["generation"]
    what = (
        f"Generation {n}'s corpus S_{n}: the stories generation {n}'s model wrote"
        + (" (after curation)" if about.get("curation") not in (None, "none") else "")
        + ", which later generations train on under the run's paradigm."
        if n
        else "Generation 0: the real corpus D0 the run's first generation trained on (its "
        "held-out split not included)."
    )
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# lmcollapse run `{about['run_name']}`, generation {n}",
        "",
        what,
        "",
        f"- run: `{about['run']}` (preset {about['preset'] or 'none'}, seed {about['seed']}, "
        f"lmcollapse {about['lmcollapse_version']})",
        f"- paradigm: {about['paradigm']}; model family: {about['family']}",
        f"- stories: {about['rows']:,} ({about['unfinished']:,} unfinished), "
        f"tokens: {about['tokens']:,}",
        f"- tokenizer: `{about['tokenizer']}` (fingerprint {about['tokenizer_fingerprint']}, "
        f"vocabulary {about['vocab_size']:,}, end-of-text {about['eos_token']!r} = id "
        f"{about['eos_id']})",
    ]
    if about.get("sampling"):
        s = about["sampling"]
        keys = ("strategy", "num_beams", "repetition_penalty", "prompted", "temperature")
        keys += ("top_k", "top_p", "length", "min_new_tokens")
        lines.append("- sampling: " + ", ".join(f"{k} {s[k]}" for k in keys if k in s))
    lines += ["", "## Columns", ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in COLUMNS.items()]
    lines += [
        "",
        "Each story is one row, in the order of the run's token store. A story's text is its "
        "tokens decoded as they are (special tokens kept, no stripping); the end-of-text token "
        "that ends every story in the store is left out, so `unfinished` is the only record of "
        "how a story ended.",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/directory", split="train")',
        "```",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Checking the input


def _open_run(root: Path) -> tuple[RunLayout, dict[str, Any]]:
    """The run's layout and manifest; a one-line error for anything that is not one run."""
    layout = RunLayout(root)
    if not root.exists():
        raise InvalidInput(f"{root} does not exist: give a run directory made by `lmcollapse run`")
    if not layout.manifest.is_file() and (
        (root / "replicates").is_dir() or (root / "replicates.json").is_file()
    ):
        raise InvalidInput(
            f"{root} is a replicated run: export one of its replicates, "
            f"`lmcollapse export {root / 'replicates'}/seed=S`{_seeds(root)}"
        )
    if not layout.manifest.is_file():
        raise InvalidInput(
            f"{root} is not an lmcollapse run directory (no manifest.json): give the --out of "
            "an `lmcollapse run`"
        )
    return layout, read_manifest(layout)


def _seeds(root: Path) -> str:
    """' (seeds: 0, 1)' for a replicated run whose replicates have started, else ''."""
    from lmcollapse.repdir import replicate_dirs

    try:
        seeds = [s for s, _ in replicate_dirs(root)]
    except InvalidInput:
        return ""
    return f" (seeds: {', '.join(map(str, seeds))})" if seeds else ""


def _corpus(layout: RunLayout, manifest: dict[str, Any], n: int) -> tuple[Any, Any]:
    """Generation n's verified token store (n = 0: D0) and the run's tokenizer."""
    from lmcollapse.data.prepare import is_prepared, open_prepared
    from lmcollapse.rundir import check_d0

    done = completed(manifest, layout)
    if is_prepared(layout.data):
        done = [0, *done]
    if n not in done:
        listed = ", ".join(map(str, done)) or "none"
        raise InvalidInput(
            f"generation {n} of {layout.root} is not completed (completed: {listed}): export "
            "one of those, or continue the run with `lmcollapse run --out "
            f"{layout.root}` first"
        )
    corpus = open_prepared(layout.data)
    if n == 0:
        check_d0(dict(manifest), corpus)  # D0's tokens and the tokenizer, as the run recorded
        return corpus.d0, corpus.tokenizer
    recorded = manifest.get("tokenizer")
    if recorded is not None and corpus.tokenizer.fingerprint() != recorded:
        raise InvalidInput(
            f"{corpus.tokenizer.path} is not the tokenizer this run started with (fingerprint "
            f"{corpus.tokenizer.fingerprint()}, recorded {recorded}): restore {layout.data}"
        )
    return verified_corpus(layout, manifest, n), corpus.tokenizer


def _check_target(target: Path, run: Path, fmt: str, force: bool) -> None:
    """Refuse an output that exists (without --force), is of the other kind, or would overwrite
    any part of the run itself."""
    here, root = Path(os.path.abspath(target)), Path(os.path.abspath(run))
    if here == root or here in root.parents:
        raise InvalidInput(f"--out {target} would replace the run {run}: choose another --out")
    if root in here.parents and (root / EXPORT_DIR) not in (here, *here.parents):
        raise InvalidInput(
            f"--out {target} lies inside the run directory {run}, whose files lmcollapse "
            f"manages: choose a path under {run / EXPORT_DIR} or outside the run"
        )
    if root in here.parents and (root / EXPORT_DIR).is_symlink():
        raise InvalidInput(
            f"{root / EXPORT_DIR} is a symbolic link: lmcollapse writes only inside its run "
            "directory; replace the link with a folder, or give --out"
        )
    if not (target.exists() or target.is_symlink()):
        return
    if not force:
        raise InvalidInput(
            f"--out {target} already exists: pass --force to replace it, or choose another --out"
        )
    if fmt in DIRECTORY_FORMATS:
        if not target.is_dir() or target.is_symlink():
            raise InvalidInput(
                f"--out {target} is not a directory, and an hf export is one: remove it or "
                "choose another --out"
            )
        if not _looks_exported(target):
            raise InvalidInput(
                f"--out {target} is a directory that is not an hf export (--force replaces "
                "only those): remove it yourself or choose another --out"
            )
    elif target.is_dir() and not target.is_symlink():
        raise InvalidInput(
            f"--out {target} is a directory, and a {fmt} export is one file: give a file name"
        )


def _looks_exported(path: Path) -> bool:
    """A directory holding only what an hf export holds (README.md, data/*.parquet)."""
    entries = {e.name for e in path.iterdir()}
    if not entries <= {"README.md", "data", ".gitattributes"}:
        return False
    data = path / "data"
    return not data.exists() or (
        data.is_dir() and all(e.suffix == ".parquet" and e.is_file() for e in data.iterdir())
    )


def _about(
    layout: RunLayout, manifest: dict[str, Any], n: int, store: Any, tok: Any
) -> dict[str, Any]:
    """What the dataset card says about the export."""
    from lmcollapse.rundir import run_config

    cfg = run_config(layout.root)
    sampling = store.meta.get("provenance", {}).get("sampling") if n else None
    return {
        "run": str(layout.root),
        "run_name": layout.root.name or str(layout.root),
        "preset": manifest.get("preset"),
        "seed": manifest.get("seed"),
        "lmcollapse_version": manifest.get("lmcollapse_version"),
        "paradigm": _paradigm(cfg.paradigm),
        "family": cfg.model.family,
        "curation": cfg.curation.name,
        "generation": n,
        "rows": store.num_stories,
        "unfinished": int(store.unfinished.size),
        "tokens": store.num_tokens - _ended(store),
        "tokenizer": str(tok.path),
        "tokenizer_fingerprint": tok.fingerprint(),
        "vocab_size": tok.vocab_size,
        "eos_token": tok.eos_token,
        "eos_id": tok.eos_id,
        "sampling": sampling if isinstance(sampling, dict) else None,
    }


def _paradigm(p: Any) -> str:
    """'replace', 'accumulate-subsample (k=1.0)', 'mix (lam=0.5)': the paradigm and what sets it."""
    extras = {"accumulate-subsample": {"k": p.k}, "mix": {"lam": p.lam}}.get(p.name, {})
    if p.fresh:
        extras["fresh"] = p.fresh
    extras["unit"] = p.unit
    return f"{p.name} ({', '.join(f'{k}={v}' for k, v in extras.items())})"


def _ended(store: Any) -> int:
    """How many stories end with end-of-text (all of them, in a store this version writes)."""
    if store.num_stories == 0:
        return 0
    last = np.asarray(store.offsets[1:], dtype=np.int64) - 1
    ends = last >= np.asarray(store.offsets[:-1], dtype=np.int64)  # non-empty stories
    count, step = 0, 1 << 20
    for start in range(0, last.size, step):  # bounded memory on huge stores
        part, ok = last[start : start + step], ends[start : start + step]
        count += int(np.count_nonzero(np.asarray(store.tokens[part[ok]]) == store.eos_id))
    return count


# ----------------------------------------------------------------------------------------------
# Writing


def _write_jsonl(target: Path, batches: Iterator[dict[str, list[Any]]]) -> None:
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for batch in batches:
            names = list(batch)
            fh.writelines(
                json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False) + "\n"
                for row in zip(*batch.values(), strict=True)
            )


def _write_parquet(target: Path, batches: Iterator[dict[str, list[Any]]]) -> None:
    with atomic_path(target) as tmp:
        _stream_parquet(tmp, batches)


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("text", pa.string(), nullable=False),
            pa.field("unfinished", pa.bool_(), nullable=False),
            pa.field("tokens", pa.int64(), nullable=False),
            pa.field("generation", pa.int64(), nullable=False),
        ],
        metadata={name.encode(): meaning.encode() for name, meaning in COLUMNS.items()},
    )


def _stream_parquet(path: Path, batches: Iterator[dict[str, list[Any]]]) -> int:
    """One row group per batch (bounded memory), then the bytes made durable. Returns the size
    of the rows in Arrow's memory layout (a dataset card's num_bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, size = _schema(), 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in batches:
            table = pa.Table.from_pydict(batch, schema=schema)
            writer.write_table(table)
            size += table.nbytes
    _fsync_file(path)
    return size


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
