"""TFDS librispeech built for real: the real builder writes ArrayRecord files from a tiny
extracted LibriSpeech tree (only the download is replaced), and shards prepared from it
equal those of the same tree read as a LibriSpeech directory."""

import json
import os
import sys

import pytest

from mirnet_jax.data import corpora
from mirnet_jax.data import shards
from tests import tfds_fakes

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("tensorflow")

HELDOUT = {"seen": (0.1, 1), "validation": (0.05, 1)}  # 4 utterances a training speaker


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  """The tiny LibriSpeech tree, its extracted-tarball folders and its directory shards."""
  root = tmp_path_factory.mktemp("librispeech")
  librispeech = tfds_fakes.write_librispeech(str(root / "corpus"))
  out = str(root / "dir_shards")
  shards.prepare(librispeech, out, heldout=HELDOUT, utterances_per_shard=8, workers=1)
  extracted = tfds_fakes.extracted_tarballs(librispeech, str(root / "extracted"))
  return dict(librispeech=librispeech, shards=out, extracted=extracted)


def _by_utterance(shard_dir: str) -> dict:
  """{split: {utterance: (label, frames, stored STFT)}}: shards compared whatever the
  order of their records (TFDS shuffles a split's examples when it builds)."""
  manifest = shards.load_manifest(shard_dir)
  tables = {}
  for name in manifest["splits"]:
    split = shards.open_split(shard_dir, name, manifest)
    tables[name] = {str(u): (int(split.label[i]), int(split.frames[i]), split.read(i))
                    for i, u in enumerate(split.utterance)}
  return tables


def _assert_same_shards(tfds_dir: str, dir_shards: str):
  ours, theirs = shards.load_manifest(tfds_dir), shards.load_manifest(dir_shards)
  for key in ("classes", "unseen_speakers", "splits", "num_skipped", "features"):
    assert ours[key] == theirs[key], key
  ours, theirs = _by_utterance(tfds_dir), _by_utterance(dir_shards)
  assert ours.keys() == theirs.keys()
  for split in theirs:
    assert sorted(ours[split]) == sorted(theirs[split]), split
    for utt, (label, frames, stft) in theirs[split].items():
      assert ours[split][utt][:2] == (label, frames), utt
      assert ours[split][utt][2].tobytes() == stft.tobytes(), utt  # bit for bit


def _dataset_files(data_dir: str, config: str) -> dict:
  version_dir = os.path.join(data_dir, "librispeech", config)
  (version,) = os.listdir(version_dir)
  return {n: os.path.join(version_dir, version, n)
          for n in os.listdir(os.path.join(version_dir, version))}


def test_lazy_decode_builds_without_ffmpeg_and_prepares_the_directory_shards(
    tree, tmp_path, monkeypatch):
  tfds_fakes.without_build_decoders(monkeypatch)
  requests = tfds_fakes.replace_download(monkeypatch, tree["extracted"])
  data_dir = str(tmp_path / "tfds")
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)  # how a user points TFDS at a disk
  out = str(tmp_path / "shards")
  manifest = shards.prepare("tfds:librispeech/lazy_decode", out, heldout=HELDOUT,
                            utterances_per_shard=8, workers=1)
  # The real builder asked for every subset, and wrote what tfds.data_source reads.
  assert requests == [sorted(corpora.LIBRISPEECH_TFDS_SPLITS)]
  files = _dataset_files(data_dir, "lazy_decode")
  assert {"librispeech-train_clean100.array_record-00000-of-00001",
          "librispeech-dev_clean.array_record-00000-of-00001",
          "dataset_info.json", "features.json"} <= set(files)
  with open(files["dataset_info.json"]) as f:
    info = json.load(f)
  assert info["fileFormat"] == "array_record"
  assert {s["name"]: int(s["shardLengths"][0]) for s in info["splits"]} == {
      "train_clean100": 16, "dev_clean": 4}
  assert manifest["subsets"] == {"train": ["train_clean100"], "test": ["dev_clean"]}
  _assert_same_shards(out, tree["shards"])


def test_a_prepared_default_config_reads_without_pydub_or_ffmpeg(tree, tmp_path,
                                                                 monkeypatch):
  data_dir = str(tmp_path / "tfds")
  with monkeypatch.context() as build:  # built where pydub and ffmpeg are installed
    tfds_fakes.with_build_decoders(build, tmp_path)
    tfds_fakes.replace_download(build, tree["extracted"])
    corpora.TfdsLibriSpeech("librispeech", data_dir=data_dir).subsets()
  with open(_dataset_files(data_dir, "default")["features.json"]) as f:
    assert "lazy_decode" not in f.read()  # decoded int16 samples, as TFDS stores them
  tfds_fakes.without_build_decoders(monkeypatch)
  requests = tfds_fakes.replace_download(monkeypatch, {})
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
  out = str(tmp_path / "shards")
  shards.prepare("tfds:librispeech", out, heldout=HELDOUT, utterances_per_shard=8,
                 workers=1)
  assert not requests
  _assert_same_shards(out, tree["shards"])


@pytest.mark.parametrize("pydub, ffmpeg, missing", [
    (True, True, "pydub and ffmpeg are missing"), (True, False, "pydub is missing"),
    (False, True, "ffmpeg is missing")])
def test_the_default_config_without_pydub_or_ffmpeg_stops_before_any_download(
    tmp_path, monkeypatch, pydub, ffmpeg, missing):
  tfds_fakes.with_build_decoders(monkeypatch, tmp_path)
  tfds_fakes.without_build_decoders(monkeypatch, pydub=pydub, ffmpeg=ffmpeg)
  requests = tfds_fakes.replace_download(monkeypatch, {})
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  with pytest.raises(corpora.CorpusError) as e:
    shards.prepare("tfds:librispeech", str(tmp_path / "s"), workers=1)
  message = str(e.value)
  assert "\n" not in message
  assert "--source=tfds:librispeech/lazy_decode" in message
  assert "install ffmpeg and `pip install pydub`" in message
  assert missing in message
  assert not requests
  assert not (tmp_path / "tfds" / "librispeech" / "default").exists()
  assert not (tmp_path / "s").exists()


def test_building_without_importlib_resources_is_a_clear_error(tmp_path, monkeypatch):
  # tensorflow-datasets needs it to build but does not declare it
  # (tensorflow/datasets#11212).
  monkeypatch.setitem(sys.modules, "importlib_resources", None)
  requests = tfds_fakes.replace_download(monkeypatch, {})
  reader = corpora.TfdsLibriSpeech("librispeech/lazy_decode",
                                   data_dir=str(tmp_path / "tfds"))
  with pytest.raises(corpora.CorpusError, match="pip install importlib_resources$"):
    reader.subsets()
  assert not requests


def test_a_dataset_built_as_tfrecord_is_a_clear_error(tree, tmp_path, monkeypatch):
  # `tfds build librispeech/lazy_decode` writes TFRecord files unless told otherwise.
  tfds_fakes.replace_download(monkeypatch, tree["extracted"])
  data_dir = str(tmp_path / "tfds")
  builder = tfds.builder("librispeech/lazy_decode", data_dir=data_dir,
                         file_format="tfrecord")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
  with pytest.raises(corpora.CorpusError,
                     match=r"as tfrecord files, .* move or delete that folder") as e:
    shards.prepare("tfds:librispeech/lazy_decode", str(tmp_path / "s"), workers=1)
  assert str(builder.data_dir) in str(e.value) and "\n" not in str(e.value)
