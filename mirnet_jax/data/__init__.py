"""Corpora, spectrogram shards and the grain input pipeline."""
