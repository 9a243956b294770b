"""The authors' and peers' setups: a published model as generation 1 (run.first_model), where
weights start (training.init), downstream classification, trackers; all offline, on a tiny
GPT-Neo checkpoint and a small classification task the tests make."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import TINY_NEO_SETTINGS, lmc
from lmcollapse.config import ExperimentConfig, resolve

SETTINGS = [s for s in TINY_NEO_SETTINGS if not s.startswith("data.tokenizer_vocab_size")]
VOCAB = 600


def _args(*extra: str, generations: int = 2) -> list[str]:
    sets = [*SETTINGS, f"run.generations={generations}", *extra]
    return [x for s in sets for x in ("--set", s)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-Neo saved by transformers, with the tokenizer the runs use beside it
    (a BPE trained on the tiny runs' D0)."""
    return _neo_checkpoint(tmp_path_factory, "tiny-neo", pad=0)


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with 8 embedding rows more than its tokenizer has ids (as OPT pads 50,265 ids
    to 50,272 rows)."""
    return _neo_checkpoint(tmp_path_factory, "padded-neo", pad=8)


def _neo_checkpoint(factory: pytest.TempPathFactory, name: str, pad: int) -> Path:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    from lmcollapse.data.prepare import prepare

    cfg = resolve(
        ExperimentConfig, preset="demo", overrides=[*SETTINGS, f"data.tokenizer_vocab_size={VOCAB}"]
    )
    corpus = prepare(cfg.data, factory.mktemp("corpus") / "data")
    tok = corpus.tokenizer
    torch.manual_seed(7)
    config = GPTNeoConfig(
        vocab_size=tok.vocab_size + pad,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        max_position_embeddings=64,
        window_size=16,
        attention_types=[[["global", "local"], 1]],
        bos_token_id=tok.eos_id,
        eos_token_id=tok.eos_id,
        intermediate_size=None,
    )
    model = GPTNeoForCausalLM(config)
    out = factory.mktemp("ckpt") / name
    model.save_pretrained(out)
    for f in tok.path.iterdir():
        shutil.copy(f, out / f.name)
    return out


def _task(folder: Path, n_train: int = 48, n_test: int = 24) -> Path:
    """A sentiment-like task a tiny model can half learn: label 1 iff the sentence is happy."""
    rng = np.random.default_rng(3)
    names, moods = (
        ["Tom", "Lily", "Ben", "Sue"],
        [("happy", 1), ("sad", 0), ("glad", 1), ("cross", 0)],
    )
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation", n_test)):
        rows = []
        for _ in range(n):
            mood, label = moods[rng.integers(4)]
            rows.append({"sentence": f"{names[rng.integers(4)]} was very {mood}.", "label": label})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    """Generation 1 = the checkpoint; generation 2 trained from scratch on S_1; a downstream
    task; TensorBoard."""
    tmp = tmp_path_factory.mktemp("first")
    task = _task(tmp / "task")
    config = tmp / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extends": "demo",
                "evaluation": {
                    "downstream": [{"name": "mood", "source": str(task), "max_length": 16}]
                },
                "run": {"trackers": ["tensorboard"]},
            }
        )
    )
    out = tmp / "run"
    done = lmc(
        "run", "--quiet", "--config", str(config), "--out", str(out),
        *_args(f"run.first_model={checkpoint}", f"data.tokenizer={checkpoint}"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def _metrics(run: Path, n: int) -> dict:
    return json.loads((run / f"gen_{n:03d}" / "metrics.json").read_text())


def test_the_first_model_is_generation_1_with_its_own_logits(
    first_run: Path, checkpoint: Path
) -> None:
    from transformers import GPTNeoForCausalLM

    from lmcollapse.models import load_model

    ids = torch.tensor([[3, 17, 250, 9, 44, 0, 12]])
    theirs = GPTNeoForCausalLM.from_pretrained(checkpoint).eval()(ids).logits
    ours = load_model(first_run / "gen_001" / "model").eval()(ids)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    m1, m2 = _metrics(first_run, 1), _metrics(first_run, 2)
    assert m1["train"]["steps"] == 0 and m1["train_tokens"] == 0
    assert "run.first_model" in m1["composition"]["trained_on"]
    assert m1["perplexity"] > 0 and m1["sample"]["stories"] > 0  # evaluated, sampled S_1
    # generation 2 trained on S_1 alone (Replace), from a random init: not the checkpoint
    assert m2["train"]["steps"] > 0
    assert [p["source"] for p in m2["composition"]["parts"]] == ["gen_001"]
    log = (first_run / "run.log").read_text()
    assert "from a random init" in log


def test_the_first_models_held_out_perplexity_is_the_checkpoints(
    first_run: Path, checkpoint: Path
) -> None:
    from lmcollapse.data.prepare import open_prepared
    from lmcollapse.models import load_model

    corpus = open_prepared(first_run / "data")
    model = load_model(checkpoint)
    ppl = model.perplexity(corpus.holdout, context=64, max_stories=10)
    assert _metrics(first_run, 1)["perplexity"] == pytest.approx(ppl.perplexity, rel=1e-6)


def test_downstream_accuracy_per_generation_next_to_its_baseline(first_run: Path) -> None:
    from sklearn.metrics import f1_score  # noqa: F401  (the metric the result names)

    baseline = json.loads((first_run / "downstream_baseline.json").read_text())["tasks"]
    assert [b["task"] for b in baseline] == ["mood"]
    for n in (1, 2):
        (d,) = _metrics(first_run, n)["downstream"]
        assert d["task"] == "mood" and d["num_labels"] == 2
        assert 0 <= d["accuracy"] <= 1 and 0 <= d["f1_weighted"] <= 1
        assert (d["train_examples"], d["test_examples"], d["steps"]) == (48, 24, 6)
        assert d["baseline_accuracy"] == baseline[0]["accuracy"]
    header = (first_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"downstream_mood_accuracy", "downstream_mood_baseline_f1_weighted"} <= set(header)
    assert (first_run / "figures" / "downstream.png").is_file()


def test_downstream_numbers_are_the_protocols_own(first_run: Path) -> None:
    """The protocol re-run on generation 2's checkpoint with the run's seeds gives the recorded
    numbers to the last digit; accuracy is a share of the 24 test examples."""
    from lmcollapse.data.prepare import open_prepared
    from lmcollapse.evaluate import downstream as ds
    from lmcollapse.pipeline import seed_for
    from lmcollapse.rundir import run_config

    cfg = run_config(first_run)
    tok = open_prepared(first_run / "data").tokenizer
    tasks = ds.load_tasks(cfg.evaluation.downstream, tok, seed_for(0, 0, "downstream-examples"))
    model_dir = first_run / "gen_002" / "model"
    (again,) = ds.evaluate_tasks(tasks, model_dir, tok.eos_id, seed=seed_for(0, 2, "downstream"))
    recorded = _metrics(first_run, 2)["downstream"][0]
    assert (again.accuracy, again.f1_weighted) == (recorded["accuracy"], recorded["f1_weighted"])
    assert recorded["accuracy"] * 24 == pytest.approx(round(recorded["accuracy"] * 24))


def test_tensorboard_events_open_in_tensorboards_reader(first_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = first_run / "trackers" / "tensorboard"
    gens = EventAccumulator(str(logs / "generations")).Reload()
    ppl = gens.Scalars("gen/perplexity")
    assert [e.step for e in ppl] == [1, 2]
    assert ppl[1].value == pytest.approx(_metrics(first_run, 2)["perplexity"], rel=1e-6)
    steps = EventAccumulator(str(logs / "steps")).Reload()
    loss = steps.Scalars("train/loss")
    total = sum(_metrics(first_run, n)["train"]["steps"] for n in (1, 2))
    assert [e.step for e in loss] == list(range(1, total + 1))
    assert all(np.isfinite(e.value) and e.value > 0 for e in loss)


# ----------------------------------------------------------------------------------------------
# training.init: with a learning rate of 1e-9 the trained weights are where training started


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _close(a: dict, b: dict) -> bool:
    keys = set(a) & set(b)
    assert len(keys) > 5
    return all(torch.allclose(a[k], b[k], atol=1e-6) for k in keys)


@pytest.mark.parametrize("init", ["scratch", "previous", "pretrained"])
def test_training_init_says_where_weights_start(
    tmp_path: Path, checkpoint: Path, init: str
) -> None:
    out = tmp_path / init
    extra = [f"training.init={init}", "training.learning_rate=1e-9", f"data.tokenizer={checkpoint}"]
    if init == "pretrained":
        extra.append(f"model.pretrained={checkpoint}")
    done = lmc("run", "--quiet", "--preset", "demo", "--out", str(out), *_args(*extra))
    assert done.returncode == 0, done.stderr
    gen1, gen2 = _weights(out / "gen_001" / "model"), _weights(out / "gen_002" / "model")
    ckpt = _weights(checkpoint)
    if init == "pretrained":
        assert _close(gen1, ckpt) and _close(gen2, ckpt)
    elif init == "previous":
        assert _close(gen2, gen1) and not _close(gen1, ckpt)
    else:  # generation 2 is the random init its seed gives, not generation 1's weights
        from lmcollapse.models import build_model
        from lmcollapse.pipeline import seed_for
        from lmcollapse.rundir import run_config
        from lmcollapse.runtime import seed_everything

        cfg = run_config(out)
        seed_everything(seed_for(0, 2, "init"))
        eos = json.loads((checkpoint / "config.json").read_text())["eos_token_id"]
        fresh = build_model(cfg.model, VOCAB, eos)
        fresh_state = {k: v.detach() for k, v in fresh.state_dict().items()}
        assert _close(gen2, fresh_state) and not _close(gen2, gen1)


# ----------------------------------------------------------------------------------------------
# bad input: one line, exit 2, nothing left behind


def _refused(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "run"
    done = lmc("run", "--quiet", "--preset", "demo", "--out", str(out), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("lmcollapse: error: ") and done.stderr.count("\n") == 1
    assert not out.exists()
    return done.stderr


def test_a_first_model_whose_tokenizer_differs_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    err = _refused(
        tmp_path, *_args(f"run.first_model={checkpoint}", "data.tokenizer_vocab_size=500")
    )
    assert "tokenizer differs from data.tokenizer" in err and "600 ids, not 500" in err


def test_a_first_model_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, *_args(f"run.first_model={tmp_path / 'nothing'}"))
    assert "run.first_model" in err and "does not exist" in err


def test_a_task_without_its_label_column_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    task = _task(tmp_path / "task")
    config = tmp_path / "c.yaml"
    spec = {"name": "mood", "source": str(task), "label_column": "stars", "max_length": 16}
    config.write_text(yaml.safe_dump({"extends": "demo", "evaluation": {"downstream": [spec]}}))
    err = _refused(tmp_path, "--config", str(config), *_args(f"data.tokenizer={checkpoint}"))
    assert "no column 'stars'" in err and "set label_column" in err


def test_beam_with_fewer_than_one_beam_and_an_unknown_tracker_are_refused(
    tmp_path: Path,
) -> None:
    err = _refused(
        tmp_path,
        *_args("sampling.strategy=beam", "sampling.num_beams=0", "sampling.prompt=training"),
    )
    assert "sampling.num_beams: must be >= 1, got 0" in err
    err = _refused(tmp_path, *_args("run.trackers=[tensorboard,mlflow]"))
    assert "run.trackers[1]: expected one of 'tensorboard', 'wandb', got 'mlflow'" in err


def test_wandb_runs_offline_without_an_account(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lmcollapse.tracking import wandb_mode

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode() == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert wandb_mode() == "offline"  # an account is not a network: online only when asked
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_beam_search_prompted_by_the_training_set_makes_s_n(tmp_path: Path) -> None:
    """Shumailov et al.'s sampling on the tiny model: every sequence is a 3-beam continuation of
    a 16-token block of the generation's training set, 4..12 new tokens; the report says so."""
    from lmcollapse.data.store import TokenStore

    out = tmp_path / "beam"
    extra = [
        "sampling.strategy=beam", "sampling.num_beams=3", "sampling.repetition_penalty=2.0",
        "sampling.prompt=training", "sampling.prompt_tokens=16", "sampling.length=12",
        "sampling.min_new_tokens=4", "sampling.num_sequences=20", "sampling.batch_size=8",
    ]  # fmt: skip
    done = lmc(
        "run", "--quiet", "--preset", "demo", "--out", str(out), *_args(*extra, generations=1)
    )
    assert done.returncode == 0, done.stderr
    store = TokenStore.open(out / "gen_001" / "corpus")
    lens = np.diff(np.asarray(store.offsets))
    assert store.meta["provenance"]["sampling"]["strategy"] == "beam"
    assert store.num_stories == 20  # one story per prompt: decoding stops at its end-of-text
    assert lens.min() >= 4 + 1 and lens.max() <= 12 + 1  # new tokens, and the end-of-text
    cut = store.unfinished
    assert all(lens[i] == 13 for i in cut)  # only sequences that ran to the cap are unfinished
    html = (out / "report.html").read_text()
    assert "beam search (3 beams, repetition penalty 2" in html
    assert "prompted with 16 tokens of the generation" in html


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    """A tiny random GPT-2 (no family of ours claims it: the hf family runs it) with the runs'
    tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
    torch.manual_seed(11)
    eos = json.loads((checkpoint / "config.json").read_text())["eos_token_id"]
    config = GPT2Config(
        vocab_size=vocab, n_positions=64, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=eos, eos_token_id=eos,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    GPT2LMHeadModel(config).save_pretrained(out)
    for f in checkpoint.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, out / f.name)
    return out


def test_the_shumailov_preset_in_miniature_fine_tunes_through_the_hf_family(
    tmp_path: Path, tiny_gpt2: Path
) -> None:
    """shumailov-opt125m with a tiny GPT-2 for OPT-125m and the built-in stories for wikitext-2:
    every generation fine-tunes the pretrained weights (transformers' model, the hf family) and
    makes S_n by 3-beam search prompted with 16-token blocks, exactly 8 new tokens each; quietly
    (no library progress bars on stderr)."""
    from lmcollapse.data.store import TokenStore

    out = tmp_path / "shumailov"
    sets = [
        "data.source=builtin", "data.subset=null", "data.num_stories=120",
        f"data.tokenizer={tiny_gpt2}", f"model.pretrained={tiny_gpt2}",
        "evaluation.source=holdout", "evaluation.max_stories=10", "evaluation.stats_tokens=2000",
        "training.batch_size=8", "training.micro_batch_size=8", "training.context_length=16",
        "training.epochs=1", "sampling.prompt_tokens=16", "sampling.length=8",
        "sampling.min_new_tokens=8", "sampling.num_beams=3", "sampling.num_sequences=48",
        "sampling.batch_size=16", "run.generations=2",
    ]  # fmt: skip
    args = [x for s in sets for x in ("--set", s)]
    done = lmc("run", "--quiet", "--preset", "shumailov-opt125m", "--out", str(out), *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for n in (1, 2):
        store = TokenStore.open(out / f"gen_{n:03d}" / "corpus")
        assert store.num_stories == 48
        assert set(np.diff(np.asarray(store.offsets)).tolist()) == {9}  # 8 new + separator
        assert len(store.unfinished) == 48  # min = max new tokens: each one cut at the cap
        meta = json.loads((out / f"gen_{n:03d}" / "model" / "config.json").read_text())
        assert meta["model_type"] == "gpt2"
        assert _metrics(out, n)["train"]["steps"] > 0
    assert "tiny-gpt2's weights" in (out / "run.log").read_text()


def test_a_padded_vocabulary_spans_the_run(tmp_path: Path, padded: Path) -> None:
    """A first model with more embedding rows than its tokenizer has ids: S_1, D0's reference
    and generation 2's model all span its 608 rows."""
    from lmcollapse.data.store import TokenStore

    out = tmp_path / "padded"
    done = lmc(
        "run", "--quiet", "--preset", "demo", "--out", str(out),
        *_args(f"run.first_model={padded}", f"data.tokenizer={padded}"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert TokenStore.open(out / "gen_001" / "corpus").vocab_size == VOCAB + 8
    meta = json.loads((out / "gen_002" / "model" / "config.json").read_text())
    assert meta["vocab_size"] == VOCAB + 8
    assert np.load(out / "gen_000" / "probes.npz")["counts_0"].shape == (VOCAB + 8,)


def test_a_tokenizer_of_the_same_size_with_other_ids_is_refused(
    tmp_path: Path, checkpoint: Path
) -> None:
    """A BPE of the same 600 ids trained on other stories (data.seed 5): the ids differ."""
    err = _refused(
        tmp_path,
        *_args(
            f"run.first_model={checkpoint}", f"data.tokenizer_vocab_size={VOCAB}", "data.seed=5"
        ),
    )
    assert "tokenizer differs from data.tokenizer" in err and "encodes to" in err


def test_the_classifier_pools_the_last_real_token(tmp_path: Path, checkpoint: Path) -> None:
    """A task decided by the last word (happy/glad vs sad/cross), batches padded with
    end-of-text: pooled at the last real token (pad = eos), a classifier learns it exactly;
    pooled at a padding position it could not."""
    from lmcollapse.config.downstream import DownstreamTask
    from lmcollapse.data.tokenizer import Tok
    from lmcollapse.evaluate.downstream import evaluate_tasks, load_tasks

    folder = tmp_path / "task"
    folder.mkdir()
    rng = np.random.default_rng(5)
    names = ["Tom", "Lily and her big brother Ben", "Sue", "the old dog in the park"]
    for split, n in (("train", 96), ("validation", 40)):
        rows = []
        for _ in range(n):
            mood, label = [("happy", 1), ("sad", 0), ("glad", 1), ("cross", 0)][rng.integers(4)]
            rows.append({"sentence": f"{names[rng.integers(4)]} was {mood}", "label": label})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = DownstreamTask(
        name="last", source=str(folder), learning_rate=3e-3, epochs=3, batch_size=8
    )
    tok = Tok(checkpoint)
    tasks = load_tasks((task,), tok, seed=0)
    lens = {len(x) for x in tasks[0].train_ids}
    assert len(lens) > 2  # examples of several lengths: batches are padded
    (result,) = evaluate_tasks(tasks, checkpoint, tok.eos_id, seed=1)
    assert result.accuracy == 1.0 and result.f1_weighted == 1.0
    assert result.steps == 36  # 3 epochs of 96 / 8


def test_pair_truncation_is_the_tokenizers_longest_first() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lmcollapse.evaluate.downstream import truncated_lengths

    t = Tokenizer(models.WordLevel({"a": 0, "b": 1, "c": 2}, unk_token="a"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    for n1 in range(1, 9):
        for n2 in range(1, 9):
            for m in range(1, 12):
                t.enable_truncation(max_length=m, strategy="longest_first")
                ids = t.encode(" ".join("b" * n1), " ".join("c" * n2)).ids
                assert truncated_lengths(n1, n2, m) == (ids.count(1), ids.count(2)), (n1, n2, m)


def test_trackers_continue_a_resumed_run_on_one_axis(tmp_path: Path, first_run: Path) -> None:
    """first_run (2 generations) continued to 3: TensorBoard has generations 1-3 and every
    optimizer step once, numbered on from where the first invocation stopped."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    shutil.copytree(first_run, run)
    config = tmp_path / "config.yaml"
    shutil.copy(first_run.parent / "config.yaml", config)
    task = first_run.parent / "task"
    done = lmc(
        "run", "--quiet", "--config", str(config), "--out", str(run),
        *_args(f"run.first_model={checkpoint_of(first_run)}",
               f"data.tokenizer={checkpoint_of(first_run)}", generations=3),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert task.is_dir()
    logs = run / "trackers" / "tensorboard"
    gens = EventAccumulator(str(logs / "generations")).Reload().Scalars("gen/perplexity")
    assert [e.step for e in gens] == [1, 2, 3]
    loss = EventAccumulator(str(logs / "steps")).Reload().Scalars("train/loss")
    total = sum(_metrics(run, n)["train"]["steps"] for n in (1, 2, 3))
    assert [e.step for e in loss] == list(range(1, total + 1))


def checkpoint_of(run: Path) -> str:
    """The run.first_model a run was made with."""
    return yaml.safe_load((run / "config.yaml").read_text())["run"]["first_model"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["training.init=pretrained"], "training.init: pretrained needs model.pretrained"),
        (["model.pretrained=x"], "model.pretrained: no generation starts from it"),
        (
            ["model.family=hf", "model.pretrained=x", "training.init=previous",
             "run.first_model=y"],
            "model.pretrained: unused",
        ),
        (["model.family=hf", "run.first_model=y"], "model.hf_config: a generation starts from"),
        (["sampling.min_new_tokens=5"], "sampling.min_new_tokens: the paper's pure sampling"),
        (["sampling.repetition_penalty=3"], "sampling.repetition_penalty: the paper's pure"),
        (
            ["sampling.strategy=greedy", "sampling.prompt=training", "sampling.top_k=40",
             "sampling.length=32"],
            "sampling.strategy: greedy takes no temperature, top_k or top_p",
        ),
        (
            ["sampling.strategy=beam", "sampling.prompt=training", "curation.name=filter",
             "sampling.length=32"],
            "curation.name: filter samples more pools",
        ),
        (
            ["sampling.prompt=training", "sampling.mode=stream", "sampling.length=32"],
            "sampling.mode: prompted or greedy/beam generation stops",
        ),
        (["model.family=ngram", "training.init=previous"], "training.init: previous is for"),
    ],
)  # fmt: skip
def test_combinations_that_cannot_work_are_refused_by_the_config(
    sets: list[str], message: str
) -> None:
    from lmcollapse.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        resolve(ExperimentConfig, preset="demo", overrides=sets)
    assert message in str(err.value)


def test_a_task_whose_label_is_a_text_column_or_too_long_is_refused() -> None:
    from lmcollapse.errors import ConfigError

    task = {"name": "t", "source": "x", "text_columns": ["a", "label"], "max_length": 999}
    with pytest.raises(ConfigError) as err:
        resolve(ExperimentConfig, preset="demo", overrides={"evaluation": {"downstream": [task]}})
    text = str(err.value)
    assert "label_column: 'label' is also a text column" in text
    assert "evaluation.downstream[0].max_length: 999 exceeds" in text
