"""A Hugging Face sequence classifier as resample's detector (curation.detector: PATH | hub name),
in place of the built-in one trained each generation.

Drayson et al. (EMNLP 2025; their utils/detector.py) score each text with a fine-tuned
classifier: its own tokenizer, truncated from the left (a story's end is kept), padded per batch,
conf = softmax(logits)[machine label] — class 1 in their code. Here the stories are decoded with
the run's tokenizer and re-encoded with the classifier's; which label means machine-made is
curation.detector_label, or read from the classifier's id2label (a label naming machine, AI,
generated, fake, ... text and no negation or human/real; of the two unnamed labels
LABEL_0/LABEL_1, class 1 as theirs). A guessed label whose AUC on D0 against the pool is below
INVERTED_AUC is refused as inverted; metrics.json records the label used.
log(1 − conf) is computed from the logits as logsumexp(other labels) − logsumexp(all), exact
where conf rounds to 1, so a weight (1 − conf)^γ never underflows to a spurious 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lmcollapse.errors import InvalidInput

MACHINE_WORDS = frozenset(
    {"machine", "generated", "fake", "ai", "synthetic", "artificial", "chatgpt", "gpt", "llm"}
)
NOT_MACHINE_WORDS = frozenset({"not", "non", "no", "human", "real", "original", "authentic"})
INVERTED_AUC = 0.4  # a guessed machine label this far below chance is the other way round
MAX_LENGTH = 512  # classifier tokens per story at most (fewer where its positions end sooner)
BATCH = 32  # stories per forward pass (sorted by length: little padding)


def machine_label(id2label: dict[Any, Any], name: str | None, spec: str) -> int:
    """The index of the classifier's machine-made label: the one named `name`, else the one
    whose name says so (and nothing against it: "not AI" is human), else class 1 of exactly the
    unnamed labels LABEL_0, LABEL_1 (Drayson et al.'s convention)."""
    labels = {int(k): str(v) for k, v in id2label.items()}
    shown = ", ".join(labels[i] for i in sorted(labels))
    if len(labels) < 2:
        raise InvalidInput(
            f"curation.detector {spec} has {len(labels)} label(s) ({shown}): give a classifier "
            "of machine-made against human text"
        )
    if name is not None:
        hits = [i for i, lab in labels.items() if lab.lower() == name.lower()]
        if not hits:
            raise InvalidInput(
                f"curation.detector_label {name!r} is not a label of {spec} ({shown}): give one "
                "of its labels"
            )
        return hits[0]
    words = {i: set(re.split(r"[^a-z0-9]+", lab.lower())) for i, lab in labels.items()}
    hits = [i for i, w in words.items() if MACHINE_WORDS & w and not NOT_MACHINE_WORDS & w]
    if len(hits) == 1:
        return hits[0]
    if {i: lab.lower() for i, lab in labels.items()} == {0: "label_0", 1: "label_1"}:
        return 1
    raise InvalidInput(
        f"curation.detector {spec}: cannot tell which of its labels ({shown}) means "
        "machine-made: set curation.detector_label"
    )


WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # or their sharded indexes (.index.json)


def detector_config(spec: str) -> dict[str, Any]:
    """The classifier's config, read without its weights (a directory or the hub), as
    transformers completes it (a saved config leaves out the default LABEL_0/LABEL_1)."""
    from transformers import AutoConfig

    if Path(spec).is_dir() and not (Path(spec) / "config.json").is_file():
        raise InvalidInput(
            f"curation.detector {spec} has no config.json: give a Hugging Face sequence "
            "classifier's directory or hub name"
        )
    try:
        return AutoConfig.from_pretrained(spec).to_dict()
    except Exception as exc:  # OSError, ValueError, a damaged JSON, a missing dependency
        where = "its config.json does not load" if Path(spec).is_dir() else "nor a hub model"
        raise InvalidInput(
            f"curation.detector {spec!r} is not a model directory ({where}: "
            f"{exc.__class__.__name__}): give a sequence classifier's directory or hub name"
        ) from None


def _tokenizer(spec: str) -> Any:
    """The classifier's tokenizer, padding with eos where it has no pad token (as the authors
    do for GPT-style ones)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec)
    except Exception as exc:  # OSError, ValueError, a missing dependency such as sentencepiece
        raise InvalidInput(
            f"curation.detector {spec!r}: its tokenizer does not load ({exc.__class__.__name__}"
            "): save the tokenizer next to the classifier"
        ) from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise InvalidInput(
                f"curation.detector {spec}: its tokenizer has neither a pad nor an eos token to "
                "pad batches with: give a tokenizer with a pad_token"
            )
        tok.pad_token = tok.eos_token
    return tok


def check_detector(cfg: Any) -> None:
    """A resample detector given by path or hub name must be a sequence classifier whose
    machine-made label can be told: refused before any generation trains."""
    c = cfg.curation
    if c.name != "resample" or c.detector is None:
        return
    meta = detector_config(c.detector)
    arch = meta.get("architectures") or []
    if arch and not any(str(a).endswith("ForSequenceClassification") for a in arch):
        raise InvalidInput(
            f"curation.detector {c.detector} is a {', '.join(arch)}, not a sequence classifier: "
            "give an AutoModelForSequenceClassification checkpoint"
        )
    machine_label(meta.get("id2label") or {}, c.detector_label, c.detector)
    if Path(c.detector).is_dir():
        names = [w for w in WEIGHTS for w in (w, w + ".index.json")]
        if not any((Path(c.detector) / w).is_file() for w in names):
            raise InvalidInput(
                f"curation.detector {c.detector} holds no weights ({' or '.join(WEIGHTS)}): "
                "save the classifier with save_pretrained"
            )
    _tokenizer(c.detector)


@dataclass
class HFDetector:
    """A loaded classifier: log P(human-made) of stories, through its own tokenizer."""

    model: Any
    tokenizer: Any
    machine: int  # the machine-made label's index
    max_length: int
    label: str = ""  # the machine-made label's name
    guessed: bool = False  # unnamed labels LABEL_0/LABEL_1, class 1 taken for machine-made

    @classmethod
    def load(cls, spec: str, label: str | None, device: Any = None) -> HFDetector:
        from transformers import AutoModelForSequenceClassification

        tok = _tokenizer(spec)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(spec)
        except Exception as exc:  # OSError, ValueError, a missing dependency
            raise InvalidInput(
                f"curation.detector {spec!r} does not load as a sequence classifier "
                f"({exc.__class__.__name__}): give a directory holding one, or a hub name"
            ) from None
        model = model.float()  # whatever the checkpoint's dtype: γ = 10 amplifies logit rounding
        model.config.pad_token_id = tok.pad_token_id
        tok.truncation_side = "left"
        tok.padding_side = "right"
        limits = [MAX_LENGTH, getattr(tok, "model_max_length", MAX_LENGTH)]
        for key in ("max_position_embeddings", "n_positions"):
            if isinstance(getattr(model.config, key, None), int):
                limits.append(getattr(model.config, key))
        machine = machine_label(model.config.id2label, label, spec)
        model.eval()
        if device is not None:
            model.to(device)
        labels = {int(k): str(v).lower() for k, v in model.config.id2label.items()}
        guessed = label is None and labels == {0: "label_0", 1: "label_1"}
        name = str(model.config.id2label[machine])
        return cls(model, tok, machine, int(min(limits)), name, guessed)

    def log_human_texts(self, texts: list[str]) -> NDArray[np.float64]:
        """log(1 − P(machine-made)) of each text, batched by length."""
        import torch

        enc = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, add_special_tokens=True
        )["input_ids"]
        enc = [ids or [self.tokenizer.pad_token_id] for ids in enc]  # an empty story: one pad
        order = np.argsort([len(ids) for ids in enc], kind="stable")
        out = np.empty(len(texts))
        device = next(self.model.parameters()).device
        for lo in range(0, len(order), BATCH):
            rows = order[lo : lo + BATCH]
            batch = self.tokenizer.pad({"input_ids": [enc[i] for i in rows]}, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(**{k: v.to(device) for k, v in batch.items()}).logits
            z = logits.double().cpu()
            others = torch.cat([z[:, : self.machine], z[:, self.machine + 1 :]], dim=1)
            out[rows] = (torch.logsumexp(others, 1) - torch.logsumexp(z, 1)).numpy()
        return out

    def log_human(self, store: Any, indices: NDArray[np.int64], tok: Any) -> NDArray[np.float64]:
        """log(1 − P(machine-made)) of the given stories of a token store, decoded by the run's
        tokenizer `tok`; streamed in batches."""
        from lmcollapse.data.tokenizer import decode_story

        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty(idx.size)
        step = 1024
        for lo in range(0, idx.size, step):
            texts = []
            for toks, lens in store.gather(idx[lo : lo + step], batch=step):
                for story in np.split(np.asarray(toks), np.cumsum(lens)[:-1]):
                    texts.append(decode_story(tok, story))
            out[lo : lo + len(texts)] = self.log_human_texts(texts)
        return out


def hf_log_weights(
    detector: HFDetector, real: Any, pool: Any, tok: Any, *, max_stories: int, seed: int
) -> tuple[NDArray[np.float64], float]:
    """log P(human-made) of every pooled story by the classifier, and its AUC on m random D0
    stories (real) against m random pooled ones (machine-made), m = max_stories // 5 at most —
    the held-out size of the built-in detector — so the two detectors' AUCs compare."""
    from sklearn.metrics import roc_auc_score

    log_human = detector.log_human(pool, np.arange(pool.num_stories), tok)
    m = min(max(max_stories // 5, 2), real.num_stories, pool.num_stories)
    rng = np.random.default_rng([seed, 3])
    real_idx = np.sort(rng.choice(real.num_stories, m, replace=False))
    pool_idx = rng.choice(pool.num_stories, m, replace=False)
    conf = -np.expm1(np.concatenate([detector.log_human(real, real_idx, tok), log_human[pool_idx]]))
    auc = float(roc_auc_score(np.repeat([0, 1], m), conf))
    if detector.guessed and auc < INVERTED_AUC:
        raise InvalidInput(
            f"curation.detector: its label {detector.label!r}, taken for machine-made, ranks D0's "
            f"stories above the generated ones (AUC {auc:.2f}): it looks inverted; set "
            "curation.detector_label to the classifier's machine-made label"
        )
    return log_human, auc


__all__ = ["HFDetector", "check_detector", "hf_log_weights", "machine_label"]
