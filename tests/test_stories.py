"""The built-in story world: deterministic, long-tailed, and p(' was'|' there') ≈ 0.76."""

from __future__ import annotations

import collections
import re

import pytest

from lmcollapse.data.stats import count_continuations
from lmcollapse.data.stories import MAX_WORDS, MIN_WORDS, generate, story
from lmcollapse.data.tokenizer import single_token


def test_same_seed_same_stories_and_stable_prefix() -> None:
    first = list(generate(50, seed=3))
    assert first == list(generate(50, seed=3))
    assert first[:10] == list(generate(10, seed=3))
    assert first[20] == story(3, 20) == next(generate(1, seed=3, start=20))
    assert first != list(generate(50, seed=4))
    assert len(set(first)) == 50


def test_stories_are_80_to_250_words_past_tense_with_dialogue() -> None:
    stories = list(generate(3000, seed=0))
    lengths = [len(s.split()) for s in stories]
    assert min(lengths) >= MIN_WORDS == 80 and max(lengths) <= MAX_WORDS == 250
    assert sum('"' in s for s in stories) > 0.5 * len(stories)  # dialogue now and then
    assert sum(" was " in s for s in stories) > 0.95 * len(stories)  # narrated in the past


def test_vocabulary_has_a_long_zipf_tail() -> None:
    words = collections.Counter(
        w.lower() for s in generate(10_000, seed=0) for w in re.findall(r"[A-Za-z]+", s)
    )
    assert len(words) >= 400
    names = collections.Counter(
        m for s in generate(10_000, seed=0) for m in re.findall(r"named (\w+)", s)
    )
    assert names.most_common(1)[0][1] > 20 * min(names.values())  # heads and a tail
    assert sum(1 for c in words.values() if c < 20) >= 40  # rare words for tail statistics


def test_the_papers_probe_on_10000_stories(builtin_corpus) -> None:
    tok, d0 = builtin_corpus.tokenizer, builtin_corpus.d0
    there = single_token(tok, " there")
    counter = count_continuations(d0.iter_chunks(), [there], tok.vocab_size)
    p = counter.probabilities()
    assert counter.n_x > 10_000
    assert p[single_token(tok, " was")] == pytest.approx(0.76, abs=0.02)
    assert p[single_token(tok, " were")] == pytest.approx(0.05, abs=0.02)
