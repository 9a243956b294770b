"""Tokenizers: a byte-level BPE trained on D0, or a pretrained one, saved as a Hugging Face
tokenizer directory that `transformers.AutoTokenizer.from_pretrained(dir)` loads.

GPT-Neo uses one special token, <|endoftext|>, as both end of story and start of generation
(bos = eos). Trained tokenizers follow suit: <|endoftext|> is id 0 and the GPT-2 byte-level
pre-tokenizer keeps a word's leading space in its token (" there", " was"). The directory holds
tokenizer.json, tokenizer_config.json (class GPT2Tokenizer, bos = eos = unk = <|endoftext|>) and
special_tokens_map.json — what GPT2TokenizerFast.save_pretrained writes.

Inside the package a saved directory is used through `Tok`, a thin wrapper over the Rust
`tokenizers.Tokenizer`: the same ids as AutoTokenizer, without importing transformers (and torch)
for data work. Pretrained tokenizers are fetched once with AutoTokenizer and saved the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lmcollapse.artifacts import atomic_dir
from lmcollapse.errors import InvalidInput, first_line

EOT = "<|endoftext|>"
MIN_VOCAB = 258  # 256 bytes, <|endoftext|>, at least one merge


class Tok:
    """A saved tokenizer directory: encode, decode and the end-of-text id."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        self.path = Path(path)
        tj = self.path / "tokenizer.json"
        if not tj.is_file():
            raise InvalidInput(
                f"{self.path} has no tokenizer.json: it is not a (fast) tokenizer directory"
            )
        try:
            self.backend = Tokenizer.from_file(str(tj))
        except Exception as exc:  # the tokenizers library raises a bare Exception
            raise InvalidInput(
                f"{tj} is not a tokenizer file ({str(exc).splitlines()[0][:120]}): give a "
                "tokenizer directory saved by transformers or tokenizers"
            ) from None
        self.eos_token = _special(self.path, "eos_token")
        if self.eos_token is None or self.backend.token_to_id(self.eos_token) is None:
            raise InvalidInput(
                f"tokenizer {self.path} has no end-of-text token: it cannot end stories"
            )
        self.eos_id: int = self.backend.token_to_id(self.eos_token)

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (base vocabulary plus added tokens)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, no special tokens added (<|endoftext|> in the text is recognised)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of many texts at once (parallel in Rust; without offsets when the library can)."""
        batch = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        return [e.ids for e in batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids (special tokens kept, so an end-of-text shows as <|endoftext|>)."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Readable token strings (" there", not "Ġthere")."""
        return [self.decode([i]) for i in ids]

    def fingerprint(self) -> str:
        """A short hash of tokenizer.json: which tokenizer built a store."""
        return hashlib.blake2b(
            (self.path / "tokenizer.json").read_bytes(), digest_size=8
        ).hexdigest()


def _special(path: Path, name: str) -> str | None:
    for fname in ("tokenizer_config.json", "special_tokens_map.json"):
        f = path / fname
        if f.is_file():
            value = json.loads(f.read_text(encoding="utf-8")).get(name)
            if isinstance(value, dict):
                value = value.get("content")
            if value:
                return str(value)
    return None


def _save(backend: Any, out: Path, model_max_length: int = 2048) -> None:
    """Write the three files of a GPT-2 style fast tokenizer directory."""
    backend.save(str(out / "tokenizer.json"))
    special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "model_max_length": model_max_length,
        **special,
    }
    (out / "tokenizer_config.json").write_text(
        json.dumps(config, indent=1) + "\n", encoding="utf-8"
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps(special, indent=1) + "\n", encoding="utf-8"
    )


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> Tok:
    """Train a byte-level BPE on `texts`; save it to out_dir atomically. The vocabulary may come
    out smaller than asked when the corpus has fewer distinct merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < MIN_VOCAB:
        raise InvalidInput(
            f"tokenizer vocabulary must be >= 258 (256 bytes, <|endoftext|>, a merge), "
            f"got {vocab_size}"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    with atomic_dir(out_dir) as tmp:
        _save(tok, tmp)
    return Tok(out_dir)


def save_pretrained(name_or_path: str, out_dir: str | Path) -> Tok:
    """Fetch a pretrained tokenizer (hub name or directory) with AutoTokenizer; save to out_dir."""
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(name_or_path)
    except Exception as exc:  # OSError, ValueError, HTTP errors, ...
        raise InvalidInput(
            f"cannot load tokenizer {name_or_path!r}: {first_line(exc)} (give a hub name or a "
            "directory)"
        ) from None
    if getattr(hf, "backend_tokenizer", None) is None:
        raise InvalidInput(
            f"tokenizer {name_or_path!r} has no fast (Rust) version: use a fast tokenizer"
        )
    if hf.eos_token is None:
        raise InvalidInput(
            f"tokenizer {name_or_path!r} has no end-of-text token: it cannot end stories"
        )
    with atomic_dir(out_dir) as tmp:
        hf.save_pretrained(str(tmp))
    return Tok(out_dir)


def load_tokenizer(name_or_path: str | Path) -> Tok:
    """A tokenizer directory with tokenizer.json as `Tok`; anything else (a hub name, a slow
    tokenizer's directory) is fetched once with AutoTokenizer into the lmcollapse cache."""
    p = Path(name_or_path).expanduser()
    if (p / "tokenizer.json").is_file():
        return Tok(p)
    name = str(name_or_path)
    if not p.exists() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise InvalidInput(f"tokenizer directory {name} does not exist: check the path")
    key = hashlib.blake2b(
        str(p.resolve() if p.exists() else name).encode(), digest_size=6
    ).hexdigest()
    cached = cache_dir() / "tokenizers" / f"{name.strip('/').replace('/', '--')[-60:]}-{key}"
    if (cached / "tokenizer.json").is_file():
        return Tok(cached)
    return save_pretrained(name, cached)


def cache_dir() -> Path:
    """$LMCOLLAPSE_CACHE, else ~/.cache/lmcollapse."""
    return Path(
        os.environ.get("LMCOLLAPSE_CACHE", Path.home() / ".cache" / "lmcollapse")
    ).expanduser()


def encode_stories(
    tok: Tok, texts: Iterable[str], batch: int = 1000
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """(concatenated ids, lengths) per batch of stories, each story followed by end-of-text."""
    eos = tok.eos_id

    def run(chunk: list[str]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        ids = tok.encode_batch(chunk)
        lens = np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(
            itertools.chain.from_iterable([*x, eos] for x in ids),
            dtype=np.int64,
            count=int(lens.sum()),
        )
        return flat, lens

    buf: list[str] = []
    for text in texts:
        buf.append(text)
        if len(buf) >= batch:
            yield run(buf)
            buf = []
    if buf:
        yield run(buf)


def single_token(tok: Tok, text: str, what: str = "token") -> int:
    """The id of a text that must be exactly one token, or an error saying how it tokenizes."""
    if not text:
        raise InvalidInput(
            f"the {what} is empty: give a token such as ' was' (leading space matters)"
        )
    ids = tok.encode(text)
    if len(ids) != 1:
        raise InvalidInput(
            f"the {what} {text!r} is not one token in this vocabulary: it tokenizes as "
            f"{tok.token_strings(ids)} (ids {ids}); give a single token"
        )
    return ids[0]


def decode_story(tok: Tok, ids: Sequence[int] | NDArray[np.integer]) -> str:
    """The text of one story, stripped, without its final end-of-text: the story's own end or the
    separator a token store puts after a cut story (a cut sample has none). Neither is text, so
    stored and freshly sampled stories read alike; whether one ended by itself is the caller's to
    say (`TokenStore.finished`, the sampler's last token)."""
    seq = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    if seq and seq[-1] == tok.eos_id:
        seq = seq[:-1]
    return tok.decode(seq).strip()
