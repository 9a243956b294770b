"""The generic fallback: any Hugging Face causal-LM config, through transformers, slower.

`HFCausalLM` gives a transformers model the engine's interface (models.torch_lm: `shape`,
`forward(input_ids, targets=None, cache=None)`, `token_logprobs`, `save_pretrained`). It has no
key/value cache here (`new_cache` returns None), so sampling recomputes the window at every step:
exact, generic, and as slow as that sounds. Use the GPT-Neo family for speed. The `hf` family
also loads every saved model that no other family claims.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lmcollapse.artifacts import atomic_dir
from lmcollapse.errors import InvalidInput, first_line
from lmcollapse.models.torch_lm import TorchFamily, TorchLM


@dataclass(frozen=True)
class HFShape:
    """What the engine needs to know of any causal LM."""

    vocab_size: int
    max_positions: int


def causal_lm_config(name_or_path: str) -> Any:
    """The transformers config of a causal LM (a config name, hub name or path), or InvalidInput
    naming model.hf_config: what a sequence classifier's or an encoder's config would be."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except Exception as exc:
        raise InvalidInput(
            f"model.hf_config {name_or_path!r} does not load: {first_line(exc)} (give a config "
            "name such as gpt2, or a directory with a config.json)"
        ) from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise InvalidInput(
            f"model.hf_config {name_or_path!r} is a {config.model_type} config, which has no "
            "causal-LM model in transformers: give a causal LM's config (gpt2, gpt_neo, llama, ...)"
        )
    return config


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers warnings or "Loading weights" bars on stderr for the duration (a new
    classification head's "newly initialized" warning is the point of it)."""
    from transformers.utils import logging as tf_logging

    level, bars = tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled()
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()  # "Loading weights" once per task and generation
    try:
        yield
    finally:
        tf_logging.set_verbosity(level)
        if bars:
            tf_logging.enable_progress_bar()


class HFCausalLM(TorchLM):
    """A transformers AutoModelForCausalLM behind the engine's interface."""

    family = "hf"

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        positions = getattr(cfg, "max_position_embeddings", None) or getattr(
            cfg, "n_positions", None
        )
        self.shape = HFShape(cfg.vocab_size, int(positions or 1 << 30))
        self.config = cfg

    @classmethod
    def from_config(cls, name_or_path: str, vocab_size: int, eos_id: int) -> HFCausalLM:
        """A freshly initialised model of this architecture with the tokenizer's vocabulary."""
        from transformers import AutoModelForCausalLM

        config = causal_lm_config(name_or_path)
        config.vocab_size = vocab_size
        config.bos_token_id = config.eos_token_id = eos_id
        return cls(AutoModelForCausalLM.from_config(config))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> HFCausalLM:
        from transformers import AutoModelForCausalLM

        with quiet_transformers():  # its warnings hidden: missing weights are refused below
            model, info = AutoModelForCausalLM.from_pretrained(str(path), output_loading_info=True)
        missing = list(info.get("missing_keys") or [])
        if missing:
            raise InvalidInput(
                f"{path}: the checkpoint lacks {len(missing)} of the model's weights "
                f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): give a "
                "complete causal-LM checkpoint"
            )
        return cls(model)

    def new_cache(self, batch: int, capacity: int) -> None:
        """No cache in the fallback: the sampler recomputes the window."""
        return None

    def forward(
        self, input_ids: Tensor, targets: Tensor | None = None, cache: Any = None
    ) -> Tensor:
        if input_ids.shape[1] > self.shape.max_positions:
            raise InvalidInput(
                f"sequence of {input_ids.shape[1]} tokens exceeds the model's "
                f"{self.shape.max_positions} positions"
            )
        logits = self.model(input_ids=input_ids, use_cache=False).logits
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def next_token_logits(
        self, input_ids: Tensor, cache: Any = None, out: Tensor | None = None
    ) -> Tensor:
        """Logits (B, V) of the token after input_ids (no cache in the fallback)."""
        return self.forward(input_ids)[:, -1].float()

    def token_logprobs(
        self, input_ids: Tensor, targets: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        logp = torch.log_softmax(self.forward(input_ids).float(), dim=-1)
        out = logp.gather(-1, targets[..., None])[..., 0]
        return out if mask is None else out * mask

    def save_pretrained(self, path: str | Path) -> Path:
        with atomic_dir(path) as tmp, quiet_transformers():
            self.model.save_pretrained(str(tmp))
        return Path(path)

    def describe(self) -> str:
        params = sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())
        return f"Hugging Face {self.config.model_type} model, {params / 1e6:.2f}M parameters"


class HFFamily(TorchFamily):
    """Any Hugging Face causal-LM config (model.hf_config), freshly initialised."""

    name = "hf"
    fallback = True

    def check(self, cfg: Any, vocab_size: int) -> list[str]:
        if not cfg.hf_config:
            if cfg.pretrained:  # its weights' config is the architecture
                return []
            return ["model.family=hf needs model.hf_config (a config name or path)"]
        try:
            causal_lm_config(cfg.hf_config)
        except InvalidInput as exc:
            return [str(exc)]
        return []

    def build(self, cfg: Any, vocab_size: int, eos_id: int) -> HFCausalLM:
        problems = self.check(cfg, vocab_size)
        if problems:
            raise InvalidInput(problems[0])
        return HFCausalLM.from_config(cfg.hf_config, vocab_size, eos_id)

    def load(self, path: Path) -> HFCausalLM:
        return HFCausalLM.from_pretrained(path)
