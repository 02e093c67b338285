"""The grain input pipeline: random multi-speaker mixtures from spectrogram shards.

Each example is a mixture of `num_speakers` distinct speakers of a split, each a random
`crop_frames` crop (3 s = 300 frames by default) of a random utterance at a random offset,
scaled by a random gain and summed in the complex STFT domain (exact by linearity; the
shards are level-normalised, see shards.TARGET_RMS). Each source's gain is uniform in
[-gain_db_range/2, +gain_db_range/2] dB, so with the default 5 dB two sources differ by
up to 5 dB either way, the spread of the usual WSJ0-2mix recipe (0-5 dB SNR). The paper
does not give one.

Determinism: example `g` (its global index in the stream) is drawn from
`default_rng([seed, epoch, g % examples_per_epoch])` with `epoch = g // examples_per_epoch`,
so every epoch draws new mixtures and batch k is the same whatever the number of hosts,
workers or restarts (a resumed stream starts at its saved global index). Host p of P
takes the contiguous block `[k*G + p*L, k*G + (p+1)*L)` of global batch k (G = P*L), so
concatenating the hosts' batches gives exactly the single-host batch.

Utterances shorter than the crop are zero-padded at the end (silence in the STFT domain,
what mixing a shorter waveform would give), not skipped: short utterances are few and
they are still speech of that speaker.

Training augmentation (`Augmentation`, none by default: the paper uses none), drawn from
its own stream `default_rng([seed, epoch, g % examples_per_epoch, 1])`, so that mixtures
without it are exactly those above:
  * spectral shaping: each source's complex STFT multiplied, before mixing, by a smooth
    random gain curve over frequency (another microphone's or vocal tract's colouring; a
    multiply per bin, and the mixture stays the exact sum of its shaped sources);
  * time and frequency masks (SpecAugment), drawn here and applied by the model to the
    mixture's normalised log-spectrum (`time_keep [T]`, `freq_keep [257]` in the batch).
The relative level range of training mixtures is its own field (`MixtureSpec.gain_db_range`
of the training spec), so that widening it leaves validation and the trials as they were.
"""

import dataclasses
import os
import sys

from absl import flags
import grain
import numpy as np

from mirnet_jax import features
from mirnet_jax.data import shards


# Control points of the spectral shaping curve: an octave apart (250 Hz to Nyquist), as a
# graphic equaliser's bands, since colourings are smooth on a log-frequency axis (a tilt, a
# broad presence peak); below the first, its value. Octaves keep the steepest slope
# between bins at about 1.5 dB for +-6 dB points.
SHAPING_POINTS = 6
SHAPING_LOW_HZ = 250.0
_AUGMENT_STREAM = 1


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Training-time augmentation of the sources and mixture (all off by default)."""
  spectral_shaping_db: float = 0.0  # each control point's gain uniform in +-value/2 dB
  time_masks: int = 0  # masks per mixture, each up to time_mask_frames wide
  time_mask_frames: int = 20
  freq_masks: int = 0  # masks per mixture, each up to freq_mask_bins wide
  freq_mask_bins: int = 20

  def __post_init__(self):
    for name in ("spectral_shaping_db", "time_masks", "time_mask_frames", "freq_masks",
                 "freq_mask_bins"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

  @property
  def masks(self) -> bool:
    return self.time_masks > 0 or self.freq_masks > 0


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
  num_speakers: int = 2
  crop_frames: int = 300
  gain_db_range: float = 5.0
  return_sources: bool = False  # per-source scaled STFTs, for separation training
  # Per source, a crop of another utterance of the same speaker: the enrolment reference
  # of the enrolled VoiceFilter baseline.
  return_references: bool = False
  augment: Augmentation = Augmentation()

  @property
  def crop_seconds(self) -> float:
    return self.crop_frames * features.HOP_LENGTH / features.SAMPLE_RATE


def examples_per_epoch(hours: float, spec: MixtureSpec) -> int:
  """Number of mixtures in `hours` of mixed audio (the paper: 93 h train, 15 h val)."""
  return max(1, int(round(hours * 3600 / spec.crop_seconds)))


class MixtureMaker:
  """Maps a global example index to one mixture example (a picklable callable)."""

  def __init__(self, split: shards.Split, spec: MixtureSpec, seed: int,
               epoch_length: int):
    self.split = split
    self.spec = spec
    self.seed = seed
    self.epoch_length = epoch_length
    # Utterances of each speaker (label), and the speakers that have any.
    self.speakers, self.utterances_of = shards.utterances_by_speaker(split.label)
    if len(self.speakers) < spec.num_speakers:
      raise ValueError(f"a mixture needs {spec.num_speakers} speakers; the split has "
                       f"{len(self.speakers)}")

  def draw(self, global_index: int) -> dict:
    """The random choices of one example: speakers, utterances, offsets, gains."""
    epoch, position = divmod(int(global_index), self.epoch_length)
    rng = np.random.default_rng([self.seed, epoch, position])
    n = self.spec.num_speakers
    who = rng.choice(len(self.speakers), size=n, replace=False)
    utterances = np.empty(n, np.int64)
    offsets = np.empty(n, np.int64)
    for k, s in enumerate(who):
      candidates = self.utterances_of[s]
      utterances[k] = candidates[rng.integers(len(candidates))]
      spare = int(self.split.frames[utterances[k]]) - self.spec.crop_frames
      offsets[k] = rng.integers(spare + 1) if spare > 0 else 0
    gains_db = rng.uniform(-0.5, 0.5, size=n) * self.spec.gain_db_range
    choice = dict(labels=self.speakers[who].astype(np.int32), utterances=utterances,
                  offsets=offsets, gains=(10.0 ** (gains_db / 20)).astype(np.float32))
    if self.spec.return_references:
      # Drawn after everything else, so that mixtures are the same with or without them.
      choice["reference_utterances"] = np.empty(n, np.int64)
      choice["reference_offsets"] = np.empty(n, np.int64)
      for k, s in enumerate(who):
        others = self.utterances_of[s][self.utterances_of[s] != utterances[k]]
        others = others if len(others) else self.utterances_of[s]  # a one-utterance speaker
        ref = others[rng.integers(len(others))]
        spare = int(self.split.frames[ref]) - self.spec.crop_frames
        choice["reference_utterances"][k] = ref
        choice["reference_offsets"][k] = rng.integers(spare + 1) if spare > 0 else 0
    choice.update(self._draw_augmentation(epoch, position))
    return choice

  def _draw_augmentation(self, epoch: int, position: int) -> dict:
    """Shaping curves `[N, 257]` and mask vectors of one example (empty when off)."""
    aug, out = self.spec.augment, {}
    if aug.spectral_shaping_db == 0 and not aug.masks:
      return out
    rng = np.random.default_rng([self.seed, epoch, position, _AUGMENT_STREAM])
    if aug.spectral_shaping_db > 0:
      points_db = rng.uniform(-0.5, 0.5, size=(self.spec.num_speakers, SHAPING_POINTS))
      out["shaping"] = shaping_curves(points_db * aug.spectral_shaping_db)
    if aug.masks:
      out["time_keep"] = _keep_mask(rng, self.spec.crop_frames, aug.time_masks,
                                    aug.time_mask_frames)
      out["freq_keep"] = _keep_mask(rng, features.NUM_BINS, aug.freq_masks,
                                    aug.freq_mask_bins)
    return out

  def __call__(self, global_index: int) -> dict:
    choice = self.draw(global_index)
    sources = crop_sources(self.split, choice["utterances"], choice["offsets"],
                           choice["gains"], self.spec.crop_frames)
    if "shaping" in choice:
      sources *= choice["shaping"][:, None, :, None]
    example = dict(mixture=to_float16(sources.sum(axis=0)),
                   labels=choice["labels"],
                   utterances=choice["utterances"].astype(np.int32))
    if self.spec.augment.masks:
      example.update(time_keep=choice["time_keep"], freq_keep=choice["freq_keep"])
    if self.spec.return_sources:
      example["sources"] = to_float16(sources)
    if self.spec.return_references:
      example["references"] = to_float16(crop_sources(
          self.split, choice["reference_utterances"], choice["reference_offsets"],
          np.ones(len(choice["labels"]), np.float32),
          self.spec.crop_frames))
    return example


def shaping_curves(points_db: np.ndarray) -> np.ndarray:
  """Gains `[N, 257]` (float32) from dB values `[N, SHAPING_POINTS]` at log-spaced
  frequencies from SHAPING_LOW_HZ to Nyquist, interpolated linearly in dB over
  log-frequency (constant below the first point, the DC bin included)."""
  nyquist = features.SAMPLE_RATE / 2
  points = np.log(np.geomspace(SHAPING_LOW_HZ, nyquist, points_db.shape[-1]))
  bins = np.log(np.maximum(np.linspace(0, nyquist, features.NUM_BINS), SHAPING_LOW_HZ))
  curves_db = np.stack([np.interp(bins, points, p) for p in points_db])
  return (10.0 ** (curves_db / 20)).astype(np.float32)


def _keep_mask(rng: np.random.Generator, size: int, count: int, max_width: int):
  """False over `count` spans of uniform width in [0, max_width] at uniform starts."""
  keep = np.ones(size, bool)
  for _ in range(count):
    width = int(rng.integers(min(max_width, size) + 1))
    start = int(rng.integers(size - width + 1))
    keep[start:start + width] = False
  return keep


def crop_sources(split: shards.Split, utterances, offsets, gains,
                 crop_frames: int) -> np.ndarray:
  """Scaled crops of utterances of `split`, float32 `[N, crop_frames, 257, 2]`; a crop
  past an utterance's end is zero-padded. Their sum is the mixture."""
  sources = np.zeros((len(utterances), crop_frames, features.NUM_BINS, 2), np.float32)
  for k, (utterance, offset, gain) in enumerate(zip(utterances, offsets, gains)):
    for position, piece in split.crop_pieces(utterance, offset, crop_frames):
      scaled_float32(piece, gain, out=sources[k, position:position + len(piece)])
  return sources


_SIGN = np.uint32(0x80000000)
_HALF_MAGNITUDE = np.uint32(0x7fff)


def scaled_float32(half: np.ndarray, gain: float, out: np.ndarray) -> np.ndarray:
  """`out[...] = float32(half) * float32(gain)`, bit for bit, 3.3x faster than numpy's
  float16 cast (scalar code under numpy 2.4 on an AVX-512 CPU, where that cast was the
  mixing's main cost).

  A half's magnitude bits shifted into a float32's place read as that half times 2**-112,
  normal or subnormal alike, so one float32 multiply by 2**112 * gain (exact: a power of
  two times the gain) rounds once, as the product of the cast value would. Finite halves
  only (shards hold no inf or NaN: prepare rejects non-finite audio).
  """
  bits = out.view(np.uint32)
  np.copyto(bits, half.view(np.uint16), casting="unsafe")
  sign = np.left_shift(bits, 16)
  np.bitwise_and(sign, _SIGN, out=sign)
  np.bitwise_and(bits, _HALF_MAGNITUDE, out=bits)
  np.left_shift(bits, 13, out=bits)
  np.bitwise_or(bits, sign, out=bits)
  np.multiply(out, np.float32(2.0 ** 112) * np.float32(gain), out=out)
  return out


_MAGNITUDE = np.uint32(0x7fffffff)
_HALF_INFINITY = np.uint32(0x7c00)
_HALF_SIGN = np.uint32(0x8000)
_HALF_NORMAL_MIN = np.uint32(113 << 23)  # 2**-14 as float32 bits
# Adding it to a float32's bits rebiases the exponent to a half's (15 - 127, modulo 2**32)
# and adds just under half a unit of the half's last place (0xfff).
_REBIAS_AND_ROUND = np.uint32((((15 - 127) << 23) + 0xfff) % 2 ** 32)
_HALF_SUBNORMAL_SHIFT = np.uint32(126 << 23)  # 0.5 as float32 bits


def to_float16(single: np.ndarray) -> np.ndarray:
  """`single.astype(float16)` (float32 in; round to nearest, ties to even), bit for bit,
  2x faster: numpy's cast is scalar code here as well (it was a third of a mixture's cost).

  Normal halves: the float32's bits plus the rebias and rounding constant, plus the last
  kept bit (ties to even), shifted right by 13 (a carry out of the mantissa rounds up into
  the exponent, up to infinity: clamped there). Subnormal halves: adding 0.5 in float32
  puts the value, rounded by the FPU to a multiple of 2**-24, in the low mantissa bits.
  Checked once against numpy's cast on all 2**32 float32 bit patterns but inf and NaN,
  which mixtures never hold (they become inf here); the tests check every half, the
  midpoints between halves and their neighbours.
  """
  bits = single.view(np.uint32)
  magnitude = np.bitwise_and(bits, _MAGNITUDE)
  scratch = np.right_shift(magnitude, 13)
  np.bitwise_and(scratch, 1, out=scratch)
  half = np.add(magnitude, _REBIAS_AND_ROUND)
  half += scratch
  np.right_shift(half, 13, out=half)
  np.minimum(half, _HALF_INFINITY, out=half)
  subnormal = scratch.view(np.float32)
  np.add(magnitude.view(np.float32), _HALF_SUBNORMAL_SHIFT.view(np.float32), out=subnormal)
  subnormal = subnormal.view(np.uint32)
  subnormal -= _HALF_SUBNORMAL_SHIFT
  np.copyto(half, subnormal, where=magnitude < _HALF_NORMAL_MIN)
  np.right_shift(bits, 16, out=magnitude)
  np.bitwise_and(magnitude, _HALF_SIGN, out=magnitude)
  half |= magnitude
  return half.astype(np.uint16).view(np.float16)


def global_index(local_index: int, local_batch: int, process_index: int,
                 process_count: int) -> int:
  """This host's `local_index`-th example -> its index in the global stream."""
  batch, within = divmod(int(local_index), local_batch)
  return (batch * process_count + process_index) * local_batch + within


def make_dataset(shard_dir: str, split: str, spec: MixtureSpec, *, seed: int,
                 epoch_length: int, local_batch: int, process_index: int = 0,
                 process_count: int = 1, num_examples: int | None = None,
                 first_example: int = 0, workers: int = 0, read_threads: int = 4,
                 manifest: dict | None = None) -> grain.IterDataset:
  """Batches of mixtures for this host.

  Args:
    shard_dir, split: where the utterances come from (`train`, `validation`, `seen`, `unseen`).
    spec: how to mix.
    seed: stream seed (use different seeds for training and validation streams).
    epoch_length: examples per epoch (`examples_per_epoch(hours, spec)`).
    local_batch: examples per batch on this host.
    process_index, process_count: this host and the number of hosts.
    num_examples: global examples in all (a finite pass for evaluation, rounded down to
      whole global batches); None repeats forever (training).
    first_example: global index at which the stream starts (a resumed run's position,
      checkpointing.next_example): the batches are those of an unbroken stream from 0.
    workers: grain worker processes (0: in this process).
    read_threads: threads per process reading and mixing examples.

  Returns:
    A grain IterDataset of dicts: `mixture` float16 [B, T, 257, 2], `labels` int32
    [B, N], `utterances` int32 [B, N] (indices into the split), and `sources` float16
    [B, N, T, 257, 2] when `spec.return_sources`, `references` (same shape: another
    utterance of each source's speaker) when `spec.return_references`, and bool
    `time_keep` [B, T] and `freq_keep` [B, 257] when `spec.augment` has masks.
  """
  split_data = shards.open_split(shard_dir, split, manifest)
  maker = MixtureMaker(split_data, spec, seed, epoch_length)
  global_batch = local_batch * process_count
  if num_examples is None:
    local_examples = sys.maxsize // (2 * process_count)
  else:
    local_examples = (num_examples // global_batch) * local_batch
    if local_examples == 0:
      raise ValueError(f"{num_examples} examples make no global batch of {global_batch}")
  ds = grain.MapDataset.range(local_examples)
  ds = ds.map(lambda i: first_example + global_index(i, local_batch, process_index,
                                                     process_count))
  # Batch while still a MapDataset, so that grain's workers (which slice the dataset
  # before it) each make whole batches: the batches are then the same for any number
  # of workers.
  ds = ds.map(maker).batch(local_batch, drop_remainder=True, batch_fn=stack_examples)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                            prefetch_buffer_size=2 * read_threads))
  return in_worker_processes(ds, workers)


_IN_WORKER_PROCESS = False  # set in grain's worker processes by cpu_only_worker
_SHARED_MEMORY_MIN_BYTES = 1 << 16


def stack_examples(examples: list[dict]) -> dict:
  """The batch of `examples`: each field stacked. In a grain worker process the large
  fields are stacked straight into shared memory, which grain then hands to the trainer
  as it is; stacked into private memory, grain would copy every batch into shared memory
  once more (measured: a fifth of a worker's time)."""
  batch = {}
  for key, first in examples[0].items():
    out = None
    if _IN_WORKER_PROCESS and first.nbytes * len(examples) >= _SHARED_MEMORY_MIN_BYTES:
      out = _WorkerBatchField((len(examples), *first.shape), first.dtype)
    batch[key] = np.stack([e[key] for e in examples], out=out)
  return batch


class _WorkerBatchField(grain.multiprocessing.SharedMemoryArray):
  """A batch field in shared memory that frees it if grain never sends it.

  grain sends a shared-memory array by its `metadata` (and the trainer unlinks it once
  used); a batch still in a stopping worker's read-ahead buffer is never sent, and would
  stay in /dev/shm until the trainer exits (with a "leaked shared_memory" warning).
  """

  @property
  def metadata(self):
    self._sent = True
    return super().metadata

  def __del__(self):
    if self.shm is not None and not getattr(self, "_sent", False):
      self.unlink_on_del()
    super().__del__()


def in_worker_processes(ds: grain.IterDataset, workers: int) -> grain.IterDataset:
  """`ds` made by `workers` grain worker processes (0: in this process), each confined
  to the CPU (`cpu_only_worker`)."""
  if workers <= 0:
    return ds
  if not flags.FLAGS.is_parsed():
    # grain's workers read absl flags; outside an absl app (tests, notebooks) there
    # are none to parse, so take the defaults.
    flags.FLAGS.mark_as_parsed()
  return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                        worker_init_fn=cpu_only_worker)


def cpu_only_worker(worker_index: int, worker_count: int):
  """Runs first in each grain worker process: JAX there may use the CPU only.

  The workers are spawned processes that import this package (and so JAX) to unpickle
  the pipeline. Nothing in them should start an accelerator backend, but if anything
  did, every worker would take memory on every GPU (or fail to open a TPU the trainer
  holds). Set before anything runs there, the platform list makes that impossible.
  """
  del worker_index, worker_count
  global _IN_WORKER_PROCESS
  _IN_WORKER_PROCESS = True
  os.environ["JAX_PLATFORMS"] = "cpu"
  os.environ["CUDA_VISIBLE_DEVICES"] = ""  # also for any other CUDA library imported
  if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_platforms", "cpu")
