"""curation.detector (issue 13): a Hugging Face sequence classifier as resample's detector. The
classifier is made here — a 1-layer BERT with a word-level tokenizer unlike the run's BPE, and
only 24 positions, so stories are re-encoded and truncated — and its confidence is recomputed
story by story, by hand, to check what the stage drew."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import NGRAM, lmc
from lmcollapse.curation.hf_detector import machine_label
from lmcollapse.data.store import TokenStore
from lmcollapse.errors import InvalidInput

POSITIONS = 24


def _classifier(out: Path, texts: list[str], id2label: dict[int, str]) -> Path:
    """A tiny BERT sequence classifier and its word-level tokenizer, saved to `out`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=POSITIONS,
    )
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=POSITIONS,
        initializer_range=0.5,  # weights large enough that stories get different confidences
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    BertForSequenceClassification(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def _p_machine_by_hand(path: Path, texts: list[str], machine: int) -> np.ndarray:
    """P(machine-made) of each text alone: its words' ids (the tokenizer's own split: generated
    text holds control characters that Python's split() would take for spaces), the last
    POSITIONS − 2 kept (the story's end: left truncation), between [CLS] and [SEP]; no batch,
    no padding."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"][-(POSITIONS - 2) :]
        ids = [tok.cls_token_id, *ids, tok.sep_token_id]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        out.append(float(torch.softmax(logits, 0)[machine]))
    return np.array(out)


def _stories(store: TokenStore, tok: object) -> list[str]:
    from lmcollapse.data.tokenizer import decode_story

    return [decode_story(tok, store.story(i)) for i in range(store.num_stories)]


def test_the_machine_label_is_named_found_or_refused() -> None:
    assert machine_label({0: "human", 1: "machine"}, None, "d") == 1
    assert machine_label({"0": "Fake", "1": "Real"}, None, "d") == 0  # OpenAI's RoBERTa detector
    assert machine_label({0: "Human", 1: "ChatGPT"}, None, "d") == 1
    assert machine_label({0: "ai-generated", 1: "human-written"}, None, "d") == 0
    assert machine_label({0: "LABEL_0", 1: "LABEL_1"}, None, "d") == 1  # Drayson et al.: class 1
    assert machine_label({0: "pos", 1: "neg"}, "POS", "d") == 0
    with pytest.raises(InvalidInput, match="cannot tell which of its labels"):
        machine_label({0: "positive", 1: "negative"}, None, "d")
    with pytest.raises(InvalidInput, match=r"detector_label 'bot' is not a label of d \(a, b\)"):
        machine_label({0: "a", 1: "b"}, "bot", "d")
    with pytest.raises(InvalidInput, match="1 label"):
        machine_label({0: "machine"}, None, "d")
    for unclear in ({0: "human", 1: "not ai"}, {0: "LABEL_1", 1: "LABEL_0"}, {0: "a", 1: "b"}):
        with pytest.raises(InvalidInput, match="cannot tell which"):  # never a silent inversion
            machine_label(unclear, None, "d")


def test_a_default_labelled_classifier_is_read_as_transformers_completes_it(
    tmp_path: Path,
) -> None:
    """save_pretrained leaves the default LABEL_0/LABEL_1 out of config.json: still class 1."""
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.curation.hf_detector import HFDetector, check_detector

    clf = _classifier(tmp_path / "clf", ["a b c"], {0: "LABEL_0", 1: "LABEL_1"})
    cfg = resolve(
        ExperimentConfig,
        preset="ngram-demo",
        overrides=["curation.name=resample", f"curation.detector={clf}"],
    )
    check_detector(cfg)
    det = HFDetector.load(str(clf), None)
    assert (det.machine, det.label, det.guessed) == (1, "LABEL_1", True)
    named = HFDetector.load(str(clf), "LABEL_0")
    assert (named.machine, named.guessed) == (0, False)
    (clf / "model.safetensors").unlink()
    with pytest.raises(InvalidInput, match="holds no weights"):
        check_detector(cfg)


def test_a_guessed_label_that_ranks_d0_as_machine_made_is_refused_as_inverted() -> None:
    from types import SimpleNamespace

    from lmcollapse.curation.hf_detector import HFDetector, hf_log_weights

    class Backwards(HFDetector):
        def log_human(self, store, indices, tok):  # D0 looks machine-made, the pool human
            p_machine = 0.9 if store.name == "d0" else 0.1
            return np.full(len(indices), math.log1p(-p_machine)) + 1e-3 * np.arange(len(indices))

    real = SimpleNamespace(name="d0", num_stories=50)
    pool = SimpleNamespace(name="pool", num_stories=60)
    guessed = Backwards(None, None, 1, 24, "LABEL_1", guessed=True)
    with pytest.raises(
        InvalidInput, match=r"AUC 0\.00\): it looks inverted; set curation.detector_label"
    ):
        hf_log_weights(guessed, real, pool, None, max_stories=100, seed=0)
    named = Backwards(None, None, 1, 24, "LABEL_1", guessed=False)  # the user said so: kept
    _, auc = hf_log_weights(named, real, pool, None, max_stories=100, seed=0)
    assert auc == 0.0


def test_a_classifier_detector_weighs_s_n_by_its_confidence(
    tmp_path: Path, ngram_run: Path
) -> None:
    """Generation 1's S_1 is exactly the weighted draw from its pool by the classifier's
    confidence in each decoded, re-encoded, left-truncated story, recomputed one by one."""
    from lmcollapse.curation.resample import weighted_draw
    from lmcollapse.data.tokenizer import load_tokenizer
    from lmcollapse.pipeline import seed_for
    from test_curation_stage import _pool

    base = [*NGRAM, "--set", "run.generations=1", "--set", "curation.name=resample"]
    tok = load_tokenizer(ngram_run / "data" / "tokenizer")  # the same D0 and tokenizer
    d0 = TokenStore.open(ngram_run / "data" / "d0")
    clf = _classifier(tmp_path / "clf", _stories(d0, tok), {0: "human", 1: "machine"})

    out = tmp_path / "r"
    done = lmc("run", "--quiet", "--out", str(out), *base, "--set", f"curation.detector={clf}")
    assert done.returncode == 0, done.stderr
    rec = json.loads((out / "gen_001" / "metrics.json").read_text())["curation"]
    assert rec["score"] == "detector-confidence" and 0 <= rec["detector_auc"] <= 1
    assert rec["detector_label"] == "machine"

    _, pool = _pool(out, 1.5, tmp_path / "pool")
    texts = _stories(pool, tok)
    assert max(len(t.split()) for t in texts) > POSITIONS  # truncation matters
    conf = _p_machine_by_hand(clf, texts, machine=1)
    assert conf.std() > 0.05  # the weights differ
    assert math.isclose(rec["pool_score_mean"], conf.mean(), rel_tol=1e-6)
    drawn = weighted_draw(
        10.0 * np.log1p(-conf),
        pool.lengths(),
        d0.num_tokens,
        3,
        [seed_for(0, 1, "curation"), 1],
    )
    s1 = TokenStore.open(out / "gen_001" / "corpus")
    assert s1.num_stories == drawn.size
    assert all(np.array_equal(s1.story(i), pool.story(j)) for i, j in enumerate(drawn))
    assert math.isclose(rec["kept_score_mean"], conf[drawn].mean(), rel_tol=1e-6)


def test_a_detector_that_is_not_a_classifier_is_refused_before_training(tmp_path: Path) -> None:
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    )
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{")
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    (unnamed / "config.json").write_text(
        json.dumps(
            {
                "model_type": "bert",
                "architectures": ["BertForSequenceClassification"],
                "id2label": {"0": "positive", "1": "negative"},
            }
        )
    )
    base = [*NGRAM, "--set", "curation.name=resample"]
    for path, message in (
        (lm, "is a GPT2LMHeadModel, not a sequence classifier"),
        (unnamed, "cannot tell which of its labels (positive, negative)"),
        (damaged, "is not a model directory (its config.json does not load"),
        (tmp_path / "missing", "is not a model directory (nor a hub model"),
    ):
        out = tmp_path / f"run-{path.name}"
        done = lmc("run", "--quiet", "--out", str(out), *base, "--set", f"curation.detector={path}")
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert not out.exists()  # refused before anything is written, let alone trained
