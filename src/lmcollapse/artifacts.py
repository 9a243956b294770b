"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every artifact the package writes goes through here: write to a temporary file in the same
directory, flush and fsync it, then os.replace it over the target. No torch, no numpy.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmcollapse.errors import InvalidInput


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it vanishes."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts are ordinary files
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # make the bytes durable before the rename publishes them
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically; NaN/inf are not JSON, so callers must map them to null first."""
    return atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def prepare_output_dir(path: str | Path) -> Path:
    """The output directory, created if needed; a clear error if it is a file or not writable."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"output path {out} exists and is not a directory: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create output directory {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InvalidInput(f"output directory {out} is not writable: choose another --out")
    return out
