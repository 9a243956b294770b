"""Generating a corpus from a model (Algorithm 1): pure sampling, every parameter explicit.

Each sequence starts from the end-of-text token with no prompt and draws L tokens from the
model's distribution at temperature 1 with no top-k and no top-p truncation (those are options,
off unless asked for; nothing comes from a library's defaults). The draws are the model's own
(`LanguageModel.sample`: models.torch_lm for the torch families — a key/value cache within the
context, Algorithm 1's queue past it, exact two-level draws — and the n-gram's vectorised
mixture draws); this module checks the arguments, cuts sequences into stories and writes the
corpus.

Modes: `stream` — a sequence runs on across end-of-text for L tokens, and is cut into stories at
its end-of-text tokens when stored; `story` — each sequence stops at its first end-of-text (or
after L tokens). A story that did not end by itself (the last one of a stream sequence, a story
at the length cap) is stored with an end-of-text as its separator and marked unfinished in the
token store: that end-of-text is the model's context boundary, never a training target, so no
generation learns that stories stop where the sampler cut them (README: Fidelity).

Batch b draws from a generator seeded by (seed, b), so a corpus is the same whatever the
batch-to-process assignment; under `accelerate launch` process r generates batches r, r + W, ...
into its own shard, and process 0 joins the shards in batch order.
"""

from __future__ import annotations

import itertools
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmcollapse.data.store import TokenStore, TokenStoreWriter
from lmcollapse.errors import InvalidInput
from lmcollapse.models.base import PAPER_SAMPLING, LanguageModel, SamplingParams
from lmcollapse.results import SampleResult

__all__ = [
    "Decoding",
    "SamplingParams",
    "TrainingPrompts",
    "generate_corpus",
    "sample_batch",
    "sampling_context",
    "stories_of",
]


@dataclass(frozen=True)
class Decoding:
    """Prompted or deterministic generation (sampling.strategy / sampling.prompt): what
    `lmcollapse.decoding.decode` is called with for each batch. `prompts(start, count)` gives
    the prompts of sequences start..start+count−1 (None: the end-of-text token alone)."""

    strategy: str = "ancestral"
    num_beams: int = 1
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    early_stopping: bool = False
    min_new_tokens: int = 0
    prompts: Any = None

    @classmethod
    def of(cls, sampling: Any, prompts: Any = None) -> Decoding | None:
        """The Decoding of a SamplingConfig; None for the paper's pure sampling from the start
        token (models' own samplers, Algorithm 1)."""
        if sampling.strategy == "ancestral" and sampling.prompt == "none":
            return None
        return cls(
            sampling.strategy,
            sampling.num_beams if sampling.strategy == "beam" else 1,
            sampling.repetition_penalty,
            sampling.length_penalty,
            sampling.early_stopping,
            sampling.min_new_tokens,
            prompts,
        )

    def record(self) -> dict[str, Any]:
        """What the corpus's provenance says of it."""
        out = {k: getattr(self, k) for k in ("strategy", "num_beams", "repetition_penalty")}
        out |= {"length_penalty": self.length_penalty, "early_stopping": self.early_stopping}
        return out | {"min_new_tokens": self.min_new_tokens, "prompted": self.prompts is not None}


class TrainingPrompts:
    """Prompts from a training set (sampling.prompt training): the inputs of its stories packed
    into blocks of `tokens`, in a seeded order, cycled when S_n needs more sequences than there
    are blocks — Shumailov et al. prompt with every block of the training data."""

    def __init__(self, data: Any, tokens: int, seed: int) -> None:
        self.blocks = data.blocks(tokens, seed=seed)
        if len(self.blocks) == 0:
            raise InvalidInput(
                f"the training set makes no prompt of {tokens} tokens: lower sampling.prompt_tokens"
            )

    def __call__(self, start: int, count: int) -> list[np.ndarray]:
        n = len(self.blocks)
        return [np.asarray(self.blocks[(start + i) % n][0]) for i in range(count)]


def sample_batch(
    model: LanguageModel,
    batch: int,
    length: int,
    *,
    eos_id: int,
    context: int,
    generator: torch.Generator,
    params: SamplingParams = PAPER_SAMPLING,
    stop_at_eos: bool = False,
) -> list[np.ndarray]:
    """`batch` sequences of up to `length` generated tokens each (the start token excluded):
    the arguments checked once here, the draws made by the model's own sampler."""
    if length < 1:
        raise InvalidInput(f"sampling length must be >= 1, got {length}")
    if batch < 1:
        raise InvalidInput(f"sampling batch must be >= 1, got {batch}")
    if context < 1:
        raise InvalidInput(f"sampling context must be >= 1 token, got {context}")
    positions, vocab = model.shape.max_positions, model.shape.vocab_size
    if context > positions:
        raise InvalidInput(f"sampling context {context} exceeds the model's {positions} positions")
    if not 0 <= eos_id < vocab:
        raise InvalidInput(
            f"end-of-text id {eos_id} is outside the model's vocabulary [0, {vocab})"
        )
    params.check()
    return model.sample(
        batch,
        length,
        eos_id=eos_id,
        context=context,
        generator=generator,
        params=params,
        stop_at_eos=stop_at_eos,
    )


def corpus_target(cfg: Any, scale: float, d0: Any) -> dict[str, int]:
    """How much S_n holds (generate_corpus's one target): sampling.num_sequences times the
    paradigm's scale, or — with num_sequences null — scale·|D0| in paradigm.unit (k·|D0| under
    the accumulating paradigms, |D0| otherwise). InvalidInput for a target no run can reach."""
    s, unit = cfg.sampling, cfg.paradigm.unit
    if s.num_sequences is not None:
        key, amount = "num_sequences", scale * s.num_sequences
    else:
        key, amount = f"min_{unit}", scale * (d0.num_tokens if unit == "tokens" else d0.num_stories)
    if not math.isfinite(amount) or amount > 2**53:
        what = key.removeprefix("min_").replace("_", " ")
        fix = "sampling.num_sequences" if scale == 1 else "paradigm.k"
        raise InvalidInput(
            f"every generation would need {amount:.3g} {what} of generated data (more than a run "
            f"can count): use a smaller {fix}"
        )
    return {key: max(1, math.ceil(amount))}


def sampling_context(cfg: Any, model: LanguageModel) -> int:
    """How many tokens the model sees when sampling: Algorithm 1's queue of
    training.context_length tokens, or (sampling.slide false) the whole sequence."""
    if cfg.sampling.slide:
        return min(cfg.training.context_length, model.shape.max_positions)
    return min(cfg.sampling.length + 1, model.shape.max_positions)


def stories_of(seqs: list[np.ndarray], eos_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every sequence of a batch cut into stories at once:
    (concatenated stories, their lengths, whether each ended by itself). A sequence that ran
    out of length before its end-of-text gives an unfinished last story, closed with an
    end-of-text separator that the model did not write."""
    parts, done = [], []
    for q in seqs:
        if len(q) == 0:
            continue
        parts.append(q)
        ends = int(np.count_nonzero(q == eos_id))
        done.append(np.ones(ends, dtype=bool))
        if q[-1] != eos_id:
            parts.append(np.array([eos_id], dtype=q.dtype))
            done.append(np.zeros(1, dtype=bool))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=bool)
    flat = np.concatenate(parts)
    ends = np.flatnonzero(flat == eos_id)
    lens = np.diff(np.concatenate([[-1], ends])).astype(np.int64)
    return flat, lens, np.concatenate(done)


def generate_corpus(
    model: LanguageModel,
    out: str | Path,
    *,
    length: int,
    batch_size: int,
    context: int,
    eos_id: int,
    vocab_size: int,
    seed: int,
    num_sequences: int | None = None,
    min_stories: int | None = None,
    min_tokens: int | None = None,
    mode: str = "stream",
    params: SamplingParams = PAPER_SAMPLING,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
    decoding: Decoding | None = None,
) -> SampleResult:
    """Generate a corpus into a token store at `out` (one stored unit per story).

    decoding: greedy or beam search, or prompted generation (lmcollapse.decoding); None: the
    model's own sampler from the start token (the paper).

    One target: `num_sequences` sequences; or — with `min_stories` — whole batches until the
    corpus holds at least that many stories (every sequence gives at least one, so this ends);
    or — with `min_tokens` — batches until it holds that many stored tokens, cut after the story
    that reaches it (so the corpus overshoots by less than one story). The corpus is the same
    whatever the number of processes: batch b is seeded by (seed, b), and with a story or token
    target the cut is made in batch order.
    """
    from lmcollapse.runtime import num_processes, process_index, progress_bar

    _check_target(num_sequences, min_stories, min_tokens, batch_size, mode)
    if model.shape.vocab_size > vocab_size:
        raise InvalidInput(
            f"the model can emit {model.shape.vocab_size} ids but the corpus vocabulary is "
            f"{vocab_size}: give the model's vocabulary"
        )
    rank, world = process_index(), num_processes()
    target = Path(out) if world == 1 else Path(f"{out}.shard{rank}")
    goal = _Goal.of(min_stories, min_tokens)
    sampling = {"mode": mode, "length": length, "seed": seed}
    sampling |= {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}
    sampling |= {"context": context, "batch_size": batch_size, "num_sequences": num_sequences}
    sampling |= {"min_stories": min_stories, "min_tokens": min_tokens}
    if decoding is not None:
        sampling |= decoding.record()
    batches = _Batches(model, params, eos_id, sampling, decoding)
    t0 = time.perf_counter()
    total = num_sequences if num_sequences is not None else None
    bar = progress_bar(total, "sample", "seq" if total else "story", progress and rank == 0)
    with TokenStoreWriter(
        target,
        vocab_size=vocab_size,
        eos_id=eos_id,
        provenance={**(provenance or {}), "sampling": sampling},
        overwrite=True,
    ) as w:
        last = _write_batches(w, batches, rank, world, goal, bar)
    bar.close()
    if world > 1:
        _join_shards(Path(out), world, model.device, last, goal)
    kept = TokenStore.open(out).meta["provenance"]["batch_counts"].values()  # after the join
    counts = [sum(c[i] for c in kept) for i in range(4)]
    return SampleResult(counts[0], counts[2], counts[1], counts[3], time.perf_counter() - t0)


class _Batches:
    """Batch b of a corpus: its sequences, drawn from a generator seeded by (seed, b)."""

    def __init__(
        self,
        model: LanguageModel,
        params: SamplingParams,
        eos_id: int,
        sampling: dict[str, Any],
        decoding: Decoding | None = None,
    ) -> None:
        self.model, self.params, self.eos_id, self.s = model, params, eos_id, sampling
        self.decoding = decoding

    def rows(self, b: int) -> list[np.ndarray]:
        s, size = self.s, self.s["batch_size"]
        rows = size if s["num_sequences"] is None else min(size, s["num_sequences"] - b * size)
        if rows <= 0:
            return []
        g = torch.Generator(device=self.model.device).manual_seed(_batch_seed(s["seed"], b))
        if self.decoding is not None:
            return self._decode(b * size, rows, g)
        return sample_batch(
            self.model,
            rows,
            s["length"],
            eos_id=self.eos_id,
            context=s["context"],
            generator=g,
            params=self.params,
            stop_at_eos=s["mode"] == "story",
        )

    def _decode(self, start: int, rows: int, g: torch.Generator) -> list[np.ndarray]:
        """Sequences start..start+rows−1 by lmcollapse.decoding (prompted, greedy or beam)."""
        from lmcollapse.decoding import decode

        d = self.decoding
        assert d is not None
        prompts = (
            d.prompts(start, rows)
            if d.prompts is not None
            else [np.array([self.eos_id], dtype=np.int64)] * rows
        )
        return decode(
            self.model,  # type: ignore[arg-type]
            prompts,
            strategy=d.strategy,  # type: ignore[arg-type]
            max_new_tokens=self.s["length"],
            eos_id=self.eos_id,
            min_new_tokens=d.min_new_tokens,
            num_beams=d.num_beams,
            repetition_penalty=d.repetition_penalty,
            length_penalty=d.length_penalty,
            early_stopping=d.early_stopping,
            params=self.params,
            generator=g,
            batch_size=rows,
        )


def _write_batches(
    w: TokenStoreWriter, batches: _Batches, rank: int, world: int, goal: _Goal | None, bar: Any
) -> int | None:
    """This process's batches r, r + W, ... into its store until the target is reached; with a
    story or token target, returns the last batch of the corpus (in batch order)."""
    n_seq, size, eos = batches.s["num_sequences"], batches.s["batch_size"], batches.eos_id
    # batch -> [sequences, stories, generated tokens, unfinished stories] (what the store keeps)
    per_batch: dict[str, list[int]] = {}
    last = None
    have = 0  # one process: stored units so far (a token target trims the batch that reaches it)
    for round_ in itertools.count():
        b = round_ * world + rank
        seqs = batches.rows(b)
        if seqs:
            flat, lens, done = stories_of(seqs, eos)
            if world == 1 and goal is not None:
                flat, lens, done = goal.trim(flat, lens, done, have)
                have += goal.units(lens)
            w.add_flat(flat, lens, done)
            per_batch[str(b)] = _batch_counts(len(seqs), lens, done)
            bar.update(len(seqs) if n_seq is not None else int(lens.size))
        if n_seq is not None:
            if (round_ + 1) * world * size >= n_seq:
                break
            continue
        last = _target_reached(per_batch, round_, world, goal)
        if last is not None:
            break
    w.provenance["batch_counts"] = per_batch
    return last


def _check_target(
    num_sequences: int | None,
    min_stories: int | None,
    min_tokens: int | None,
    batch_size: int,
    mode: str,
) -> None:
    if sum(x is not None for x in (num_sequences, min_stories, min_tokens)) != 1:
        raise InvalidInput("give exactly one of num_sequences, min_stories and min_tokens")
    if (
        (num_sequences is not None and num_sequences < 1)
        or batch_size < 1
        or (min_stories or 1) < 1
        or (min_tokens or 1) < 1
    ):
        raise InvalidInput("num_sequences, min_stories, min_tokens and batch_size must be >= 1")
    if mode not in ("stream", "story"):
        raise InvalidInput(f"sampling mode must be stream or story, got {mode!r}")


def _batch_counts(rows: int, lens: np.ndarray, done: np.ndarray) -> list[int]:
    """[sequences, stories, generated tokens, unfinished stories] of a stored batch (a separator
    after an unfinished story is stored but was not generated)."""
    cut = int((~done).sum())
    return [rows, int(lens.size), int(lens.sum()) - cut, cut]


@dataclass(frozen=True)
class _Goal:
    """A story or token target for a generated corpus (`tokens`: stored tokens, separators
    included, as a training set counts them)."""

    unit: str
    amount: int

    @classmethod
    def of(cls, min_stories: int | None, min_tokens: int | None) -> _Goal | None:
        if min_stories is not None:
            return cls("stories", min_stories)
        return cls("tokens", min_tokens) if min_tokens is not None else None

    def units(self, lens: np.ndarray) -> int:
        return int(lens.size) if self.unit == "stories" else int(lens.sum())

    def batch_units(self, counts: list[int]) -> int:
        """The units of a batch from its counts (stored tokens = generated + separators)."""
        return counts[1] if self.unit == "stories" else counts[2] + counts[3]

    def trim(
        self, flat: np.ndarray, lens: np.ndarray, done: np.ndarray, have: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A token target keeps a batch's stories up to the one that reaches it; a story target
        keeps whole batches."""
        if self.unit == "stories" or have + int(lens.sum()) <= self.amount:
            return flat, lens, done
        keep = int(np.searchsorted(have + np.cumsum(lens), self.amount)) + 1
        return flat[: int(lens[:keep].sum())], lens[:keep], done[:keep]


def _target_reached(
    per_batch: dict[str, list[int]], round_: int, world: int, goal: _Goal | None
) -> int | None:
    """With a story or token target: the batch (in batch order) where the corpus reaches it."""
    from lmcollapse.runtime import all_gather_object

    assert goal is not None
    counts = {int(b): goal.batch_units(c) for b, c in per_batch.items()}
    if world > 1:
        merged: dict[int, int] = {}
        for part in all_gather_object(counts):
            merged.update(part)
        counts = merged
    cumulative = 0
    for b in range((round_ + 1) * world):
        cumulative += counts.get(b, 0)
        if cumulative >= goal.amount:
            return b
    return None


def _batch_seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch, 0x5A3]).generate_state(1)[0])


def _join_shards(
    out: Path, world: int, device: torch.device, last: int | None, goal: _Goal | None
) -> None:
    """Process 0 writes the shards' stories into `out` in batch order (up to batch `last` when a
    story or token target cut the corpus there; a token target trims that batch); the others
    wait."""
    from lmcollapse.runtime import distributed_state

    state = distributed_state(device)
    state.wait_for_everyone()
    if state.is_main_process:
        shards = [TokenStore.open(f"{out}.shard{r}") for r in range(world)]
        counts = {
            int(b): c for sh in shards for b, c in sh.meta["provenance"]["batch_counts"].items()
        }
        batches = [b for b in sorted(counts) if last is None or b <= last]
        meta = shards[0].meta
        kept: dict[str, list[int]] = {}
        with TokenStoreWriter(
            out,
            vocab_size=meta["vocab_size"],
            eos_id=meta["eos_id"],
            provenance={**meta["provenance"], "shards": world},
            overwrite=True,
        ) as w:
            cursors = [0] * world
            have = 0
            for b in batches:
                r = b % world  # a shard holds its batches in order: read on from its cursor
                n_stories = counts[b][1]
                parts = list(shards[r].gather_marked(np.arange(cursors[r], cursors[r] + n_stories)))
                cursors[r] += n_stories
                flat = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
                lens = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
                done = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, bool)
                if goal is not None:
                    flat, lens, done = goal.trim(flat, lens, done, have)
                    have += goal.units(lens)
                w.add_flat(flat, lens, done)
                kept[str(b)] = _batch_counts(counts[b][0], lens, done)
            w.provenance["batch_counts"] = kept
        for r in range(world):
            shutil.rmtree(f"{out}.shard{r}", ignore_errors=True)
    state.wait_for_everyone()
