"""Fresh real data, paradigm.fresh = r (issue 13): r·|D0| new real stories join the corpus
after every generation, from a reserve D0 and the holdout never touch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import NGRAM, lmc
from lmcollapse.data.store import TokenStore
from lmcollapse.paradigms import AccumulateSubsample, Replace, paradigm_of


def _metrics(run: Path, n: int) -> dict:
    return json.loads((run / f"gen_{n:03d}" / "metrics.json").read_text())


@pytest.mark.parametrize(("k", "r"), [(1.0, 0.5), (0.5, 1.0), (2.0, 0.25)])
def test_the_real_share_under_accumulate_subsample_is_the_closed_form(k: float, r: float) -> None:
    par = AccumulateSubsample(k, r)
    for n in range(1, 12):
        w = par.weights(n)
        assert sum(w.values()) == pytest.approx(1.0)
        real = sum(v for j, v in w.items() if j <= 0)
        want = (1 + (n - 1) * r) / (1 + (n - 1) * (k + r))
        assert real == pytest.approx(want) and par.real_share(n) == pytest.approx(want)
        assert sorted(j for j in w if j < 0) == list(range(-(n - 1), 0))  # F_1..F_{n-1}


def test_replace_with_fresh_trains_on_the_last_corpus_and_the_last_fresh_one() -> None:
    w = Replace(0.5).weights(3)  # whole sources: b[3] = (r·N + y[2]) / (1 + r)
    assert w.keys() == {-2, 2} and w[-2] == pytest.approx(1 / 3) and w[2] == pytest.approx(2 / 3)
    assert Replace(0.5).real_share(3) == pytest.approx(1 / 3)
    assert paradigm_of("replace").weights(3) == {2: 1.0}  # r = 0: the paper's Replace


def test_fresh_data_at_half_of_d0_gives_generation_6_a_real_share_of_041(tmp_path: Path) -> None:
    """The acceptance case: Accumulate-Subsample, k = 1, r = 0.5: (1 + 5·0.5)/(1 + 5·1.5) =
    0.412 at generation 6, measured in the tokens drawn. F_j are runs of the built-in world
    after D0's stories, each of r·|D0| tokens."""
    out = tmp_path / "r"
    args = [*NGRAM, "--set", "paradigm.name=accumulate-subsample", "--set", "paradigm.fresh=0.5"]
    done = lmc("run", "--quiet", "--out", str(out), *args, "--set", "run.generations=6")
    assert done.returncode == 0, done.stderr
    share = _metrics(out, 6)["composition"]["real_token_share"]
    assert share == pytest.approx(3.5 / 8.5, abs=0.02)
    d0 = TokenStore.open(out / "data" / "d0")
    held = TokenStore.open(out / "data" / "holdout")
    fresh = [TokenStore.open(out / "data" / "fresh" / f"fresh_{j:03d}") for j in range(1, 6)]
    for f in fresh:
        assert d0.num_tokens * 0.5 <= f.num_tokens < d0.num_tokens * 0.5 + f.lengths().max()
    seen = {d0.story(i).tobytes() for i in range(d0.num_stories)}
    seen |= {held.story(i).tobytes() for i in range(held.num_stories)}
    stories = [f.story(i).tobytes() for f in fresh for i in range(f.num_stories)]
    assert len(set(stories)) == len(stories) and not seen & set(stories)
    row = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train_fresh_tokens" in row
    from lmcollapse.bridge import from_run

    probe = from_run(out).probes[0]  # the theory next to it counts the fresh stories as real
    assert probe.real_data_share[5] == pytest.approx(share)


def test_a_reserve_too_small_is_refused_before_training_with_what_it_supports(
    tmp_path: Path,
) -> None:
    """A local source of 300 stories, D0 taking 200: 100 left, a few fresh corpora of a quarter
    of D0 — a 6-generation run is refused, in one line that says how many generations the
    reserve supports, before anything trains; that many run."""
    src = tmp_path / "stories.jsonl"
    from lmcollapse.data.stories import generate

    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in generate(300, seed=3)))
    args = [*NGRAM, "--set", f"data.source={src}", "--set", "data.num_stories=200"]
    args += ["--set", "paradigm.name=accumulate-subsample", "--set", "paradigm.fresh=0.25"]
    bad = lmc("run", "--quiet", "--out", str(tmp_path / "r"), *args, "--set", "run.generations=6")
    assert bad.returncode == 2, bad.stderr
    got = re.search(r"holds (\d+) fresh corpora .* enough for (\d+) generations, not 6", bad.stderr)
    assert got and int(got[2]) == int(got[1]) + 1 and 2 <= int(got[2]) < 6
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    most = ["--set", f"run.generations={got[2]}"]
    ok = lmc("run", "--quiet", "--out", str(tmp_path / "r"), *args, *most)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (["paradigm.name=mix", "paradigm.fresh=0.5"], "mix fixes the real share"),
        (["paradigm.fresh=-1"], "fresh: must be >= 0"),
        (["paradigm.fresh=0.5", "model.expected_counts=chain"], "set model.expected_counts off"),
    ],
)
def test_fresh_data_bad_settings_are_one_line_errors(
    settings: list[str], words: str, tmp_path: Path
) -> None:
    args = [x for s in settings for x in ("--set", s)]
    bad = lmc("run", "--quiet", "--out", str(tmp_path / "r"), *NGRAM, *args)
    assert bad.returncode == 2 and words in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_longer_run_keeps_the_fresh_corpora_it_had(tmp_path: Path) -> None:
    """F_j does not depend on run.generations: extending a run rebuilds the reserve's chunks
    with the same prefix, and the finished generations stay valid."""
    out = tmp_path / "r"
    args = [*NGRAM, "--set", "paradigm.name=accumulate-subsample", "--set", "paradigm.fresh=0.5"]
    assert lmc("run", "--quiet", "--out", str(out), *args).returncode == 0
    first = TokenStore.open(out / "data" / "fresh" / "fresh_001").meta["checksum"]
    longer = lmc("run", "--quiet", "--out", str(out), *args, "--set", "run.generations=4")
    assert longer.returncode == 0, longer.stderr
    assert TokenStore.open(out / "data" / "fresh" / "fresh_001").meta["checksum"] == first
    parts = [p["source"] for p in _metrics(out, 4)["composition"]["parts"]]
    assert parts[:4] == ["d0", "fresh_001", "fresh_002", "fresh_003"]
    np.testing.assert_equal(_metrics(out, 2)["composition"]["parts"][1]["source"], "fresh_001")

    # F_j's checksums are in the manifest from the run that made them: a store changed in place
    # (its meta.json untouched) is refused in one line when the run is resumed
    assert set(json.loads((out / "manifest.json").read_text())["fresh_checksums"]) == {
        "1",
        "2",
        "3",
    }
    tokens = out / "data" / "fresh" / "fresh_001" / "tokens.npy"
    data = bytearray(tokens.read_bytes())
    data[-1] ^= 1
    tokens.write_bytes(bytes(data))
    bad = lmc("run", "--quiet", "--out", str(out), *args, "--set", "run.generations=4")
    assert bad.returncode == 2 and "does not match the fresh stories" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
