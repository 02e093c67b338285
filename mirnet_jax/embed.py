r"""Speaker embeddings of mixtures from a trained workdir.

  python -m mirnet_jax.embed --workdir=runs/demo/workdir mix1.wav mix2.flac ...

writes `<name>.npy` (`[N, E]`: one embedding per speaker slot) beside each input (or in
`--out_dir`) and prints one line per file. Any sample rate or channel count is accepted.

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

import itertools
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from mirnet_jax import checkpointing
from mirnet_jax import features
from mirnet_jax import train
from mirnet_jax.data import audio
from mirnet_jax.data import shards


class Extractor:
  """A jitted, batched MIRNet forward pass restored from a workdir."""

  def __init__(self, workdir: str, step: int | None = None, batch_size: int = 16):
    self.config, self.num_classes = checkpointing.load_config(workdir)
    self.window = int(self.config.data.crop_frames)
    self.num_speakers = int(self.config.data.num_speakers)
    self.batch_size = batch_size
    self.model = train.build_model(self.config, self.num_classes)
    manager = checkpointing.make_manager(workdir, int(self.config.keep_checkpoints),
                                         read_only=True)
    if step is None:
      step = manager.best_step()
      step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
      raise checkpointing.CheckpointError(
          f"no checkpoint{'' if step is None else f' at step {step}'} in {workdir}")
    self.step = step
    tx, _ = train.make_optimizer(self.config)
    mesh = jax.make_mesh((1,), ("data",), devices=jax.local_devices()[:1])
    state = checkpointing.restore(
        manager, train.abstract_state(self.model, tx, self.config, mesh), step=step)
    self.variables = {"params": state.params, "batch_stats": state.batch_stats}
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
    # Level as in training: N sources of TARGET_RMS each sum to ~sqrt(N) * TARGET_RMS.
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
    if rms < 1e-6:
      raise audio.AudioError("silent (RMS below -120 dBFS)")
    scale = shards.TARGET_RMS * np.sqrt(self.num_speakers) / rms
    return self.embed(features.to_storage(features.stft(waveform * scale)))


def align_and_average(embeddings: np.ndarray) -> np.ndarray:
  """`[K, N, E]` window embeddings with unordered slots -> `[N, E]`."""
  n = embeddings.shape[1]
  perms = [list(p) for p in itertools.permutations(range(n))]
  total = embeddings[0].astype(np.float64).copy()
  for k in range(1, len(embeddings)):
    reference = total / k
    cost = [np.linalg.norm(reference - embeddings[k][p], axis=-1).sum() for p in perms]
    total += embeddings[k][perms[int(np.argmin(cost))]]
  return (total / len(embeddings)).astype(np.float32)


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
  try:
    extractor = Extractor(workdir, step)
  except checkpointing.CheckpointError as e:
    sys.exit(f"error: {e}")
  failed = 0
  for path in files:
    try:
      waveform = audio.load(path)
      embeddings = extractor.embed_waveform(waveform)
    except (audio.AudioError, OSError) as e:
      print(f"{path}: skipped: {e}", file=sys.stderr)
      failed += 1
      continue
    target_dir = out_dir or os.path.dirname(os.path.abspath(path))
    os.makedirs(target_dir, exist_ok=True)
    out = os.path.join(target_dir, os.path.splitext(os.path.basename(path))[0] + ".npy")
    tmp = f"{out}.tmp-{os.getpid()}.npy"
    np.save(tmp, embeddings)
    os.replace(tmp, out)
    windows = len(extractor.window_starts(features.num_frames(len(waveform))))
    print(f"{path}: {embeddings.shape[0]} x {embeddings.shape[1]} embeddings from "
          f"{len(waveform) / features.SAMPLE_RATE:.2f} s ({windows} windows) -> {out}")
  logging.info("checkpoint step %d", extractor.step)
  if failed:
    sys.exit(f"error: {failed} of {len(files)} files could not be embedded")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
