"""Corpus readers: LibriSpeech-layout directories and TFDS librispeech (mocked)."""

import os
import subprocess
import sys

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest
import soundfile as sf

from mirnet_jax import errors
from mirnet_jax.data import audio
from mirnet_jax.data import corpora
from mirnet_jax.data import shards
from mirnet_jax.data import sources
from mirnet_jax.data import wsj0_2mix
from tests import conftest
from tests import tfds_fakes


def test_directory_reader_lists_and_loads(corpus):
  reader = corpora.LibriSpeechDir(corpus["root"])
  assert reader.subsets() == ["test", "train"]
  refs = reader.refs("train")
  # 5 speakers x 6 utterances + the stereo wav + 2 bad files, in a stable order.
  assert len(refs) == 5 * 6 + 3
  assert refs == sorted(refs, key=lambda r: r.locator)
  ref = refs[0]
  assert (ref.speaker, ref.chapter, ref.utterance) == ("101", "7", "101-7-0000")
  utt = reader.load(ref)
  assert utt.waveform.dtype == np.float32 and utt.waveform.ndim == 1
  expected = conftest.synth_voice(101, 0, conftest.utterance_seconds(101, 0))
  np.testing.assert_allclose(utt.waveform, expected, atol=1e-4)


def test_other_rates_and_stereo_become_16k_mono(corpus):
  reader = corpora.LibriSpeechDir(corpus["root"])
  ref = next(r for r in reader.refs("train") if r.utterance == "101-7-0090")
  wave = reader.load(ref).waveform
  assert wave.ndim == 1 and abs(len(wave) - 4 * 16000) <= 1


def test_bad_files_are_skipped_and_counted(corpus):
  reader = corpora.LibriSpeechDir(corpus["root"])
  skipped = corpora.Skipped()
  utts = list(corpora.iter_utterances(reader, ["train"], skipped))
  assert len(utts) == 5 * 6 + 1
  assert sorted(s["locator"] for s in skipped.items) == sorted(corpus["bad"])


def test_audio_loader_rejects_garbage(tmp_path):
  path = tmp_path / "x.wav"
  path.write_bytes(b"RIFF not really a wav")
  with pytest.raises(audio.AudioError):
    audio.load(str(path))
  sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 16000)
  with pytest.raises(audio.AudioError):
    audio.load(str(tmp_path / "empty.wav"))


def test_missing_directory_is_a_corpus_error(tmp_path):
  with pytest.raises(corpora.CorpusError, match="not found"):
    corpora.LibriSpeechDir(str(tmp_path / "nope"))


def test_open_corpus_picks_the_reader_of_a_source(corpus, tmp_path):
  reader = sources.open_corpus(corpus["root"])
  assert isinstance(reader, corpora.LibriSpeechDir)
  assert reader.subsets() == ["test", "train"]
  (tmp_path / "tt" / "mix").mkdir(parents=True)
  reader = sources.open_corpus(f"{wsj0_2mix.PREFIX}{tmp_path}")
  assert isinstance(reader, wsj0_2mix.Wsj0Mix2Dir) and reader.subsets() == ["tt"]
  with pytest.raises(corpora.CorpusError, match="WSJ0-2mix directory not found"):
    sources.open_corpus(f"{wsj0_2mix.PREFIX}{tmp_path / 'nope'}")
  with pytest.raises(corpora.CorpusError, match="not found"):
    sources.open_corpus(str(tmp_path / "nope"))


def test_corpora_does_not_import_wsj0_2mix():
  # wsj0_2mix imports corpora; sources imports both, so there is no cycle.
  code = ("import sys; from mirnet_jax.data import corpora; "
          "assert 'mirnet_jax.data.wsj0_2mix' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_corpus_and_audio_errors_are_user_errors():
  assert issubclass(corpora.CorpusError, errors.UserError)
  assert issubclass(audio.AudioError, errors.UserError)
  assert issubclass(audio.AudioError, ValueError)  # corpora.load_or_skip still skips them


def test_subset_globs():
  available = ["dev-clean", "test-other", "train-clean-100", "train-other-500", "test"]
  assert corpora.select_subsets(available, ["train*"]) == ["train-clean-100",
                                                            "train-other-500"]
  assert corpora.select_subsets(available, ["dev*", "test*"]) == ["dev-clean", "test",
                                                                   "test-other"]


def test_tfds_reader_on_mock_data(monkeypatch, tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("tensorflow")
  # mock_data builds nothing, but the reader checks what building the default config
  # would need (test_tfds_build.py builds for real).
  tfds_fakes.with_build_decoders(monkeypatch, tmp_path)
  with tfds.testing.mock_data(num_examples=4):
    reader = sources.open_corpus("tfds:librispeech")
    assert "dev_clean" in reader.subsets() and "train_clean100" in reader.subsets()
    refs = reader.refs("dev_clean")
    assert len(refs) == 4
    utt = reader.load(refs[1])
    assert utt.speaker.isdigit() and utt.chapter.isdigit() and utt.utterance
    assert utt.waveform.dtype == np.float32 and utt.waveform.ndim == 1
    assert np.all(np.abs(utt.waveform) <= 1.0)


def test_tfds_without_tensorflow_gives_a_hint(monkeypatch):
  import builtins
  real_import = builtins.__import__

  def no_tensorflow(name, *args, **kwargs):
    if name == "tensorflow" or name.startswith("tensorflow."):
      raise ImportError(name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_tensorflow)
  with pytest.raises(corpora.CorpusError, match=r"pip install -e '\.\[tfds\]'"):
    sources.open_corpus("tfds:librispeech")


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(data=st.binary(max_size=2048),
                  header=st.sampled_from([b"", b"RIFF", b"fLaC", b"OggS"]))
def test_audio_loader_on_random_bytes_returns_audio_or_a_clear_error(data, header):
  try:
    wave = audio.load(header + data)
  except audio.AudioError:
    return
  assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size > 0
  assert np.all(np.isfinite(wave))


def _linked_corpus(real: str, root) -> str:
  """`real` (conftest.make_corpus) assembled from symbolic links under `root`: a linked
  subset, linked speakers, linked chapters, linked files, a link cycle and two links to
  one chapter."""
  (root / "test").mkdir(parents=True)
  os.symlink(os.path.join(real, "train"), root / "train")  # a subset
  for s in conftest.TEST_SPEAKERS[:2]:  # speakers
    os.symlink(os.path.join(real, "test", str(s)), root / "test" / str(s))
  s = conftest.TEST_SPEAKERS[2]  # a chapter, linked twice: read once
  (root / "test" / str(s)).mkdir()
  os.symlink(os.path.join(real, "test", str(s), "7"), root / "test" / str(s) / "7")
  os.symlink(os.path.join(real, "test", str(s), "7"), root / "test" / str(s) / "8")
  s = conftest.TEST_SPEAKERS[3]  # files, and a link back up: a cycle
  chapter = root / "test" / str(s) / "7"
  chapter.mkdir(parents=True)
  real_chapter = os.path.join(real, "test", str(s), "7")
  for name in os.listdir(real_chapter):
    os.symlink(os.path.join(real_chapter, name), chapter / name)
  os.symlink(root / "test", chapter / "loop")
  return str(root)


def _ids(refs):
  return [(r.subset, r.speaker, r.chapter, r.utterance, os.path.realpath(r.locator))
          for r in refs]


def test_a_corpus_assembled_from_symlinks_reads_as_the_real_one(corpus, tmp_path):
  real = corpora.LibriSpeechDir(corpus["root"])
  linked = corpora.LibriSpeechDir(_linked_corpus(corpus["root"], tmp_path))
  assert linked.subsets() == real.subsets() == ["test", "train"]
  for subset in real.subsets():
    assert _ids(linked.refs(subset)) == _ids(real.refs(subset))
  ref = linked.refs("test")[-1]
  assert os.path.islink(ref.locator)
  np.testing.assert_array_equal(linked.load(ref).waveform, real.load(ref).waveform)


def test_prepare_on_a_corpus_of_symlinks_writes_the_same_shards(corpus, shard_dir,
                                                                tmp_path):
  out = tmp_path / "shards"
  manifest = shards.prepare(_linked_corpus(corpus["root"], tmp_path / "linked"), str(out),
                            utterances_per_shard=8, workers=1)
  assert manifest["splits"] == shards.load_manifest(shard_dir)["splits"]
  for name in os.listdir(shard_dir):
    if name.endswith((".array_record", ".npz")):
      assert (out / name).read_bytes() == open(os.path.join(shard_dir, name), "rb").read()
