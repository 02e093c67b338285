"""Reading audio files as 16 kHz mono float32 (soundfile for I/O, soxr to resample).

`stream` yields a file as consecutive blocks, so a file of any length is read in bounded
memory; `load` returns the whole waveform. Both give the same samples (resampled by soxr at
librosa's default quality, with librosa's output length). `SampleReader` serves sample
ranges of such a stream, and `sum_of_squares` levels one, without holding it whole.
"""

import io
import itertools
import math
import os
import re
from typing import Iterable, Iterator

import librosa
import numpy as np
import soundfile as sf
import soxr

from mirnet_jax import errors
from mirnet_jax import features

BLOCK_SECONDS = 10.0  # of the file's audio read at a time by `stream`
_RESAMPLE_QUALITY = "soxr_hq"  # librosa.resample's default
# A WAV header's data length that libsndfile finds longer than the file ("data : 160000
# (should be 79978)"): the file was cut short. Lengths near 2 or 4 GiB are the placeholders
# of writers that stream to a pipe and cannot seek back to fill in the length.
_WAV_DATA_LENGTH_RE = re.compile(r"^\s*data\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_LENGTH = 0x7FFF0000
_DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, EOFError)
SUM_CHUNK = 1 << 20  # samples squared and summed at a time by `sum_of_squares` (8 MiB)


class AudioError(errors.UserError):
  """An audio file that cannot be used: missing, unreadable, corrupt, truncated, empty or
  not finite."""


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


def _open(path_or_bytes) -> sf.SoundFile:
  if isinstance(path_or_bytes, bytes):
    source = io.BytesIO(path_or_bytes)
  else:
    source = path_or_bytes
    if not os.path.exists(source):
      raise AudioError("no such file")
    if os.path.isdir(source):
      raise AudioError("a directory, not an audio file")
    if os.path.getsize(source) == 0:
      raise AudioError("empty file (0 bytes)")
  try:
    f = sf.SoundFile(source)
  except _DECODE_ERRORS as e:
    raise AudioError(f"cannot decode: {e}".replace("\n", " ")) from None
  for declared, actual in _WAV_DATA_LENGTH_RE.findall(f.extra_info):
    if int(actual) < int(declared) < _PLACEHOLDER_LENGTH:
      f.close()
      raise AudioError(f"truncated: its header declares {declared} bytes of audio, the "
                       f"file holds {actual}")
  return f


def stream(path_or_bytes, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
  """Yields a file path's (or bytes') audio as 16 kHz mono float32 blocks, in order.

  Any format libsndfile reads (FLAC, WAV, OGG, ...), any rate, any number of channels
  (averaged). At most `block_seconds` of the file is decoded at a time.

  Raises:
    AudioError: the file cannot be opened or decoded, is truncated, holds no samples or
      non-finite ones (possibly after some blocks were yielded).
  """
  with _open(path_or_bytes) as f:
    blocks = _decoded_blocks(f, max(1, int(block_seconds * f.samplerate)))
    if f.samplerate != features.SAMPLE_RATE:
      blocks = resample_stream(blocks, f.samplerate)
    yield from blocks


def _decoded_blocks(f: sf.SoundFile, frames: int) -> Iterator[np.ndarray]:
  """`f`'s audio as mono float32 blocks of `frames` samples at its own rate."""
  read = 0
  while True:
    try:
      data = f.read(frames, dtype="float32", always_2d=True)
    except _DECODE_ERRORS as e:
      raise AudioError(f"cannot decode: {e}".replace("\n", " ")) from None
    if len(data) == 0:
      if read == 0:
        raise AudioError("no samples")
      return
    block = data.mean(axis=1, dtype=np.float32)  # stereo (or more) is mixed down
    if not np.all(np.isfinite(block)):
      raise AudioError("non-finite samples")
    read += len(block)
    yield block


def resample_stream(blocks: Iterable[np.ndarray], rate: float) -> Iterator[np.ndarray]:
  """Mono float32 `blocks` at `rate` resampled to 16 kHz, one block at a time: bit for bit
  `librosa.resample` of their concatenation (soxr at its default quality, as a stream,
  then cut or zero-padded to its length, ceil(samples * 16000 / rate))."""
  resampler = soxr.ResampleStream(rate, features.SAMPLE_RATE, 1, dtype="float32",
                                  quality=_RESAMPLE_QUALITY)
  read, written = 0, 0
  for block in itertools.chain(blocks, [None]):
    last = block is None
    block = np.zeros(0, np.float32) if last else np.asarray(block, np.float32)
    read += len(block)
    out = resampler.resample_chunk(block, last=last)
    if last:
      target = math.ceil(read * (features.SAMPLE_RATE / rate))  # as librosa rounds it
      out = np.pad(out, (0, max(0, target - written - len(out))))[:max(0, target - written)]
    written += len(out)
    if len(out):
      yield out


def load(path_or_bytes) -> np.ndarray:
  """The whole of a file path's (or bytes') audio, 16 kHz mono float32 (see `stream`).

  Raises:
    AudioError: the file cannot be used (see `stream`).
  """
  return np.concatenate(list(stream(path_or_bytes)))


def gather(blocks: Iterable[np.ndarray], limit: int) -> tuple[np.ndarray | None, int]:
  """Reads `blocks` to the end: (their concatenation if at most `limit` samples long, else
  None; their number of samples). Holds at most `limit` samples and one block."""
  held, samples = [], 0
  for block in blocks:
    samples += len(block)
    if held is not None:
      held.append(block)
      if samples > limit:
        held = None
  return (np.concatenate(held) if held else None), samples


class SampleReader:
  """Sample ranges of a stream of blocks, read forwards: `take(start, stop)` returns samples
  [start, stop), zeros outside the signal, and forgets the samples before `start`."""

  def __init__(self, blocks: Iterable[np.ndarray]):
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


def sum_of_squares(blocks: Iterable[np.ndarray], samples: int,
                   chunk: int = SUM_CHUNK) -> np.float64:
  """`np.sum(np.square(x, dtype=np.float64))` of the concatenation `x` of `blocks` (`samples`
  long), to the last bit, holding about `chunk` (at least 128) samples at a time.

  A sum of blocks' sums would differ in the last bit: numpy sums a contiguous array
  pairwise, splitting it in halves (the first rounded down to a multiple of 8) down to 128
  elements. `np.sum` of one of those halves is that half's partial sum, so the halves that
  fit in a chunk are summed by numpy itself and the larger ones are split as numpy splits
  them (numpy's order is checked by tests/test_corpora.py).
  """
  take = SampleReader(blocks).take
  chunk = max(chunk, 128)  # numpy's smallest part is summed another way, not split

  def part(lo: int, hi: int) -> np.float64:
    if hi - lo <= chunk:
      return np.sum(np.square(take(lo, hi), dtype=np.float64))
    half = (hi - lo) // 2
    half -= half % 8
    return part(lo, lo + half) + part(lo + half, hi)

  return part(0, samples)
