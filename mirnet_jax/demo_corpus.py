r"""Synthesises the demo speech corpus (espeak-ng voices, LibriSpeech layout).

  python -m mirnet_jax.demo_corpus --out=runs/demo/corpus
  python -m mirnet_jax.demo_corpus --out=/tmp/tiny --train_speakers=4 --test_speakers=2 \
      --crossdomain_speakers=2 --utterances_per_speaker=4
  python -m mirnet_jax.demo_corpus --out=runs/plain/corpus --novoice_transforms  # espeak-ng voices as they are

Rerunning with the same flags completes an interrupted run (existing files are kept;
one that no longer decodes is synthesised again, with a warning, and counted); other
--seed, --voice_transforms or speaker counts are refused (another directory, please).
See mirnet_jax/data/demo_corpus.py for what the corpus holds.
"""

import os

from absl import flags

from mirnet_jax import cli
from mirnet_jax import errors
from mirnet_jax.data import demo_corpus

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("out", None, "Corpus root directory (created if missing).")
  flags.DEFINE_integer("train_speakers", demo_corpus.DEFAULT_TRAIN_SPEAKERS,
                       "Speakers in subset `train`.")
  flags.DEFINE_integer("test_speakers", demo_corpus.DEFAULT_TEST_SPEAKERS,
                       "Speakers in subset `test` (unseen).")
  flags.DEFINE_integer("crossdomain_speakers", demo_corpus.DEFAULT_CROSSDOMAIN_SPEAKERS,
                       "Speakers in subset `crossdomain` (unseen, and made by means "
                       "`train` never uses: Klatt synthesis, other vocal-tract lengths, "
                       "channel EQ); 0: no such subset.")
  flags.DEFINE_boolean("voice_transforms", demo_corpus.DEFAULT_VOICE_TRANSFORMS,
                       "Spread the train/test voices with a formant (vocal-tract length) "
                       "scale and a spectral tilt each, and wider pitch and speed grids; "
                       "false: espeak-ng's voices as they are.")
  flags.DEFINE_integer("utterances_per_speaker", demo_corpus.DEFAULT_UTTERANCES_PER_SPEAKER,
                       "Utterances of every speaker.")
  flags.DEFINE_integer("seed", 0, "Seed of voices, texts and delivery.")
  flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).")


def main(argv):
  # Command-line mistakes are UsageErrors: one line and exit status 2 (cli.run).
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  out, train, test, cross, utts, workers = (
      FLAGS.out, FLAGS.train_speakers, FLAGS.test_speakers, FLAGS.crossdomain_speakers,
      FLAGS.utterances_per_speaker, FLAGS.workers)
  if not out:
    raise errors.UsageError("--out is required")
  if os.path.exists(out) and not os.path.isdir(out):
    raise errors.UsageError(f"--out is not a directory: {out}")
  if train < 1:
    raise errors.UsageError(f"--train_speakers must be >= 1, got {train}")
  if test < 0:
    raise errors.UsageError(f"--test_speakers must be >= 0, got {test}")
  if cross < 0:
    raise errors.UsageError(f"--crossdomain_speakers must be >= 0, got {cross}")
  if utts < 1:
    raise errors.UsageError(f"--utterances_per_speaker must be >= 1, got {utts}")
  if workers is not None and workers < 1:
    raise errors.UsageError(f"--workers must be >= 1, got {workers}")
  # EspeakNotFoundError: the environment, exit status 1.
  limit = demo_corpus.max_speakers(FLAGS.voice_transforms)
  if train + test > limit:
    raise errors.UsageError(f"at most {limit} train/test speakers are possible with the "
                            f"installed espeak-ng, asked for {train + test}")
  limit = demo_corpus.max_crossdomain_speakers()
  if cross > limit:
    raise errors.UsageError(f"at most {limit} crossdomain speakers are possible with the "
                            f"installed espeak-ng, asked for {cross}")
  try:
    summary = demo_corpus.generate(out, train, test, utts, FLAGS.seed, workers,
                                   voice_transforms=FLAGS.voice_transforms,
                                   crossdomain_speakers=cross)
  except errors.UserError:  # already the user's to fix, with its own exit status
    raise
  except OSError as e:  # e.g. --out is not writable
    raise errors.UserError(f"{e.strerror or e}: {e.filename or out}") from e
  except ValueError as e:  # flags checked: --out's corpus is of another seed or recipe
    raise errors.UsageError(str(e)) from e
  print(demo_corpus.format_summary(summary))


if __name__ == "__main__":
  cli.run(main, define_flags)
