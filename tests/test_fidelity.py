"""The pipeline makes no drift of its own (issue: fidelity), piece by piece: a cut story's
separator is no target or continuation, shares count tokens, the bridge reads the measured
shares, perplexity can be taken on a real validation set, and the paper presets train 3 epochs.
The whole-pipeline null test is tests/test_null.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lmcollapse.cli import main
from lmcollapse.config import ExperimentConfig, ModelConfig, TrainingConfig, resolve
from lmcollapse.data.packing import IGNORE, TrainingSet
from lmcollapse.data.paradigms import D0, choose_tokens, compose, composition, generated
from lmcollapse.data.stats import count_store_continuations
from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.errors import InvalidInput
from lmcollapse.models import build_model
from lmcollapse.models.ngram import NGramModel
from lmcollapse.paradigms import AccumulateSubsample, Mix, Replace
from lmcollapse.train import train

EOS = 0


def one_layer(vocab: int, width: int = 16, positions: int = 32):
    """A one-layer GPT-Neo with global attention, seeded."""
    torch.manual_seed(0)
    shape = ModelConfig(
        num_layers=1,
        hidden_size=width,
        num_heads=2,
        max_position_embeddings=positions,
        window_size=positions // 4,
        attention_pattern=("global",),
    )
    return build_model(shape, vocab, EOS)


def store_of(path: Path, stories: list[list[int]], cut: tuple[int, ...] = (), vocab: int = 12):
    with TokenStoreWriter(path, vocab_size=vocab, eos_id=EOS) as w:
        for i, s in enumerate(stories):
            w.add(np.asarray(s), finished=i not in cut)
    return TokenStore.open(path)


# ----------------------------------------------------------------------------------------------
# A cut story's end-of-text is a boundary, not a target


def test_packed_blocks_never_target_a_separator(tmp_path: Path) -> None:
    stories = [[1, 2, 0], [3, 4, 5, 0], [6, 0], [7, 8, 9, 10, 0]]
    store = store_of(tmp_path / "s", stories, cut=(1, 3))
    blocks = TrainingSet.whole(store).blocks(context=4, seed=0)
    order = [int(i) for i in blocks.story]
    stream = np.concatenate([stories[i] for i in order])
    # the separators of stories 1 and 3 sit at the end of their stories in the shuffled stream
    ends = np.cumsum([len(stories[i]) for i in order]) - 1
    separators = {int(e) for e, i in zip(ends, order, strict=True) if i in (1, 3)}
    seen: list[int] = []
    for b in range(len(blocks)):
        inputs, targets = blocks[b]
        np.testing.assert_array_equal(inputs, stream[4 * b : 4 * b + 4])
        for j, t in enumerate(targets):
            pos = 4 * b + j + 1
            if pos in separators:
                assert t == IGNORE and stream[pos] == EOS
            else:
                assert t == stream[pos]
                seen.append(pos)
    # every other token but the first is a target exactly once
    assert sorted(seen) == [p for p in range(1, 4 * len(blocks) + 1) if p not in separators]


def test_a_model_trained_on_cut_stories_does_not_learn_to_stop(tmp_path: Path) -> None:
    """The same text, once as finished stories and once as cut ones: only the first teaches the
    model to end after '1 2 3 4 5 6' (the second's end-of-text is a context boundary only, so
    end-of-text is never a target)."""
    stories = [[1, 2, 3, 4, 5, 6, 0]] * 300
    p_end = {}
    for name, cut in (("finished", ()), ("cut", tuple(range(300)))):
        store = store_of(tmp_path / name, stories, cut=cut, vocab=8)
        model = one_layer(8)
        cfg = TrainingConfig(
            learning_rate=1e-2, batch_size=8, micro_batch_size=8, context_length=16, epochs=3
        )
        train(model, TrainingSet.whole(store), cfg, seed=0, progress=False)
        model.eval()
        with torch.no_grad():  # after a whole story of six tokens
            logits = model(torch.tensor([[0, *stories[0][:6]]]))[0, -1]
        p_end[name] = float(torch.softmax(logits, -1)[EOS])
    assert p_end["finished"] > 0.5 and p_end["cut"] < 0.05, p_end


def test_ngram_counts_no_pair_into_a_separator(tmp_path: Path) -> None:
    store = store_of(tmp_path / "s", [[3, 4, 0], [3, 5, 0], [3, 4, 0]], cut=(1,), vocab=6)
    m = NGramModel(6, EOS, order=2, delta=1.0).fit(TrainingSet.whole(store))
    after_5 = m.counts([5])  # story 1 was cut after 5: nothing follows 5 in the counts
    assert after_5.sum() == 0
    np.testing.assert_array_equal(m.counts([4]), [2, 0, 0, 0, 0, 0])  # 4 → EOS twice
    np.testing.assert_array_equal(m.counts([0]), [0, 0, 0, 3, 0, 0])  # every story starts
    ppl = m.perplexity(store)  # a separator is not scored either: 3 + 2 + 3 targets
    assert ppl.tokens == 8


def test_continuations_of_a_store_skip_its_separators(tmp_path: Path) -> None:
    store = store_of(tmp_path / "s", [[3, 4, 0], [5, 4, 0], [4, 1, 0]], cut=(0,), vocab=6)
    counter = count_store_continuations(store, [4], 6)
    assert counter.counts.tolist() == [1, 1, 0, 0, 0, 0]  # 4 → EOS once (story 1), 4 → 1 once
    two = count_store_continuations(store, [3, 4], 6)
    assert two.n_x == 0  # the only '3 4' was followed by a separator


# ----------------------------------------------------------------------------------------------
# Shares by token volume


def _generated_store(path: Path, n: int, mean: float, seed: int) -> TokenStore:
    rng = np.random.default_rng(seed)
    lens = rng.geometric(1 / mean, size=n)
    with TokenStoreWriter(path, vocab_size=12, eos_id=EOS) as w:
        w.add_flat(np.tile([1], lens.sum()), lens)
    return TokenStore.open(path)


def test_accumulate_subsample_shares_are_token_shares(tmp_path: Path) -> None:
    """k = 0.5, generation 6: D0's token share is 1/(1 + 5k) = 0.2857 and the training set holds
    |D0| tokens, although the generated stories are a third of D0's length (by story counts the
    share would be off)."""
    k, n = 0.5, 6
    d0 = _generated_store(tmp_path / "d0", 4000, 60.0, 0)
    sources = {D0: d0} | {
        generated(j): _generated_store(tmp_path / f"g{j}", 6000, 20.0, j) for j in range(1, n)
    }
    comp, chosen = compose(AccumulateSubsample(k), n, sources, unit="tokens", seed=3)
    assert comp.token_share(D0) == pytest.approx(1 / 3.5, abs=0.01)
    assert comp.total_tokens == pytest.approx(d0.num_tokens, rel=0.02)
    longest = {s: int(st.lengths().max()) for s, st in sources.items()}
    for part in comp.parts:  # each part within half a story of its exact share
        share = 1 / 3.5 if part.source == D0 else k / 3.5
        assert abs(part.tokens - share * d0.num_tokens) <= longest[part.source] / 2
        idx = chosen[part.source]
        assert idx.size == part.count == np.unique(idx).size
        assert part.tokens == int(sources[part.source].lengths()[idx].sum())
    by_stories, _ = compose(AccumulateSubsample(k), n, sources, unit="stories", seed=3)
    assert by_stories.share(D0) == pytest.approx(1 / 3.5, abs=1e-3)
    assert by_stories.token_share(D0) > 0.5  # D0's stories are 3x longer: the drift tokens fix
    d = comp.to_dict()
    assert d["unit"] == "tokens" and d["real_token_share"] == comp.token_share(D0)
    assert {"tokens", "available_tokens", "target_tokens"} <= set(d["parts"][1])


def test_story_unit_is_the_old_composition_and_tokens_are_seeded(tmp_path: Path) -> None:
    d0 = _generated_store(tmp_path / "d0", 500, 30.0, 0)
    sources = {D0: d0, generated(1): _generated_store(tmp_path / "g1", 500, 30.0, 1)}
    comp, _ = compose(Mix(0.3), 2, sources, unit="stories", seed=0)
    old = composition(Mix(0.3), 2, 500, {1: 500})
    assert [(p.source, p.count) for p in comp.parts] == [(p.source, p.count) for p in old.parts]
    a = compose(Mix(0.3), 2, sources, seed=5)[1]
    b = compose(Mix(0.3), 2, sources, seed=5)[1]
    c = compose(Mix(0.3), 2, sources, seed=6)[1]
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert any(not np.array_equal(a[s], c[s]) for s in a)
    whole, idx = compose(Replace(), 2, sources, seed=0)
    assert whole.parts[0].tokens == sources[generated(1)].num_tokens
    np.testing.assert_array_equal(idx[generated(1)], np.arange(500))


def test_choose_tokens_is_uniform_over_stories_and_nearest_to_the_target() -> None:
    offsets = np.concatenate([[0], np.cumsum(np.full(100, 10))])  # 100 stories of 10 tokens
    hits = np.zeros(100)
    for seed in range(2000):
        idx = choose_tokens(offsets, 104.0, np.random.default_rng(seed))
        assert idx.size == 10  # 100 tokens are nearer 104 than 110
        hits[idx] += 1
    assert hits.min() > 150 and hits.max() < 250  # 200 each in expectation
    assert choose_tokens(offsets, 106.0, np.random.default_rng(0)).size == 11
    assert choose_tokens(offsets, 1e9, np.random.default_rng(0)).size == 100


def test_a_source_too_small_for_its_token_share_is_refused(tmp_path: Path) -> None:
    sources = {
        D0: _generated_store(tmp_path / "d0", 400, 30.0, 0),
        generated(1): _generated_store(tmp_path / "g1", 20, 30.0, 1),
    }
    with pytest.raises(InvalidInput, match="tokens from gen_001, which has only"):
        compose(Mix(0.2), 2, sources, seed=0)
    with pytest.raises(InvalidInput, match="paradigm unit must be one of tokens, stories"):
        compose(Mix(0.2), 2, sources, seed=0, unit="words")


def test_the_bridge_uses_measured_shares() -> None:
    from lmcollapse import theory
    from lmcollapse.bridge import bridge, run_shares
    from lmcollapse.results import GenerationMetrics

    counts = np.array([760.0, 50.0, 190.0])
    alpha = theory.constant_errors(6, 50.0, np.ones(3))
    k = 0.5
    p = theory.closed_form(counts, alpha, "accumulate-subsample", k=k)
    nominal = [None] + [
        {0: 1 / (1 + (n - 1) * k)} | dict.fromkeys(range(1, n), k / (1 + (n - 1) * k))
        for n in range(2, 7)
    ]
    a = bridge(p, counts, "accumulate-subsample", k)
    b = bridge(p, counts, "accumulate-subsample", k, shares=nominal)
    np.testing.assert_allclose(a.real_data_weight, b.real_data_weight, rtol=1e-12)
    np.testing.assert_allclose(a.alpha_relative, b.alpha_relative, atol=1e-12)
    assert b.shares == "measured token shares" and a.shares == "nominal"
    # generation 2 trained on 60% D0 and 40% S_1 (by tokens, not the nominal 2/3 and 1/3), with
    # an error that has a zero entry (so Remark B.1's minimal error is the true one)
    _, a1 = theory.decompose(p[0], counts)
    base = 0.6 * counts + 0.4 * (counts + a1)
    a2 = np.array([0.0, 20.0, 30.0])
    p2 = (base + a2) / (base + a2).sum()
    shares = [None, {0: 0.6, 1: 0.4}]
    measured = bridge([p[0], p2], counts, "accumulate-subsample", k, shares=shares)
    assert measured.alpha_relative[1] == pytest.approx(50.0 / base.sum(), rel=1e-9)
    assert measured.real_data_share == [1.0, 0.6]
    guessed = bridge([p[0], p2], counts, "accumulate-subsample", k)
    assert guessed.alpha_relative[1] != pytest.approx(50.0 / base.sum(), rel=1e-3)
    metrics = [
        {"composition": {"parts": [{"source": "d0", "count": 9, "tokens": 900}]}},
        {
            "composition": {
                "parts": [
                    {"source": "d0", "count": 3, "tokens": 300},
                    {"source": "gen_001", "count": 20, "tokens": 700},
                ]
            }
        },
        {"composition": {"parts": [{"source": "d0", "count": 3}]}},  # an older run: no tokens
    ]
    typed = [GenerationMetrics.from_plain(m) for m in metrics]
    assert run_shares(typed) == [{0: 1.0}, {0: 0.3, 1: 0.7}, None]


# ----------------------------------------------------------------------------------------------
# Presets, the evaluation set, and bad input


@pytest.mark.parametrize("preset", ["paper-1m", "paper-33m"])
def test_paper_presets_train_three_epochs_and_evaluate_on_validation(preset: str) -> None:
    cfg = resolve(ExperimentConfig, preset=preset)
    assert cfg.training.epochs == 3 and cfg.training.early_stopping is False
    assert cfg.evaluation.source == "roneneldan/TinyStories"
    assert cfg.evaluation.split == "validation" and cfg.paradigm.unit == "tokens"
    shown = CliRunner().invoke(main, ["config", "show", "--preset", preset]).output
    assert "epochs: 3" in shown and "early_stopping: false" in shown
    evaluation = shown[shown.index("\nevaluation:") :]
    assert "source: roneneldan/TinyStories" in evaluation and "split: validation" in evaluation
    # the paper's procedure, one override away
    early = resolve(ExperimentConfig, preset=preset, overrides=["training.early_stopping=true"])
    assert early.training.early_stopping


NGRAM = [
    "data.num_stories=150",
    "evaluation.stats_tokens=2000",
    "evaluation.num_samples=2",
    "run.generations=2",
]


def _run(out: Path, *extra: str):
    args = ["run", "--quiet", "--preset", "ngram-demo", "--out", str(out)]
    for item in [*NGRAM, *extra]:
        args += ["--set", item]
    return CliRunner().invoke(main, args)


def _stories_file(path: Path, n: int, seed: int = 7) -> Path:
    from lmcollapse.data.stories import generate

    path.write_text("\n<|endoftext|>\n".join(generate(n, seed=seed)), encoding="utf-8")
    return path


def test_perplexity_on_a_separate_validation_set(tmp_path: Path) -> None:
    valid = _stories_file(tmp_path / "valid.txt", 40)
    out = tmp_path / "run"
    result = _run(out, f"evaluation.source={valid}")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "gen_001/metrics.json").read_text())
    assert m["eval_set"]["source"] == str(valid) and m["eval_stories"] == 40
    store = TokenStore.open(out / "data/eval")
    assert store.num_stories == 40
    model = NGramModel.from_pretrained(out / "gen_001/model")
    assert m["perplexity"] == pytest.approx(model.perplexity(store).perplexity, rel=1e-12)
    holdout = TokenStore.open(out / "data/holdout")
    assert m["perplexity"] != pytest.approx(model.perplexity(holdout).perplexity, rel=1e-6)
    # the probe truth stays D0's counts
    g0 = json.loads((out / "gen_000/metrics.json").read_text())
    assert g0["probes"][0]["N_x"] > 0
    # a resumed run reuses data/eval without reading the source again (it may be offline)
    text = valid.read_text()
    valid.unlink()
    more = _run(out, f"evaluation.source={valid}", "run.generations=3")
    assert more.exit_code == 0, more.output
    m3 = json.loads((out / "gen_003/metrics.json").read_text())
    assert m3["eval_stories"] == 40 and m3["eval_set"]["what"].startswith("local file")
    # a damaged data/eval is made again from the source
    valid.write_text(text)
    (out / "data/eval/offsets.npy").write_bytes(b"damaged")
    again = _run(out, f"evaluation.source={valid}", "run.generations=4")
    assert again.exit_code == 0, again.output
    rebuilt = TokenStore.open(out / "data/eval")
    assert rebuilt.num_stories == 40
    m4 = json.loads((out / "gen_004/metrics.json").read_text())
    assert m4["perplexity"] == pytest.approx(
        NGramModel.from_pretrained(out / "gen_004/model").perplexity(rebuilt).perplexity
    )
    default = tmp_path / "default"
    assert _run(default).exit_code == 0
    d = json.loads((default / "gen_001/metrics.json").read_text())
    assert d["eval_set"]["source"] == "holdout" and d["eval_stories"] == holdout.num_stories


def test_bad_evaluation_and_unit_input_is_one_line(tmp_path: Path, write) -> None:
    empty = write("empty.txt", "\n<|endoftext|>\n  \n")
    cases = [
        (f"evaluation.source={empty}", "evaluation.source .* has no stories"),
        (f"evaluation.source={tmp_path / 'missing.txt'}", "does not exist"),
        ("evaluation.source=builtin", "use holdout"),
        ("paradigm.unit=words", "paradigm.unit: expected one of 'tokens', 'stories'"),
    ]
    for setting, message in cases:
        out = tmp_path / "bad"
        result = _run(out, setting)
        assert result.exit_code == 2, (setting, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lmcollapse: error:"), result.output
        import re

        assert re.search(message, lines[0]), lines[0]
        assert not out.exists()  # nothing written for a bad new run
    # a token store made with another tokenizer does not fit the run's
    other = tmp_path / "other"
    with TokenStoreWriter(other, vocab_size=50, eos_id=0, provenance={"tokenizer": "abc"}) as w:
        w.add([1, 2, 0])
    given = tmp_path / "given"  # an empty directory the user made: refused after D0 was prepared
    given.mkdir()
    result = _run(given, f"evaluation.source={other}")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("lmcollapse: error: evaluation.source")
    assert "tokenized with another tokenizer" in result.output
    assert given.is_dir() and not list(given.iterdir())  # left as it was: empty
    assert _run(given).exit_code == 0  # so the corrected command runs


def test_an_old_run_is_read_but_not_continued(tmp_path: Path) -> None:
    out = tmp_path / "old"
    assert _run(out).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["version"] = 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = _run(out, "run.generations=3")
    assert result.exit_code == 2
    assert "continuing it would mix two procedures" in result.output
    assert "another --out" in result.output
    status = CliRunner().invoke(main, ["status", str(out), "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["generations_done"] == [1, 2]
    from lmcollapse.rundir import run_config

    assert run_config(out).paradigm.unit == "stories"  # what a run of format 1 counted
    # an old run that generated nothing yet continues as a new one
    empty = tmp_path / "empty"
    assert _run(empty, "run.generations=1").exit_code == 0
    manifest = json.loads((empty / "manifest.json").read_text())
    manifest["version"], manifest["generations"] = 1, {}
    for key in ("config_sha256", "d0_checksum", "tokenizer"):  # not recorded before 0.3
        manifest.pop(key)
    (empty / "manifest.json").write_text(json.dumps(manifest))
    for gen in empty.glob("gen_00[1-9]"):
        import shutil

        shutil.rmtree(gen)
    import yaml

    config = yaml.safe_load((empty / "config.yaml").read_text())
    del config["paradigm"]["unit"], config["evaluation"]["source"]  # as an older version wrote it
    (empty / "config.yaml").write_text(yaml.safe_dump(config))
    assert _run(empty, "run.generations=2").exit_code == 0
    assert json.loads((empty / "manifest.json").read_text())["version"] == 2
    written = yaml.safe_load((empty / "config.yaml").read_text())
    assert written["paradigm"]["unit"] == "tokens" and written["evaluation"]["source"] == "holdout"
    assert _run(empty, "run.generations=3").exit_code == 0  # and is not refused afterwards
    manifest = json.loads((empty / "manifest.json").read_text())
    manifest["version"] = 3
    (empty / "manifest.json").write_text(json.dumps(manifest))
    newer = _run(empty, "run.generations=4")
    assert newer.exit_code == 2 and "made by a newer lmcollapse (run format 3)" in newer.output


def test_samples_and_statistics_show_unfinished_stories(tmp_path: Path) -> None:
    out = tmp_path / "cut"
    result = _run(
        out,
        "sampling.length=60",
        "evaluation.num_samples=40",
        "sampling.num_sequences=200",
    )
    assert result.exit_code == 0, result.output
    m = json.loads((out / "gen_001/metrics.json").read_text())
    store = TokenStore.open(out / "gen_001/corpus")
    assert m["corpus"]["unfinished_share"] == pytest.approx(store.unfinished.size / len(store))
    assert 0.2 < m["corpus"]["unfinished_share"] < 1  # ~146-token stories capped at 60
    lens = store.lengths()
    assert lens[store.unfinished].tolist() == [61] * store.unfinished.size
    assert m["corpus"]["finished_length_mean"] == pytest.approx(
        lens[store.finished(np.arange(len(store)))].mean()
    )
    samples = (out / "gen_001/samples.txt").read_text()
    assert "(unfinished: cut by the sampler" in samples
    assert samples.count("--- story") == 40


# ----------------------------------------------------------------------------------------------
# The switches for the other readings (README: Fidelity)


def test_no_end_of_text_target_reading(tmp_path: Path) -> None:
    store = store_of(tmp_path / "s", [[1, 2, 0], [3, 0], [4, 5, 6, 0]])
    plain = TrainingSet.whole(store).blocks(context=3, seed=0)
    blocks = TrainingSet.whole(store).blocks(context=3, seed=0, eos_targets=False)
    for i in range(len(blocks)):
        np.testing.assert_array_equal(blocks[i][0], plain[i][0])
        want = np.where(plain[i][1] == EOS, IGNORE, plain[i][1])
        np.testing.assert_array_equal(blocks[i][1], want)
    assert any((plain[i][1] == EOS).any() for i in range(len(blocks)))
    bad = ["model.family=ngram", "training.eos_target=false"]
    with pytest.raises(InvalidInput, match="eos_target: false is for the gradient-trained"):
        resolve(ExperimentConfig, overrides=bad)


def test_decay_everything_reading() -> None:
    from lmcollapse.train import param_groups

    model = one_layer(10, width=8, positions=8)
    split = param_groups(model, 0.1)
    everything = param_groups(model, 0.1, everything=True)
    n_params = len(list(model.parameters()))
    assert len(split[1]["params"]) > 0 and len(split[0]["params"]) < n_params
    assert len(everything[0]["params"]) == n_params and not everything[1]["params"]


def test_first_token_reading(tmp_path: Path) -> None:

    stories = [[3, 4, 0], [5, 0], [3, 3, 4, 0]]
    store = store_of(tmp_path / "s", stories, vocab=6)
    m = NGramModel(6, EOS, order=2, delta=0.5).fit(TrainingSet.whole(store))
    every = m.perplexity(store)
    later = m.perplexity(store, first_token=False)
    assert every.tokens == 9 and later.tokens == 6
    logp = sum(
        np.log(m.prob(np.array([s[t - 1]]), np.array([s[t]])))[0]
        for s in stories
        for t in range(1, len(s))
    )
    assert later.loss == pytest.approx(-logp / 6, rel=1e-12)
    neo = one_layer(6, width=8, positions=8).eval()
    full = neo.perplexity(store, context=8)
    skip = neo.perplexity(store, context=8, first_token=False)
    with torch.no_grad():
        first = sum(
            float(torch.log_softmax(neo(torch.tensor([[EOS]]))[0, -1], -1)[s[0]]) for s in stories
        )
    assert skip.tokens == 6 and full.tokens == 9
    assert skip.loss * 6 == pytest.approx(full.loss * 9 + first, rel=1e-5)


def test_a_tokenizer_that_does_not_fit_the_evaluation_text_is_refused(tmp_path: Path) -> None:
    """A word-level tokenizer that knows D0's words but not the evaluation set's: its unknown
    token would be scored as if it were text, so the run refuses before it starts."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lmcollapse.data.stories import generate

    pre = pre_tokenizers.Whitespace()
    words = sorted({w for text in generate(150, seed=0) for w, _ in pre.pre_tokenize_str(text)})
    vocab = {"<|endoftext|>": 0, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre
    tok_dir = tmp_path / "words"
    tok_dir.mkdir()
    backend.save(str(tok_dir / "tokenizer.json"))
    (tok_dir / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    valid = tmp_path / "valid.txt"
    valid.write_text("Once upon a time there was a zorblax.\n<|endoftext|>\nThe end.\n")
    result = _run(tmp_path / "run", f"data.tokenizer={tok_dir}", f"evaluation.source={valid}")
    assert result.exit_code == 2, result.output
    assert "the run's tokenizer does not fit it" in result.output
    assert "'[UNK]'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
