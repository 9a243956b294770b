"""`lmcollapse corpus prepare`: D0, its held-out split and the tokenizer, built once into a dir.

    DIR/tokenizer/    Hugging Face tokenizer (trained on D0's training stories, or a pretrained one)
    DIR/d0/           token store: D0's training stories, in source order
    DIR/holdout/      token store: the seeded held-out stories (validation, early stopping)
    DIR/corpus.json   written last: the data config, sizes, tokenizer fingerprint, timings

Steps:
1. count the source's stories (stripped, deduplicated and capped as configured) — a full pass
   that surfaces every input error before anything is written;
2. choose round(holdout_fraction · S) held-out stories with a seeded permutation (at least one);
3. train the tokenizer on the other stories (the holdout never shapes it), or fetch a pretrained;
4. encode every story followed by end-of-text in one pass, into d0/ or holdout/.

Each piece is published atomically and recorded with the config that made it: a rerun after a
crash reuses the finished pieces and redoes the rest; a second call with the same data config
reuses everything; one with another config is refused, naming the keys that differ.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse._version import __version__
from lmcollapse.artifacts import atomic_dir, atomic_write_json, prepare_output_dir
from lmcollapse.config import DataConfig, differences, to_plain
from lmcollapse.data import sources
from lmcollapse.data.store import TokenStore, TokenStoreWriter, is_store
from lmcollapse.data.tokenizer import Tok, encode_stories, load_tokenizer, train_bpe
from lmcollapse.errors import InvalidInput

Log = Callable[[str], None]


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
        source=data.source,
        split=data.split,
        text_column=data.text_column,
        num_stories=data.num_stories,
        dedupe=data.dedupe,
        seed=data.seed,
        subset=data.subset,
    )


def holdout_indices(num_stories: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the held-out stories: round(fraction · S), at least 1, at most S - 1."""
    if num_stories < 2:
        raise InvalidInput(f"D0 has {num_stories} story: a held-out split needs at least 2")
    count = min(max(round(fraction * num_stories), 1), num_stories - 1)
    rng = np.random.default_rng([seed, 0x401D])
    return np.sort(rng.permutation(num_stories)[:count])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{path} is damaged ({exc.__class__.__name__}): delete {path.parent} and prepare again"
        ) from None


def prepare(
    data: DataConfig,
    out_dir: str | Path,
    *,
    log: Log | None = None,
    check: Callable[[Tok], None] | None = None,
) -> PreparedCorpus:
    """Build (or reuse) tokenizer, d0 and holdout in out_dir for this data config. `check`
    (a run's probes and model, lmcollapse.checks) sees the tokenizer as soon as it exists:
    a pretrained one before anything is written, a trained one before D0 is encoded."""
    out = Path(out_dir)
    say = log or (lambda _msg: None)
    check = check or (lambda _tok: None)
    wanted = to_plain(data)
    if is_prepared(out):
        diff = differences(_read_json(out / "corpus.json").get("data"), wanted)
        if diff:
            raise InvalidInput(
                f"{out} was prepared with another data config (differs in: "
                f"{', '.join('data.' + d for d in diff)}): use another directory or the same config"
            )
        say(f"reusing the prepared corpus in {out}")
        corpus = open_prepared(out)
        check(corpus.tokenizer)
        return corpus
    _refuse_foreign(out_dir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spec = source_spec(data)
    num = sources.count_stories(spec)  # every source error surfaces here, before any write
    held = holdout_indices(num, data.holdout_fraction, data.seed)
    pretrained = (
        None if data.tokenizer == "train" else load_tokenizer(data.tokenizer)
    )  # fetched to the cache
    if pretrained is not None:
        check(pretrained)
    timings["count_s"] = time.perf_counter() - t0

    out = prepare_output_dir(out)
    _forget_other_attempts(out, wanted)
    say(f"source: {sources.describe(spec)}: {num:,} stories, {len(held):,} held out")
    is_held = np.zeros(num, dtype=bool)
    is_held[held] = True

    t0 = time.perf_counter()
    tok = _tokenizer(data, spec, is_held, pretrained, out / "tokenizer", say)
    if pretrained is None:
        check(tok)
    timings["tokenizer_s"] = time.perf_counter() - t0
    provenance = {"data": wanted, "tokenizer": tok.fingerprint()}

    t0 = time.perf_counter()
    stores = _finished_stores(out, provenance)
    if stores is None:
        say("encoding stories")
        stores = _encode_split(tok, spec, is_held, out, provenance)
    timings["encode_s"] = time.perf_counter() - t0
    d0, holdout = stores
    info = _corpus_info(wanted, sources.describe(spec), tok, d0, holdout, timings)
    atomic_write_json(out / "corpus.json", info)
    (out / ".prepare.json").unlink(missing_ok=True)
    say(
        f"D0: {d0.num_stories:,} stories, {d0.num_tokens:,} tokens; "
        f"holdout: {holdout.num_stories:,} stories, {holdout.num_tokens:,} tokens"
    )
    return PreparedCorpus(out, tok, d0, holdout, info)


def _corpus_info(
    wanted: dict[str, Any],
    source: str,
    tok: Tok,
    d0: TokenStore,
    holdout: TokenStore,
    timings: dict[str, float],
) -> dict[str, Any]:
    """corpus.json: what was prepared, from what, with which tokenizer, and how long it took."""
    return {
        "lmcollapse_version": __version__,
        "data": wanted,
        "source": source,
        "tokenizer": {
            "path": "tokenizer",
            "fingerprint": tok.fingerprint(),
            "vocab_size": tok.vocab_size,
            "eos_id": tok.eos_id,
            "eos_token": tok.eos_token,
        },
        "d0": {"stories": d0.num_stories, "tokens": d0.num_tokens},
        "holdout": {"stories": holdout.num_stories, "tokens": holdout.num_tokens},
        "timings": timings,
    }


def _refuse_foreign(out_dir: str | Path) -> None:
    """An output path that is empty, not a directory, or a folder of someone else's files."""
    out = Path(out_dir)
    if not str(out_dir).strip():
        raise InvalidInput("the output directory is empty: name one, e.g. --out runs/corpus")
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"output path {out} exists and is not a directory: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / ".prepare.json").is_file():
        raise InvalidInput(
            f"{out} is not empty and not a prepared corpus (no corpus.json or .prepare.json): "
            "choose another --out (nothing in it was touched)"
        )


def _forget_other_attempts(out: Path, wanted: dict[str, Any]) -> None:
    """Pieces left by an unfinished prepare with another config are removed; the intent is saved."""
    intent = out / ".prepare.json"
    previous = None
    if intent.is_file():
        try:
            previous = json.loads(intent.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
    if previous != wanted:
        for name in ("tokenizer", "d0", "holdout"):
            shutil.rmtree(out / name, ignore_errors=True)
    atomic_write_json(intent, wanted)


def _tokenizer(
    data: DataConfig,
    spec: sources.SourceSpec,
    is_held: np.ndarray,
    pretrained: Tok | None,
    tok_dir: Path,
    say: Log,
) -> Tok:
    if (tok_dir / "tokenizer.json").is_file():
        say(f"reusing tokenizer {tok_dir}")
        return Tok(tok_dir)
    if pretrained is not None:
        say(f"tokenizer: {data.tokenizer}")
        with atomic_dir(tok_dir) as tmp:
            for f in pretrained.path.iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        return Tok(tok_dir)
    say(
        f"training a byte-level BPE tokenizer on D0's training stories, vocabulary "
        f"{data.tokenizer_vocab_size}"
    )
    training = (text for i, text in enumerate(sources.iter_stories(spec)) if not is_held[i])
    return train_bpe(training, data.tokenizer_vocab_size, tok_dir)


def _finished_stores(out: Path, provenance: dict[str, Any]) -> tuple[TokenStore, TokenStore] | None:
    """Both stores, if both were finished from this config and tokenizer; else None."""
    if not (is_store(out / "d0") and is_store(out / "holdout")):
        return None
    stores = TokenStore.open(out / "d0"), TokenStore.open(out / "holdout")
    if any({k: s.meta["provenance"].get(k) for k in provenance} != provenance for s in stores):
        return None
    return stores


def _encode_split(
    tok: Tok, spec: sources.SourceSpec, is_held: np.ndarray, out: Path, provenance: dict[str, Any]
) -> tuple[TokenStore, TokenStore]:
    """One pass: each story (and its end-of-text) goes to holdout/ or d0/; holdout is published
    first, d0 last, so `_finished_stores` sees both only when both are complete."""
    for name in ("d0", "holdout"):
        shutil.rmtree(out / name, ignore_errors=True)
    common = {"vocab_size": tok.vocab_size, "eos_id": tok.eos_id}
    d0 = TokenStoreWriter(out / "d0", provenance={**provenance, "split": "d0"}, **common)
    holdout = TokenStoreWriter(
        out / "holdout", provenance={**provenance, "split": "holdout"}, **common
    )
    try:
        first = 0
        for flat, lens in encode_stories(tok, sources.iter_stories(spec)):
            held = is_held[first : first + len(lens)]
            token_held = np.repeat(held, lens)
            holdout.add_flat(flat[token_held], lens[held])
            d0.add_flat(flat[~token_held], lens[~held])
            first += len(lens)
        if first != len(is_held):
            raise InvalidInput(
                f"the source gave {first} stories after {len(is_held)} were counted: "
                "it changed while being read"
            )
        held_store = holdout.close()
        return d0.close(), held_store
    except BaseException:
        d0.abort()
        holdout.abort()
        raise


def prepare_evaluation(
    spec: sources.SourceSpec, tok: Tok, out_dir: str | Path, *, log: Log | None = None
) -> TokenStore:
    """A real evaluation set (e.g. TinyStories' validation split) as a token store in out_dir,
    tokenized with the run's tokenizer in one streamed pass (at most spec.num_stories stories);
    reused when it was made from the same source with the same tokenizer. A token-store source
    is used in place, if the run's tokenizer made it.

    Raises InvalidInput for a source with no stories, or one the tokenizer does not fit (a store
    made with another tokenizer; text it can only encode as its unknown token)."""
    say = log or (lambda _msg: None)
    source = spec.source
    if is_store(source):
        store = TokenStore.open(source)
        built_with = store.meta.get("provenance", {}).get("tokenizer")
        if built_with != tok.fingerprint() or store.vocab_size != tok.vocab_size:
            raise InvalidInput(
                f"evaluation.source {source} was tokenized with another tokenizer (fingerprint "
                f"{built_with}, not the run's {tok.fingerprint()}): give its text source instead"
            )
        if store.num_stories == 0:
            raise InvalidInput(f"evaluation.source {source} has no stories: give another source")
        return store
    provenance = _evaluation_provenance(spec) | {"tokenizer": tok.fingerprint()}
    out = Path(out_dir)
    reused = _store_made_from(out, provenance)
    if reused is not None:
        say(f"reusing the evaluation set {out}")
        return reused
    say(f"evaluation set: {sources.describe(spec)}, tokenized with the run's tokenizer")
    unk = _unknown_id(tok)
    try:
        with TokenStoreWriter(
            out, vocab_size=tok.vocab_size, eos_id=tok.eos_id, provenance=provenance, overwrite=True
        ) as w:
            for flat, lens in encode_stories(tok, sources.iter_stories(spec)):
                if unk is not None and bool(np.any(flat == unk)):
                    raise InvalidInput(
                        f"the run's tokenizer does not fit it: it encodes "
                        f"{int(np.sum(flat == unk))} pieces of the text as its unknown token "
                        f"{tok.decode([unk])!r}; use a tokenizer that covers the text (a "
                        "byte-level BPE covers any)"
                    )
                w.add_flat(flat, lens)
    except InvalidInput as exc:
        raise InvalidInput(f"evaluation.source {source}: {exc}") from None
    return TokenStore.open(out)


def evaluation_spec(evaluation: Any, data: DataConfig) -> sources.SourceSpec | None:
    """A run's evaluation source (config.evaluation) as a SourceSpec; None for D0's holdout."""
    if evaluation.source == "holdout":
        return None
    return sources.SourceSpec(
        evaluation.source,
        evaluation.split,
        evaluation.text_column or data.text_column,
        evaluation.max_stories,
        subset=evaluation.subset or (data.subset if evaluation.source == data.source else None),
    )


def evaluation_record(spec: sources.SourceSpec | None, store: TokenStore) -> dict[str, Any]:
    """What metrics.json says about the set perplexity was measured on."""
    if spec is None:
        return {"source": "holdout", "split": None, "what": "D0's held-out split"}
    if is_store(spec.source):  # a token store used in place: its checksum shows which
        what = {"split": None, "what": f"token store {spec.source}"}
        return {"source": spec.source, **what, "checksum": store.meta.get("checksum")}
    return {
        "source": spec.source,
        "split": spec.split,
        "what": f"{sources.describe(spec)}, tokenized with the run's tokenizer",
    }


def _evaluation_provenance(spec: sources.SourceSpec) -> dict[str, Any]:
    return {
        "evaluation": {
            "source": spec.source,
            "split": spec.split,
            "text_column": spec.text_column,
            "max_stories": spec.num_stories,
        }
        | ({"subset": spec.subset} if spec.subset else {}),
        "split": "evaluation",
    }


def _store_made_from(path: Path, provenance: dict[str, Any]) -> TokenStore | None:
    """The finished store at `path` if its provenance says it was made from this (a damaged or
    unfinished one counts as none: it is made again)."""
    if not is_store(path):
        return None
    try:
        store = TokenStore.open(path)
    except InvalidInput:
        return None
    made = {k: store.meta["provenance"].get(k) for k in provenance}
    return store if made == provenance else None


def evaluation_ready(spec: sources.SourceSpec, out_dir: str | Path) -> bool:
    """Is out_dir a finished evaluation set of this source (so a resumed run need not read the
    source again — offline, say)? The tokenizer is checked when it is opened."""
    if is_store(spec.source):
        return False
    return _store_made_from(Path(out_dir), _evaluation_provenance(spec)) is not None


def check_evaluation_source(spec: sources.SourceSpec) -> int:
    """Stories an evaluation source offers (a full pass: every source error surfaces here, before
    a run writes anything)."""
    if is_store(spec.source):
        return TokenStore.open(spec.source).num_stories
    try:
        return sources.count_stories(spec)
    except InvalidInput as exc:
        raise InvalidInput(f"evaluation.source {spec.source}: {exc}") from None


def _unknown_id(tok: Tok) -> int | None:
    """The id of a tokenizer's unknown token, if it has one that is not its end-of-text (the
    GPT-2 family names <|endoftext|> as unk, but byte-level BPE never emits it for text)."""
    model = json.loads((tok.path / "tokenizer.json").read_text(encoding="utf-8")).get("model", {})
    unk = model.get("unk_token") if isinstance(model, dict) else None
    if not unk or model.get("byte_fallback"):
        return None
    i = tok.backend.token_to_id(unk)
    return None if i is None or i == tok.eos_id else int(i)


def is_prepared(path: str | Path) -> bool:
    """True if `path` is a finished prepared corpus."""
    return (Path(path) / "corpus.json").is_file()


def open_prepared(path: str | Path) -> PreparedCorpus:
    """Open a prepared corpus directory."""
    p = Path(path)
    if not is_prepared(p):
        hint = " (an unfinished prepare: run it again)" if (p / ".prepare.json").is_file() else ""
        raise InvalidInput(f"{p} is not a prepared corpus{hint}: run `lmcollapse corpus prepare`")
    info = _read_json(p / "corpus.json")
    return PreparedCorpus(
        p, Tok(p / "tokenizer"), TokenStore.open(p / "d0"), TokenStore.open(p / "holdout"), info
    )
