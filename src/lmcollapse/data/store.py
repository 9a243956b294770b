"""The token store: one corpus (D0, the holdout, or a generated S_n) on disk as memory-mapped token
ids with a story index, written by streaming with an atomic finish.

On-disk format of a store directory:

    tokens.npy      1-D uint16 (vocabularies up to 65,536) or uint32: all stories, concatenated
    offsets.npy     1-D int64 of num_stories + 1 entries: story i is tokens[offsets[i]:offsets[i+1]]
    unfinished.npy  1-D int64, sorted: the stories that did not end by themselves (a generated
                    sequence cut at its length, a story at the length cap). Every story ends with
                    end-of-text; theirs is a separator the model never wrote, so it is no
                    training target and no continuation (README: Fidelity)
    meta.json       written last: format, version, dtype, num_tokens, num_stories, unfinished,
                    eos_id, vocab_size, CRC-32s of tokens.npy's data (checksum) and of
                    unfinished.npy's (unfinished_checksum, verified on open), free-form provenance

Version 1 stores (before unfinished.npy) open as stores whose stories all ended by themselves,
which is true of real text; a version-1 *generated* store with cut stories cannot say which
they were, and asking it is refused (`TokenStore.unfinished`).

Both arrays are standard .npy files: `np.load(path / "tokens.npy", mmap_mode="r")` reads them
without loading them. A writer streams into a hidden `.NAME.partial-*` directory beside the
target and renames it into place only after meta.json is durable, so an interrupted write is
never taken for a finished store: `TokenStore.open` refuses anything without a valid meta.json.
RAM use is O(buffer) whatever the corpus size.

    with TokenStoreWriter("corpus/d0", vocab_size=8192, eos_id=0) as w:
        w.add(np.array([5, 9, 0]))                   # one story (ids, EOS included by the caller)
        w.add(np.array([7, 0]), finished=False)      # cut: its end-of-text is only a separator
    store = TokenStore.open("corpus/d0")
    store.story(0), store.num_tokens, store.finished([0, 1])   # ..., array([ True, False])
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lmcollapse.artifacts import atomic_write_json, partial_dir, publish_dir
from lmcollapse.errors import InvalidInput

FORMAT = "lmcollapse-token-store"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_HEADER_BYTES = 128  # fixed .npy header size: rewritten in place with the final shape
_DEFAULT_BUFFER = 1 << 22  # tokens buffered before a write (8 MB of uint16)


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    header = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': ({length},), }}"
    body_len = _HEADER_BYTES - 10
    return (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", body_len)
        + header.ljust(body_len - 1).encode()
        + b"\n"
    )


class _Crc32:
    """A running CRC-32 (zlib, ~3 GB/s): catches damaged files without slowing the writer."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"crc32:{self.value:08x}"


class _NpyAppender:
    """A 1-D .npy file grown by appending; the header's shape is fixed up on close."""

    def __init__(self, path: Path, dtype: np.dtype, hasher: Any = None) -> None:
        self.path, self.dtype, self.hasher, self.length = path, dtype, hasher, 0
        self.fh = open(path, "wb")  # noqa: SIM115 (closed in close())
        self.fh.write(_npy_header(dtype, 0))

    def append(self, arr: NDArray[Any]) -> None:
        data = np.ascontiguousarray(arr, dtype=self.dtype)
        self.fh.write(memoryview(data).cast("B"))
        if self.hasher is not None:
            self.hasher.update(memoryview(data).cast("B"))
        self.length += data.size

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.dtype, self.length))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def _ids(values: ArrayLike) -> NDArray[Any]:
    """An integer array (token ids are never floats: refuse rather than truncate)."""
    arr = np.asarray(values)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise InvalidInput(f"token ids must be integers, got {arr.dtype} values")
    return arr


class TokenStoreWriter:
    """Streams stories into a new store; `close()` publishes it atomically, errors discard it."""

    def __init__(
        self,
        path: str | Path,
        *,
        vocab_size: int,
        eos_id: int,
        provenance: dict[str, Any] | None = None,
        overwrite: bool = False,
        buffer_tokens: int = _DEFAULT_BUFFER,
    ) -> None:
        self.path = Path(path)
        if vocab_size < 1 or not 0 <= eos_id < vocab_size:
            raise InvalidInput(
                f"token store needs 0 <= eos_id < vocab_size, got {eos_id}, {vocab_size}"
            )
        if self.path.exists() and not overwrite:
            raise InvalidInput(f"{self.path} already exists: remove it or pass overwrite=True")
        self.vocab_size, self.eos_id = vocab_size, eos_id
        self.provenance = provenance or {}
        self.overwrite = overwrite
        self.dtype = token_dtype(vocab_size)
        self.partial = partial_dir(self.path)
        self._hasher = _Crc32()
        self._tokens = _NpyAppender(self.partial / "tokens.npy", self.dtype, self._hasher)
        self._offsets = _NpyAppender(self.partial / "offsets.npy", np.dtype(np.int64))
        self._offsets.append(np.zeros(1, dtype=np.int64))
        self._cut_hasher = _Crc32()
        self._unfinished = _NpyAppender(
            self.partial / "unfinished.npy", np.dtype(np.int64), self._cut_hasher
        )
        self._buffer: list[NDArray[Any]] = []
        self._lengths: list[int] = []
        self._cut: list[int] = []  # buffered stories (indices into the buffer) that are unfinished
        self._buffered = 0
        self._total = 0
        self._buffer_tokens = buffer_tokens
        self._closed = False

    def add(self, story: ArrayLike, finished: bool = True) -> None:
        """Append one story (its ids as given; the caller decides whether it ends with EOS).
        `finished=False` marks a story that did not end by itself (see the module docstring)."""
        arr = _ids(story)
        if arr.ndim != 1:
            raise InvalidInput(f"a story must be a 1-D array of token ids, got shape {arr.shape}")
        if not finished:
            self._cut.append(len(self._lengths))
        self._buffer.append(arr)
        self._lengths.append(arr.size)
        self._buffered += arr.size
        if self._buffered >= self._buffer_tokens:
            self._flush()

    def add_flat(
        self, tokens: ArrayLike, lengths: ArrayLike, finished: ArrayLike | None = None
    ) -> None:
        """Append many stories given as one concatenated array and their lengths (the fast path);
        `finished` (one bool per story, default all True) marks the stories that ended by
        themselves."""
        toks = _ids(tokens).ravel()
        lens = _ids(lengths).astype(np.int64).ravel()
        if np.any(lens < 0):
            raise InvalidInput("story lengths must be >= 0")
        if lens.sum() != toks.size:
            raise InvalidInput(f"lengths sum to {lens.sum()} but {toks.size} tokens were given")
        cut = np.zeros(0, dtype=np.int64)
        if finished is not None:
            done = np.asarray(finished, dtype=bool).ravel()
            if done.size != lens.size:
                raise InvalidInput(f"{done.size} finished flags for {lens.size} stories")
            cut = np.flatnonzero(~done)
        self._flush()
        self._write(toks, lens, cut)

    def _flush(self) -> None:
        if not self._lengths:
            return
        toks = np.concatenate(self._buffer) if self._buffer else np.zeros(0, self.dtype)
        lens = np.asarray(self._lengths, dtype=np.int64)
        cut = np.asarray(self._cut, dtype=np.int64)
        self._buffer, self._lengths, self._buffered, self._cut = [], [], 0, []
        self._write(toks, lens, cut)

    def _write(self, toks: NDArray[Any], lens: NDArray[np.int64], cut: NDArray[np.int64]) -> None:
        """Append stories; `cut` are the unfinished ones, as indices into `lens`."""
        if toks.size:
            lo, hi = int(toks.min()), int(toks.max())
            if lo < 0 or hi >= self.vocab_size:
                raise InvalidInput(
                    f"token id {hi if hi >= self.vocab_size else lo} is outside the "
                    f"vocabulary [0, {self.vocab_size})"
                )
        self._tokens.append(toks)
        self._unfinished.append(self._offsets.length - 1 + cut)
        self._offsets.append(self._total + np.cumsum(lens))
        self._total += int(lens.sum())

    def close(self) -> TokenStore:
        """Finish: flush, fsync, write meta.json, rename into place. Returns the opened store."""
        if self._closed:
            raise RuntimeError("token store writer already closed")
        self._flush()
        self._tokens.close()
        self._offsets.close()
        self._unfinished.close()
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": self.dtype.name,
            "num_tokens": self._tokens.length,
            "num_stories": self._offsets.length - 1,
            "unfinished": self._unfinished.length,
            "unfinished_checksum": self._cut_hasher.hexdigest(),
            "eos_id": self.eos_id,
            "vocab_size": self.vocab_size,
            "checksum": self._hasher.hexdigest(),
            "provenance": self.provenance,
        }
        atomic_write_json(self.partial / "meta.json", meta)
        publish_dir(self.partial, self.path)
        self._closed = True
        return TokenStore.open(self.path)

    def abort(self) -> None:
        """Discard everything written so far."""
        self._closed = True
        with contextlib.suppress(Exception):
            self._tokens.fh.close()
            self._offsets.fh.close()
            self._unfinished.fh.close()
        shutil.rmtree(self.partial, ignore_errors=True)

    def __enter__(self) -> TokenStoreWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self.abort()


def is_store(path: str | Path) -> bool:
    """True if `path` holds a finished token store (its meta.json says so)."""
    return (Path(path) / "meta.json").is_file()


class TokenStore:
    """A finished store, memory-mapped read-only. Open with `TokenStore.open(path)`."""

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        tokens: NDArray[Any],
        offsets: NDArray[np.int64],
        unfinished: NDArray[np.int64] | None,
    ) -> None:
        self.path, self.meta, self.tokens, self.offsets = path, meta, tokens, offsets
        self._unfinished = unfinished  # None: a version-1 generated store that cannot say
        self._fd: int | None = None  # tokens.npy opened for `read`, on first use

    @classmethod
    def open(cls, path: str | Path) -> TokenStore:
        """Open and check a store; an unfinished or damaged one is refused with the reason."""
        p = Path(path)
        meta_path = p / "meta.json"
        if not meta_path.is_file():
            what = (
                "does not exist"
                if not p.exists()
                else "is not a finished token store (no meta.json)"
            )
            raise InvalidInput(f"{p} {what}: build it again")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(
                f"{meta_path} is unreadable ({exc}): build the store again"
            ) from None
        if (
            not isinstance(meta, dict)
            or meta.get("format") != FORMAT
            or meta.get("version") not in READABLE_VERSIONS
        ):
            raise InvalidInput(
                f"{p} is not a version-{VERSION} {FORMAT} (meta.json says otherwise)"
            )
        required = ("dtype", "num_tokens", "num_stories", "eos_id", "vocab_size")
        if any(k not in meta for k in required) or not isinstance(meta.get("provenance", {}), dict):
            raise InvalidInput(
                f"{meta_path} is incomplete (needs {', '.join(required)}): build the store again"
            )
        try:
            tokens = np.load(p / "tokens.npy", mmap_mode="r")
            offsets = np.load(p / "offsets.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{p} has damaged arrays ({exc}): build the store again") from None
        if (
            tokens.dtype.name != meta["dtype"]
            or tokens.size != meta["num_tokens"]
            or offsets.size != meta["num_stories"] + 1
            or (offsets.size and (offsets[0] != 0 or offsets[-1] != tokens.size))
        ):
            raise InvalidInput(
                f"{p}: arrays do not match meta.json (damaged store): build it again"
            )
        return cls(p, meta, tokens, offsets, _open_unfinished(p, meta))

    @property
    def num_tokens(self) -> int:
        """Tokens in the store."""
        return int(self.meta["num_tokens"])

    @property
    def num_stories(self) -> int:
        """Stories in the store."""
        return int(self.meta["num_stories"])

    @property
    def eos_id(self) -> int:
        """The end-of-text id."""
        return int(self.meta["eos_id"])

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary the ids come from."""
        return int(self.meta["vocab_size"])

    @property
    def unfinished(self) -> NDArray[np.int64]:
        """Sorted indices of the stories that did not end by themselves (their end-of-text is a
        separator: no training target, no continuation)."""
        if self._unfinished is None:
            raise InvalidInput(
                f"{self.path} was generated by an older lmcollapse that closed cut stories with "
                "an end-of-text it did not mark, so it cannot say which stories are unfinished: "
                "generate it again (start the run in a new --out)"
            )
        return self._unfinished

    def finished(self, indices: ArrayLike) -> NDArray[np.bool_]:
        """For each of the given stories: did it end by itself?"""
        idx = np.asarray(indices, dtype=np.int64)
        cut = self.unfinished
        if cut.size == 0:
            return np.ones(idx.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(cut, idx), cut.size - 1)
        return np.asarray(cut[pos]) != idx

    def __len__(self) -> int:
        return self.num_stories

    def story(self, i: int) -> NDArray[Any]:
        """Story i's tokens (a read-only view)."""
        if not -self.num_stories <= i < self.num_stories:
            raise IndexError(f"story {i} out of range for {self.num_stories} stories")
        i %= self.num_stories
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> NDArray[np.int64]:
        """Tokens per story, (num_stories,)."""
        return np.diff(self.offsets)

    def iter_chunks(self, chunk_tokens: int = 1 << 24) -> Iterator[NDArray[Any]]:
        """The token stream in chunks (views into the memory map). The pages a chunk touched
        are released when the next is asked for: a pass over a 1 GB store holds one chunk's
        pages, not the whole file (see `release`)."""
        for start in range(0, self.num_tokens, chunk_tokens):
            yield self.tokens[start : start + chunk_tokens]
            self.release()

    def read(self, start: int, count: int) -> NDArray[Any]:
        """tokens[start : start + count] read from the file (pread into a fresh array), not
        through the memory map: random reads of small pieces — training blocks — map nothing.
        Through the map each such read would map a whole page-cache folio (up to 2 MB on
        recent kernels), and an epoch over 40 stores leave hundreds of MB mapped."""
        if not 0 <= start <= start + count <= self.num_tokens:
            raise IndexError(f"tokens [{start}, {start + count}) outside [0, {self.num_tokens})")
        if not hasattr(os, "preadv"):  # Windows, macOS < 11: through the map after all
            return np.array(self.tokens[start : start + count])
        if self._fd is None:
            self._fd = os.open(self.path / "tokens.npy", os.O_RDONLY)
        out = np.empty(count, dtype=self.tokens.dtype)
        view, done = memoryview(out).cast("B"), 0
        where = int(self.tokens.offset) + start * out.itemsize
        while done < len(view):  # one call returns at most ~2 GiB on Linux
            got = os.preadv(self._fd, [view[done:]], where + done)
            if got <= 0:
                raise InvalidInput(f"{self.path / 'tokens.npy'} is shorter than meta.json says")
            done += got
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its path (a worker process opens it again), not as the corpus's bytes."""
        return (TokenStore.open, (str(self.path),))

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def release(self) -> None:
        """Drop this process's mapping of the pages it has read (madvise MADV_DONTNEED): they
        stay in the page cache and are mapped again when read, but no longer count to its
        resident memory. Without this a pass over a memory-mapped corpus grows the process to
        the corpus's size — the memory map's RSS 'leak' (nanoGPT recreates its memmap per batch
        for the same reason) — which a cluster's memory limit may count and kill."""
        for arr in (self.tokens, self.offsets):
            m = getattr(arr, "_mmap", None)
            if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                m.madvise(mmap.MADV_DONTNEED)

    def gather(
        self, indices: Sequence[int] | NDArray[np.integer], batch: int = 4096
    ) -> Iterator[tuple[NDArray[Any], NDArray[np.int64]]]:
        """(concatenated tokens, lengths) of the given stories, in the given order, in batches.

        One read (`read`) per run of consecutive stories: a whole store in a few reads, a random
        sample in one per story, and never through the memory map, so a pass maps nothing.
        `gather_marked` adds which of them ended by themselves.
        """
        for toks, lens, _ in self._gather(indices, batch, marked=False):
            yield toks, lens

    def gather_marked(
        self, indices: Sequence[int] | NDArray[np.integer], batch: int = 4096
    ) -> Iterator[tuple[NDArray[Any], NDArray[np.int64], NDArray[np.bool_]]]:
        """(concatenated tokens, lengths, finished flags) of the given stories, in batches."""
        yield from self._gather(indices, batch, marked=True)

    def _gather(
        self, indices: Sequence[int] | NDArray[np.integer], batch: int, marked: bool
    ) -> Iterator[tuple[NDArray[Any], NDArray[np.int64], Any]]:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_stories):
            raise IndexError(f"story indices must be in [0, {self.num_stories})")
        for start in range(0, idx.size, batch):
            part = idx[start : start + batch]
            lo, hi = np.asarray(self.offsets[part]), np.asarray(self.offsets[part + 1])
            self.release()  # the offsets' pages; the tokens are read, not mapped
            # one read per run of consecutive stories (all of them, when counting a whole store)
            cut = np.flatnonzero(np.diff(part) != 1) + 1
            firsts, lasts = np.concatenate([[0], cut]), np.concatenate([cut, [part.size]]) - 1
            runs = zip(lo[firsts], hi[lasts], strict=True)
            toks = np.concatenate([self.read(int(a), int(b - a)) for a, b in runs])
            yield toks, hi - lo, self.finished(part) if marked else None

    def checksum(self) -> str:
        """Recompute the checksum of tokens.npy's data (compare with meta['checksum'])."""
        h = _Crc32()
        for chunk in self.iter_chunks():
            h.update(memoryview(np.ascontiguousarray(chunk)).cast("B"))
        return h.hexdigest()


def written(lens: NDArray[np.int64], finished: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """For every token of concatenated stories: did the model write it? False only for the
    end-of-text separator of each unfinished story (no target, pair or text token)."""
    keep = np.ones(int(lens.sum()), dtype=bool)
    keep[(np.cumsum(lens) - 1)[~finished & (lens > 0)]] = False
    return keep


def _crc(arr: NDArray[Any]) -> str:
    h = _Crc32()
    h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


def _open_unfinished(path: Path, meta: dict[str, Any]) -> NDArray[np.int64] | None:
    """The unfinished-story index of a store (version 1: none, unless it cannot know)."""
    if meta["version"] == 1:  # real text ended every story; a generated corpus may not say
        prov = meta.get("provenance", {})
        if "sampling" not in prov:
            return np.zeros(0, dtype=np.int64)
        counts = prov.get("batch_counts")
        if not isinstance(counts, dict):
            return None  # a generated corpus that did not count its cut stories
        cut = sum(int(c[3]) for c in counts.values())
        return None if cut else np.zeros(0, dtype=np.int64)
    try:
        cut = np.load(path / "unfinished.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} has damaged arrays ({exc}): build it again") from None
    n = int(meta["num_stories"])
    if (
        cut.dtype != np.int64
        or cut.ndim != 1
        or cut.size != meta.get("unfinished")
        or (cut.size and (cut[0] < 0 or cut[-1] >= n or np.any(np.diff(cut) <= 0)))
        or _crc(cut) != meta.get("unfinished_checksum")
    ):
        raise InvalidInput(
            f"{path}: unfinished.npy does not match meta.json (damaged store): build it again"
        )
    return cut
