r"""Prepares spectrogram shards from a corpus.

  python -m mirnet_jax.prepare --source=runs/demo/corpus --out=runs/demo/shards
  python -m mirnet_jax.prepare --source=tfds:librispeech/lazy_decode --out=/data/shards

`--out` is a local directory: training reads shards from a gs:// URL too, but they are
prepared locally and copied there (`gcloud storage rsync --recursive /data/shards
gs://BUCKET/shards`; launch/tpu_prepare.sh does both).

Defaults fit both the demo corpus (subsets `train`, `test`) and real LibriSpeech
(`train-*` for training; `dev-*`, `test-*` for unseen speakers). Of each training speaker's
utterances, `--seen_fraction` (at least `--min_seen`) go to the `seen` test split and
`--validation_fraction` (at least `--min_validation`) to the `validation` split that
selects checkpoints: disjoint, recorded in the manifest. `--train_subsets=` (empty)
prepares an evaluation-only corpus of unseen speakers for `evaluate --shards`:

  python -m mirnet_jax.prepare --source=DIR --out=OUT --train_subsets= --test_subsets=test-other

A subset matching `--crossdomain_subsets` (default `crossdomain*`: the demo corpus's voices
made by transformations its training voices never use) becomes the `crossdomain` split, of
speakers never trained on; a corpus without one (LibriSpeech) has no such split.
`--speed_perturb=0.9,1.0,1.1` adds Kaldi-style speed copies of the training utterances
(played 0.9 and 1.1 times as fast, each a class of its own: 3x the classes); the held-out
`seen` and `validation` utterances stay those chosen without it, and no copy of one is
made.

Unusable audio files (corrupt, truncated, empty, silent, non-finite, not audio at all) are
skipped with a warning each, counted and listed in the summary and in manifest.json; the
exit status stays 0. It is 1, with a last line `error: ...` and no index.npz or
manifest.json written, when the source is missing or holds no audio files in the chosen
subsets, or when none of a group's files is usable.

The espeak-ng version (and voice lists) that a demo corpus records in its manifest.json
is copied into the shards' manifest.json and shown in the summary: demo-corpus numbers
hold for that version.
"""

from absl import flags

from mirnet_jax import cli
from mirnet_jax import errors
from mirnet_jax import storage
from mirnet_jax import workdir_lock
from mirnet_jax.data import shards

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("source", None, "LibriSpeech-layout directory or "
                      "tfds:librispeech/lazy_decode.")
  flags.DEFINE_string("out", None, "Output shard directory (local).")
  flags.DEFINE_list("train_subsets", ["train*"], "Glob patterns of training subsets "
                    "(empty, `--train_subsets=`: an evaluation-only corpus, all unseen).")
  flags.DEFINE_list("test_subsets", ["dev*", "test*"], "Glob patterns of unseen subsets.")
  flags.DEFINE_list("crossdomain_subsets", ["crossdomain*"], "Glob patterns of cross-domain "
                    "subsets (split `crossdomain`); none matching: no such split.")
  flags.DEFINE_list("speed_perturb", ["1.0"], "Speed factors of the training utterances' "
                    "copies, 1.0 among them, within [0.5, 2.0] (e.g. 0.9,1.0,1.1); "
                    "1.0 alone: none.")
  seen, validation = shards.HELDOUT_DEFAULTS["seen"], shards.HELDOUT_DEFAULTS["validation"]
  flags.DEFINE_float("seen_fraction", seen[0], "Share of each training speaker's "
                     "utterances kept for the seen-speaker test trials.")
  flags.DEFINE_integer("min_seen", seen[1], "Minimum seen-test utterances per speaker.")
  flags.DEFINE_float("validation_fraction", validation[0], "Share of each training "
                     "speaker's utterances kept for validation (checkpoint selection).")
  flags.DEFINE_integer("min_validation", validation[1], "Minimum validation utterances "
                       "per speaker.")
  flags.DEFINE_integer("seed", 0, "Seed of the held-out choice.")
  flags.DEFINE_integer("utterances_per_shard", 256, "Utterances per shard.")
  flags.DEFINE_integer("chunk_frames", shards.CHUNK_FRAMES, "STFT frames per chunk "
                       "record: a crop reads only the chunks it covers.")
  flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).")


def summary(manifest: dict) -> str:
  lines = [f"shards: {manifest['num_classes']} training classes" if manifest["num_classes"]
           else "shards: evaluation only (no training subsets; every speaker unseen)"]
  for split, c in manifest["splits"].items():
    lines.append(f"  {split:11s} {c['speakers']:5d} speakers {c['utterances']:7d} "
                 f"utterances {c['hours']:8.2f} h")
  if "crossdomain" not in manifest["splits"]:
    lines.append("  crossdomain none (no subset matched --crossdomain_subsets)")
  factors = manifest.get("speed_perturb", [1.0])
  if len(factors) > 1 and manifest["num_classes"]:
    lines.append(f"  speed      copies at {', '.join(f'{f:g}' for f in factors if f != 1)} "
                 f"of the train split: {manifest['num_classes'] // len(factors)} speakers "
                 f"x {len(factors)} speeds")
  if shards.espeak_version(manifest):  # what demo-corpus numbers hold for
    lines.append(f"  corpus     demo corpus made by espeak-ng "
                 f"{shards.espeak_version(manifest)}")
  lines.append(f"  skipped    {manifest['num_skipped']} files")
  lines += [f"    {s['locator']}: {s['reason']}" for s in manifest["skipped"][:20]]
  if manifest["num_skipped"] > 20:
    lines.append(f"    ... and {manifest['num_skipped'] - 20} more (see manifest.json)")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.source or not FLAGS.out:
    raise errors.UsageError("--source and --out are required")
  # CorpusError and ShardError (a missing or empty source, no usable file) are UserErrors:
  # cli.run prints them.
  try:
    heldout = {"seen": (FLAGS.seen_fraction, FLAGS.min_seen),
               "validation": (FLAGS.validation_fraction, FLAGS.min_validation)}
    try:
      speed_factors = shards.check_speed_factors(FLAGS.speed_perturb)
    except errors.UserError as e:
      raise errors.UsageError(f"--speed_perturb: {e}") from None
    # One preparation per --out (shards.prepare refuses a gs:// one: no warning that it
    # would not be locked).
    with workdir_lock.hold(FLAGS.out, "shard preparation",
                           enabled=not storage.is_remote(FLAGS.out)):
      manifest = shards.prepare(FLAGS.source, FLAGS.out, FLAGS.train_subsets,
                                FLAGS.test_subsets, heldout, FLAGS.seed,
                                utterances_per_shard=FLAGS.utterances_per_shard,
                                chunk_frames=FLAGS.chunk_frames, workers=FLAGS.workers,
                                crossdomain_subsets=FLAGS.crossdomain_subsets,
                                speed_factors=speed_factors)
  except OSError as e:  # e.g. --out is a file, or not writable
    raise errors.UserError(f"{e.strerror or e}: {e.filename or FLAGS.out}") from e
  print(summary(manifest))


if __name__ == "__main__":
  cli.run(main, define_flags)
