"""The corpus reader of a `--source`: TFDS librispeech, WSJ0-2mix or a LibriSpeech-layout
directory.

Its own module, above corpora.py and wsj0_2mix.py (which imports corpora.py for the
reader interface), so that neither of those imports the other back.
"""

from mirnet_jax.data import corpora
from mirnet_jax.data import wsj0_2mix


def open_corpus(source: str):
  """`tfds:<name>`, `wsj0-2mix:<dir>` or a LibriSpeech-layout directory."""
  if source.startswith(corpora.TFDS_PREFIX):
    return corpora.TfdsLibriSpeech(source[len(corpora.TFDS_PREFIX):] or "librispeech")
  if source.startswith(wsj0_2mix.PREFIX):
    return wsj0_2mix.Wsj0Mix2Dir(source[len(wsj0_2mix.PREFIX):])
  return corpora.LibriSpeechDir(source)
