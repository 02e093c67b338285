"""Speaker embeddings of mixtures of any length with a trained embedding model.

The extractor is compiled once, for batches of `batch_size` windows of the training
segment length W (`config.data.crop_frames`):
  * an input of at most W frames is zero-padded to W (as short utterances are in training);
  * a longer input is cut into windows of W frames with hop W/2, the last one ending at the
    input's end, so no window is padded. The model's output slots are not ordered, so the
    slots of each window are aligned to the running mean of the windows before it (the
    permutation with the smallest summed Euclidean distance), then averaged.
A waveform or file is levelled as in training and read in blocks, so memory does not grow
with its length.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mirnet_jax import errors
from mirnet_jax import features
from mirnet_jax import inference
from mirnet_jax import permutations
from mirnet_jax.data import audio
from mirnet_jax.data import shards


class Extractor:
  """A jitted, batched forward pass of a trained embedding model (MIRNet or the speaker
  model): `model` is an inference.Restored one."""

  def __init__(self, model: inference.Restored, batch_size: int = 16):
    if model.task.is_separator:
      raise errors.UserError(f"{model.path} holds a {model.task.name} separator, not an "
                             "embedding model (use python -m mirnet_jax.separate)")
    self.config = model.config
    self.window = int(self.config.data.crop_frames)
    self.num_speakers = model.task.num_speakers
    self.batch_size = batch_size
    self.variables, self.step = model.variables, model.step
    self.model = model.task.model
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
    take = audio.SampleReader(open_blocks()).take
    mean = AlignedMean()
    for first in range(0, len(starts), self.batch_size):
      batch = starts[first:first + self.batch_size]
      stored = features.stored_frames(take, batch[0], batch[-1] + self.window, frames,
                                      scale)
      windows = np.stack([stored[s - batch[0]:s - batch[0] + self.window] for s in batch])
      mean.add(self.embed_windows(windows)["embeddings"])
    return mean.value(), samples, len(starts)


class AlignedMean:
  """The running mean of `[N, E]` window embeddings whose slots are unordered: each window's
  slots are aligned to the mean of the windows before it (the permutation with the smallest
  summed Euclidean distance) before it is added."""

  def __init__(self):
    self._total = None
    self._count = 0

  def add(self, embeddings: np.ndarray):
    """Adds `[K, N, E]` windows, in order."""
    for e in embeddings:
      if self._total is None:
        self._total = e.astype(np.float64)
      else:
        reference = self._total / self._count
        # cost[i, j]: slot j of this window standing for slot i of the mean.
        cost = np.linalg.norm(reference[:, None] - e[None], axis=-1)
        self._total += e[list(permutations.best(cost))]
      self._count += 1

  def value(self) -> np.ndarray:
    return (self._total / self._count).astype(np.float32)


def align_and_average(embeddings: np.ndarray) -> np.ndarray:
  """`[K, N, E]` window embeddings with unordered slots -> `[N, E]` (see AlignedMean)."""
  mean = AlignedMean()
  mean.add(embeddings)
  return mean.value()
