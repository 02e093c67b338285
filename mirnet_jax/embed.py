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

The extractor restores the parameters and BatchNorm statistics from the orbax checkpoint
(the best by validation accuracy, or `--step`) and the model from the workdir's
config.json. It is compiled once, for batches of `batch_size` windows of the training
segment length W (`config.data.crop_frames`):
  * an input of at most W frames is zero-padded to W (as short utterances are in training);
  * a longer input is cut into windows of W frames with hop W/2, the last one ending at the
    input's end, so no window is padded. The model's output slots are not ordered, so the
    slots of each window are aligned to the running mean of the windows before it (the
    permutation with the smallest summed Euclidean distance), then averaged.
"""

import io
import itertools
import os
import sys

from absl import app
from absl import flags
from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from mirnet_jax import checkpointing
from mirnet_jax import cli
from mirnet_jax import features
from mirnet_jax import storage
from mirnet_jax import tasks
from mirnet_jax import train
from mirnet_jax.data import audio
from mirnet_jax.data import shards


class Extractor:
  """A jitted, batched MIRNet forward pass restored from a workdir."""

  def __init__(self, workdir: str, step: int | None = None, batch_size: int = 16):
    self.config, self.num_classes = checkpointing.load_config(workdir)
    if tasks.task_name(self.config) not in tasks.CLASSIFIERS:
      raise checkpointing.CheckpointError(
          f"{workdir} holds a {tasks.task_name(self.config)} separator, not an embedding "
          "model (use python -m mirnet_jax.separate)")
    self.window = int(self.config.data.crop_frames)
    self.num_speakers = int(self.config.data.num_speakers)
    self.batch_size = batch_size
    task, self.variables, self.step = train.restore_inference(workdir, step)
    self.model = task.model
    self._forward = jax.jit(lambda v, x: self.model.apply(v, x, train=False))

  def embed_windows(self, windows: np.ndarray) -> dict:
    """Model outputs for `[M, W, 257, 2]` stored-STFT windows, in fixed-size batches."""
    m = len(windows)
    outputs = []
    for start in range(0, m, self.batch_size):
      batch = np.zeros((self.batch_size, self.window, features.NUM_BINS, 2), np.float16)
      chunk = windows[start:start + self.batch_size]
      batch[:len(chunk)] = chunk
      out = jax.device_get(self._forward(self.variables, jnp.asarray(batch)))
      outputs.append({k: v[:len(chunk)] for k, v in out.items()})
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

  def window_starts(self, frames: int) -> list[int]:
    """First frames of the windows covering `frames` frames (see the module docstring)."""
    w = self.window
    return [0] if frames <= w else list(range(0, frames - w, w // 2)) + [frames - w]

  def windows_of(self, stored: np.ndarray) -> np.ndarray:
    """`[T, 257, 2]` -> `[K, W, 257, 2]`."""
    if len(stored) <= self.window:
      padded = np.zeros((self.window, features.NUM_BINS, 2), np.float16)
      padded[:len(stored)] = stored
      return padded[None]
    return np.stack([stored[s:s + self.window] for s in self.window_starts(len(stored))])

  def embed(self, stored: np.ndarray) -> np.ndarray:
    """The `[N, E]` embeddings of one stored-STFT mixture of any length."""
    embeddings = self.embed_windows(self.windows_of(stored))["embeddings"]
    return align_and_average(embeddings)

  def embed_waveform(self, waveform: np.ndarray) -> np.ndarray:
    """The `[N, E]` embeddings of a 16 kHz mono mixture waveform."""
    return self.embed_stream(lambda: [waveform])[0]

  def embed_file(self, path: str) -> tuple[np.ndarray, int, int]:
    """The `[N, E]` embeddings of an audio file (any rate and channels) of any length, read
    in blocks so that memory does not grow with its length; with its samples at 16 kHz
    and its number of windows.

    Raises:
      audio.AudioError: the file cannot be used, or it is silent.
    """
    return self.embed_stream(lambda: audio.stream(path))

  def embed_stream(self, open_blocks) -> tuple[np.ndarray, int, int]:
    """`embed_file` of a waveform given as 16 kHz mono blocks: `open_blocks()` returns an
    iterable of them, and is called twice (the level is needed before the first window)."""
    # Level as in training: N sources of TARGET_RMS each sum to ~sqrt(N) * TARGET_RMS.
    energy, samples = 0.0, 0
    for block in open_blocks():
      energy += float(np.sum(np.square(block, dtype=np.float64)))
      samples += len(block)
    if samples == 0:
      raise audio.AudioError("no samples")
    rms = np.sqrt(energy / samples)
    if rms < 1e-6:
      raise audio.AudioError("silent (RMS below -120 dBFS): no speaker to embed")
    scale = shards.TARGET_RMS * np.sqrt(self.num_speakers) / rms
    frames = features.num_frames(samples)
    starts = self.window_starts(frames)
    reader = _SampleReader(open_blocks())
    mean = AlignedMean()
    for first in range(0, len(starts), self.batch_size):
      batch = starts[first:first + self.batch_size]
      stored = _stored_frames(reader, batch[0], batch[-1] + self.window, frames, scale)
      windows = np.stack([stored[s - batch[0]:s - batch[0] + self.window] for s in batch])
      mean.add(self.embed_windows(windows)["embeddings"])
    return mean.value(), samples, len(starts)


class _SampleReader:
  """Sample ranges of a stream of blocks, read forwards: `take(start, stop)` returns samples
  [start, stop), zeros outside the signal, and forgets the samples before `start`."""

  def __init__(self, blocks):
    self._blocks = iter(blocks)
    self._buffer = np.zeros(0, np.float32)
    self._offset = 0  # the sample index of _buffer[0]

  def take(self, start: int, stop: int) -> np.ndarray:
    pending = [self._buffer]
    end = self._offset + len(self._buffer)
    while end < stop:
      block = next(self._blocks, None)
      if block is None:
        break
      pending.append(block)
      end += len(block)
    keep = max(0, start - self._offset)
    self._buffer = np.concatenate(pending)[keep:]
    self._offset += keep
    out = np.zeros(stop - start, np.float32)
    lo = max(start, self._offset)
    chunk = self._buffer[lo - self._offset:max(0, stop - self._offset)]
    out[lo - start:lo - start + len(chunk)] = chunk
    return out


def _stored_frames(reader: _SampleReader, first: int, stop: int, frames: int,
                   scale) -> np.ndarray:
  """Frames [first, stop) of the stored STFT of `scale` times the stream, as
  `features.stft` of the whole stream would give them; frames from `frames` (the stream's
  length) on are zero, as the padding of a short input."""
  out = np.zeros((stop - first, features.NUM_BINS, 2), features.STORAGE_DTYPE)
  last = min(stop, frames)
  if last <= first:
    return out
  # A centred frame t reads samples [t*hop - n_fft/2, t*hop + n_fft/2): transform from
  # `margin` frames earlier, whose own windows reach before the excerpt, and drop those.
  hop, half = features.HOP_LENGTH, features.N_FFT // 2
  margin = -(-half // hop)
  excerpt = reader.take((first - margin) * hop, (last - 1) * hop + half)
  spec = features.stft(excerpt * scale)[margin:margin + last - first]
  out[:last - first] = features.to_storage(spec)
  return out


class AlignedMean:
  """The running mean of `[N, E]` window embeddings whose slots are unordered: each window's
  slots are aligned to the mean of the windows before it (the permutation with the smallest
  summed Euclidean distance) before it is added."""

  def __init__(self):
    self._total = None
    self._count = 0
    self._perms = None

  def add(self, embeddings: np.ndarray):
    """Adds `[K, N, E]` windows, in order."""
    for e in embeddings:
      if self._total is None:
        self._total = e.astype(np.float64)
        self._perms = [list(p) for p in itertools.permutations(range(len(e)))]
      else:
        reference = self._total / self._count
        cost = [np.linalg.norm(reference - e[p], axis=-1).sum() for p in self._perms]
        self._total += e[self._perms[int(np.argmin(cost))]]
      self._count += 1

  def value(self) -> np.ndarray:
    return (self._total / self._count).astype(np.float32)


def align_and_average(embeddings: np.ndarray) -> np.ndarray:
  """`[K, N, E]` window embeddings with unordered slots -> `[N, E]` (see AlignedMean)."""
  mean = AlignedMean()
  mean.add(embeddings)
  return mean.value()


def _define_flags():
  # Defined only when run as a program: evaluate.py imports this module and has flags of
  # the same names.
  flags.DEFINE_string("workdir", None, "Training workdir (checkpoints, config.json).")
  flags.DEFINE_string("out_dir", None, "Where to write .npy files (default: beside each "
                      "input).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: best by validation).")


def main(argv):
  files = argv[1:]
  workdir, out_dir, step = flags.FLAGS.workdir, flags.FLAGS.out_dir, flags.FLAGS.step
  if not workdir or not files:
    raise app.UsageError("usage: python -m mirnet_jax.embed --workdir=DIR FILE...")
  cli.quiet_libraries()
  if out_dir and epath.Path(out_dir).exists() and not epath.Path(out_dir).is_dir():
    sys.exit(f"error: --out_dir is not a directory: {out_dir}")
  try:
    extractor = Extractor(workdir, step)
  except checkpointing.CheckpointError as e:
    sys.exit(f"error: {e}")
  try:
    if out_dir:
      storage.makedirs(out_dir)
  except OSError as e:
    sys.exit(f"error: cannot create --out_dir {out_dir}: {e.strerror or e}")
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
    sys.exit(f"error: {failed} of {len(files)} files could not be embedded")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
