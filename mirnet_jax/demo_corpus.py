r"""Synthesises the demo speech corpus (espeak-ng voices, LibriSpeech layout).

  python -m mirnet_jax.demo_corpus --out=runs/demo/corpus
  python -m mirnet_jax.demo_corpus --out=/tmp/tiny --train_speakers=4 --test_speakers=2 \
      --utterances_per_speaker=4

Rerunning with the same flags completes an interrupted run (existing files are kept;
one that no longer decodes is synthesised again, with a warning, and counted).
See mirnet_jax/data/demo_corpus.py for what the corpus holds.
"""

import os
import sys

from absl import app
from absl import flags

from mirnet_jax.data import demo_corpus

_OUT = flags.DEFINE_string("out", None, "Corpus root directory (created if missing).")
_TRAIN = flags.DEFINE_integer("train_speakers", demo_corpus.DEFAULT_TRAIN_SPEAKERS,
                              "Speakers in subset `train`.")
_TEST = flags.DEFINE_integer("test_speakers", demo_corpus.DEFAULT_TEST_SPEAKERS,
                             "Speakers in subset `test` (unseen).")
_UTTS = flags.DEFINE_integer("utterances_per_speaker",
                             demo_corpus.DEFAULT_UTTERANCES_PER_SPEAKER,
                             "Utterances of every speaker.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of voices, texts and delivery.")
_WORKERS = flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).")


def _usage_error(message: str):
  # One line and exit status 2 (the usual for command-line mistakes); app.UsageError would
  # print the whole usage text first.
  print(f"demo_corpus: error: {message}", file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # e.g. --train_speakers=abc
    _usage_error(str(e))


def main(argv):
  if len(argv) > 1:
    _usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _OUT.value:
    _usage_error("--out is required")
  if os.path.exists(_OUT.value) and not os.path.isdir(_OUT.value):
    _usage_error(f"--out is not a directory: {_OUT.value}")
  if _TRAIN.value < 1:
    _usage_error(f"--train_speakers must be >= 1, got {_TRAIN.value}")
  if _TEST.value < 0:
    _usage_error(f"--test_speakers must be >= 0, got {_TEST.value}")
  if _UTTS.value < 1:
    _usage_error(f"--utterances_per_speaker must be >= 1, got {_UTTS.value}")
  if _WORKERS.value is not None and _WORKERS.value < 1:
    _usage_error(f"--workers must be >= 1, got {_WORKERS.value}")
  try:
    limit = demo_corpus.max_speakers()
    if _TRAIN.value + _TEST.value > limit:
      _usage_error(f"at most {limit} speakers are possible with the installed espeak-ng, "
                   f"asked for {_TRAIN.value + _TEST.value}")
    summary = demo_corpus.generate(_OUT.value, _TRAIN.value, _TEST.value, _UTTS.value,
                                   _SEED.value, _WORKERS.value)
  except demo_corpus.EspeakNotFoundError as e:
    sys.exit(f"demo_corpus: error: {e}")  # environment, not usage: exit status 1
  except OSError as e:  # e.g. --out is a file, or not writable
    sys.exit(f"demo_corpus: error: {e.strerror or e}: {e.filename or _OUT.value}")
  except ValueError as e:  # e.g. --out holds a corpus made with another seed
    _usage_error(str(e))
  print(demo_corpus.format_summary(summary))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
