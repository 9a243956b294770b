"""Corpora: the built-in story world, real-text sources, tokenizers, the token store, corpus
truth counts and the data paradigms. Nothing here imports torch."""
