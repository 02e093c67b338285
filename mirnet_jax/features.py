"""Spectral features of the paper (Section 4.1.1) and their storage format.

16 kHz audio, 32 ms Hann window (512 samples), 10 ms hop (160 samples), FFT 512 -> 257
bins. Shards store the *complex* STFT so that a mixture is formed exactly by linearity,
STFT(a + g*b) = STFT(a) + g*STFT(b); the log-magnitude the model reads is taken after
mixing (on the accelerator, see `log_magnitude`).

`stored_frames` and `stored_stft` give the stored STFT of a waveform read forwards in
pieces, bit-identical to that of the whole waveform, so a long file is transformed in
bounded memory (embedding extraction, shard preparation).

Storage is float16 real/imag pairs, `[frames, 257, 2]`: half the bytes (and input-pipeline
memory traffic) of float32, an 11-bit mantissa (relative error <= 2**-11, ~0.004 dB in
magnitude) far below anything the log-spectrum features resolve, and a range (max 65504)
that covers |STFT| <= 512 for any waveform in [-1, 1]. bfloat16 would keep only 8 bits.
"""

import librosa
import numpy as np

SAMPLE_RATE = 16000
WIN_LENGTH = 512  # 32 ms
HOP_LENGTH = 160  # 10 ms
N_FFT = 512
NUM_BINS = N_FFT // 2 + 1  # 257
WINDOW = "hann"
# librosa's centred STFT: frame t covers samples [t*hop - n_fft/2, t*hop + n_fft/2).
CENTER = True
STORAGE_DTYPE = np.float16
# Floor inside the log: -100 dB relative to a full-scale sine's bin magnitude, so
# digital silence (zero padding) maps to a finite value instead of -inf.
LOG_FLOOR = 1e-5


def feature_params() -> dict:
  """The feature configuration, as recorded in every shard manifest."""
  return dict(sample_rate=SAMPLE_RATE, win_length=WIN_LENGTH, hop_length=HOP_LENGTH,
              n_fft=N_FFT, num_bins=NUM_BINS, window=WINDOW, center=CENTER,
              storage="float16 real/imag [frames, bins, 2]")


def num_frames(num_samples: int) -> int:
  """Frames of a centred STFT of `num_samples` samples."""
  return 1 + num_samples // HOP_LENGTH


def stft(waveform: np.ndarray) -> np.ndarray:
  """Complex STFT of a 16 kHz mono waveform, `[frames, 257]` complex64."""
  spec = librosa.stft(np.asarray(waveform, np.float32), n_fft=N_FFT,
                      hop_length=HOP_LENGTH, win_length=WIN_LENGTH, window=WINDOW,
                      center=CENTER, pad_mode="constant")
  return spec.T.astype(np.complex64)


def istft(spec: np.ndarray, length: int | None = None) -> np.ndarray:
  """Inverse of `stft` (`[frames, 257]` complex -> waveform)."""
  return librosa.istft(np.asarray(spec).T, n_fft=N_FFT, hop_length=HOP_LENGTH,
                       win_length=WIN_LENGTH, window=WINDOW, center=CENTER,
                       length=length)


def stored_frames(take, first: int, stop: int, frames: int, scale) -> np.ndarray:
  """Frames [first, stop) of `to_storage(stft(x * scale))` of a waveform `x` of `frames`
  frames, bit-identical; frames from `frames` on are zero (the padding of a short input).

  `take(start, stop)` returns the samples [start, stop) of `x`, zeros outside it (e.g.
  `audio.SampleReader.take`); it is called once, for the samples these frames read.
  """
  out = np.zeros((stop - first, NUM_BINS, 2), STORAGE_DTYPE)
  last = min(stop, frames)
  if last <= first:
    return out
  # A centred frame t reads samples [t*hop - n_fft/2, t*hop + n_fft/2): transform from
  # `margin` frames earlier, whose own windows reach before the excerpt, and drop those.
  half = N_FFT // 2
  margin = -(-half // HOP_LENGTH)
  excerpt = take((first - margin) * HOP_LENGTH, (last - 1) * HOP_LENGTH + half)
  spec = stft(excerpt * scale)[margin:margin + last - first]
  out[:last - first] = to_storage(spec)
  return out


def stored_stft(take, samples: int, scale, block_frames: int) -> np.ndarray:
  """`to_storage(stft(x * scale))` of a waveform `x` of `samples` samples, bit-identical,
  transformed `block_frames` frames at a time (`take` as in `stored_frames`, called with
  ranges in increasing order): beyond the result, memory is bounded by the block."""
  frames = num_frames(samples)
  out = np.empty((frames, NUM_BINS, 2), STORAGE_DTYPE)
  for first in range(0, frames, block_frames):
    stop = min(first + block_frames, frames)
    out[first:stop] = stored_frames(take, first, stop, frames, scale)
  return out


def to_storage(spec: np.ndarray) -> np.ndarray:
  """Complex `[T, F]` -> float16 `[T, F, 2]` (real, imag)."""
  return np.stack([spec.real, spec.imag], axis=-1).astype(STORAGE_DTYPE)


def from_storage(stored: np.ndarray) -> np.ndarray:
  """float `[..., F, 2]` -> complex64 `[..., F]`."""
  stored = np.asarray(stored, np.float32)
  return stored[..., 0] + 1j * stored[..., 1]


def log_magnitude(real_imag, xp=np):
  """log|X| from `[..., F, 2]` real/imag pairs (numpy or jax.numpy via `xp`).

  The model calls this with `xp=jax.numpy` on the mixture the input pipeline built, so
  the pipeline only moves float16 pairs and the transcendental work runs on the
  accelerator.
  """
  re = real_imag[..., 0].astype(xp.float32)
  im = real_imag[..., 1].astype(xp.float32)
  return 0.5 * xp.log(re * re + im * im + LOG_FLOOR * LOG_FLOOR)
