"""Fresh real data (paradigm.fresh = r): after each generation j, F_j — r·|D0| of new real
stories (tokens or stories, paradigm.unit) — joins the corpus.

The F_j come from the source's reserve: its stories after the ones D0 and the holdout took
(`sources.iter_reserve`), so they are never part of D0 or the holdout. F_1, F_2, ... are
consecutive runs of that stream, each cut after the story that fills it, tokenized with the
run's tokenizer into data/fresh/fresh_NNN token stores in one streamed pass; fresh.json, written
last, records what they were made from. A longer run rebuilds them with the same prefix, so F_j
is the same whatever run.generations was. A reserve that runs out is refused before any
training, with the number of generations it supports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse.artifacts import atomic_write_json
from lmcollapse.config import to_plain
from lmcollapse.data import sources
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.data.tokenizer import encode_stories
from lmcollapse.errors import InvalidInput


def chunk_size(r: float, unit: str, d0: TokenStore) -> int:
    """How much each F_j holds: r·|D0| in the unit (at least one)."""
    return max(1, math.ceil(r * (d0.num_tokens if unit == "tokens" else d0.num_stories)))


def prepare_fresh(
    data: Any,
    tok: Any,
    out: Path,
    *,
    skip: int,
    chunk: int,
    unit: str,
    count: int,
    log: Callable[[str], None] | None = None,
) -> list[TokenStore]:
    """F_1..F_count in `out` (made, or reused when made from the same source, tokenizer and
    chunk): the stores, in order."""
    from lmcollapse.data.prepare import source_spec

    say = log or (lambda _msg: None)
    record = out / "fresh.json"
    made = {"data": to_plain(data), "tokenizer": tok.fingerprint(), "chunk": chunk, "unit": unit}
    try:
        old = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    except (OSError, ValueError):
        old = {}
    if old.get("made_from") == made and old.get("chunks", 0) >= count:
        return [TokenStore.open(out / name(j)) for j in range(1, count + 1)]
    record.unlink(missing_ok=True)  # until every chunk is rewritten, none counts as made
    say(f"fresh real data: {count} × {chunk:,} {unit} from the source's reserve")
    spec = source_spec(data)
    stream = encode_stories(tok, sources.iter_reserve(spec, skip))
    pending: tuple[np.ndarray, np.ndarray] | None = None
    for j in range(1, count + 1):
        writer = TokenStoreWriter(
            out / name(j),
            vocab_size=tok.vocab_size,
            eos_id=tok.eos_id,
            provenance={"fresh": j, **made},
            overwrite=True,
        )
        try:
            pending = _fill(writer, stream, pending, chunk, unit)
        except _Exhausted:
            writer.abort()
            raise InvalidInput(
                f"paradigm.fresh: the source's reserve (its stories after the {skip:,} of D0 "
                "and its holdout) "
                f"holds {j - 1} fresh corpora of {chunk:,} {unit}, enough for {j} generations, "
                f"not {count + 1}: lower run.generations or paradigm.fresh, or leave a larger "
                "reserve (a smaller data.num_stories)"
            ) from None
        writer.close()
    atomic_write_json(record, {"made_from": made, "chunks": count})
    return [TokenStore.open(out / name(j)) for j in range(1, count + 1)]


def name(j: int) -> str:
    """F_j's directory under data/fresh."""
    return f"fresh_{j:03d}"


class _Exhausted(Exception):
    pass


def _fill(writer: TokenStoreWriter, stream: Any, pending: Any, chunk: int, unit: str) -> Any:
    """Stories into one F_j until it holds `chunk` units (cut after the story reaching it);
    returns the stories left over for the next."""
    have = 0
    while have < chunk:
        if pending is None:
            pending = next(stream, None)
            if pending is None:
                raise _Exhausted
        flat, lens = pending
        units = lens if unit == "tokens" else np.ones_like(lens)
        take = min(int(np.searchsorted(np.cumsum(units), chunk - have)) + 1, lens.size)
        cut = int(lens[:take].sum())
        writer.add_flat(flat[:cut], lens[:take])
        have += int(units[:take].sum())
        pending = None if take == lens.size else (flat[cut:], lens[take:])
    return pending


__all__ = ["chunk_size", "name", "prepare_fresh"]
