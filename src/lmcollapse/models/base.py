"""The one model interface, and the families that make models: what the rest of the package may
assume of any language model, so that nothing outside models/ asks which family it has.

A `LanguageModel` (a protocol: GPT-Neo, any Hugging Face causal LM, the exact n-gram) has a
shape, batched next-token distributions, a sampler, a held-out perplexity and a save. A `Family`
checks a ModelConfig, builds a fresh model, fits it for one generation (a `FitJob` says what
on) and loads a saved one. Families register themselves by name (`model.family`) and by the
`model_type` their saved config.json carries; a new family is one module and one
`register(...)` call (tests/test_families.py shows one in about 60 lines).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from lmcollapse.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import torch

    from lmcollapse.config import ExperimentConfig, ModelConfig
    from lmcollapse.data.packing import TrainingSet
    from lmcollapse.data.store import TokenStore
    from lmcollapse.paradigms import Paradigm
    from lmcollapse.results import PerplexityResult, TrainResult


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is drawn: every parameter explicit (the paper: 1.0, 0, 1.0)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    @classmethod
    def of(cls, sampling: Any) -> SamplingParams:
        """The draw parameters of a SamplingConfig (config.sampling)."""
        return cls(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)

    @property
    def faithful(self) -> bool:
        """Temperature 1 with no truncation: the model's own distribution."""
        return (self.temperature, self.top_k, self.top_p) == (1.0, 0, 1.0)

    def check(self) -> None:
        """Raise InvalidInput for values that define no distribution."""
        if not self.temperature > 0:
            raise InvalidInput(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise InvalidInput(f"top_k must be >= 0 (0 = no truncation), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InvalidInput(f"top_p must be in (0, 1] (1 = no truncation), got {self.top_p}")


PAPER_SAMPLING = SamplingParams()  # pure sampling: temperature 1, no top-k, no top-p


@dataclass
class TokenScores:
    """What one teacher-forced pass says of every token of a batch of stories (in the order
    given): log p̂(x_i | x_<i), each story read from the end-of-text start token, and the
    `top_k` most likely tokens at every position (ids and probabilities, best first; the n-gram
    breaks ties by id, the torch families as torch.topk does), which curation (ToEdit) draws
    replacements from."""

    logp: np.ndarray  # (T,) float64
    top_ids: np.ndarray  # (T, k) int64
    top_probs: np.ndarray  # (T, k) float64


class Shape(Protocol):
    """What the engine needs to know of any model's architecture."""

    vocab_size: int
    max_positions: int


@runtime_checkable
class LanguageModel(Protocol):
    """A next-token model, whatever its family."""

    family: str
    shape: Shape

    @property
    def device(self) -> torch.device:
        """Where the model computes (its sampler's random generator lives there too)."""
        ...

    def next_token_distributions(self, contexts: Sequence[Sequence[int]]) -> np.ndarray:
        """p̂(·|x) for each context x, float64, (len(contexts), V): every entry > 0."""
        ...

    def sample(
        self,
        batch: int,
        length: int,
        *,
        eos_id: int,
        context: int,
        generator: torch.Generator,
        params: SamplingParams,
        stop_at_eos: bool,
    ) -> list[np.ndarray]:
        """`batch` sequences of up to `length` tokens after the end-of-text start token (the
        arguments are checked by `lmcollapse.sample.sample_batch`, which calls this)."""
        ...

    def perplexity(
        self,
        store: TokenStore,
        *,
        context: int,
        stride: int | None = None,
        max_stories: int | None = None,
        first_token: bool = True,
    ) -> PerplexityResult:
        """Held-out perplexity of a token store's stories (Appendix C.3)."""
        ...

    def score_tokens(
        self, tokens: np.ndarray, lens: np.ndarray, *, eos_id: int, context: int, top_k: int = 0
    ) -> TokenScores:
        """One teacher-forced pass over stories given as concatenated tokens and lengths: every
        token's log-probability given at most `context` earlier tokens of its story (and the
        start token), and its position's top_k candidates (curation's one extra pass)."""
        ...

    def save(self, path: str | Path) -> Path:
        """Write the model as a Hugging Face style directory (config.json + weights/counts)."""
        ...

    def describe(self) -> str:
        """One line on what the model is, for the run log."""
        ...


@dataclass
class FitJob:
    """What one generation's model is fitted on, and where that generation keeps its files."""

    cfg: ExperimentConfig
    generation: int
    data: TrainingSet  # the drawn training set (data.paradigms.compose)
    d0: TokenStore
    paradigm: Paradigm  # what the training set is made of (the expected counts need it)
    seed: int
    holdout: TokenStore | None = None  # early stopping's held-out set (None: none this time)
    epochs: int | None = None  # the epoch count an earlier generation's early stopping chose
    generation_dir: Callable[[int], Path] | None = None  # gen_NNN/ of any generation
    progress: bool = False
    on_step: Callable[[int, float], None] | None = None  # (optimizer step, its loss): trackers


class Family(ABC):
    """How models of one kind are checked, built, fitted and loaded."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]] = ()  # config.json model_type values it loads
    fallback: ClassVar[bool] = False  # loads what no other family claims

    def check(self, cfg: ModelConfig, vocab_size: int) -> list[str]:
        """Problems of this config for a tokenizer of `vocab_size` ids, before anything runs."""
        return []

    @abstractmethod
    def build(self, cfg: ModelConfig, vocab_size: int, eos_id: int) -> LanguageModel:
        """A freshly initialised model (seed torch first)."""

    @abstractmethod
    def fit(self, model: LanguageModel, job: FitJob) -> TrainResult:
        """Train `model` in place for generation `job.generation`."""

    @abstractmethod
    def load(self, path: Path) -> LanguageModel:
        """A model saved by `LanguageModel.save`."""

    def claims(self, meta: dict[str, Any]) -> bool:
        """Whether a saved config.json is one of this family's models."""
        return meta.get("model_type") in self.model_types


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make a family available by name (model.family, which config validation then accepts)
    and by its saved model_type."""
    from lmcollapse.config.experiment import MODEL_FAMILIES

    FAMILIES[family.name] = family
    MODEL_FAMILIES.add(family.name)
    return family


def family_of(name: str) -> Family:
    """The registered family called `name`."""
    if name not in FAMILIES:
        raise InvalidInput(
            f"unknown model family {name!r}: choose one of {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[name]


def family_for(meta: dict[str, Any]) -> Family:
    """The family that loads a saved model's config.json: the one whose model_type it names,
    else the fallback (any Hugging Face causal LM)."""
    for family in FAMILIES.values():
        if not family.fallback and family.claims(meta):
            return family
    for family in FAMILIES.values():
        if family.fallback:
            return family
    raise InvalidInput(f"no model family loads model_type {meta.get('model_type')!r}")
