"""Long recordings are levelled and transformed in blocks, to the same bits as whole."""

import json
import tracemalloc

import grain
import numpy as np
import pytest
import soundfile as sf

from mirnet_jax import features
from mirnet_jax.data import audio
from mirnet_jax.data import corpora
from mirnet_jax.data import shards
from tests import conftest


def _blocks(x, sizes=(997, 16000, 3)):
  """`x` as blocks of irregular sizes, from the start at each call."""
  def open_blocks():
    start, k = 0, 0
    while start < len(x):
      yield x[start:start + sizes[k % len(sizes)]]
      start += sizes[k % len(sizes)]
      k += 1
  return open_blocks


def _whole_path(x):
  """What preparation stored for a waveform before it streamed long ones."""
  rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
  scale = shards.TARGET_RMS / rms
  return features.to_storage(features.stft(x * scale)), scale


def _same_bits(a, b):
  return a.shape == b.shape and np.array_equal(a.view(np.uint16), b.view(np.uint16))


@pytest.mark.parametrize("n", [1, 127, 128, 129, 1000, 16000 * 7 + 37, 1_234_567])
@pytest.mark.parametrize("chunk", [1, 128, 1000, 1 << 16])
def test_sum_of_squares_is_numpys_sum_to_the_last_bit(n, chunk):
  x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
  got = audio.sum_of_squares(_blocks(x)(), n, chunk=chunk)
  assert got == np.sum(np.square(x, dtype=np.float64))


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")
@pytest.mark.parametrize("n", [100, 513, 16000 * 3 + 11])
@pytest.mark.parametrize("block_frames", [1, 7, 100, 10_000])
def test_stored_stft_in_blocks_is_the_whole_transform(n, block_frames):
  x = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
  scale = 0.7
  got = features.stored_stft(audio.SampleReader(_blocks(x)()).take, n, scale, block_frames)
  assert got.shape[0] == features.num_frames(n)
  assert _same_bits(got, features.to_storage(features.stft(x * scale)))


def _counting(open_blocks, calls):
  def counted():
    calls.append(1)
    return open_blocks()
  return counted


def test_a_long_utterance_is_read_three_times_and_stored_as_whole():
  x = conftest.synth_voice(101, 0, 95.0)
  want, want_scale = _whole_path(x)
  calls = []
  stored, scale, samples = shards.utterance_to_stored(
      _counting(_blocks(x, sizes=(160000,)), calls))  # the defaults: longer than 60 s
  assert len(calls) == 3 and samples == len(x)  # its length, its level, its STFT
  assert scale == want_scale and _same_bits(stored, want)
  # Small blocks: many block boundaries, most of them inside a frame.
  stored, scale, _ = shards.utterance_to_stored(_blocks(x), whole_seconds=1.0,
                                                block_frames=333)
  assert scale == want_scale and _same_bits(stored, want)


def test_a_short_utterance_is_read_once_and_transformed_whole():
  x = conftest.synth_voice(101, 1, 5.0)
  calls = []
  stored, scale, samples = shards.utterance_to_stored(_counting(_blocks(x), calls))
  want, want_scale = _whole_path(x)
  assert len(calls) == 1 and samples == len(x)
  assert scale == want_scale and _same_bits(stored, want)


def test_a_long_utterance_needs_memory_for_its_result_not_its_transform():
  x = conftest.synth_voice(102, 0, 300.0)

  def peak(**kwargs):
    tracemalloc.start()
    try:
      stored, _, _ = shards.utterance_to_stored(_blocks(x, sizes=(160000,)), **kwargs)
      return tracemalloc.get_traced_memory()[1], stored.nbytes
    finally:
      tracemalloc.stop()

  # First, librosa's lazily imported modules, so that they are not counted.
  shards.utterance_to_stored(_blocks(x[:16000]), whole_seconds=0.1, block_frames=10)
  streamed, result = peak(whole_seconds=5.0, block_frames=500)
  whole, _ = peak(whole_seconds=1e9)
  assert streamed < result + 16e6 < whole / 2


def test_silent_and_empty_long_utterances_are_refused():
  with pytest.raises(audio.AudioError, match="silent"):
    shards.utterance_to_stored(_blocks(np.zeros(16000 * 3, np.float32)), whole_seconds=1.0)
  with pytest.raises(audio.AudioError, match="no samples"):
    shards.utterance_to_stored(lambda: [np.zeros(0, np.float32)])


def test_prepare_stores_long_files_as_their_whole_transform(tmp_path):
  """A 16 kHz FLAC and a 44.1 kHz stereo WAV (resampled in blocks) of minutes, and a short
  file, through the shard writer with its defaults."""
  chapter = tmp_path / "corpus" / "train" / "301" / "7"
  chapter.mkdir(parents=True)
  sf.write(str(chapter / "301-7-0000.flac"), conftest.synth_voice(301, 0, 150.0), 16000)
  stereo = conftest.synth_voice(301, 1, 70.0, 44100)
  sf.write(str(chapter / "301-7-0001.wav"), np.stack([stereo, 0.5 * stereo], 1), 44100)
  sf.write(str(chapter / "301-7-0002.flac"), conftest.synth_voice(301, 2, 3.0), 16000)
  source = str(tmp_path / "corpus")
  refs = corpora.LibriSpeechDir(source).refs("train")
  path = str(tmp_path / "train-00000-of-00001.array_record")
  job = shards.ShardJob(source, path, tuple(refs))
  shards._write_shard(job)  # pylint: disable=protected-access
  with open(path[:-len(".array_record")] + ".json") as f:
    records = json.load(f)["records"]
  data = grain.sources.ArrayRecordDataSource([path])
  assert [r["utterance"] for r in records] == [r.utterance for r in refs]
  first = 0
  for ref, record in zip(refs, records):
    wave = audio.load(ref.locator)  # what the writer loaded whole before
    want, scale = _whole_path(wave)
    assert (record["samples"], record["frames"], record["scale"]) == (
        len(wave), len(want), scale), ref.locator
    assert record["chunks"] == -(-len(want) // shards.CHUNK_FRAMES)
    assert _same_bits(np.concatenate([shards.decode(data[k]) for k in range(
        first, first + record["chunks"])]), want), ref.locator
    first += record["chunks"]
