"""Model families behind one interface (models.base), and the named GPT-Neo sizes.

Three families are registered: `gpt-neo` (the paper's architecture in the fast engine,
models.gpt_neo), `hf` (any Hugging Face causal LM through transformers, models.hf; it also loads
any saved model no other family claims) and `ngram` (exact n-gram models trained by counting,
models.ngram and models.ngram_family). `build_model` makes a fresh model for a generation,
`load_model` reads a saved one back, `check_model` says before a run what cannot work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmcollapse.config import ModelConfig
from lmcollapse.errors import InvalidInput
from lmcollapse.models.base import FAMILIES, Family, LanguageModel, family_for, family_of, register
from lmcollapse.models.gpt_neo import GPTNeo, GPTNeoFamily, describe
from lmcollapse.models.hf import HFFamily
from lmcollapse.models.ngram_family import NGramFamily

register(GPTNeoFamily())
register(NGramFamily())
register(HFFamily())

# Appendix C.2 (TinyStories-1M / -33M as published) and CPU-sized models for laptops.
PRESETS: dict[str, dict[str, Any]] = {
    "paper-1m": {
        "num_layers": 8,
        "hidden_size": 64,
        "num_heads": 16,
        "max_position_embeddings": 2048,
        "window_size": 256,
        "attention_pattern": ("global", "local"),
    },
    "paper-33m": {
        "num_layers": 4,
        "hidden_size": 768,
        "num_heads": 16,
        "max_position_embeddings": 2048,
        "window_size": 256,
        "attention_pattern": ("global", "local"),
    },
    "tiny": {
        "num_layers": 2,
        "hidden_size": 64,
        "num_heads": 4,
        "max_position_embeddings": 256,
        "window_size": 64,
        "attention_pattern": ("global", "local"),
    },
    "small": {
        "num_layers": 4,
        "hidden_size": 128,
        "num_heads": 4,
        "max_position_embeddings": 512,
        "window_size": 128,
        "attention_pattern": ("global", "local"),
    },
}


def model_config(preset: str) -> ModelConfig:
    """The ModelConfig of a named size."""
    if preset not in PRESETS:
        raise InvalidInput(f"unknown model preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return ModelConfig(**PRESETS[preset])


def _size(cfg: ModelConfig, vocab_size: int, eos_id: int) -> tuple[int, list[str]]:
    """The model's vocabulary (model.vocab_size or the tokenizer's) and what cannot work."""
    size = cfg.vocab_size or vocab_size
    problems = []
    if not 0 <= eos_id < size:
        problems.append(f"end-of-text id {eos_id} is outside the vocabulary [0, {size})")
    if size < vocab_size:
        problems.append(
            f"model.vocab_size={cfg.vocab_size} does not fit the tokenizer's {vocab_size} ids: "
            "set model.vocab_size to at least that, or null to follow the tokenizer"
        )
    return size, problems


def check_model(cfg: ModelConfig, vocab_size: int, eos_id: int) -> None:
    """Raise InvalidInput if a model of this config cannot be built for the tokenizer (its
    family's own limits included), before a run records anything."""
    from lmcollapse.config import validate

    validate(cfg)
    size, problems = _size(cfg, vocab_size, eos_id)
    problems += family_of(cfg.family).check(cfg, size)
    if problems:
        raise InvalidInput("; ".join(problems))


def build_model(cfg: ModelConfig, vocab_size: int, eos_id: int) -> LanguageModel:
    """A freshly initialised model for a tokenizer of `vocab_size` ids (seed torch first)."""
    from lmcollapse.config import validate

    validate(cfg)  # a ModelConfig made in code gets the same checks as one from YAML
    size, problems = _size(cfg, vocab_size, eos_id)
    if problems:
        raise InvalidInput(problems[0])
    return family_of(cfg.family).build(cfg, size, eos_id)


def load_model(path: str | Path) -> LanguageModel:
    """A saved model directory, loaded by the family its config.json names."""
    import json

    p = Path(path)
    config = p / "config.json"
    if not config.is_file():
        raise InvalidInput(f"{p} has no config.json: it is not a Hugging Face model directory")
    meta = json.loads(config.read_text(encoding="utf-8"))
    return family_for(meta).load(p)


__all__ = [
    "FAMILIES",
    "PRESETS",
    "Family",
    "GPTNeo",
    "LanguageModel",
    "build_model",
    "check_model",
    "describe",
    "family_for",
    "family_of",
    "load_model",
    "model_config",
    "register",
]
