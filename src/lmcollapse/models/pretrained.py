"""Published causal LMs as a run's starting points: run.first_model (generation 1 is that model)
and model.pretrained (training.init pretrained / previous start from its weights).

    model = load_pretrained("roneneldan/TinyStories-1M", "run.first_model")

A name is a local Hugging Face model directory, else a hub model fetched once into the Hugging
Face cache (config, weights and tokenizer files only). The saved config.json picks the family
(`load_model`): a GPT-Neo checkpoint runs in the fast engine, any other causal LM through
transformers. Weights load in float32 (a checkpoint stored in fp16 trains badly on a CPU; on a
GPU the run's precision setting applies autocast).

A model's tokenizer must be the run's (`check_tokenizer`): same vocabulary, same end-of-text id,
same ids for the same text. A model directory without tokenizer files is checked by what its
config says (vocabulary size and end-of-text id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmcollapse.errors import InvalidInput, first_line

_FILES = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"]  # no TF/Flax/ONNX weights
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")
# Texts whose ids must agree between the two tokenizers (besides the run's probe contexts).
_PROBE_TEXTS = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    " The quick brown fox jumps over the lazy dog! 123 + 4.5 = ? Ünïcödé café, naïve.",
    '\n\nTom said, "I can\'t go." They were sad<|endoftext|>',
)


def _looks_local(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or Path(spec).exists()


def local_dir(spec: str, what: str) -> Path:
    """The directory of a model given by path or hub name (a hub model is fetched once)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise InvalidInput(
                f"{what} {spec} has no config.json: give a Hugging Face model directory"
            )
        return p
    if _looks_local(spec):
        raise InvalidInput(f"{what} {spec} does not exist: check the path")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, allow_patterns=_FILES))
    except Exception as exc:  # offline, unknown repository, gated model, ...
        raise InvalidInput(
            f"{what} {spec!r} is not a local directory and does not load from the Hugging Face "
            f"hub ({first_line(exc)}): give a model directory, or fetch it on a connected "
            "machine first"
        ) from None


def check_local(spec: str | None, what: str) -> None:
    """Before a run writes anything: a local model is a causal LM's directory (a hub name is
    checked when the run fetches it, with the tokenizer)."""
    if spec is None or not _looks_local(spec):
        return
    from lmcollapse.models.hf import causal_lm_config

    p = local_dir(spec, what)
    try:
        causal_lm_config(str(p))
    except InvalidInput as exc:
        raise InvalidInput(f"{what} {spec}: {exc}".replace("model.hf_config ", "")) from None


def vocab_of(path: Path) -> int | None:
    """A model directory's embedding rows (config.json's vocab_size; a checkpoint may pad its
    vocabulary past its tokenizer's, as OPT's 50,272 rows for 50,265 ids)."""
    value = json.loads((path / "config.json").read_text(encoding="utf-8")).get("vocab_size")
    return value if isinstance(value, int) else None


def load_pretrained(spec: str | Path, what: str) -> Any:
    """The model (a LanguageModel of the family its config names), in float32."""
    from lmcollapse.models import load_model

    path = local_dir(str(spec), what)
    try:
        model = load_model(path)
    except InvalidInput:
        raise
    except Exception as exc:  # transformers: an unknown architecture, missing weights, ...
        raise InvalidInput(
            f"{what} {spec} does not load as a causal LM ({first_line(exc)}): give a causal "
            "LM's directory or hub name"
        ) from None
    return model.float() if hasattr(model, "float") else model


def check_tokenizer(spec: str, tok: Any, what: str, texts: tuple[str, ...] = ()) -> None:
    """InvalidInput unless the model's tokenizer gives the run's tokenizer's ids (`tok`, a
    data.tokenizer.Tok) for `texts` and the probe texts, with the same vocabulary and
    end-of-text; a model without tokenizer files: its config's vocabulary and end-of-text."""
    path = local_dir(spec, what)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    vocab = config.get("vocab_size")
    fix = f"set data.tokenizer to {spec} (the model's own tokenizer)"
    if isinstance(vocab, int) and vocab < tok.vocab_size:
        raise InvalidInput(
            f"{what} {spec} has {vocab} embedding rows, fewer than data.tokenizer's "
            f"{tok.vocab_size} ids: {fix}"
        )
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        eos = config.get("eos_token_id")
        if isinstance(eos, int) and eos != tok.eos_id:
            raise InvalidInput(
                f"{what} {spec} ends text with id {eos}, data.tokenizer with {tok.eos_id}: {fix}"
            )
        return
    from lmcollapse.data.tokenizer import load_tokenizer

    theirs = load_tokenizer(path)
    problem = None
    if theirs.eos_id != tok.eos_id:
        problem = f"end-of-text id {theirs.eos_id}, not {tok.eos_id}"
    elif theirs.vocab_size != tok.vocab_size:
        problem = f"{theirs.vocab_size} ids, not {tok.vocab_size}"
    else:
        for text in (*texts, *_PROBE_TEXTS):
            a, b = theirs.encode(text), tok.encode(text)
            if a != b:
                problem = f"{text[:30]!r} encodes to {a[:6]}..., not {b[:6]}..."
                break
    if problem is not None:
        raise InvalidInput(
            f"{what} {spec}'s tokenizer differs from data.tokenizer ({problem}): {fix}"
        )


def starting_model(
    cfg: Any, generation: int, vocab_size: int, eos_id: int, previous: Any, pretrained: Any
) -> tuple[Any, str]:
    """Generation n's model before it is fitted, and where its weights came from
    (training.init): `previous()` is generation n−1's saved model directory, `pretrained`
    model.pretrained's directory (resolved once by the run)."""
    from lmcollapse.models import build_model, load_model

    init, name = cfg.training.init, cfg.model.pretrained
    if init == "previous" and generation > 1:
        return load_model(previous()), f"generation {generation - 1}'s weights"
    if init == "pretrained" or (init == "previous" and name):
        return load_pretrained(pretrained, "model.pretrained"), f"{name}'s weights"
    return build_model(cfg.model, vocab_size, eos_id), "a random init"
