r"""Speaker embeddings of mixtures from a trained workdir.

  python -m mirnet_jax.embed --workdir=runs/demo/workdir mix1.wav mix2.flac ...

writes one `.npy` (`[N, E]`: one embedding per speaker slot) per input and prints one line
per file. `--workdir` and `--out_dir` may be gs:// URLs. Any sample rate or channel count
is accepted (resampled to 16 kHz, channels averaged), and any length: a file is read in
blocks of 10 s and embedded a batch of windows at a time, so memory does not grow with its
length. An input shorter than the training segment is zero-padded to it, as short
utterances are in training; a longer one is windowed (extraction.py).

Output names never collide, so no output is overwritten by another of the same run:
  * `x.wav` gives `x.npy`, beside it, or with `--out_dir` at its path relative to the
    inputs' deepest common folder (`a/x.wav b/x.wav` -> `OUT/a/x.npy`, `OUT/b/x.npy`;
    inputs of one folder -> `OUT/x.npy`);
  * inputs that would still share an output (`x.wav`, `x.flac` of one folder) keep their
    extension: `x.wav.npy`, `x.flac.npy`;
  * a file named twice is embedded once.

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

import collections
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
                      "input), at the inputs' paths relative to their deepest common "
                      "folder; inputs that would share an output keep their extension "
                      "(x.wav.npy, x.flac.npy).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: best by validation).")


def output_paths(files: list[str], out_dir: str | None) -> list[tuple[str, str]]:
  """(input, its .npy) for each distinct input, in order (see the module docstring).

  Raises:
    errors.UsageError: two inputs would still share an output (contrived names: `x.wav`,
      `x.flac` and `x.wav.flac` of one folder), rather than one overwriting the other.
  """
  unique = {}
  for path in files:  # the first spelling of each file
    unique.setdefault(os.path.abspath(path), path)
  root = os.path.commonpath([os.path.dirname(a) for a in unique])

  def folder(absolute):
    if not out_dir:
      return os.path.dirname(absolute)
    relative = os.path.relpath(os.path.dirname(absolute), root)
    return out_dir if relative == os.curdir else os.path.join(out_dir, relative)

  def key(absolute):  # its output's folder, and its name without the extension
    return folder(absolute), os.path.splitext(os.path.basename(absolute))[0]

  shared = collections.Counter(map(key, unique))
  outputs = []
  for absolute, path in unique.items():
    where, name = key(absolute)
    if shared[where, name] > 1:  # x.wav and x.flac of one folder
      name = os.path.basename(absolute)
    outputs.append((path, os.path.join(where, name + ".npy")))
  by_output = {}
  for path, out in outputs:
    if by_output.setdefault(out, path) != path:
      raise errors.UsageError(f"{by_output[out]} and {path} would both be embedded to "
                              f"{out}; rename one")
  return outputs


def main(argv):
  files = argv[1:]
  workdir, out_dir, step = flags.FLAGS.workdir, flags.FLAGS.out_dir, flags.FLAGS.step
  if not workdir or not files:
    raise errors.UsageError("usage: python -m mirnet_jax.embed --workdir=DIR FILE...")
  if out_dir and epath.Path(out_dir).exists() and not epath.Path(out_dir).is_dir():
    raise errors.UserError(f"--out_dir is not a directory: {out_dir}")
  outputs = output_paths(files, out_dir)
  extractor = extraction.Extractor(inference.restore(workdir, step))
  try:
    if out_dir:
      storage.makedirs(out_dir)
  except OSError as e:
    raise errors.UserError(f"cannot create --out_dir {out_dir}: {e.strerror or e}") from None
  failed = 0
  for path, out in outputs:
    try:
      embeddings, samples, windows = extractor.embed_file(path)
      npy = io.BytesIO()
      np.save(npy, embeddings)
      storage.makedirs(os.path.dirname(out))  # a folder mirrored under --out_dir
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
    raise errors.UserError(f"{failed} of {len(outputs)} files could not be embedded")


if __name__ == "__main__":
  cli.run(main, define_flags)
