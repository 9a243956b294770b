"""The curation stage in the generation loop (issue 13), end to end on tiny runs: what S_n
holds is recomputed here from the pool the run sampled, and every record checked against it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import NGRAM, TINY_NEO, lmc
from lmcollapse.curation.rules import keep_best
from lmcollapse.curation.scores import story_scores
from lmcollapse.data.store import TokenStore

FILTER = ["--set", "curation.name=filter"]


def _metrics(run: Path, n: int) -> dict:
    return json.loads((run / f"gen_{n:03d}" / "metrics.json").read_text())


def _pool(run: Path, factor: float, out: Path) -> tuple[object, TokenStore]:
    """Generation 1's first pool sampled again from its saved model and seed: factor × |D0|
    tokens (what the curate stage chose S_1 from)."""
    from lmcollapse.models import load_model
    from lmcollapse.pipeline import seed_for
    from lmcollapse.rundir import run_config
    from lmcollapse.sample import SamplingParams, generate_corpus

    cfg = run_config(run)
    d0 = TokenStore.open(run / "data" / "d0")
    model = load_model(run / "gen_001" / "model")
    result = generate_corpus(
        model,
        out,
        min_tokens=math.ceil(factor * d0.num_tokens),
        length=cfg.sampling.length,
        batch_size=cfg.sampling.batch_size,
        context=1,
        eos_id=d0.eos_id,
        vocab_size=model.shape.vocab_size,
        seed=seed_for(cfg.run.seed, 1, "sample"),
        mode=cfg.sampling.mode,
        params=SamplingParams.of(cfg.sampling),
        progress=False,
    )
    return result, TokenStore.open(out)


@pytest.fixture(scope="module")
def filter_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("curation") / "filter"
    done = lmc("run", "--quiet", "--out", str(out), *NGRAM, *FILTER)
    assert done.returncode == 0, done.stderr
    return out


def test_filter_keeps_the_best_share_of_the_pool_it_sampled(
    filter_run: Path, tmp_path: Path
) -> None:
    """S_1 is exactly the pool's best 80% by entropy, in pool order, cut after the story that
    fills |D0| tokens: the pool is sampled again here from generation 1's model and seed."""
    d0 = TokenStore.open(filter_run / "data" / "d0")
    target = d0.num_tokens
    pool, store = _pool(filter_run, 1.25, tmp_path / "pool")
    store = TokenStore.open(tmp_path / "pool")
    best = keep_best(story_scores(store, "entropy"), 0.8, higher_is_better=True)
    fill = int(np.searchsorted(np.cumsum(store.lengths()[best]), target)) + 1
    want = np.concatenate([store.story(int(i)) for i in best[:fill]])
    s1 = TokenStore.open(filter_run / "gen_001" / "corpus")
    np.testing.assert_array_equal(s1.tokens, want)
    assert s1.num_tokens >= target > s1.num_tokens - store.lengths()[best[fill - 1]]

    rec = _metrics(filter_run, 1)["curation"]
    assert rec["strategy"] == "filter" and rec["rounds"] == 1
    assert rec["acceptance_rate"] == pytest.approx(best.size / store.num_stories)
    assert rec["kept_stories"] == fill and rec["kept_tokens"] == s1.num_tokens
    assert 0 < rec["kept_share"] < 1
    assert rec["sampled_stories"] == pool.stories == store.num_stories
    assert rec["kept_score_mean"] > rec["pool_score_mean"]  # the kept are the diverse ones
    assert not (filter_run / "gen_001" / "curation").exists()  # the pools are removed
    row = (filter_run / "metrics.csv").read_text().splitlines()
    assert "curation_acceptance_rate" in row[0].split(",")
    assert (filter_run / "figures" / "curation.png").is_file()
    assert "<th>accepted</th>" in (filter_run / "report.html").read_text()


def test_filter_changes_the_outcome(filter_run: Path, ngram_run: Path) -> None:
    """Same seed, same generation-1 model; from S_1 on the runs differ, and the filtered S_1's
    stories have more entropy each."""
    assert _metrics(filter_run, 1)["perplexity"] == _metrics(ngram_run, 1)["perplexity"]
    assert _metrics(filter_run, 2)["perplexity"] != _metrics(ngram_run, 2)["perplexity"]
    s1 = [TokenStore.open(r / "gen_001" / "corpus") for r in (filter_run, ngram_run)]
    assert story_scores(s1[0], "entropy").mean() > story_scores(s1[1], "entropy").mean() + 0.1


def test_a_filter_that_keeps_too_little_samples_again_and_then_refuses(tmp_path: Path) -> None:
    """keep 0.5 of pools of 1 × what is missing: round after round until S_n is full. With one
    round allowed, the one-line refusal says what to raise."""
    rounds = ["--set", "curation.oversample=1", "--set", "curation.keep=0.5"]
    more = ["--set", "run.generations=1"]
    done = lmc("run", "--quiet", "--out", str(tmp_path / "a"), *NGRAM, *FILTER, *rounds, *more)
    assert done.returncode == 0, done.stderr
    rec = _metrics(tmp_path / "a", 1)["curation"]
    d0 = TokenStore.open(tmp_path / "a" / "data" / "d0")
    assert rec["rounds"] >= 2 and rec["kept_tokens"] >= d0.num_tokens
    assert rec["acceptance_rate"] == pytest.approx(0.5, abs=0.01)

    one = ["--set", "curation.max_rounds=1"]
    bad = lmc("run", "--quiet", "--out", str(tmp_path / "b"), *NGRAM, *FILTER, *rounds, *one)
    assert bad.returncode == 2
    assert "curation.oversample" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("curation.keep=0", "keep: must be in (0, 1]"),
        ("curation.keep=1.5", "keep: must be in (0, 1]"),
        ("curation.score=fluency", "unknown score 'fluency'"),
        ("curation.q=1", "q: must be in [0, 1)"),
        ("curation.oversample=0.5", "oversample: must be >= 1"),
        ("curation.p_max=0", "p_max: must be in (0, 1]"),
        ("curation.p_max=1.5", "p_max: must be in (0, 1]"),
        ("curation.top_k=0", "top_k: must be >= 1"),
        ("curation.beta=0", "beta: must be > 0"),
        ("curation.max_repeats=0", "max_repeats: must be >= 1"),
        ("model.expected_counts=chain", "set model.expected_counts off"),
    ],
)
def test_bad_curation_settings_are_one_line_errors(
    setting: str, words: str, tmp_path: Path
) -> None:
    bad = lmc("run", "--quiet", "--out", str(tmp_path / "r"), *NGRAM, *FILTER, "--set", setting)
    assert bad.returncode == 2 and words in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_d0_range_end_to_end_keeps_stories_within_d0s_range(tmp_path: Path) -> None:
    rule = ["--set", "curation.rule=d0-range", "--set", "curation.score=length"]
    rule += ["--set", "curation.q=0.3", "--set", "run.generations=1"]
    done = lmc("run", "--quiet", "--out", str(tmp_path / "r"), *NGRAM, *FILTER, *rule)
    assert done.returncode == 0, done.stderr
    d0 = TokenStore.open(tmp_path / "r" / "data" / "d0")
    lo, hi = np.quantile(story_scores(d0, "length"), [0.15, 0.85])
    kept = story_scores(TokenStore.open(tmp_path / "r" / "gen_001" / "corpus"), "length")
    assert lo <= kept.min() and kept.max() <= hi
    assert 0 < _metrics(tmp_path / "r", 1)["curation"]["acceptance_rate"] < 1


def test_gpt_neo_filters_by_generation_1s_perplexity(tmp_path: Path) -> None:
    """The GPT-Neo demo's family, scored by generation 1's saved model (loaded from disk at
    every generation, so a resumed run scores with the same weights): S_n is filled, by the
    stories the reference finds most likely."""
    curation = [*FILTER, "--set", "curation.score=reference-perplexity"]
    out = tmp_path / "neo"
    done = lmc("run", "--quiet", "--out", str(out), *TINY_NEO, *curation)
    assert done.returncode == 0, done.stderr
    for n in (1, 2):  # generation 2's reference is generation 1's model, read from disk
        rec = _metrics(out, n)["curation"]
        assert rec["score"] == "reference-perplexity"
        assert rec["acceptance_rate"] == pytest.approx(0.8, abs=0.01) and 0 < rec["kept_share"] < 1
        assert rec["kept_score_mean"] < rec["pool_score_mean"]  # lower perplexity is better
        assert rec["kept_tokens"] >= TokenStore.open(out / "data" / "d0").num_tokens


def test_a_reference_model_whose_vocabulary_does_not_fit_is_refused_before_training(
    tmp_path: Path, ngram_run: Path
) -> None:
    """A model directory of a smaller vocabulary, or a directory without config.json: one
    line, before generation 1 trains; a fitting directory (another run's model) is used."""
    from lmcollapse.models.ngram import NGramModel

    small = NGramModel(100, 0).save(tmp_path / "small")
    (tmp_path / "empty").mkdir()
    ref = ["--set", "curation.score=reference-perplexity", "--set", "run.generations=1"]
    for spec, words in [(small, "vocabulary of 100 ids"), (tmp_path / "empty", "no config.json")]:
        out = tmp_path / f"r-{Path(spec).name}"
        args = [*NGRAM, *FILTER, *ref, "--set", f"curation.reference={spec}"]
        bad = lmc("run", "--quiet", "--out", str(out), *args)
        assert bad.returncode == 2 and words in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and not out.exists()
    fits = ["--set", f"curation.reference={ngram_run / 'gen_002' / 'model'}"]
    done = lmc("run", "--quiet", "--out", str(tmp_path / "ok"), *NGRAM, *FILTER, *ref, *fits)
    assert done.returncode == 0, done.stderr
    assert _metrics(tmp_path / "ok", 1)["curation"]["score"] == "reference-perplexity"


TOEDIT = ["--set", "curation.name=toedit", "--set", "curation.p_max=0.9"]


def test_toedit_edits_s_n_and_changes_the_outcome(tmp_path: Path, ngram_run: Path) -> None:
    """p_max 0.9 (the smoothed bigram never reaches 0.99): S_1 is the sampled corpus of the
    `none` run with its too-predictable tokens resampled — same stories, same lengths."""
    out = tmp_path / "t"
    done = lmc("run", "--quiet", "--out", str(out), *NGRAM, *TOEDIT)
    assert done.returncode == 0, done.stderr
    rec = _metrics(out, 1)["curation"]
    assert 0 < rec["edited_share"] < 1 and 0 < rec["changed_share"] <= rec["edited_share"]
    assert rec["deleted_share"] == 0
    plain = TokenStore.open(ngram_run / "gen_001" / "corpus")
    edited = TokenStore.open(out / "gen_001" / "corpus")
    np.testing.assert_array_equal(edited.offsets, plain.offsets)
    changed = np.asarray(edited.tokens) != np.asarray(plain.tokens)
    assert changed.mean() == pytest.approx(rec["changed_share"])
    assert not np.isin(np.flatnonzero(changed), plain.offsets[:-1]).any()  # first tokens kept
    assert _metrics(out, 2)["perplexity"] != _metrics(ngram_run, 2)["perplexity"]


def test_toedit_previous_needs_replace(tmp_path: Path) -> None:
    args = ["--set", "curation.target=previous", "--set", "paradigm.name=accumulate-subsample"]
    bad = lmc("run", "--quiet", "--out", str(tmp_path / "r"), *NGRAM, *TOEDIT, *args)
    assert bad.returncode == 2 and "use paradigm.name replace" in bad.stderr


def test_toedit_previous_trains_generation_2_on_d0_edited_by_model_1(tmp_path: Path) -> None:
    """Nothing is sampled: S_1 is D0's training stories (generation 1's training set) with
    model 1's too-predictable tokens resampled; S_2 is S_1 edited by model 2."""
    out = tmp_path / "p"
    prev = ["--set", "curation.target=previous"]
    done = lmc("run", "--quiet", "--out", str(out), *NGRAM, *TOEDIT, *prev)
    assert done.returncode == 0, done.stderr
    d0 = TokenStore.open(out / "data" / "d0")
    s1, s2 = (TokenStore.open(out / f"gen_00{n}" / "corpus") for n in (1, 2))
    np.testing.assert_array_equal(s1.offsets, d0.offsets)
    share = (np.asarray(s1.tokens) != np.asarray(d0.tokens)).mean()
    assert share == pytest.approx(_metrics(out, 1)["curation"]["changed_share"]) and share > 0
    assert s2.num_tokens == s1.num_tokens and "sample" not in _metrics(out, 2)
    assert _metrics(out, 2)["curation"]["rounds"] == 0


def test_resample_draws_s_n_by_the_detectors_weights(tmp_path: Path, ngram_run: Path) -> None:
    """S_n is |D0| tokens of pooled stories, none more than 3 times; the detector (AUC on held
    out stories) rates the drawn stories more human than the pool."""
    out = tmp_path / "r"
    done = lmc("run", "--quiet", "--out", str(out), *NGRAM, "--set", "curation.name=resample")
    assert done.returncode == 0, done.stderr
    for n in (1, 2):
        rec = _metrics(out, n)["curation"]
        assert 0.5 < rec["detector_auc"] <= 1 and 0 < rec["kept_share"] < 1
        assert rec["kept_score_mean"] < rec["pool_score_mean"]
    s1 = TokenStore.open(out / "gen_001" / "corpus")
    d0 = TokenStore.open(out / "data" / "d0")
    assert s1.num_tokens >= d0.num_tokens
    _, pool = _pool(out, 1.5, tmp_path / "pool")  # a story may occur in S_1 3 × its pool copies
    text = [s.story(i).tobytes() for s in (s1, pool) for i in range(s.num_stories)]
    kinds, inverse = np.unique(text, return_inverse=True)
    in_s1 = np.bincount(inverse[: s1.num_stories], minlength=kinds.size)
    in_pool = np.bincount(inverse[s1.num_stories :], minlength=kinds.size)
    assert (in_s1 <= 3 * in_pool).all() and in_s1.max() >= 2
    assert _metrics(out, 2)["perplexity"] != _metrics(ngram_run, 2)["perplexity"]
