r"""Prepares spectrogram shards from a corpus.

  python -m mirnet_jax.prepare --source=runs/demo/corpus --out=runs/demo/shards
  python -m mirnet_jax.prepare --source=tfds:librispeech --out=/data/shards

`--out` is a local directory: training reads shards from a gs:// URL too, but they are
prepared locally and copied there (`gcloud storage rsync --recursive /data/shards
gs://BUCKET/shards`; launch/tpu_prepare.sh does both).

Defaults fit both the demo corpus (subsets `train`, `test`) and real LibriSpeech
(`train-*` for training; `dev-*`, `test-*` for unseen speakers).

Unusable audio files (corrupt, truncated, empty, silent, non-finite, not audio at all) are
skipped with a warning each, counted and listed in the summary and in manifest.json; the
exit status stays 0. It is 1, with a last line `error: ...` and no index.npz or
manifest.json written, when the source is missing or holds no audio files in the chosen
subsets, or when none of a group's files is usable.
"""

import sys

from absl import app
from absl import flags

from mirnet_jax.data import corpora
from mirnet_jax.data import shards

_SOURCE = flags.DEFINE_string("source", None, "LibriSpeech-layout directory or tfds:librispeech.")
_OUT = flags.DEFINE_string("out", None, "Output shard directory (local).")
_TRAIN = flags.DEFINE_list("train_subsets", ["train*"], "Glob patterns of training subsets.")
_TEST = flags.DEFINE_list("test_subsets", ["dev*", "test*"], "Glob patterns of unseen subsets.")
_HELDOUT = flags.DEFINE_float("heldout_fraction", 0.1, "Held-out share of each training speaker.")
_MIN_HELDOUT = flags.DEFINE_integer("min_heldout", 2, "Minimum held-out utterances per speaker.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the held-out choice.")
_PER_SHARD = flags.DEFINE_integer("utterances_per_shard", 256, "Utterances per shard.")
_WORKERS = flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).")


def summary(manifest: dict) -> str:
  lines = [f"shards: {manifest['num_classes']} training classes"]
  for split, c in manifest["splits"].items():
    lines.append(f"  {split:8s} {c['speakers']:5d} speakers {c['utterances']:7d} utterances "
                 f"{c['hours']:8.2f} h")
  lines.append(f"  skipped  {manifest['num_skipped']} files")
  lines += [f"    {s['locator']}: {s['reason']}" for s in manifest["skipped"][:20]]
  if manifest["num_skipped"] > 20:
    lines.append(f"    ... and {manifest['num_skipped'] - 20} more (see manifest.json)")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _SOURCE.value or not _OUT.value:
    raise app.UsageError("--source and --out are required")
  try:
    manifest = shards.prepare(_SOURCE.value, _OUT.value, _TRAIN.value, _TEST.value,
                              _HELDOUT.value, _MIN_HELDOUT.value, _SEED.value,
                              _PER_SHARD.value, _WORKERS.value)
  except (corpora.CorpusError, shards.ShardError) as e:
    sys.exit(f"error: {e}")
  except OSError as e:  # e.g. --out is a file, or not writable
    sys.exit(f"error: {e.strerror or e}: {e.filename or _OUT.value}")
  print(summary(manifest))


if __name__ == "__main__":
  app.run(main)
