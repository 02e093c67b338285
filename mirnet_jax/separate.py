r"""Separates a mixture into one waveform per speaker with a trained separator.

  python -m mirnet_jax.separate --workdir=runs/demo/vf_mirnet mixture.wav --out=separated/
  python -m mirnet_jax.separate --workdir=runs/demo/vf_enrolled mixture.wav --out=separated/ \
      --enroll=alice.flac,bob.flac

writes `<name>_s1.wav`, `<name>_s2.wav`, ... (16 kHz) and, for the VoiceFilter systems,
`<name>_embeddings.npy` (`[N, E]`: the embeddings each output was conditioned on). Any
input length, sample rate and channel count is accepted. `--workdir` is a training
workdir or an exported directory (mirnet_jax.export).

How a long input is separated: separator.py.
"""

import io
import os
import sys

from absl import flags
from absl import logging
import numpy as np

from mirnet_jax import cli
from mirnet_jax import errors
from mirnet_jax import inference
from mirnet_jax import separator as separator_lib
from mirnet_jax import storage
from mirnet_jax.data import audio


def separate_file(separator: separator_lib.Separator, path: str, out_dir: str,
                  enroll: list[np.ndarray] | None = None) -> list[str]:
  """Separates one audio file into `out_dir` (`enroll`: enrolment waveforms for
  vf_enrolled); returns the paths written."""
  separated, embeddings = separator.separate(audio.load(path), enroll)
  stem = os.path.splitext(os.path.basename(path))[0]
  storage.makedirs(out_dir)
  written = []
  for i, source in enumerate(separated):
    written.append(os.path.join(out_dir, f"{stem}_s{i + 1}.wav"))
    separator_lib.write_wav(written[-1], source)
  if embeddings is not None:
    written.append(os.path.join(out_dir, f"{stem}_embeddings.npy"))
    npy = io.BytesIO()
    np.save(npy, embeddings.astype(np.float32))
    storage.write_bytes(written[-1], npy.getvalue())
  return written


def define_flags():
  flags.DEFINE_string("workdir", None, "A trained separator's workdir or exported directory.")
  flags.DEFINE_string("out", None, "Directory for the separated waveforms.")
  flags.DEFINE_list("enroll", None, "vf_enrolled only: one clean utterance per speaker to "
                    "extract, comma-separated.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the best).")
  flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  f = flags.FLAGS
  paths = argv[1:]
  if not paths:
    raise errors.UsageError("give one or more mixture files to separate")
  separator = separator_lib.Separator(inference.restore(f.workdir, f.step))
  separator.check_enrolment(len(f.enroll or []))
  enroll = [audio.load(p) for p in f.enroll or []]
  failed = 0
  for path in paths:
    try:
      written = separate_file(separator, path, f.out, enroll)
    except (audio.AudioError, separator_lib.SeparationError) as e:
      failed += 1
      logging.warning("skipping %s: %s", path, e)
      print(f"{path}: error: {e}", file=sys.stderr)
      continue
    print(f"{path}: {len(written)} files -> {f.out} ("
          f"{', '.join(os.path.basename(w) for w in written)})")
  if failed:
    raise errors.UserError(f"{failed} of {len(paths)} files could not be separated")


if __name__ == "__main__":
  cli.run(main, define_flags)
