"""A downstream classification task (evaluation.downstream): what every generation's model is
fine-tuned and tested on, with the authors' settings as defaults (wanglc02/generated-data,
scripts/run_experiment.py: max length 128, batch 8, 1 epoch, learning rate 2e-5, pad = eos)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DownstreamTask:
    """One classification task: its data, columns and fine-tuning settings."""

    name: str = ""
    """Short name, used in metrics.csv columns (downstream_<name>_accuracy) and the report."""
    source: str = ""
    """A hub dataset (e.g. nyu-mll/glue with subset sst2, stanfordnlp/imdb) or a local folder
    holding one file per split, named after it (train.jsonl, validation.csv, test.parquet, ...)."""
    subset: str | None = None
    """The hub dataset's configuration (glue's cola, sst2, qqp, mrpc, qnli, rte); null: none."""
    text_columns: tuple[str, ...] = ("sentence",)
    """One column, or two for a sentence pair (encoded one after the other, as GPT-2's tokenizer
    joins a pair): sst2/cola `sentence`; mrpc/rte `sentence1, sentence2`; qqp `question1,
    question2`; qnli `question, sentence`; imdb/yelp `text`."""
    label_column: str = "label"
    """Integer class labels 0..num_labels−1."""
    train_split: str = "train"
    """Split the classifier is fine-tuned on."""
    test_split: str = "validation"
    """Split it is tested on (GLUE's test labels are hidden: the authors test on validation)."""
    num_labels: int | None = None
    """Classes (null: the largest label in the training split + 1)."""
    max_length: int = 128
    """Tokens per example; longer ones are truncated (a pair: the longer text first)."""
    epochs: float = 1.0
    """Passes over the training split (the authors: 1; 0.1 for the large QQP and Yelp)."""
    learning_rate: float = 2e-5
    """AdamW learning rate, decayed linearly to 0 (the Trainer's default schedule)."""
    batch_size: int = 8
    """Training examples per step."""
    weight_decay: float = 0.0
    """AdamW weight decay (the authors parse 0.01 but never pass it on: 0)."""
    max_examples: int | None = None
    """At most this many examples of each split, drawn by a seeded shuffle (null: all)."""
    max_test_examples: int | None = None
    """At most this many test examples (null: max_examples; the authors test IMDB on 5,000)."""

    def check(self) -> list[str]:
        """Problems the types cannot catch, each naming its field."""
        out = []
        if not self.name.strip() or not self.name.replace("-", "_").isidentifier():
            out.append(
                f"name: {self.name!r} must be a short name of letters, digits, - and _ "
                "(it names metrics columns)"
            )
        if not self.source.strip():
            out.append("source: give a hub dataset name or a folder of split files")
        if not 1 <= len(self.text_columns) <= 2:
            out.append(
                f"text_columns: one column or a pair, got {len(self.text_columns)} "
                f"({', '.join(self.text_columns) or 'none'})"
            )
        if not self.label_column.strip():
            out.append("label_column: must not be empty")
        elif self.label_column in self.text_columns:
            out.append(f"label_column: {self.label_column!r} is also a text column")
        if self.num_labels is not None and self.num_labels < 2:
            out.append(f"num_labels: must be >= 2, got {self.num_labels}")
        for name, value in (("max_length", self.max_length), ("batch_size", self.batch_size)):
            if value < 1:
                out.append(f"{name}: must be >= 1, got {value}")
        for name, cap in (
            ("max_examples", self.max_examples),
            ("max_test_examples", self.max_test_examples),
        ):
            if cap is not None and cap < 1:
                out.append(f"{name}: must be >= 1, got {cap}")
        for name, value in (("epochs", self.epochs), ("learning_rate", self.learning_rate)):
            if not (math.isfinite(value) and value > 0):
                out.append(f"{name}: must be > 0, got {value!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            out.append(f"weight_decay: must be >= 0, got {self.weight_decay!r}")
        if self.train_split == self.test_split:
            out.append(f"test_split: {self.test_split!r} is also the train_split")
        return out
