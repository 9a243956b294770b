"""Typed results are metrics.json's schema: a run's files read back and written again are the
same bytes' worth of data, and a metrics.csv row is the flat view of one generation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lmcollapse.results import GenerationMetrics, ProbeResult, TrainResult


@pytest.fixture(scope="module")
def ngram_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import lmcollapse
    from lmcollapse.config import ExperimentConfig, resolve

    sets = ["data.num_stories=200", "data.tokenizer_vocab_size=500", "run.generations=3"]
    sets += ["paradigm.name=accumulate-subsample", "paradigm.k=0.5", "sampling.length=200"]
    cfg = resolve(ExperimentConfig, preset="ngram-demo", overrides=sets)
    return lmcollapse.run(cfg, tmp_path_factory.mktemp("run") / "r", progress=False)


def test_metrics_round_trip_through_the_types(ngram_run: Path) -> None:
    for n in range(4):
        plain = json.loads((ngram_run / f"gen_{n:03d}" / "metrics.json").read_text())
        again = GenerationMetrics.from_plain(plain).to_plain()
        assert again == plain  # every key, every value
        assert list(again) == list(plain)  # in the order metrics.json has always had


def test_a_csv_row_is_the_flat_view_of_a_generation(ngram_run: Path) -> None:
    rows = list(csv.DictReader((ngram_run / "metrics.csv").open()))
    plain = json.loads((ngram_run / "gen_002" / "metrics.json").read_text())
    row = GenerationMetrics.from_plain(plain).row()
    assert [r["generation"] for r in rows] == ["0", "1", "2", "3"]
    assert row["perplexity"] == plain["perplexity"] == float(rows[2]["perplexity"])
    assert row["corpus_eos_rate"] == plain["corpus"]["eos_rate"]
    was = plain["probes"][0]["next"][" was"]
    assert row["probe0_was_p_hat"] == was["p_hat"] and row["probe0_was_truth"] == was["truth"]
    assert row["train_final_loss"] is None and plain["train"]["losses"] == []  # counted, no loss
    assert row["train_tokens_per_s"] == plain["train"]["tokens_per_s"]
    parts = {p["source"]: p for p in plain["composition"]["parts"]}
    assert row["train_d0_tokens"] == parts["d0"]["tokens"]
    assert row["train_generated_tokens"] == parts["gen_001"]["tokens"]
    assert row["real_token_share"] == pytest.approx(
        parts["d0"]["tokens"] / (parts["d0"]["tokens"] + parts["gen_001"]["tokens"]), rel=1e-12
    )
    assert set(row) <= set(rows[2])  # metrics.csv holds every column of the row


def test_an_older_metrics_file_reads_with_what_it_lacks_as_none() -> None:
    old = {"generation": 1, "perplexity": 3.5, "probes": [{"context": " there", "next": {}}]}
    m = GenerationMetrics.from_plain(old)
    assert m.loss is None and m.train is None and m.corpus.eos_rate is None
    assert m.row()["perplexity"] == 3.5 and "train_final_loss" not in m.row()
    assert m.probes == [ProbeResult(" there", [], {})]


def test_a_train_record_reads_back() -> None:
    t = TrainResult(2, 10, 4000, 2.0, [3.0, 2.5], [2.7], 2)
    back = TrainResult.from_record(t.record())
    assert back == t and back.tokens_per_second == 2000.0
