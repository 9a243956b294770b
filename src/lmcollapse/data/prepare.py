"""`lmcollapse corpus prepare`: D0, its held-out split and the tokenizer, built once into a dir.

    DIR/tokenizer/    Hugging Face tokenizer (trained on D0, or a copy of the pretrained one)
    DIR/d0/           token store: D0's training stories (what generation 1 trains on)
    DIR/holdout/      token store: the seeded held-out stories (validation, early stopping)
    DIR/corpus.json   written last: the data config, sizes, tokenizer fingerprint, timings

Steps: read the source (stripped, deduplicated and capped as configured), train or load the
tokenizer, encode every story followed by end-of-text into a temporary store, choose
round(holdout_fraction · S) stories with a seeded permutation (at least one), and copy the
stories into d0/ and holdout/ in their original order. Every piece is published atomically; a
second call with the same data config reuses what is there, and one with another config is
refused, naming the keys that differ.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse import __version__
from lmcollapse.artifacts import atomic_write_json
from lmcollapse.config import DataConfig, to_plain
from lmcollapse.data import sources
from lmcollapse.data.store import TokenStore, TokenStoreWriter, is_store, write_subset
from lmcollapse.data.tokenizer import Tok, encode_stories, save_pretrained, train_bpe
from lmcollapse.errors import InvalidInput


@dataclass(frozen=True)
class PreparedCorpus:
    """The three artifacts of a prepared corpus, opened."""

    path: Path
    tokenizer: Tok
    d0: TokenStore
    holdout: TokenStore
    info: dict[str, Any]


def source_spec(data: DataConfig) -> sources.SourceSpec:
    """The reading part of a DataConfig."""
    return sources.SourceSpec(
        source=data.source, split=data.split, text_column=data.text_column,
        num_stories=data.num_stories, dedupe=data.dedupe, seed=data.seed,
    )  # fmt: skip


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def holdout_indices(num_stories: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the held-out stories: round(fraction · S), at least 1, at most S - 1."""
    if num_stories < 2:
        raise InvalidInput(f"D0 has {num_stories} story: a held-out split needs at least 2")
    count = min(max(round(fraction * num_stories), 1), num_stories - 1)
    rng = np.random.default_rng([seed, 0x401D])
    return np.sort(rng.permutation(num_stories)[:count])


def prepare(data: DataConfig, out_dir: str | Path, *, log: Any = None) -> PreparedCorpus:
    """Build (or reuse) tokenizer, d0 and holdout in out_dir for this data config."""
    out = Path(out_dir)
    say = log or (lambda _msg: None)
    wanted = to_plain(data)
    info_path = out / "corpus.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        diff = _differences(info.get("data"), wanted)
        if diff:
            raise InvalidInput(
                f"{out} was prepared with another data config (differs in: "
                f"{', '.join('data.' + d for d in diff)}): use another directory or the same config"
            )
        say(f"reusing the prepared corpus in {out}")
        return open_prepared(out)
    spec = source_spec(data)
    sources.check(spec)  # a missing source, bad format or column fails here, before any write
    out.mkdir(parents=True, exist_ok=True)
    intent = out / ".prepare.json"  # what an unfinished prepare was building
    if intent.is_file() and json.loads(intent.read_text(encoding="utf-8")) != wanted:
        for name in ("tokenizer", "d0", "holdout"):
            shutil.rmtree(out / name, ignore_errors=True)
    atomic_write_json(intent, wanted)
    say(f"source: {sources.describe(spec)}")
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    tok_dir = out / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        tok = Tok(tok_dir)
        say(f"reusing tokenizer {tok_dir}")
    elif data.tokenizer == "train":
        say(f"training a byte-level BPE tokenizer, vocabulary {data.tokenizer_vocab_size}")
        tok = train_bpe(sources.iter_stories(spec), data.tokenizer_vocab_size, tok_dir)
    else:
        say(f"fetching tokenizer {data.tokenizer}")
        tok = save_pretrained(data.tokenizer, tok_dir)
    timings["tokenizer_s"] = time.perf_counter() - t0
    tok_fp = tok.fingerprint()
    provenance = {"data": wanted, "tokenizer": tok_fp}

    if not (is_store(out / "d0") and is_store(out / "holdout")):
        t0 = time.perf_counter()
        say("encoding stories")
        everything = out / ".all"
        shutil.rmtree(everything, ignore_errors=True)
        with TokenStoreWriter(
            everything, vocab_size=tok.vocab_size, eos_id=tok.eos_id, provenance=provenance
        ) as w:
            for flat, lens in encode_stories(tok, sources.iter_stories(spec)):
                w.add_flat(flat, lens)
        all_store = TokenStore.open(everything)
        timings["encode_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        held = holdout_indices(all_store.num_stories, data.holdout_fraction, data.seed)
        keep = np.setdiff1d(np.arange(all_store.num_stories), held, assume_unique=True)
        write_subset(all_store, held, out / "holdout", {**provenance, "split": "holdout"})
        write_subset(all_store, keep, out / "d0", {**provenance, "split": "d0"})
        del all_store
        shutil.rmtree(everything, ignore_errors=True)
        timings["split_s"] = time.perf_counter() - t0
    d0, holdout = TokenStore.open(out / "d0"), TokenStore.open(out / "holdout")
    info = {
        "lmcollapse_version": __version__,
        "data": wanted,
        "source": sources.describe(spec),
        "tokenizer": {
            "path": "tokenizer",
            "fingerprint": tok_fp,
            "vocab_size": tok.vocab_size,
            "eos_id": tok.eos_id,
            "eos_token": tok.eos_token,
        },
        "d0": {"stories": d0.num_stories, "tokens": d0.num_tokens},
        "holdout": {"stories": holdout.num_stories, "tokens": holdout.num_tokens},
        "timings": timings,
    }
    atomic_write_json(info_path, info)
    intent.unlink(missing_ok=True)
    say(
        f"D0: {d0.num_stories:,} stories, {d0.num_tokens:,} tokens; "
        f"holdout: {holdout.num_stories:,} stories, {holdout.num_tokens:,} tokens"
    )
    return PreparedCorpus(out, tok, d0, holdout, info)


def is_prepared(path: str | Path) -> bool:
    """True if `path` is a finished prepared corpus."""
    return (Path(path) / "corpus.json").is_file()


def open_prepared(path: str | Path) -> PreparedCorpus:
    """Open a prepared corpus directory."""
    p = Path(path)
    if not is_prepared(p):
        raise InvalidInput(
            f"{p} is not a prepared corpus (no corpus.json): run `lmcollapse corpus prepare`"
        )
    info = json.loads((p / "corpus.json").read_text(encoding="utf-8"))
    return PreparedCorpus(
        p,
        Tok(p / "tokenizer"),
        TokenStore.open(p / "d0"),
        TokenStore.open(p / "holdout"),
        info,
    )
