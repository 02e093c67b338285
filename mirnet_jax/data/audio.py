"""Reading audio files as 16 kHz mono float32 (soundfile for I/O, librosa to resample)."""

import io

import librosa
import numpy as np
import soundfile as sf

from mirnet_jax import features


class AudioError(ValueError):
  """An audio file that cannot be used: unreadable, corrupt, empty or not finite."""


def to_mono_16k(data: np.ndarray, sample_rate: int) -> np.ndarray:
  """`[samples]` or `[samples, channels]` at any rate -> float32 mono at 16 kHz."""
  data = np.asarray(data, np.float32)
  if data.ndim == 2:
    data = data.mean(axis=1)  # stereo (or more) is mixed down
  if data.size == 0:
    raise AudioError("no samples")
  if not np.all(np.isfinite(data)):
    raise AudioError("non-finite samples")
  if sample_rate != features.SAMPLE_RATE:
    data = librosa.resample(data, orig_sr=sample_rate, target_sr=features.SAMPLE_RATE)
  return data.astype(np.float32)


def load(path_or_bytes) -> np.ndarray:
  """Loads a file path (or bytes) that libsndfile reads (FLAC, WAV, OGG, ...).

  Raises:
    AudioError: the file cannot be decoded or holds no usable samples.
  """
  source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
  try:
    data, sample_rate = sf.read(source, dtype="float32", always_2d=True)
  except (sf.LibsndfileError, RuntimeError, EOFError) as e:
    raise AudioError(f"cannot decode: {e}".replace("\n", " ")) from None
  return to_mono_16k(data, sample_rate)
