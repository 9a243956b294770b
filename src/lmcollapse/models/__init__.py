"""Model families behind one small interface, and the named GPT-Neo sizes.

Every model the engine trains has: `shape.vocab_size` and `shape.max_positions`;
`forward(input_ids, targets=None, cache=None)` (logits, or the mean next-token loss given
targets); `token_logprobs(input_ids, targets, mask)`; `new_cache(batch, capacity)`;
`save_pretrained(dir)` writing a Hugging Face checkpoint. `build_model` makes a fresh one for a
generation, `load_model` reads one back. The `ngram` family (models.ngram) is not a torch module:
it trains by counting (`fit`), scores with `perplexity` and `distribution`, samples with
`sample_sequences`, and saves its counts with `save_pretrained`; the pipeline, probes and
evaluation dispatch on `family == "ngram"`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmcollapse.config import ModelConfig
from lmcollapse.errors import InvalidInput
from lmcollapse.models.gpt_neo import GPTNeo, describe, hf_config

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


def build_model(cfg: ModelConfig, vocab_size: int, eos_id: int) -> Any:
    """A freshly initialised model for a tokenizer of `vocab_size` ids (seed torch first)."""
    from lmcollapse.config import validate

    validate(cfg)  # a ModelConfig made in code gets the same checks as one from YAML
    size = cfg.vocab_size or vocab_size
    if not 0 <= eos_id < size:
        raise InvalidInput(f"end-of-text id {eos_id} is outside the vocabulary [0, {size})")
    if size < vocab_size:
        raise InvalidInput(
            f"model.vocab_size={cfg.vocab_size} does not fit the tokenizer's {vocab_size} ids: "
            "set model.vocab_size to at least that, or null to follow the tokenizer"
        )
    if cfg.family == "ngram":
        from lmcollapse.models.ngram import NGramModel

        return NGramModel(size, eos_id, cfg.order, cfg.delta, cfg.smoothing)
    if cfg.family == "hf":
        from lmcollapse.models.hf import HFCausalLM

        if not cfg.hf_config:
            raise InvalidInput("model.family=hf needs model.hf_config (a config name or path)")
        return HFCausalLM.from_config(cfg.hf_config, size, eos_id)
    return GPTNeo(
        hf_config(
            vocab_size=size,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            max_positions=cfg.max_position_embeddings,
            window_size=cfg.window_size,
            attention_pattern=tuple(cfg.attention_pattern),
            eos_id=eos_id,
        )
    )


def load_model(path: str | Path) -> Any:
    """A saved model directory: GPT-Neo checkpoints in the fast implementation, others generic."""
    import json

    p = Path(path)
    config = p / "config.json"
    if not config.is_file():
        raise InvalidInput(f"{p} has no config.json: it is not a Hugging Face model directory")
    meta = json.loads(config.read_text(encoding="utf-8"))
    if meta.get("model_type") == "lmcollapse-ngram":
        from lmcollapse.models.ngram import NGramModel

        return NGramModel.from_pretrained(p)
    if (
        meta.get("model_type") == "gpt_neo"
        and meta.get("activation_function", "gelu_new") == "gelu_new"
    ):
        return GPTNeo.from_pretrained(p)
    from lmcollapse.models.hf import HFCausalLM

    return HFCausalLM.from_pretrained(p)


__all__ = ["PRESETS", "GPTNeo", "build_model", "describe", "load_model", "model_config"]
