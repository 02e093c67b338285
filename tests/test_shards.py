"""Shard preparation: splits, determinism, resumption, skipped files."""

import json
import os
import pickle
import shutil

import grain
import numpy as np
import pytest
import soundfile as sf

from mirnet_jax import errors
from mirnet_jax import features
from mirnet_jax import prepare as prepare_cli
from mirnet_jax import storage
from mirnet_jax.data import corpora
from mirnet_jax.data import shards
from tests import conftest
from tests import tfds_fakes


def _bytes_of(directory):
  return {name: open(os.path.join(directory, name), "rb").read()
          for name in sorted(os.listdir(directory)) if name.endswith(".array_record")}


def test_manifest_counts_and_class_map(shard_dir, corpus):
  manifest = shards.load_manifest(shard_dir)
  assert manifest["num_classes"] == len(conftest.TRAIN_SPEAKERS)
  assert manifest["classes"] == [str(s) for s in conftest.TRAIN_SPEAKERS]
  assert manifest["unseen_speakers"] == [str(s) for s in conftest.TEST_SPEAKERS]
  assert manifest["features"] == features.feature_params()
  counts = manifest["splits"]
  assert sum(counts[s]["utterances"] for s in ("train", "validation", "seen")) == 5 * 6 + 1
  assert counts["unseen"]["utterances"] == len(conftest.TEST_SPEAKERS) * 6
  assert manifest["num_skipped"] == 2
  assert sorted(s["locator"] for s in manifest["skipped"]) == sorted(corpus["bad"])


def test_splits_are_disjoint(shard_dir):
  manifest = shards.load_manifest(shard_dir)
  known = {name: shards.open_split(shard_dir, name) for name in ("train", "validation", "seen")}
  unseen = shards.open_split(shard_dir, "unseen")
  # No utterance (or record) is in two of train / validation / seen.
  for a, b in [("train", "validation"), ("train", "seen"), ("validation", "seen")]:
    assert not set(known[a].utterance) & set(known[b].utterance), (a, b)
    assert not set(known[a].first_chunk) & set(known[b].first_chunk), (a, b)
  assert sum(len(s) for s in known.values()) == len(
      {u for s in known.values() for u in s.utterance})
  # Every training speaker keeps training data, has the two seen-test utterances a trial
  # needs and one for validation (6 utterances: 3 + 2 + 1; one speaker has 7).
  for label in range(len(conftest.TRAIN_SPEAKERS)):
    assert np.sum(known["train"].label == label) >= 3
    assert np.sum(known["seen"].label == label) == 2
    assert np.sum(known["validation"].label == label) == 1
  assert manifest["heldout"]["seen"] == dict(fraction=0.1, min_per_speaker=2)
  unseen_ids = {u.split("-")[0] for u in unseen.utterance}
  assert unseen_ids == {str(s) for s in conftest.TEST_SPEAKERS}
  assert not unseen_ids & {u.split("-")[0] for s in known.values() for u in s.utterance}


def test_heldout_choice_is_deterministic_and_keeps_half_for_training():
  utterances = [f"7-1-{i:04d}" for i in range(40)]
  shares = {"seen": (0.1, 2), "validation": (0.05, 1)}
  chosen = shards.choose_heldout(utterances, shares, seed=3, speaker="7")
  assert {k: len(v) for k, v in chosen.items()} == {"seen": 4, "validation": 2}
  assert not chosen["seen"] & chosen["validation"]
  assert chosen == shards.choose_heldout(utterances[::-1], shares, seed=3, speaker="7")
  assert chosen != shards.choose_heldout(utterances, shares, seed=4, speaker="7")
  # Too few utterances for every minimum: the first split keeps its own, half stays.
  few = shards.choose_heldout(utterances[:3], shares, seed=3, speaker="7")
  assert {k: len(v) for k, v in few.items()} == {"seen": 1, "validation": 0}
  assert {k: len(v) for k, v in shards.choose_heldout(
      utterances[:6], shares, seed=3, speaker="7").items()} == {"seen": 2, "validation": 1}


def test_too_few_utterances_for_a_validation_split_is_a_clear_error(corpus, tmp_path):
  # 6 utterances a speaker: 3 may be held out, and 3 seen ones leave none for validation.
  with pytest.raises(corpora.CorpusError, match="validation split would hold fewer than 2"):
    shards.prepare(corpus["root"], str(tmp_path / "s"), workers=1,
                   heldout={"seen": (0.1, 3), "validation": (0.05, 1)})


def test_an_evaluation_only_corpus_has_the_unseen_split_alone(corpus, tmp_path):
  out = str(tmp_path / "eval_only")
  manifest = shards.prepare(corpus["root"], out, train_subsets=[], workers=1)
  assert manifest["num_classes"] == 0 and list(manifest["splits"]) == ["unseen"]
  assert manifest["splits"]["unseen"]["speakers"] == len(conftest.TEST_SPEAKERS)
  assert len(shards.open_split(out, "unseen")) == len(conftest.TEST_SPEAKERS) * 6
  with pytest.raises(shards.ShardError, match="evaluation only"):
    shards.open_split(out, "train")
  assert not [n for n in os.listdir(out) if n.startswith("train-")]


def test_shards_of_the_old_format_name_the_command_that_prepares_them_again(shard_dir,
                                                                           tmp_path):
  with open(os.path.join(shard_dir, shards.MANIFEST)) as f:
    manifest = json.load(f)
  manifest["format_version"] = 1
  old = tmp_path / "old"
  old.mkdir()
  (old / shards.MANIFEST).write_text(json.dumps(manifest))
  with pytest.raises(shards.ShardError, match="format version 1.*mirnet_jax.prepare "
                     f"--source={manifest['source']} --out=NEW_DIR"):
    shards.load_manifest(str(old))


def test_records_hold_the_stft_of_the_level_normalised_utterance(shard_dir, corpus):
  split = shards.open_split(shard_dir, "unseen")
  i = list(split.utterance).index("202-7-0003")
  wave = conftest.synth_voice(202, 3, conftest.utterance_seconds(202, 3))
  wave = wave * shards.TARGET_RMS / np.sqrt(np.mean(np.square(wave, dtype=np.float64)))
  stored = split.read(i)
  assert stored.shape == (split.frames[i], 257, 2) == (features.num_frames(len(wave)), 257, 2)
  np.testing.assert_allclose(features.from_storage(stored), features.stft(wave), atol=2e-3,
                             rtol=2e-3)


class _CountingSource:
  """Chunk records in memory, counting what is read (the interface Split reads)."""

  def __init__(self, records):
    self.records, self.reads, self.bytes = records, 0, 0

  def __len__(self):
    return len(self.records)

  def read(self, begin, end):
    out = self.records[begin:end]
    self.reads += len(out)
    self.bytes += sum(len(r) for r in out)
    return out


def _split_of(stored_utterances, chunk_frames):
  """A Split over `stored_utterances` laid out as the shard writer lays them out."""
  records, first = [], []
  for stored in stored_utterances:
    first.append(len(records))
    records += [shards.encode(c) for c in shards.chunks(stored, chunk_frames)]
  n = len(stored_utterances)
  return shards.Split(_CountingSource(records), np.array(first), np.zeros(n, np.int32),
                      np.array([len(u) for u in stored_utterances]),
                      np.array([f"u{i}" for i in range(n)]), chunk_frames)


def _padded(whole, start, count):
  want = np.zeros((count, features.NUM_BINS, 2), features.STORAGE_DTYPE)
  piece = whole[start:start + count]
  want[:len(piece)] = piece
  return want


def test_a_crop_from_chunks_is_the_same_crop_of_the_whole_utterance_bit_for_bit():
  rng = np.random.default_rng(0)
  whole = [rng.standard_normal((n, features.NUM_BINS, 2)).astype(np.float16)
           for n in (1230, 250, 100, 37)]
  split = _split_of(whole, chunk_frames=100)
  for i, utterance in enumerate(whole):
    n = len(utterance)
    # Starts and ends on, just before and just after chunk boundaries, at the end and past it.
    for start in sorted({0, 1, 99, 100, 101, 199, 200, max(n - 300, 0), n - 1, n, n + 5}):
      for count in (1, 99, 100, 101, 300):
        got = split.crop(i, start, count)
        assert got.dtype == np.float16 and got.shape == (count, features.NUM_BINS, 2)
        np.testing.assert_array_equal(got.view(np.uint16),
                                      _padded(utterance, start, count).view(np.uint16),
                                      err_msg=f"utterance {i} start {start} count {count}")
    np.testing.assert_array_equal(split.read(i).view(np.uint16), utterance.view(np.uint16))


def test_a_crop_reads_only_the_chunks_it_covers():
  """Bytes per 3 s crop of LibriSpeech-length utterances (12.3 s): at most 4 chunks of
  1 s, within 1.5x the crop's own bytes; the whole utterance would be ~4x."""
  rng = np.random.default_rng(1)
  whole = [np.zeros((int(n), features.NUM_BINS, 2), np.float16)
           for n in rng.normal(1230, 390, 50).clip(301, 3500)]
  split = _split_of(whole, chunk_frames=100)
  crop_bytes = 300 * features.NUM_BINS * 2 * 2
  for _ in range(200):
    i = int(rng.integers(len(whole)))
    start = int(rng.integers(len(whole[i]) - 300 + 1))
    before = split.source.reads, split.source.bytes
    split.crop_pieces(i, start, 300)
    reads, read_bytes = (split.source.reads - before[0], split.source.bytes - before[1])
    assert reads == (start + 299) // 100 - start // 100 + 1 <= 4
    assert read_bytes <= 1.5 * crop_bytes
  # Nothing past the end is read; a crop wholly past it reads nothing.
  before = split.source.reads
  assert split.crop_pieces(0, len(whole[0]), 300) == []
  assert split.source.reads == before


def test_prepared_chunks_of_any_size_give_the_same_crops(corpus, shard_dir, tmp_path):
  out = str(tmp_path / "chunks7")
  manifest = shards.prepare(corpus["root"], out, utterances_per_shard=8, chunk_frames=7,
                            workers=1)
  assert manifest["chunk_frames"] == 7
  assert shards.load_manifest(shard_dir)["chunk_frames"] == shards.CHUNK_FRAMES
  a, b = shards.open_split(shard_dir, "unseen"), shards.open_split(out, "unseen")
  assert len(a.source) > len(a) and len(b.source) > len(a.source)  # several chunks each
  # The records numbered across the shard files as grain numbers them, and pickled
  # (to grain's workers) they read the same.
  raw = grain.sources.ArrayRecordDataSource(a.source.paths)
  unpickled = pickle.loads(pickle.dumps(a))
  for i in range(len(a)):
    n = -(-int(a.frames[i]) // shards.CHUNK_FRAMES)
    whole = np.concatenate([shards.decode(raw[int(a.first_chunk[i]) + k]) for k in range(n)])
    assert len(whole) == a.frames[i]
    np.testing.assert_array_equal(a.read(i).view(np.uint16), whole.view(np.uint16))
    np.testing.assert_array_equal(unpickled.read(i).view(np.uint16), whole.view(np.uint16))
  for i in range(len(a)):
    for start, count in ((0, 300), (95, 13), (int(a.frames[i]) - 5, 20)):
      np.testing.assert_array_equal(a.crop(i, start, count).view(np.uint16),
                                    b.crop(i, start, count).view(np.uint16))


def test_same_input_gives_identical_shards_and_reruns_resume(corpus, shard_dir, tmp_path):
  out = str(tmp_path / "again")
  shards.prepare(corpus["root"], out, utterances_per_shard=8, workers=2)
  assert _bytes_of(out) == _bytes_of(shard_dir)
  # Interrupt: one shard lost its sidecar (never completed); another is intact.
  names = sorted(n for n in os.listdir(out) if n.endswith(".array_record"))
  os.remove(os.path.join(out, names[1][:-len(".array_record")] + ".json"))
  kept = os.path.join(out, names[0])
  mtime = os.stat(kept).st_mtime_ns
  shards.prepare(corpus["root"], out, utterances_per_shard=8, workers=1)
  assert os.stat(kept).st_mtime_ns == mtime
  assert _bytes_of(out) == _bytes_of(shard_dir)
  with open(os.path.join(out, shards.MANIFEST)) as f, \
      open(os.path.join(shard_dir, shards.MANIFEST)) as g:
    assert json.load(f) == json.load(g)


def test_a_different_preparation_in_the_same_directory_is_refused(corpus, shard_dir):
  with pytest.raises(shards.ShardError, match="another preparation"):
    shards.prepare(corpus["root"], shard_dir, utterances_per_shard=5, workers=1)


def test_missing_or_foreign_manifest(tmp_path, shard_dir):
  with pytest.raises(shards.ShardError, match="prepare"):
    shards.load_manifest(str(tmp_path))
  with open(os.path.join(shard_dir, shards.MANIFEST)) as f:
    manifest = json.load(f)
  manifest["features"]["hop_length"] = 256
  other = tmp_path / "other"
  other.mkdir()
  (other / shards.MANIFEST).write_text(json.dumps(manifest))
  with pytest.raises(shards.ShardError, match="other features"):
    shards.load_manifest(str(other))


def test_no_matching_subsets_is_a_clear_error(corpus, tmp_path):
  with pytest.raises(corpora.CorpusError, match="no train subsets match"):
    shards.prepare(corpus["root"], str(tmp_path / "s"), train_subsets=["train-clean-*"])


def test_prepare_from_tfds_mock(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("tensorflow")
  tfds_fakes.with_build_decoders(monkeypatch, tmp_path)  # what the default config checks

  def librispeech_records(builder, split, **kwargs):
    # tfds's random mock draws speaker ids that collide across splits, which real
    # LibriSpeech never does; these records keep train and dev speakers apart.
    del builder, kwargs
    base, count = (1000, 12) if split.startswith("train") else (2000, 4)
    t = np.arange(32000) / 16000
    return [dict(speech=(8000 * np.sin(2 * np.pi * (100 + 10 * i) * t)).astype(np.int16),
                 speaker_id=base + i % 3, chapter_id=5, id=f"{base + i % 3}-5-{i:04d}",
                 text="HELLO") for i in range(count)]

  with tfds.testing.mock_data(as_data_source_fn=librispeech_records):
    manifest = shards.prepare("tfds:librispeech", str(tmp_path / "s"),
                              train_subsets=["train_clean100"],
                              test_subsets=["dev_clean"],
                              heldout={"seen": (0.1, 1), "validation": (0.05, 1)},
                              workers=1)
  assert manifest["classes"] == ["1000", "1001", "1002"]
  assert manifest["unseen_speakers"] == ["2000", "2001", "2002"]
  # 4 utterances a speaker: one seen and one validation utterance each, two to train.
  assert manifest["splits"]["train"]["utterances"] == 6
  assert manifest["splits"]["seen"]["utterances"] == 3
  assert manifest["splits"]["validation"]["utterances"] == 3
  assert manifest["splits"]["unseen"]["utterances"] == 4
  split = shards.open_split(str(tmp_path / "s"), "unseen")
  assert split.read(0).shape == (features.num_frames(32000), 257, 2)
  # Speed copies of records read whole (not streamed from files): 2 s at 1.25 is 1.6 s.
  with tfds.testing.mock_data(as_data_source_fn=librispeech_records):
    perturbed = shards.prepare("tfds:librispeech", str(tmp_path / "sp"),
                               train_subsets=["train_clean100"],
                               test_subsets=["dev_clean"],
                               heldout={"seen": (0.1, 1), "validation": (0.05, 1)},
                               workers=1, speed_factors=(1.0, 1.25))
  assert perturbed["classes"] == manifest["classes"] + ["sp1.25-1000", "sp1.25-1001",
                                                        "sp1.25-1002"]
  train = shards.open_split(str(tmp_path / "sp"), "train")
  copies = [i for i, u in enumerate(train.utterance) if u.startswith("sp1.25-")]
  assert len(copies) == len(train) // 2 == 6
  assert set(train.frames[copies]) == {features.num_frames(25600)}
  assert perturbed["splits"]["seen"] == manifest["splits"]["seen"]


def test_preparing_leaves_no_temporary_file(shard_dir):
  assert not [n for n in os.listdir(shard_dir) if ".tmp-" in n]


def test_an_in_process_preparation_reads_the_corpus_as_it_is_now(corpus, tmp_path,
                                                               monkeypatch):
  # A reader cached by an earlier preparation of the same source (in a notebook, a
  # TFDS dataset rebuilt since, a mock that ended) must not be used again.
  class Stale:
    def load(self, ref):
      raise AssertionError(f"the stale reader was asked for {ref}")

  cache = shards._CORPUS_CACHE  # pylint: disable=protected-access
  monkeypatch.setitem(cache, corpus["root"], Stale())
  manifest = shards.prepare(corpus["root"], str(tmp_path / "s"), utterances_per_shard=8,
                            workers=1)
  assert manifest["splits"]["train"]["utterances"] > 0


def test_shard_errors_are_user_errors():
  assert issubclass(shards.ShardError, errors.UserError)


def test_atomic_path_replaces_the_file_on_success(tmp_path):
  path = tmp_path / "index.npz"
  path.write_bytes(b"old")
  with storage.atomic_path(path, suffix=".npz") as tmp:
    assert os.path.dirname(tmp) == str(tmp_path) and ".tmp-" in tmp and tmp.endswith(".npz")
    np.savez(tmp, x=np.arange(3))
    assert path.read_bytes() == b"old"  # untouched until the block ends
  with np.load(path) as loaded:
    assert loaded["x"].tolist() == [0, 1, 2]
  assert os.listdir(tmp_path) == ["index.npz"]


def test_atomic_path_keeps_the_old_file_and_no_temporary_on_failure(tmp_path):
  path = tmp_path / "out.bin"
  path.write_bytes(b"old")
  with pytest.raises(RuntimeError, match="writer failed"):
    with storage.atomic_path(path) as tmp:
      with open(tmp, "wb") as f:
        f.write(b"half")
      raise RuntimeError("writer failed")
  assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]
  # A block that fails before writing anything, onto a path that does not exist yet.
  with pytest.raises(RuntimeError):
    with storage.atomic_path(tmp_path / "new.bin"):
      raise RuntimeError("nothing written")
  assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_path_is_for_local_paths_only():
  with pytest.raises(ValueError, match="write_bytes"):
    with storage.atomic_path("gs://bucket/x.npz"):
      pass


def test_write_json_is_indented_sorted_and_atomic(tmp_path):
  path = tmp_path / "m.json"
  storage.write_json(path, dict(b=[1, 2], a="x"))
  assert path.read_text() == json.dumps(dict(a="x", b=[1, 2]), indent=1, sort_keys=True)
  storage.write_json(path, dict(a=1))
  assert json.loads(path.read_text()) == dict(a=1) and os.listdir(tmp_path) == ["m.json"]


def _utterances_by_speaker_before(labels):
  """The grouping pipeline.MixtureMaker and verification.make_trials each wrote out."""
  order = np.argsort(labels, kind="stable")
  speakers, starts = np.unique(labels[order], return_index=True)
  return speakers, np.split(order, starts[1:])


@pytest.mark.parametrize("seed", range(5))
def test_utterances_by_speaker_matches_the_code_it_replaces(seed):
  rng = np.random.default_rng(seed)
  for labels in [rng.integers(0, 12, rng.integers(1, 80)).astype(np.int32),
                 np.array([3, 3, 1, 1, 2, 0, 3], np.int32), np.array([5], np.int32)]:
    speakers, utterances_of = shards.utterances_by_speaker(labels)
    expected_speakers, expected_of = _utterances_by_speaker_before(labels)
    np.testing.assert_array_equal(speakers, expected_speakers)
    assert speakers.dtype == expected_speakers.dtype
    assert len(utterances_of) == len(expected_of)
    for got, expected in zip(utterances_of, expected_of):
      np.testing.assert_array_equal(got, expected)
      assert got.dtype == expected.dtype
  speakers, utterances_of = shards.utterances_by_speaker(np.array([2, 0, 2, 0, 1]))
  assert speakers.tolist() == [0, 1, 2]
  assert [u.tolist() for u in utterances_of] == [[1, 3], [4], [0, 2]]


def test_utterances_by_speaker_of_a_split(shard_dir):
  split = shards.open_split(shard_dir, "train")
  speakers, utterances_of = shards.utterances_by_speaker(split.label)
  assert speakers.tolist() == sorted(set(split.label.tolist()))
  for speaker, utterances in zip(speakers, utterances_of):
    assert utterances.tolist() == np.flatnonzero(split.label == speaker).tolist()


# ---------------------------------------------------------------- the crossdomain split

CROSSDOMAIN_SPEAKERS = (302, 301, 303)


def _add_subset(root, subset, speakers, utterances=3):
  for s in speakers:
    chapter_dir = os.path.join(root, subset, str(s), "7")
    os.makedirs(chapter_dir, exist_ok=True)
    for u in range(utterances):
      sf.write(os.path.join(chapter_dir, f"{s}-7-{u:04d}.flac"),
               conftest.synth_voice(s, u, conftest.utterance_seconds(s, u)), 16000)


@pytest.fixture(scope="module")
def crossdomain_corpus(corpus, tmp_path_factory):
  """The conftest corpus plus a `crossdomain` subset of 3 speakers, 3 utterances each."""
  root = str(tmp_path_factory.mktemp("crossdomain_corpus") / "corpus")
  shutil.copytree(corpus["root"], root)
  _add_subset(root, "crossdomain", CROSSDOMAIN_SPEAKERS)
  return root


@pytest.fixture(scope="module")
def crossdomain_dir(crossdomain_corpus, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("crossdomain_shards"))
  shards.prepare(crossdomain_corpus, out, utterances_per_shard=8, workers=1)
  return out


def test_a_crossdomain_subset_is_a_split_labelled_by_its_own_speakers(crossdomain_dir,
                                                                     shard_dir):
  manifest = shards.load_manifest(crossdomain_dir)
  speakers = sorted(str(s) for s in CROSSDOMAIN_SPEAKERS)
  assert manifest["crossdomain_speakers"] == speakers
  assert manifest["subsets"]["crossdomain"] == ["crossdomain"]
  assert manifest["splits"]["crossdomain"] == dict(
      manifest["splits"]["crossdomain"], speakers=3, utterances=9)
  split = shards.open_split(crossdomain_dir, "crossdomain")
  assert [speakers[label] for label in split.label] == [
      u.split("-")[0] for u in split.utterance]
  assert sorted(split.utterance) == sorted(
      f"{s}-7-{u:04d}" for s in CROSSDOMAIN_SPEAKERS for u in range(3))
  wave = conftest.synth_voice(301, 2, conftest.utterance_seconds(301, 2))
  assert split.frames[list(split.utterance).index("301-7-0002")] == features.num_frames(
      len(wave))
  # The other splits are what they are without it.
  plain = shards.load_manifest(shard_dir)
  for key in ("classes", "unseen_speakers"):
    assert manifest[key] == plain[key]
  for name in ("train", "validation", "seen", "unseen"):
    a, b = shards.open_split(crossdomain_dir, name), shards.open_split(shard_dir, name)
    assert a.utterance.tolist() == b.utterance.tolist() and (a.label == b.label).all()
  assert "crossdomain     3 speakers       9 utterances" in prepare_cli.summary(manifest)


def test_shards_without_a_crossdomain_split_say_so_in_one_line(shard_dir):
  manifest = shards.load_manifest(shard_dir)
  assert "crossdomain" not in manifest["splits"] and manifest["crossdomain_speakers"] == []
  with pytest.raises(shards.ShardError, match="has no crossdomain split") as e:
    shards.open_split(shard_dir, "crossdomain")
  assert "\n" not in str(e.value)
  assert "crossdomain none" in prepare_cli.summary(manifest)


def test_no_crossdomain_patterns_leave_the_subset_out(crossdomain_corpus, tmp_path):
  manifest = shards.prepare(crossdomain_corpus, str(tmp_path / "s"), utterances_per_shard=8,
                            workers=1, crossdomain_subsets=[])
  assert "crossdomain" not in manifest["splits"] and "crossdomain" not in manifest["shards"]
  assert not [n for n in os.listdir(tmp_path / "s") if n.startswith("crossdomain")]


def test_an_evaluation_only_corpus_keeps_its_crossdomain_split(crossdomain_corpus, tmp_path):
  out = str(tmp_path / "eval_only")
  manifest = shards.prepare(crossdomain_corpus, out, train_subsets=[], workers=1)
  assert manifest["num_classes"] == 0
  assert sorted(manifest["splits"]) == ["crossdomain", "unseen"]
  assert len(shards.open_split(out, "crossdomain")) == 9
  assert len(shards.open_split(out, "unseen")) == len(conftest.TEST_SPEAKERS) * 6
  with pytest.raises(shards.ShardError, match="evaluation only"):
    shards.open_split(out, "train")


@pytest.mark.parametrize("speaker, other", [(201, "test"), (104, "train")])
def test_a_crossdomain_speaker_of_another_subset_is_refused(corpus, tmp_path, speaker,
                                                            other):
  root = str(tmp_path / "corpus")
  shutil.copytree(corpus["root"], root)
  _add_subset(root, "crossdomain", (301, speaker), utterances=2)
  with pytest.raises(corpora.CorpusError, match=f"both the {other} and the crossdomain "
                     f"subsets: \\['{speaker}'\\]"):
    shards.prepare(root, str(tmp_path / "s"), utterances_per_shard=8, workers=1)


def test_a_subset_of_two_groups_is_refused(crossdomain_corpus, tmp_path):
  with pytest.raises(corpora.CorpusError, match=r"subsets both test and crossdomain: "
                     r"\['test'\]"):
    shards.prepare(crossdomain_corpus, str(tmp_path / "s"), workers=1,
                   crossdomain_subsets=["crossdomain", "test"])
