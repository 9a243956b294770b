"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every artifact the package writes goes through here: write to a temporary file in the same
directory, flush and fsync it, then os.replace it over the target. No torch (numpy only for .npz).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmcollapse.errors import InvalidInput


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it vanishes."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # name the file meant, not a temporary one
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts are ordinary files
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # make the bytes durable before the rename publishes them
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if exc.filename in (None, str(tmp), name):
            raise OSError(exc.errno, exc.strerror, str(target)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary directory beside `path`; on success it becomes `path` (an old
    one is moved aside and deleted), on error it is deleted. Readers never see a half directory."""
    tmp = partial_dir(path)
    try:
        yield tmp
        publish_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def partial_dir(path: str | Path) -> Path:
    """A new hidden `.NAME.partial-PID-*` directory beside `path`; those left by processes that
    no longer run (crashes) are removed, a live writer's are left alone."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        if not _alive(stale.name.rsplit(".partial-", 1)[1].split("-", 1)[0]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def publish_dir(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished directory into place, durably (an existing one is moved aside, deleted)."""
    tmp, target = Path(tmp), Path(path)
    _fsync(tmp)
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    _fsync(target.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> Path:
    """Write JSON atomically; NaN/inf are not JSON, so callers must map them to null first.
    indent=None writes one line with the C encoder (for large files rewritten often)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def atomic_write_npz(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Arrays as one .npz (numpy.savez), written atomically."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as CSV text: the union of their keys as columns (first seen first), None
    as an empty cell."""
    import csv
    import io

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in keys} for r in rows)
    return buf.getvalue()


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
