r"""Separates a mixture into one waveform per speaker with a trained separator.

  python -m mirnet_jax.separate --workdir=runs/demo/vf_mirnet mixture.wav --out=separated/
  python -m mirnet_jax.separate --workdir=runs/demo/vf_enrolled mixture.wav --out=separated/ \
      --enroll=alice.flac,bob.flac

writes `<name>_s1.wav`, `<name>_s2.wav`, ... (16 kHz) and, for the VoiceFilter systems,
`<name>_embeddings.npy` (`[N, E]`: the embeddings each output was conditioned on). Any
input length, sample rate and channel count is accepted.

How a long input is handled: the input is levelled as in training (its RMS set to that of
N sources at the shards' level), then separated in chunks of `chunk_seconds` that overlap
by `overlap_seconds` and are cross-faded linearly in the waveform domain; every chunk is
padded to the same length, so the separator compiles once. The outputs of a chunk must
belong to the same speakers as those of the chunk before it:
  * `vf_mirnet` conditions every chunk on the same MIRNet embeddings of the whole input
    (windowed and slot-aligned, see embed.py), so output i is the same speaker throughout;
  * `vf_enrolled` conditions every chunk on the embeddings of the enrolment files;
  * `upit` has no such anchor: each chunk's outputs are permuted to best match (least
    squared error) the previous chunk's outputs on their overlap.
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
import soundfile

from mirnet_jax import checkpointing
from mirnet_jax import cli
from mirnet_jax import embed
from mirnet_jax import features
from mirnet_jax import train
from mirnet_jax.data import audio
from mirnet_jax.data import shards


class SeparationError(ValueError):
  """An input or a workdir the separator cannot use."""


class Separator:
  """A trained separator (`vf_mirnet`, `vf_enrolled` or `upit`) restored from a workdir."""

  def __init__(self, workdir: str, step: int | None = None, chunk_seconds: float = 8.0,
               overlap_seconds: float = 1.0):
    self.task, self.variables, self.step = train.restore_inference(workdir, step)
    if not self.task.is_separator:
      raise SeparationError(f"{workdir} holds a {self.task.name} model, not a separator")
    self.num_speakers = self.task.spec.num_speakers
    self.chunk = _whole_frames(chunk_seconds)
    self.overlap = min(_whole_frames(overlap_seconds), self.chunk // 2)
    if self.task.name in ("vf_mirnet", "vf_enrolled"):
      self.extractor = embed.Extractor(self.task.config.condition.workdir)
    self._masks = jax.jit(lambda v, x, e: self.task.masks(v, x, e)[0])

  def check_enrolment(self, count: int):
    """SeparationError unless `count` enrolment utterances suit this system."""
    if self.task.name == "vf_enrolled" and count != self.num_speakers:
      raise SeparationError(f"vf_enrolled separates enrolled speakers: give "
                            f"{self.num_speakers} enrolment files with --enroll, not {count}")
    if self.task.name != "vf_enrolled" and count:
      raise SeparationError(f"{self.task.name} takes no enrolment files (--enroll)")

  def conditioning(self, waveform: np.ndarray, enroll: list[np.ndarray] | None):
    """The `[N, E]` embeddings the outputs are conditioned on (None for uPIT)."""
    self.check_enrolment(len(enroll or []))
    if self.task.name == "vf_mirnet":
      return self.extractor.embed_waveform(waveform)
    if self.task.name == "vf_enrolled":
      return np.concatenate([self.extractor.embed_waveform(w) for w in enroll])
    return None

  def separate(self, waveform: np.ndarray, enroll=None) -> tuple[np.ndarray, np.ndarray]:
    """16 kHz mono `[L]` -> (`[N, L]` separated waveforms, `[N, E]` embeddings or None)."""
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))) if len(waveform) else 0
    if rms < 1e-6:
      raise SeparationError("silent or empty input (RMS below -120 dBFS): nothing to separate")
    scale = shards.TARGET_RMS * np.sqrt(self.num_speakers) / rms
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
  n = len(current)
  return min(itertools.permutations(range(n)),
             key=lambda p: sum(float(np.sum((current[p[i]] - previous[i]) ** 2))
                               for i in range(n)))


def write_wav(path: str, waveform: np.ndarray):
  """A 16 kHz PCM-16 WAV, written to a temporary name and renamed (never half-written)."""
  tmp = f"{path}.tmp-{os.getpid()}.wav"
  soundfile.write(tmp, np.clip(waveform, -1, 1), features.SAMPLE_RATE, subtype="PCM_16")
  os.replace(tmp, path)


def separate_file(separator: Separator, path: str, out_dir: str,
                  enroll: list[np.ndarray] | None = None) -> list[str]:
  """Separates one audio file into `out_dir` (`enroll`: enrolment waveforms for
  vf_enrolled); returns the paths written."""
  separated, embeddings = separator.separate(audio.load(path), enroll)
  stem = os.path.splitext(os.path.basename(path))[0]
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for i, source in enumerate(separated):
    written.append(os.path.join(out_dir, f"{stem}_s{i + 1}.wav"))
    write_wav(written[-1], source)
  if embeddings is not None:
    written.append(os.path.join(out_dir, f"{stem}_embeddings.npy"))
    tmp = f"{written[-1]}.tmp-{os.getpid()}.npy"
    np.save(tmp, embeddings.astype(np.float32))
    os.replace(tmp, written[-1])
  return written


if __name__ == "__main__":
  _WORKDIR = flags.DEFINE_string("workdir", None, "A trained separator's workdir.")
  _OUT = flags.DEFINE_string("out", None, "Directory for the separated waveforms.")
  _ENROLL = flags.DEFINE_list("enroll", None, "vf_enrolled only: one clean utterance per "
                              "speaker to extract, comma-separated.")
  _STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the best).")
  flags.mark_flags_as_required(["workdir", "out"])

  def main(argv):
    cli.quiet_libraries()
    paths = argv[1:]
    if not paths:
      sys.exit("error: give one or more mixture files to separate")
    try:
      separator = Separator(_WORKDIR.value, _STEP.value)
      separator.check_enrolment(len(_ENROLL.value or []))
      enroll = [audio.load(p) for p in _ENROLL.value or []]
    except (checkpointing.CheckpointError, SeparationError, audio.AudioError) as e:
      sys.exit(f"error: {e}")
    failed = 0
    for path in paths:
      try:
        written = separate_file(separator, path, _OUT.value, enroll)
      except (audio.AudioError, SeparationError) as e:
        failed += 1
        logging.warning("skipping %s: %s", path, e)
        print(f"{path}: error: {e}", file=sys.stderr)
        continue
      print(f"{path}: {len(written)} files -> {_OUT.value} ("
            f"{', '.join(os.path.basename(w) for w in written)})")
    if failed:
      sys.exit(f"error: {failed} of {len(paths)} files could not be separated")

  app.run(main)
