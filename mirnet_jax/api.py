"""The Python API: a trained model in three lines.

  import mirnet_jax
  model = mirnet_jax.load("runs/demo/workdir")        # or an exported directory
  embeddings = model.embed(waveform, sample_rate)     # [N speakers, E]

A separator's workdir gives `model.separate(waveform, sample_rate)` (`[N, samples]` at
16 kHz; `enroll=[...]` waveforms for vf_enrolled). Waveforms are numpy arrays
`[samples]` or `[samples, channels]` at any rate; they are mixed down and resampled to
16 kHz as the command-line tools do. `mirnet_jax.export(workdir, out)` writes an
inference-only directory (inference.py) that `load` takes as well.
"""

import numpy as np

from mirnet_jax import errors
from mirnet_jax import extraction
from mirnet_jax import inference
from mirnet_jax import separator as separator_lib
from mirnet_jax.data import audio


class Model:
  """A trained model (see the module docstring); `task`, `config` and `step` say which."""

  def __init__(self, restored: inference.Restored):
    self.restored = restored
    self.task, self.config, self.step = restored.task, restored.config, restored.step
    embedding_model = restored.conditioner() if self.task.is_separator else restored
    self._extractor = embedding_model and extraction.Extractor(embedding_model)
    self._separator = (separator_lib.Separator(restored) if self.task.is_separator
                       else None)

  def embed(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """The `[N, E]` embeddings of a mixture (a separator: those of its conditioner)."""
    if self._extractor is None:
      raise errors.UserError(f"a {self.task.name} model has no speaker embeddings")
    return self._extractor.embed_waveform(audio.to_mono_16k(np.asarray(waveform),
                                                            sample_rate))

  def separate(self, waveform: np.ndarray, sample_rate: int,
               enroll: list[np.ndarray] | None = None, enroll_rate: int | None = None):
    """`[N, samples]` 16 kHz waveforms, one per speaker (`enroll`: for vf_enrolled, one
    utterance per speaker at `enroll_rate`, default `sample_rate`)."""
    if self._separator is None:
      raise errors.UserError(f"a {self.task.name} model does not separate: load a "
                             "separator's workdir")
    rate = enroll_rate or sample_rate
    enroll = None if enroll is None else [audio.to_mono_16k(np.asarray(w), rate)
                                          for w in enroll]
    separated, _ = self._separator.separate(
        audio.to_mono_16k(np.asarray(waveform), sample_rate), enroll)
    return separated


def load(path: str, step: int | None = None) -> Model:
  """The trained model in `path`: a training workdir (its best checkpoint, or `step`) or
  a directory written by `export`."""
  return Model(inference.restore(path, step))


def export(workdir: str, out: str, step: int | None = None) -> str:
  """Writes an inference-only copy of `workdir`'s model to `out` (inference.export)."""
  return inference.export(workdir, out, step)
