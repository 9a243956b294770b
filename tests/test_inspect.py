"""lmcollapse.inspect from Python on a tiny n-gram run: the probe's truth against a count by hand
of the run's D0, its p̂ against the run's own metrics, sampled stories against the sampler's
rows, and the text forms the commands print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmcollapse.config import ExperimentConfig, resolve
from lmcollapse.data.prepare import open_prepared
from lmcollapse.errors import InvalidInput
from lmcollapse.inspect import (
    probe_lines,
    probe_run,
    run_summary_lines,
    sample_lines,
    sample_run,
    status_lines,
)
from lmcollapse.models import load_model
from lmcollapse.rundir import status
from lmcollapse.sample import SamplingParams, sample_batch, sampling_context

TINY_NGRAM = [
    "data.num_stories=200",
    "data.tokenizer_vocab_size=500",
    "sampling.batch_size=100",
    "sampling.length=200",
    "evaluation.stats_tokens=3000",
    "evaluation.num_samples=2",
    "run.generations=3",
]


@pytest.fixture(scope="module")
def ngram_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lmcollapse.pipeline import run

    cfg = resolve(ExperimentConfig, preset="ngram-demo", overrides=TINY_NGRAM)
    return run(cfg, tmp_path_factory.mktemp("runs") / "ngram", progress=False)


def hand_count(store, context: list[int]) -> dict[int, int]:
    """N_{x;v} by walking D0's stories one token at a time (a cut story's separator is no v)."""
    stream: list[tuple[int, bool]] = []  # (token, may it be a continuation)
    for i in range(store.num_stories):
        ids = store.story(i).tolist()
        ended = bool(store.finished([i])[0])
        stream += [(t, ended or j < len(ids) - 1) for j, t in enumerate(ids)]
    m, counts = len(context), {}
    for j in range(len(stream) - m):
        if [t for t, _ in stream[j : j + m]] == context and stream[j + m][1]:
            v = stream[j + m][0]
            counts[v] = counts.get(v, 0) + 1
    return counts


def test_probe_run_truth_by_hand_and_p_hat_as_the_run_measured(ngram_run: Path) -> None:
    corpus = open_prepared(ngram_run / "data")
    tok = corpus.tokenizer
    result = probe_run(ngram_run, " there", [" was", " were"], top=3)
    assert list(result) == ["run", "context", "context_tokens", "N_x", "truth", "generations"]
    assert result["run"] == str(ngram_run) and result["context_tokens"] == [" there"]
    counts = hand_count(corpus.d0, tok.encode(" there"))
    n_x = sum(counts.values())
    was, were = tok.encode(" was")[0], tok.encode(" were")[0]
    assert result["N_x"] == n_x > 0 and counts[was] > counts.get(were, 0)
    assert result["truth"] == {" was": counts[was] / n_x, " were": counts.get(were, 0) / n_x}
    # the same truth as the run's reference row, and each generation's p̂ and α* as it measured
    reference = json.loads((ngram_run / "gen_000/metrics.json").read_text())["probes"][0]
    assert reference["context"] == " there" and reference["N_x"] == n_x
    assert result["truth"][" was"] == reference["next"][" was"]["truth"]
    assert [g["generation"] for g in result["generations"]] == [1, 2, 3]
    for g in result["generations"]:
        assert list(g) == ["generation", "next", "top", "alpha_x_relative"]
        measured = json.loads((ngram_run / f"gen_{g['generation']:03d}/metrics.json").read_text())
        p = measured["probes"][0]
        for v in (" was", " were"):
            assert g["next"][v]["p_hat"] == pytest.approx(p["next"][v]["p_hat"], rel=1e-12)
            assert g["next"][v]["truth"] == result["truth"][v]
        assert g["alpha_x_relative"] == pytest.approx(p["alpha_x_relative"], rel=1e-9)
        assert len(g["top"]) == 3
        assert [t["p_hat"] for t in g["top"]] == sorted(
            (t["p_hat"] for t in g["top"]), reverse=True
        )
    lines = probe_lines(result)
    assert lines[0] == f"context ' there' = [' there']; N_x in D0 = {n_x:,}"
    assert lines[1] == f"  truth p(' was'|x) = {counts[was] / n_x:.4f}"
    assert len(lines) == 3 + 3 and lines[3].startswith("  generation   1: ' was': ")


def test_probe_run_refuses_bad_input_in_one_line(ngram_run: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="the context is empty"):
        probe_run(ngram_run, "", [" was"])
    with pytest.raises(InvalidInput, match="--top must be >= 0"):
        probe_run(ngram_run, " there", top=-1)
    with pytest.raises(InvalidInput, match=r"\" wasn't\" is not one token .* tokenizes as"):
        probe_run(ngram_run, " there", [" wasn't"])
    with pytest.raises(InvalidInput, match="is not an lmcollapse run"):
        probe_run(tmp_path, " there")
    nothing = probe_run(ngram_run, " there", top=0)
    assert nothing["truth"] == {} and all(g["top"] == [] for g in nothing["generations"])


def test_sample_run_stories_are_the_samplers_rows(ngram_run: Path) -> None:
    cfg = resolve(ExperimentConfig, preset="ngram-demo", overrides=TINY_NGRAM)
    tok = open_prepared(ngram_run / "data").tokenizer
    for length in (None, 6):
        result = sample_run(ngram_run, 2, 5, length=length, seed=3)
        assert list(result) == ["run", "generation", "seed", "stories", "finished"]
        assert result["run"] == str(ngram_run) and result["generation"] == 2
        assert result["seed"] == 3
        model = load_model(ngram_run / "gen_002/model")
        rows = sample_batch(
            model,
            5,
            length or cfg.sampling.length,
            eos_id=tok.eos_id,
            context=sampling_context(cfg, model),
            generator=torch.Generator().manual_seed(3),
            params=SamplingParams.of(cfg.sampling),
            stop_at_eos=True,
        )
        ended = [int(r[-1]) == tok.eos_id for r in rows]
        assert result["finished"] == ended
        assert result["stories"] == [
            tok.decode(r[:-1].tolist() if e else r.tolist()).strip()
            for r, e in zip(rows, ended, strict=True)
        ]
        for r, e in zip(rows, ended, strict=True):
            assert e or len(r) == (length or cfg.sampling.length)  # cut only at the length
    assert not any(result["finished"])  # 6 tokens: no built-in story is that short
    full = sample_run(ngram_run, 2, 5, seed=3)
    assert any(full["finished"]) and not all(full["finished"])  # some cut at 200 tokens
    assert full == sample_run(ngram_run, 2, 5, seed=3)  # seeded
    assert sample_run(ngram_run, 2, 5, seed=4)["stories"] != full["stories"]
    lines = sample_lines(full)
    assert len(lines) == 3 * 5
    for i, done in enumerate(full["finished"]):
        header, text = lines[3 * i], lines[3 * i + 1]
        assert header.startswith(f"--- generation 2, story {i + 1}")
        assert ("(unfinished: no end-of-text within --length)" in header) is not done
        assert text.endswith(" …") is not done and lines[3 * i + 2] == ""


def test_sample_run_refuses_bad_input(ngram_run: Path) -> None:
    with pytest.raises(InvalidInput, match=r"generation 9 of .* is not finished; finished: \[1"):
        sample_run(ngram_run, 9, 1)
    with pytest.raises(InvalidInput, match="--num must be >= 1, got 0"):
        sample_run(ngram_run, 1, 0)


def test_status_and_run_summary_lines(ngram_run: Path) -> None:
    s = status(ngram_run)
    lines = status_lines(s)
    assert lines[0].startswith(f"{ngram_run}: complete — generations done 3/3 (preset None")
    assert [line.split(":")[0] for line in lines[1:4]] == [f"  generation   {n}" for n in (1, 2, 3)]
    assert lines[1].startswith(f"  generation   1: perplexity {s['perplexity']['1']:.3f} (")
    assert lines[-1] == f"report: {ngram_run / 'report.html'}"
    summary = run_summary_lines(ngram_run)
    ppl = ", ".join(f"{n}: {s['perplexity'][str(n)]:.2f}" for n in (1, 2, 3))
    assert summary == [
        f"{ngram_run}: 3 generation(s), status complete",
        f"held-out perplexity by generation: {ppl}",
        f"report: {ngram_run / 'report.html'}",
    ]
