"""Separation of a mixture of any length into one waveform per speaker.

How a long input is handled: the input is levelled as in training (its RMS set to that of
N sources at the shards' level), then separated in chunks of `chunk_seconds` that overlap
by `overlap_seconds` and are cross-faded linearly in the waveform domain; every chunk is
padded to the same length, so the separator compiles once. The outputs of a chunk must
belong to the same speakers as those of the chunk before it:
  * `vf_mirnet` conditions every chunk on the same MIRNet embeddings of the whole input
    (windowed and slot-aligned, see extraction.py), so output i is the same speaker
    throughout;
  * `vf_enrolled` conditions every chunk on the embeddings of the enrolment utterances;
  * `upit` has no such anchor: each chunk's outputs are permuted to best match (least
    squared error) the previous chunk's outputs on their overlap.
"""

import io

import jax
import jax.numpy as jnp
import numpy as np
import soundfile

from mirnet_jax import errors
from mirnet_jax import extraction
from mirnet_jax import features
from mirnet_jax import inference
from mirnet_jax import permutations
from mirnet_jax import storage
from mirnet_jax.data import shards


class SeparationError(errors.UserError):
  """An input or a workdir the separator cannot use."""


class Separator:
  """A trained separator (`vf_mirnet`, `vf_enrolled` or `upit`): `model` is an
  inference.Restored one. Its conditioner (if any) is the one pinned in its checkpoint."""

  def __init__(self, model: inference.Restored, chunk_seconds: float = 8.0,
               overlap_seconds: float = 1.0):
    if not model.task.is_separator:
      raise SeparationError(f"{model.path} holds a {model.task.name} model, not a separator")
    self.task, self.variables, self.step = model.task, model.variables, model.step
    self.num_speakers = self.task.num_speakers
    self.chunk = _whole_frames(chunk_seconds)
    self.overlap = min(_whole_frames(overlap_seconds), self.chunk // 2)
    conditioner = model.conditioner()
    self.extractor = None if conditioner is None else extraction.Extractor(conditioner)
    self._masks = jax.jit(lambda v, x, e: self.task.masks(v, x, e)[0])

  def check_enrolment(self, count: int):
    """SeparationError unless `count` enrolment utterances suit this system."""
    if self.task.enrolled and count != self.num_speakers:
      raise SeparationError(f"{self.task.name} separates enrolled speakers: give "
                            f"{self.num_speakers} enrolment files with --enroll, not {count}")
    if not self.task.enrolled and count:
      raise SeparationError(f"{self.task.name} takes no enrolment files (--enroll)")

  def conditioning(self, waveform: np.ndarray, enroll: list[np.ndarray] | None):
    """The `[N, E]` embeddings the outputs are conditioned on (None: unconditioned)."""
    self.check_enrolment(len(enroll or []))
    if self.extractor is None:
      return None
    if self.task.enrolled:
      return np.concatenate([self.extractor.embed_waveform(w) for w in enroll])
    return self.extractor.embed_waveform(waveform)

  def separate(self, waveform: np.ndarray, enroll=None,
               embeddings: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """16 kHz mono `[L]` -> (`[N, L]` separated waveforms, `[N, E]` embeddings or None).

    `embeddings` (`[N, E]`, from `conditioning` of other audio) replace the conditioning
    of this input: Table 2's control rows feed other speakers' embeddings this way.
    """
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))) if len(waveform) else 0
    if rms < 1e-6:
      raise SeparationError("silent or empty input (RMS below -120 dBFS): nothing to separate")
    scale = shards.TARGET_RMS * np.sqrt(self.num_speakers) / rms
    if embeddings is None:
      embeddings = self.conditioning(waveform, enroll)
    hop = features.HOP_LENGTH
    chunk, step = self.chunk * hop, (self.chunk - self.overlap) * hop
    fade = self.overlap * hop
    out = np.zeros((self.num_speakers, len(waveform)), np.float32)
    previous_tail = None
    for start in range(0, max(len(waveform) - fade, 1), step):
      piece = np.zeros(chunk, np.float32)
      got = waveform[start:start + chunk]
      piece[:len(got)] = got * scale
      separated = self._separate_chunk(piece, embeddings)[:, :len(got)] / scale
      if previous_tail is not None and embeddings is None:  # uPIT: align to the last chunk
        n = min(fade, len(got))
        separated = separated[list(_best_match(separated[:, :n], previous_tail[:, :n]))]
      ramp = np.ones(len(got), np.float32)
      if start > 0:
        n = min(fade, len(got))
        ramp[:n] = np.linspace(0, 1, n + 2, dtype=np.float32)[1:-1]
        out[:, start:start + n] *= 1 - ramp[:n]
      out[:, start:start + len(got)] += separated * ramp
      previous_tail = separated[:, step:] if len(got) > step else None
    return out, embeddings

  def _separate_chunk(self, piece: np.ndarray, embeddings) -> np.ndarray:
    spec = features.stft(piece)  # [T, F] complex
    stored = features.to_storage(spec)[None]
    e = None if embeddings is None else jnp.asarray(embeddings[None], jnp.float32)
    masks = np.asarray(self._masks(self.variables, jnp.asarray(stored), e))[0]  # [N, T, F]
    magnitude = np.abs(spec)
    phase = spec / np.maximum(magnitude, 1e-8)
    return np.stack([features.istft(m * magnitude * phase, length=len(piece))
                     for m in masks]).astype(np.float32)


def _whole_frames(seconds: float) -> int:
  return max(1, int(round(seconds * features.SAMPLE_RATE / features.HOP_LENGTH)))


def _best_match(current: np.ndarray, previous: np.ndarray) -> tuple[int, ...]:
  """The permutation of `current`'s rows closest (squared error) to `previous`'s."""
  # cost[i, j]: current row j standing for previous row i.
  n = len(current)
  cost = np.array([[np.sum((current[j] - previous[i]) ** 2) for j in range(n)]
                   for i in range(n)], np.float64)
  return permutations.best(cost)


def write_wav(path: str, waveform: np.ndarray):
  """A 16 kHz PCM-16 WAV, written atomically (never half-written)."""
  buffer = io.BytesIO()
  soundfile.write(buffer, np.clip(waveform, -1, 1), features.SAMPLE_RATE, format="WAV",
                  subtype="PCM_16")
  storage.write_bytes(path, buffer.getvalue())
