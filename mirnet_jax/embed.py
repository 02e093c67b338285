r"""Speaker embeddings of mixtures from a trained workdir.

  python -m mirnet_jax.embed --workdir=runs/demo/workdir mix1.wav mix2.flac ...

writes `<name>.npy` (`[N, E]`: one embedding per speaker slot) beside each input (or in
`--out_dir`) and prints one line per file. `--workdir` and `--out_dir` may be gs:// URLs.
Any sample rate or channel count is accepted (resampled to 16 kHz, channels averaged),
and any length: a file is read in blocks of 10 s and embedded a batch of windows at a
time, so memory does not grow with its length.

A file that cannot be embedded is reported on stderr as `<file>: skipped: <reason>` and
gets no `.npy` (none is ever left half-written): a missing, unreadable, corrupt, truncated
or empty file, non-finite samples, or silence (RMS below -120 dBFS; there is no speaker to
embed, and an embedding of digital silence would look like any other). The other files are
still embedded. The exit status is 0 if every file was embedded, else 1, with a last line
`error: K of N files could not be embedded`; a workdir without a checkpoint exits 1 at
once, writing nothing.

`--workdir` is a training workdir (its best checkpoint by validation accuracy, or
`--step`) or a directory written by `mirnet_jax.export`. How inputs longer than the
training segment are windowed: extraction.py.
"""

import io
import os
import sys

from absl import flags
from absl import logging
from etils import epath
import numpy as np

from mirnet_jax import cli
from mirnet_jax import errors
from mirnet_jax import extraction
from mirnet_jax import features
from mirnet_jax import inference
from mirnet_jax import storage
from mirnet_jax.data import audio


def define_flags():
  flags.DEFINE_string("workdir", None, "Training workdir or exported directory.")
  flags.DEFINE_string("out_dir", None, "Where to write .npy files (default: beside each "
                      "input).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: best by validation).")


def main(argv):
  files = argv[1:]
  workdir, out_dir, step = flags.FLAGS.workdir, flags.FLAGS.out_dir, flags.FLAGS.step
  if not workdir or not files:
    raise errors.UsageError("usage: python -m mirnet_jax.embed --workdir=DIR FILE...")
  if out_dir and epath.Path(out_dir).exists() and not epath.Path(out_dir).is_dir():
    raise errors.UserError(f"--out_dir is not a directory: {out_dir}")
  extractor = extraction.Extractor(inference.restore(workdir, step))
  try:
    if out_dir:
      storage.makedirs(out_dir)
  except OSError as e:
    raise errors.UserError(f"cannot create --out_dir {out_dir}: {e.strerror or e}") from None
  failed = 0
  for path in files:
    target_dir = out_dir or os.path.dirname(os.path.abspath(path))
    out = os.path.join(target_dir, os.path.splitext(os.path.basename(path))[0] + ".npy")
    try:
      embeddings, samples, windows = extractor.embed_file(path)
      npy = io.BytesIO()
      np.save(npy, embeddings)
      storage.write_bytes(out, npy.getvalue())  # atomic: no half-written .npy
    except (audio.AudioError, OSError) as e:
      reason = e.strerror if isinstance(e, OSError) and e.strerror else e
      print(f"{path}: skipped: {reason}", file=sys.stderr)
      failed += 1
      continue
    print(f"{path}: {embeddings.shape[0]} x {embeddings.shape[1]} embeddings from "
          f"{samples / features.SAMPLE_RATE:.2f} s ({windows} windows) -> {out}")
  logging.info("checkpoint step %d", extractor.step)
  if failed:
    raise errors.UserError(f"{failed} of {len(files)} files could not be embedded")


if __name__ == "__main__":
  cli.run(main, define_flags)
