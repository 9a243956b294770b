"""The token store: round trips, standard .npy files, atomic finish, refusal of damaged stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lmcollapse.data.store import TokenStore, TokenStoreWriter, is_store
from lmcollapse.errors import InvalidInput


def _stories(n: int, vocab: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.append(rng.integers(1, vocab, size=rng.integers(0, 40)), 0) for _ in range(n)]


@pytest.mark.parametrize(
    ("vocab", "dtype"), [(300, np.uint16), (65_536, np.uint16), (70_000, np.uint32)]
)
def test_round_trip_and_standard_numpy_files(tmp_path: Path, vocab: int, dtype: type) -> None:
    stories = _stories(500, vocab)
    with TokenStoreWriter(
        tmp_path / "s", vocab_size=vocab, eos_id=0, provenance={"who": "test"}, buffer_tokens=100
    ) as w:
        for s in stories[:200]:
            w.add(s)
        flat = np.concatenate(stories[200:])
        w.add_flat(flat, [len(s) for s in stories[200:]])
    store = TokenStore.open(tmp_path / "s")
    assert store.num_stories == 500 and store.num_tokens == sum(len(s) for s in stories)
    assert store.tokens.dtype == dtype
    for i in (0, 1, 199, 200, 499, -1):
        np.testing.assert_array_equal(store.story(i), stories[i])
    tokens = np.load(tmp_path / "s" / "tokens.npy", mmap_mode="r")  # no lmcollapse needed
    offsets = np.load(tmp_path / "s" / "offsets.npy", mmap_mode="r")
    np.testing.assert_array_equal(tokens[offsets[7] : offsets[8]], stories[7])
    np.testing.assert_array_equal(np.diff(offsets), [len(s) for s in stories])
    assert store.checksum() == store.meta["checksum"]
    assert store.meta["provenance"] == {"who": "test"}
    toks, lens = next(store.gather([5, 2, 5]))
    np.testing.assert_array_equal(toks, np.concatenate([stories[5], stories[2], stories[5]]))
    np.testing.assert_array_equal(lens, [len(stories[5]), len(stories[2]), len(stories[5])])
    sub = write_subset(store, [9, 3], tmp_path / "sub")
    np.testing.assert_array_equal(sub.story(1), stories[3])


def write_subset(src: TokenStore, indices: list[int], dst: Path) -> TokenStore:
    """A new store holding src's stories `indices`, in that order (gather_marked's reader)."""
    with TokenStoreWriter(dst, vocab_size=src.vocab_size, eos_id=src.eos_id) as w:
        for toks, lens, done in src.gather_marked(np.asarray(indices)):
            w.add_flat(toks, lens, done)
    return TokenStore.open(dst)


def test_empty_store(tmp_path: Path) -> None:
    with TokenStoreWriter(tmp_path / "e", vocab_size=10, eos_id=0):
        pass
    store = TokenStore.open(tmp_path / "e")
    assert store.num_stories == 0 and store.num_tokens == 0 and list(store.iter_chunks()) == []


def test_an_exception_leaves_nothing_behind(tmp_path: Path) -> None:
    def crash_while_writing() -> None:
        with TokenStoreWriter(tmp_path / "s", vocab_size=10, eos_id=0) as w:
            w.add([1, 2, 0])
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        crash_while_writing()
    assert not (tmp_path / "s").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_is_never_taken_for_a_finished_store(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from lmcollapse.data.store import TokenStoreWriter
        w = TokenStoreWriter({str(tmp_path / "s")!r}, vocab_size=100, eos_id=0, buffer_tokens=10)
        for i in range(10**6):
            w.add(np.arange(1, 30) % 100)
            if i == 100:
                print("writing", flush=True)
                time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".s.partial-")]
    assert partial and (partial[0] / "tokens.npy").stat().st_size > 0  # data was being written
    assert not is_store(tmp_path / "s")
    with pytest.raises(InvalidInput, match="does not exist"):
        TokenStore.open(tmp_path / "s")
    with pytest.raises(InvalidInput, match="not a finished token store"):
        TokenStore.open(partial[0])
    with TokenStoreWriter(tmp_path / "s", vocab_size=100, eos_id=0) as w:  # a rerun cleans up
        w.add([1, 0])
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_damaged_stores_and_bad_ids_are_refused(tmp_path: Path) -> None:
    with TokenStoreWriter(tmp_path / "s", vocab_size=50, eos_id=0) as w:
        for s in _stories(20, 50):
            w.add(s)
    tokens = tmp_path / "s" / "tokens.npy"
    tokens.write_bytes(tokens.read_bytes()[:-4])
    with pytest.raises(InvalidInput, match=r"build it again|damaged"):
        TokenStore.open(tmp_path / "s")
    meta = tmp_path / "s" / "meta.json"
    meta.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(InvalidInput, match="is not a version-2 lmcollapse-token-store"):
        TokenStore.open(tmp_path / "s")
    with (
        pytest.raises(InvalidInput, match="outside the vocabulary"),
        TokenStoreWriter(tmp_path / "t", vocab_size=50, eos_id=0) as w,
    ):
        w.add([3, 50])
    with pytest.raises(InvalidInput, match="already exists"):
        TokenStoreWriter(tmp_path / "s", vocab_size=50, eos_id=0)


def test_ids_must_be_integers_and_meta_must_be_whole(tmp_path: Path) -> None:
    with TokenStoreWriter(tmp_path / "s", vocab_size=10, eos_id=0) as w:
        with pytest.raises(InvalidInput, match="token ids must be integers, got float64"):
            w.add([1.7, 2.2])
        with pytest.raises(InvalidInput, match="story lengths must be >= 0"):
            w.add_flat([1, 2], [3, -1])
        w.add([1, 0])
    (tmp_path / "s" / "meta.json").write_text("[1, 2]")
    with pytest.raises(InvalidInput, match="is not a version-2"):
        TokenStore.open(tmp_path / "s")
    (tmp_path / "s" / "meta.json").write_text(
        json.dumps({"format": "lmcollapse-token-store", "version": 1})
    )
    with pytest.raises(InvalidInput, match="is incomplete"):
        TokenStore.open(tmp_path / "s")


def test_unfinished_stories_are_marked_and_kept_through_subsets(tmp_path: Path) -> None:
    stories = _stories(300, 50, seed=3)
    cut = {2, 150, 151, 299}  # spread over buffered adds and a flat add
    with TokenStoreWriter(tmp_path / "s", vocab_size=50, eos_id=0, buffer_tokens=64) as w:
        for i in range(100):
            w.add(stories[i], finished=i not in cut)
        flat = np.concatenate(stories[100:])
        w.add_flat(flat, [len(x) for x in stories[100:]], [i not in cut for i in range(100, 300)])
    store = TokenStore.open(tmp_path / "s")
    assert store.unfinished.tolist() == sorted(cut) and store.meta["unfinished"] == 4
    np.testing.assert_array_equal(store.finished([2, 3, 151, 299, 0]), [0, 1, 0, 0, 1])
    assert np.load(tmp_path / "s" / "unfinished.npy").tolist() == sorted(cut)  # plain numpy
    toks, _, done = next(store.gather_marked([151, 4, 2]))
    np.testing.assert_array_equal(done, [False, True, False])
    np.testing.assert_array_equal(toks, np.concatenate([stories[151], stories[4], stories[2]]))
    sub = write_subset(store, [299, 5, 150], tmp_path / "sub")
    assert sub.unfinished.tolist() == [0, 2]
    with TokenStoreWriter(tmp_path / "all", vocab_size=50, eos_id=0) as w:
        for s in stories[:5]:
            w.add(s)
    assert TokenStore.open(tmp_path / "all").unfinished.size == 0
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "all").finished([0, 4]), [1, 1])
    with (
        pytest.raises(InvalidInput, match="3 finished flags for 2 stories"),
        TokenStoreWriter(tmp_path / "bad", vocab_size=50, eos_id=0) as w,
    ):
        w.add_flat([1, 0, 2, 0], [2, 2], [True, True, False])


def test_version_1_stores_are_read_or_refused_never_misread(tmp_path: Path) -> None:
    """A store written before unfinished.npy: real text (every story ended) reads as before; a
    generated corpus whose cut stories were closed with an unmarked end-of-text is refused."""

    def as_version_1(path: Path, provenance: dict) -> TokenStore:
        meta_path = path / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta.pop("unfinished")
        meta["version"], meta["provenance"] = 1, provenance
        meta_path.write_text(json.dumps(meta))
        (path / "unfinished.npy").unlink()
        return TokenStore.open(path)

    for name in ("real", "generated", "uncounted", "clean"):
        with TokenStoreWriter(tmp_path / name, vocab_size=50, eos_id=0) as w:
            for s in _stories(10, 50):
                w.add(s)
    real = as_version_1(tmp_path / "real", {"split": "d0"})
    assert real.unfinished.size == 0 and real.finished([0, 9]).all()
    generated = as_version_1(
        tmp_path / "generated", {"sampling": {}, "batch_counts": {"0": [4, 10, 50, 2]}}
    )
    np.testing.assert_array_equal(generated.story(3), real.story(3))  # the tokens still read
    with pytest.raises(InvalidInput, match=r"older lmcollapse .* generate it again"):
        generated.finished([0])
    uncounted = as_version_1(tmp_path / "uncounted", {"sampling": {}})  # no batch counts
    with pytest.raises(InvalidInput, match="older lmcollapse"):
        uncounted.finished([0])
    clean = as_version_1(
        tmp_path / "clean", {"sampling": {}, "batch_counts": {"0": [4, 10, 50, 0]}}
    )
    assert clean.unfinished.size == 0


def test_a_damaged_unfinished_index_is_refused(tmp_path: Path) -> None:
    with TokenStoreWriter(tmp_path / "s", vocab_size=50, eos_id=0) as w:
        for s in _stories(10, 50):
            w.add(s)
        w.add([3, 0], finished=False)
    np.save(tmp_path / "s" / "unfinished.npy", np.array([10, 10], dtype=np.int64))
    with pytest.raises(InvalidInput, match=r"unfinished\.npy does not match"):
        TokenStore.open(tmp_path / "s")
    np.save(tmp_path / "s" / "unfinished.npy", np.array([3], dtype=np.int64))  # plausible, wrong
    with pytest.raises(InvalidInput, match=r"unfinished\.npy does not match"):
        TokenStore.open(tmp_path / "s")
