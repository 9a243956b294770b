"""Tokenizers: trained BPE saved for AutoTokenizer (same ids), end-of-text as bos = eos."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmcollapse.data.stories import generate
from lmcollapse.data.tokenizer import (
    Tok,
    decode_story,
    encode_stories,
    load_tokenizer,
    save_pretrained,
    single_token,
    train_bpe,
)
from lmcollapse.errors import InvalidInput

TEXTS = [
    "Once upon a time, there was a little girl named Lily.",
    'She said, "Look, there are so many birds!"<|endoftext|>Tom ran.',
    "Unicode: café, naïve — ok 🙂",
    "",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Tok:
    return train_bpe(generate(2000, seed=0), 1000, tmp_path_factory.mktemp("tok") / "bpe")


def test_autotokenizer_loads_it_with_the_same_ids(trained: Tok) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(trained.path))
    assert hf.eos_token == hf.bos_token == "<|endoftext|>"
    assert hf.eos_token_id == hf.bos_token_id == trained.eos_id == 0
    for text in TEXTS:
        assert hf.encode(text, add_special_tokens=False) == trained.encode(text)
        assert hf.decode(trained.encode(text)) == text == trained.decode(trained.encode(text))
    assert len(hf) == trained.vocab_size


def test_words_keep_their_leading_space(trained: Tok) -> None:
    for word in (" there", " was", " were", "Once"):
        assert trained.token_strings([single_token(trained, word)]) == [word]
    assert trained.encode("<|endoftext|>") == [0]
    with pytest.raises(
        InvalidInput, match=r"\" wasn't\" is not one token .* tokenizes as \[' was'"
    ):
        single_token(trained, " wasn't", "next token")
    with pytest.raises(InvalidInput, match="is empty"):
        single_token(trained, "")


def test_training_is_deterministic(tmp_path: Path, trained: Tok) -> None:
    again = train_bpe(generate(2000, seed=0), 1000, tmp_path / "again")
    assert (again.path / "tokenizer.json").read_bytes() == (
        trained.path / "tokenizer.json"
    ).read_bytes()


def test_every_story_ends_with_eos(trained: Tok) -> None:
    batches = list(encode_stories(trained, TEXTS[:3], batch=2))
    assert [len(lens) for _, lens in batches] == [2, 1]
    for flat, lens in batches:
        ends = lens.cumsum() - 1
        assert (flat[ends] == trained.eos_id).all()
    flat, lens = batches[0]
    assert flat[: lens[0]].tolist() == [*trained.encode(TEXTS[0]), trained.eos_id]


def test_a_pretrained_directory_goes_through_autotokenizer(tmp_path: Path, trained: Tok) -> None:
    copy = save_pretrained(str(trained.path), tmp_path / "copy")
    assert copy.encode(TEXTS[0]) == trained.encode(TEXTS[0]) and copy.eos_id == trained.eos_id
    assert load_tokenizer(tmp_path / "copy").fingerprint() == copy.fingerprint()
    with pytest.raises(InvalidInput, match="cannot load tokenizer 'nobody/no-such-tokenizer'"):
        load_tokenizer("nobody/no-such-tokenizer")
    with pytest.raises(InvalidInput, match="must be >= 258"):
        train_bpe(["x"], 100, tmp_path / "tiny")


def test_decode_story_leaves_out_the_final_end_of_text_only(trained: Tok) -> None:
    import numpy as np
    import torch

    ids = trained.encode(" Once upon a time, there was a dog. ")
    e = trained.eos_id
    text = "Once upon a time, there was a dog."
    assert decode_story(trained, [*ids, e]) == text  # a story that ended by itself
    assert decode_story(trained, ids) == text  # a sample cut before any end-of-text
    assert decode_story(trained, np.array([*ids, e], dtype=np.uint16)) == text  # from a store
    assert decode_story(trained, torch.tensor([*ids, e])) == text  # from the sampler
    inner = [*trained.encode("Tom ran."), e, *trained.encode(" Sue sat."), e]
    assert decode_story(trained, inner) == "Tom ran.<|endoftext|> Sue sat."
    assert decode_story(trained, [e]) == decode_story(trained, []) == ""
