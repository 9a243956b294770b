"""Downstream classification (evaluation.downstream): does a generation's model still make a
useful starting point? The authors' protocol (wanglc02/generated-data, run_experiment.py).

    tasks = load_tasks(cfg.evaluation.downstream, tok, seed)   # read and encoded once per run
    results = evaluate_tasks(tasks, "RUN/gen_003/model", eos_id, seed=..., device=...)
    baseline = evaluate_tasks(tasks, "RUN/gen_001/model", eos_id, seed=..., random_init=True)

Each task's classifier is AutoModelForSequenceClassification from the generation's checkpoint
(a new linear head; pad = eos, so the last real token's state is pooled), fine-tuned on the
task's training split with the Hugging Face Trainer's defaults that the authors rely on (AdamW,
betas (0.9, 0.999), eps 1e-8, no weight decay, the learning rate decayed linearly to 0, gradient
norm clipped at 1, batches shuffled by seed) and tested on its test split: accuracy and
weighted F1 (scikit-learn). The baseline is a randomly initialised model of the same config,
fine-tuned the same way (the earlier version of the paper: collapsed models do no better).

Texts are encoded with the run's tokenizer, a pair one text after the other (as GPT-2's
tokenizer joins a pair), truncated to max_length (the longer text first). Batches are padded to
their longest example, right-padded with an attention mask: the same numbers as padding to
max_length, in less time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmcollapse.config.downstream import DownstreamTask
from lmcollapse.errors import InvalidInput, first_line
from lmcollapse.models.hf import quiet_transformers
from lmcollapse.results import DownstreamResult

SPLIT_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class EncodedTask:
    """A task's examples as token ids and integer labels, per split."""

    task: DownstreamTask
    train_ids: list[np.ndarray]
    train_labels: np.ndarray
    test_ids: list[np.ndarray]
    test_labels: np.ndarray
    num_labels: int
    label_names: list[str] | None = None  # string labels, in the order of their ids


def _split_file(folder: Path, split: str) -> Path:
    found = [folder / f"{split}{s}" for s in SPLIT_SUFFIXES if (folder / f"{split}{s}").is_file()]
    if not found:
        raise InvalidInput(
            f"{folder} has no file for split {split!r}: name it {split}.jsonl, .json, .csv or "
            ".parquet"
        )
    return found[0]


def _load_split(task: Any, split: str, where: str) -> Any:
    """One split as a datasets.Dataset (a local folder's file, or the hub)."""
    from datasets import load_dataset

    folder = Path(task.source).expanduser()
    try:
        if folder.is_dir():
            path = _split_file(folder, split)
            return load_dataset(SPLIT_SUFFIXES[path.suffix], data_files=str(path), split="train")
        if task.source.startswith((".", "/", "~")):
            raise InvalidInput(f"{where}: source {task.source} does not exist: check the path")
        return load_dataset(task.source, task.subset, split=split)
    except InvalidInput:
        raise
    except Exception as exc:  # offline, unknown name or split, unreadable file
        raise InvalidInput(
            f"{where}: cannot load split {split!r} of {task.source}"
            f"{' (' + task.subset + ')' if task.subset else ''}: {first_line(exc)}"
        ) from None


def _columns(ds: Any, task: Any, split: str, where: str) -> tuple[list[list[str]], list[Any]]:
    for role, names in (("text_columns", task.text_columns), ("label_column", [task.label_column])):
        missing = [c for c in names if c not in ds.column_names]
        if missing:
            raise InvalidInput(
                f"{where}: split {split!r} has no column {missing[0]!r} (columns: "
                f"{', '.join(ds.column_names)}): set {role}"
            )
    texts = [[("" if t is None else str(t)) for t in ds[c]] for c in task.text_columns]
    return texts, list(ds[task.label_column])


def _sample(n: int, cap: int | None, seed: int) -> np.ndarray:
    """Which examples are used: all, or `cap` of them by a seeded shuffle (in that order)."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.random.default_rng(seed).permutation(n)[:cap]


def truncated_lengths(n1: int, n2: int, max_length: int) -> tuple[int, int]:
    """How many tokens of a pair's texts are kept: the tokenizers library's longest_first (the
    shorter text keeps up to half of max_length, the longer the rest)."""
    if n1 + n2 <= max_length:
        return n1, n2
    short = min(min(n1, n2), max_length // 2)
    long = max_length - short
    return (long, short) if n1 > n2 else (short, long)


def encode_pair(tok: Any, texts: list[str], max_length: int) -> np.ndarray:
    """One example's ids (int32): its text, or a pair one text after the other, truncated to
    max_length (a pair by longest_first); an empty text keeps one end-of-text to pool."""
    parts = [tok.encode(t) for t in texts]
    if len(parts) == 2:
        k1, k2 = truncated_lengths(len(parts[0]), len(parts[1]), max_length)
        ids = parts[0][:k1] + parts[1][:k2]
    else:
        ids = parts[0][:max_length]
    return np.asarray(ids or [tok.eos_id], dtype=np.int32)


def read_tasks(tasks: tuple[DownstreamTask, ...], seed: int) -> list[dict[str, Any]]:
    """Every task's examples (texts and labels per split) read and checked, InvalidInput naming
    the task and the fix: what a run does before its data preparation."""
    from lmcollapse.data.sources import quiet_datasets

    out = []
    for i, task in enumerate(tasks):
        where = f"evaluation.downstream[{i}] ({task.name})"
        splits: dict[str, Any] = {"task": task, "where": where}
        for role, split in (("train", task.train_split), ("test", task.test_split)):
            with quiet_datasets():
                ds = _load_split(task, split, where)
            cap = task.max_examples
            if role == "test" and task.max_test_examples is not None:
                cap = task.max_test_examples
            keep = _sample(len(ds), cap, seed + (role == "test"))
            splits[role] = _columns(ds.select(keep), task, split, where)
        out.append(splits)
    return out


def encode_tasks(read: list[dict[str, Any]], tok: Any) -> list[EncodedTask]:
    """Read tasks encoded with the run's tokenizer (labels checked)."""
    return [_encode(r["task"], r, tok, r["where"]) for r in read]


def load_tasks(tasks: tuple[Any, ...], tok: Any, seed: int) -> list[EncodedTask]:
    """Every task read, checked and encoded."""
    return encode_tasks(read_tasks(tasks, seed), tok)


def _encode(task: Any, splits: dict[str, Any], tok: Any, where: str) -> EncodedTask:
    (train_texts, train_raw), (test_texts, test_raw) = splits["train"], splits["test"]
    if not train_raw or not test_raw:
        raise InvalidInput(f"{where}: a split has no examples")
    names = None
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in train_raw):
        train_labels = np.asarray(train_raw, dtype=np.int64)
        bad = [v for v in test_raw if not isinstance(v, (int, np.integer))]
        if bad:
            raise InvalidInput(f"{where}: test label {bad[0]!r} is not an integer like train's")
        test_labels = np.asarray(test_raw, dtype=np.int64)
    else:
        names = sorted({str(v) for v in train_raw})
        index = {n: j for j, n in enumerate(names)}
        unknown = sorted({str(v) for v in test_raw} - set(index))
        if unknown:
            raise InvalidInput(
                f"{where}: test label {unknown[0]!r} never occurs in the training split"
            )
        train_labels = np.asarray([index[str(v)] for v in train_raw], dtype=np.int64)
        test_labels = np.asarray([index[str(v)] for v in test_raw], dtype=np.int64)
    k = task.num_labels or int(max(train_labels.max(), test_labels.max())) + 1
    low, high = (
        min(train_labels.min(), test_labels.min()),
        max(train_labels.max(), test_labels.max()),
    )
    if low < 0 or high >= k or k < 2:
        raise InvalidInput(
            f"{where}: labels must be 0..num_labels−1 with num_labels >= 2, got {low}..{high} "
            f"with num_labels {k}: set num_labels, or give labels from 0"
        )
    enc = [
        [encode_pair(tok, list(row), task.max_length) for row in zip(*texts, strict=True)]
        for texts in (train_texts, test_texts)
    ]
    return EncodedTask(task, enc[0], train_labels, enc[1], test_labels, k, names)


def classifier(model_dir: str | Path, num_labels: int, eos_id: int, random_init: bool) -> Any:
    """AutoModelForSequenceClassification from a causal LM's checkpoint (or, random_init, a
    fresh one of its config; seed torch first), pad = eos, in float32."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    with quiet_transformers():
        config = AutoConfig.from_pretrained(str(model_dir), num_labels=num_labels)
        config.pad_token_id = eos_id
        try:
            if random_init:
                model = AutoModelForSequenceClassification.from_config(config)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(model_dir), config=config
                )
        except ValueError as exc:  # an architecture with no sequence-classification head
            raise InvalidInput(
                f"evaluation.downstream: {config.model_type} has no sequence-classification "
                f"model in transformers ({first_line(exc)})"
            ) from None
    return model.float()


def _batches(ids: list[np.ndarray], order: np.ndarray, size: int, pad: int, device: Any) -> Any:
    import torch

    for s in range(0, len(order), size):
        rows = [ids[i] for i in order[s : s + size]]
        width = max(len(r) for r in rows)
        x = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            x[r, : len(row)] = torch.from_numpy(row.astype(np.int64))
            mask[r, : len(row)] = 1
        yield order[s : s + size], x.to(device), mask.to(device)


def finetune(model: Any, data: EncodedTask, seed: int, device: Any, eos_id: int) -> int:
    """Fine-tune in place on the training split; returns the optimizer steps taken."""
    import torch

    task = data.task
    n = len(data.train_ids)
    per_epoch = math.ceil(n / task.batch_size)
    total = max(1, math.ceil(task.epochs * per_epoch))  # the Trainer's max_steps for epochs < 1
    model.to(device).train()
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=task.learning_rate,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=task.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    labels = torch.from_numpy(data.train_labels)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)  # dropout
    steps = 0
    while steps < total:
        for rows, x, mask in _batches(
            data.train_ids, rng.permutation(n), task.batch_size, eos_id, device
        ):
            out = model(input_ids=x, attention_mask=mask, labels=labels[rows].to(device))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            steps += 1
            if steps >= total:
                break
    return steps


def predict(model: Any, data: EncodedTask, device: Any, eos_id: int) -> np.ndarray:
    """Predicted classes of the test split (argmax of the logits)."""
    import torch

    order = np.argsort([len(r) for r in data.test_ids], kind="stable")  # similar widths
    pred = np.zeros(len(order), dtype=np.int64)
    model.eval()
    with torch.no_grad():
        for rows, x, mask in _batches(data.test_ids, order, 32, eos_id, device):
            pred[rows] = model(input_ids=x, attention_mask=mask).logits.argmax(-1).cpu().numpy()
    return pred


def evaluate_tasks(
    tasks: list[EncodedTask],
    model_dir: str | Path,
    eos_id: int,
    *,
    seed: int,
    device: Any = "cpu",
    random_init: bool = False,
) -> list[DownstreamResult]:
    """Every task fine-tuned from the checkpoint (or its random-init twin) and tested."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    out = []
    for i, data in enumerate(tasks):
        t0 = time.perf_counter()
        task_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        torch.manual_seed(task_seed)  # the new head's init (and a random-init model's)
        model = classifier(model_dir, data.num_labels, eos_id, random_init)
        steps = finetune(model, data, task_seed, device, eos_id)
        pred = predict(model, data, device, eos_id)
        truth = data.test_labels
        out.append(
            DownstreamResult(
                task=data.task.name,
                accuracy=float(accuracy_score(truth, pred)),
                f1_weighted=float(f1_score(truth, pred, average="weighted", zero_division=0)),
                num_labels=data.num_labels,
                train_examples=len(data.train_ids),
                test_examples=len(data.test_ids),
                steps=steps,
                seconds=time.perf_counter() - t0,
            )
        )
        del model
    return out
