"""The grain mixing pipeline: shapes, exact mixing, determinism, host slicing, splits."""

import gc
import os
import time

import grain
import numpy as np
import pytest

from mirnet_jax import features
from mirnet_jax.data import corpora
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards

SPEC = pipeline.MixtureSpec()


def _batches(shard_dir, n, **kwargs):
  options = dict(seed=0, epoch_length=64, local_batch=4)
  options.update(kwargs)
  split = options.pop("split", "train")
  spec = options.pop("spec", SPEC)
  return [b for _, b in zip(range(n), pipeline.make_dataset(shard_dir, split, spec, **options))]


@pytest.mark.parametrize("num_speakers", [2, 3])
def test_shapes_and_distinct_speakers(shard_dir, num_speakers):
  spec = pipeline.MixtureSpec(num_speakers=num_speakers, return_sources=True)
  batch = _batches(shard_dir, 1, spec=spec)[0]
  assert batch["mixture"].shape == (4, 300, 257, 2) and batch["mixture"].dtype == np.float16
  assert batch["labels"].shape == (4, num_speakers) and batch["labels"].dtype == np.int32
  assert batch["sources"].shape == (4, num_speakers, 300, 257, 2)
  for row in batch["labels"]:
    assert len(set(row)) == num_speakers
  # The sources sum to the mixture (up to the float16 rounding of each).
  sources = batch["sources"].astype(np.float32)
  error = np.abs(batch["mixture"].astype(np.float32) - sources.sum(axis=1))
  # Each source and the mixture are rounded to float16 (2**-11 relative) separately.
  assert np.all(error <= 2 ** -11 * (2 * np.abs(sources).sum(axis=1)) + 1e-6)


def test_mixture_equals_stft_of_the_mixed_waveforms(shard_dir, corpus):
  """End to end: shards + pipeline vs mixing the (level-normalised) waveforms."""
  split = shards.open_split(shard_dir, "train")
  maker = pipeline.MixtureMaker(split, SPEC, seed=3, epoch_length=64)
  reader = corpora.LibriSpeechDir(corpus["root"])
  by_id = {r.utterance: r for r in reader.refs("train")}
  checked = 0
  for g in range(40):
    choice = maker.draw(g)
    if np.any(choice["offsets"] < 3):
      continue  # the first frames of a crop see the utterance start; compare inside
    example = maker(g)
    length = 300 * 160 + 512
    mixed = np.zeros(length, np.float32)
    for k in range(2):
      wave = reader.load(by_id[split.utterance[choice["utterances"][k]]]).waveform
      wave = wave * shards.TARGET_RMS / np.sqrt(np.mean(np.square(wave, dtype=np.float64)))
      # Samples from frame `offset` on: frame t of the crop is frame offset+t.
      start = choice["offsets"][k] * 160
      part = wave[start:start + length]
      mixed[:len(part)] += choice["gains"][k] * part
    exact = features.stft(mixed)[2:250]  # frames inside both crops and the segment
    got = features.from_storage(example["mixture"])[2:250]
    assert np.max(np.abs(got - exact)) <= 5e-3 * np.max(np.abs(exact))
    checked += 1
  assert checked >= 3


def test_same_seed_same_batches_new_epoch_new_mixtures(shard_dir):
  a = _batches(shard_dir, 3)
  b = _batches(shard_dir, 3)
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  c = _batches(shard_dir, 1, seed=1)[0]
  assert not np.array_equal(a[0]["mixture"], c["mixture"])
  # Epoch length 4 (one batch): batch 1 is epoch 1's first batch, a new draw.
  short = _batches(shard_dir, 2, epoch_length=4)
  assert not np.array_equal(short[0]["labels"], short[1]["labels"]) or \
      not np.array_equal(short[0]["utterances"], short[1]["utterances"])


def test_two_hosts_make_the_same_global_batches_as_one(shard_dir):
  one = _batches(shard_dir, 3, local_batch=8)
  hosts = [_batches(shard_dir, 3, local_batch=4, process_index=p, process_count=2)
           for p in range(2)]
  for k in range(3):
    for key in one[k]:
      np.testing.assert_array_equal(
          one[k][key], np.concatenate([hosts[0][k][key], hosts[1][k][key]]))


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_do_not_change_the_batches_nor_leave_shared_memory(shard_dir,
                                                                            workers):
  ref = _batches(shard_dir, 4)
  before = set(os.listdir("/dev/shm"))
  it = iter(pipeline.make_dataset(shard_dir, "train", SPEC, seed=0, epoch_length=64,
                                  local_batch=4, workers=workers))
  with_workers = [next(it) for _ in range(4)]
  # Batches come in shared memory, made there by the workers (stack_examples).
  assert isinstance(with_workers[0]["mixture"], grain.multiprocessing.SharedMemoryArray)
  for x, y in zip(ref, with_workers):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  # Stopped with batches read ahead: the workers free those they never sent, the
  # trainer those it received.
  it.close()
  del it, with_workers, x, y
  gc.collect()
  deadline = time.monotonic() + 10
  while set(os.listdir("/dev/shm")) - before and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not set(os.listdir("/dev/shm")) - before


def test_a_stream_started_at_a_saved_position_continues_the_unbroken_one(shard_dir):
  """What a resumed run reads (checkpointing.next_example): the same batches as the run
  it resumes, whatever the hosts and workers of either."""
  unbroken = _batches(shard_dir, 4, local_batch=8, epoch_length=24)
  # From example 16: batches 2 and 3, crossing into the second epoch at example 24.
  resumed = [_batches(shard_dir, 2, local_batch=4, process_index=p, process_count=2,
                      epoch_length=24, first_example=16, workers=p) for p in range(2)]
  for k in range(2):
    for key in unbroken[k]:
      np.testing.assert_array_equal(
          unbroken[k + 2][key], np.concatenate([resumed[0][k][key], resumed[1][k][key]]))


def test_training_batches_never_see_heldout_or_unseen_utterances(shard_dir):
  train = shards.open_split(shard_dir, "train")
  heldout = {u for split in ("validation", "seen")
             for u in shards.open_split(shard_dir, split).utterance}
  unseen = set(shards.open_split(shard_dir, "unseen").utterance)
  used = set()
  for batch in _batches(shard_dir, 40, epoch_length=16):
    used |= {train.utterance[i] for i in batch["utterances"].ravel()}
    assert np.all(train.label[batch["utterances"]] == batch["labels"])
  assert used and not used & heldout and not used & unseen
  assert len(used) > len(train) // 2  # the stream covers the training utterances


def test_short_utterances_are_zero_padded(shard_dir):
  split = shards.open_split(shard_dir, "train")
  maker = pipeline.MixtureMaker(split, pipeline.MixtureSpec(return_sources=True), seed=0,
                                epoch_length=1000)
  for g in range(200):
    choice = maker.draw(g)
    frames = split.frames[choice["utterances"]]
    if frames.min() < 300:
      k = int(np.argmin(frames))
      sources = maker(g)["sources"]
      assert choice["offsets"][k] == 0
      assert np.all(sources[k, frames[k]:] == 0)
      assert np.any(sources[k, :frames[k]] != 0)
      return
  pytest.fail("no short utterance drawn")


def test_finite_pass_for_evaluation(shard_dir):
  batches = _batches(shard_dir, 100, split="seen", num_examples=10)
  assert len(batches) == 2  # 10 examples -> two whole batches of 4
  with pytest.raises(ValueError, match="no global batch"):
    pipeline.make_dataset(shard_dir, "seen", SPEC, seed=0, epoch_length=4,
                          local_batch=4, num_examples=3)


def test_epoch_length_from_hours():
  assert pipeline.examples_per_epoch(93, SPEC) == 111600  # the paper's 93 h of 3 s mixtures
  assert SPEC.crop_seconds == 3.0


def test_the_fast_half_to_float_scaling_is_the_cast_times_the_gain_bit_for_bit():
  halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
  halves = halves[np.isfinite(halves)]  # every finite half: subnormals, zeros, extremes
  for gain in (1.0, 0.5623413, 1.7782794, 0.1):
    out = np.empty(halves.shape, np.float32)
    pipeline.scaled_float32(halves, gain, out)
    want = halves.astype(np.float32) * np.float32(gain)
    np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))


def test_to_float16_rounds_as_numpy_at_every_half_and_between():
  halves = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
  halves = halves[np.isfinite(halves)]
  singles = np.unique(halves.astype(np.float32))  # sorted, -0 and +0 one value
  # Midpoints between neighbouring halves (ties: to even) and a float32 ulp either side,
  # halves beyond the largest (overflow to inf), and the float32 subnormals.
  between = singles[:-1] + (singles[1:] - singles[:-1]) / 2  # exact in float32
  up = np.nextafter(between, np.float32(np.inf))
  down = np.nextafter(between, np.float32(-np.inf))
  rng = np.random.default_rng(0)
  spread = rng.standard_normal(100_000).astype(np.float32) * np.float32(2.0) ** rng.integers(
      -40, 18, 100_000).astype(np.float32)
  tiny = np.arange(1, 4096, dtype=np.uint32).view(np.float32)
  values = np.concatenate([singles, -0.0 * singles[:1], between, up, down, spread, tiny,
                           -tiny, np.float32([65504, 65519.99, 65520, 1e6, 3e38, -3e38])])
  with np.errstate(over="ignore"):
    want = values.astype(np.float16)
  np.testing.assert_array_equal(pipeline.to_float16(values).view(np.uint16),
                                want.view(np.uint16))
  # Any shape, as a float16 array of it.
  block = values[:24].reshape(2, 3, 4)
  assert pipeline.to_float16(block).shape == (2, 3, 4)


def _worker_jax_state(i):
  """What JAX looks like inside the process that made element `i`."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  # Private, but the only way to ask without starting one: JAX has no public query.
  initialised = xla_bridge.backends_are_initialized()
  return dict(pid=np.int64(os.getpid()), platforms=np.array(jax.config.jax_platforms or ""),
              initialised=np.bool_(initialised), cuda=np.array(
                  os.environ.get("CUDA_VISIBLE_DEVICES", "unset")), index=np.int64(i))


def test_worker_processes_are_confined_to_the_cpu_and_start_no_backend(shard_dir):
  ds = grain.MapDataset.range(8).map(_worker_jax_state).to_iter_dataset()
  seen = list(pipeline.in_worker_processes(ds, workers=2))
  assert sorted(int(e["index"]) for e in seen) == list(range(8))
  assert {int(e["pid"]) for e in seen} - {os.getpid()}, "made in this process"
  assert all(int(e["pid"]) != os.getpid() for e in seen)
  for e in seen:
    assert str(e["platforms"]) == "cpu" and str(e["cuda"]) == ""
    assert not bool(e["initialised"])
  # Making mixtures there starts no backend either.
  maker = pipeline.MixtureMaker(shards.open_split(shard_dir, "train"),
                                pipeline.MixtureSpec(), seed=0, epoch_length=64)
  ds = grain.MapDataset.range(4).map(lambda i: (maker(i), _worker_jax_state(i))[1])
  for e in pipeline.in_worker_processes(ds.to_iter_dataset(), workers=2):
    assert int(e["pid"]) != os.getpid() and not bool(e["initialised"])


AUGMENT = pipeline.Augmentation(spectral_shaping_db=12.0, time_masks=2, time_mask_frames=30,
                                freq_masks=2, freq_mask_bins=40)


def test_shaping_curves_are_smooth_gains_through_their_control_points():
  points_db = np.array([[6.0, -6, 3, -3, 6, 0], [0.0] * 6])
  curves = pipeline.shaping_curves(points_db)
  assert curves.shape == (2, 257) and curves.dtype == np.float32
  np.testing.assert_allclose(curves[1], 1.0)
  curve_db = 20 * np.log10(curves[0])
  assert curve_db.max() <= 6 + 1e-4 and curve_db.min() >= -6 - 1e-4
  # Constant below the first control point (250 Hz: bins 0-8), the last at Nyquist;
  # the others at their frequencies (500 Hz is bin 16, 1 kHz bin 32).
  np.testing.assert_allclose(curve_db[:9], 6.0, atol=1e-4)
  np.testing.assert_allclose(curve_db[[16, 32, -1]], [-6.0, 3.0, 0.0], atol=1e-4)
  # Piecewise linear on log-frequency: the steepest step between bins is the first one
  # above 250 Hz, 0.17 of an octave of the first octave's 12 dB.
  assert np.abs(np.diff(curve_db)).max() < 2.1


def test_augmentation_leaves_the_unaugmented_draws_and_shapes_each_source(shard_dir):
  split = shards.open_split(shard_dir, "train")
  plain_spec = pipeline.MixtureSpec(return_sources=True)
  plain = pipeline.MixtureMaker(split, plain_spec, seed=5, epoch_length=64)
  augmented = pipeline.MixtureMaker(
      split, pipeline.MixtureSpec(return_sources=True, augment=AUGMENT), seed=5,
      epoch_length=64)
  for g in (0, 7, 70):
    a, b = plain.draw(g), augmented.draw(g)
    for key in ("labels", "utterances", "offsets", "gains"):
      np.testing.assert_array_equal(a[key], b[key])  # augmentation has its own stream
    x, y = plain(g), augmented(g)
    assert "time_keep" not in x and y["time_keep"].shape == (300,)
    assert y["freq_keep"].shape == (257,) and y["freq_keep"].dtype == bool
    assert 0 < (~y["time_keep"]).sum() <= 60 or (~y["freq_keep"]).sum() > 0
    # Each source is the plain one times its own curve (in float32, before float16).
    shaping = b["shaping"]
    assert shaping.shape == (2, 257) and not np.allclose(shaping[0], shaping[1])
    expected = pipeline.to_float16(
        pipeline.crop_sources(split, a["utterances"], a["offsets"], a["gains"], 300)
        * shaping[:, None, :, None])
    np.testing.assert_array_equal(y["sources"], expected)
  # Deterministic from (seed, index); another index draws other curves and masks.
  np.testing.assert_array_equal(augmented.draw(7)["shaping"], augmented.draw(7)["shaping"])
  assert not np.array_equal(augmented.draw(7)["time_keep"], augmented.draw(8)["time_keep"])


def test_masks_reach_the_batch_and_bad_augmentation_is_refused(shard_dir):
  spec = pipeline.MixtureSpec(augment=AUGMENT)
  batch = _batches(shard_dir, 1, spec=spec)[0]
  assert batch["time_keep"].shape == (4, 300) and batch["freq_keep"].shape == (4, 257)
  assert batch["time_keep"].dtype == bool
  with pytest.raises(ValueError, match="time_masks"):
    pipeline.Augmentation(time_masks=-1)
