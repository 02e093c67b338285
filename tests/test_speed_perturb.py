"""Speed perturbation at prepare time: the copies' audio, classes and splits, the plan."""

import json
import math
import os
import shutil
import subprocess
import sys

import librosa
import numpy as np
import pytest

from mirnet_jax import features
from mirnet_jax import prepare as prepare_cli
from mirnet_jax.data import shards
from tests import conftest

FACTORS = (0.9, 1.0, 1.1)


@pytest.fixture(scope="module")
def perturbed_dir(corpus, shard_dir, tmp_path_factory):
  """The conftest corpus prepared as `shard_dir` was, with speed copies at 0.9 and 1.1."""
  out = str(tmp_path_factory.mktemp("perturbed"))
  shards.prepare(corpus["root"], out, utterances_per_shard=8, workers=2,
                 speed_factors=FACTORS)
  return out


def _bytes_of(directory):
  return {name: open(os.path.join(directory, name), "rb").read()
          for name in sorted(os.listdir(directory)) if name.endswith(".array_record")}


def _table(split):
  """{utterance: (label, frames, stored bits)} of a split."""
  return {str(u): (int(split.label[i]), int(split.frames[i]), split.read(i).tobytes())
          for i, u in enumerate(split.utterance)}


def _peak_hz(wave):
  spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
  return np.argmax(spectrum) * features.SAMPLE_RATE / len(wave)


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_a_copy_plays_factor_times_faster_as_librosa_resamples_it(factor):
  t = np.arange(2 * features.SAMPLE_RATE) / features.SAMPLE_RATE
  tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
  blocks = [tone[:5000], tone[5000:5001], tone[5001:20000], tone[20000:]]
  copy = np.concatenate(list(shards.speed_blocks(iter(blocks), factor)))
  # sox `speed f`: duration / f, pitch x f.
  assert len(copy) == math.ceil(len(tone) / factor)
  assert abs(_peak_hz(copy) - 440 * factor) < 2
  want = librosa.resample(tone, orig_sr=features.SAMPLE_RATE * factor,
                          target_sr=features.SAMPLE_RATE)
  np.testing.assert_array_equal(copy, want)  # bit for bit, whatever the blocks


def test_a_long_recording_is_perturbed_in_blocks_with_the_bits_of_a_whole_one():
  # utterance_to_stored's block path (past `whole_seconds`, 60 s when preparing) reads the
  # copy three times as a stream; it must store what the whole copy stores.
  wave = conftest.synth_voice(101, 1, 3.0)
  blocks = [wave[i:i + 7000] for i in range(0, len(wave), 7000)]
  factor = 0.9
  streamed = shards.utterance_to_stored(
      lambda: shards.speed_blocks(iter(blocks), factor), whole_seconds=1.0,
      block_frames=50)
  whole = librosa.resample(wave, orig_sr=features.SAMPLE_RATE * factor,
                           target_sr=features.SAMPLE_RATE)
  expected = shards.utterance_to_stored(lambda: [whole])
  assert streamed[1:] == expected[1:]  # scale, samples
  assert streamed[0].tobytes() == expected[0].tobytes()


@pytest.mark.parametrize("factors, message", [
    ((0.9, 1.1), "must include 1.0"),
    ((0.0, 1.0), r"must lie in \[0.5, 2.0\]"),
    ((-1.1, 1.0), "must lie in"),
    ((1.0, 2.5), "must lie in"),
    ((1.0, float("nan")), "must lie in"),
    ((1.0, 1.1, 1.1), "distinct"),
    ((1.0, 1.0000001), "distinct"),
    (("1.0", "fast"), "are numbers"),
])
def test_speed_factors_are_checked(factors, message):
  with pytest.raises(ValueError, match=message):
    shards.check_speed_factors(factors)


def test_speed_factors_are_sorted_and_read_from_strings():
  assert shards.check_speed_factors(["1.1", "1.0", "0.9"]) == (0.9, 1.0, 1.1)
  assert shards.check_speed_factors([1]) == (1.0,)


def test_bad_speed_factors_are_refused_before_anything_is_written(corpus, tmp_path):
  with pytest.raises(ValueError, match="must include 1.0"):
    shards.prepare(corpus["root"], str(tmp_path / "s"), speed_factors=(0.9,), workers=1)
  assert not os.path.exists(tmp_path / "s")


def test_the_flag_is_checked_with_a_one_line_usage_error(corpus, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "mirnet_jax.prepare", f"--source={corpus['root']}",
       f"--out={tmp_path / 's'}", "--speed_perturb=0.9,1.1"], cwd=tmp_path,
      capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=conftest.REPO))
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: --speed_perturb: speed factors must include 1.0")
  assert not os.path.exists(tmp_path / "s")


def test_each_factor_makes_its_own_classes_after_the_original_ones(perturbed_dir, shard_dir):
  plain, manifest = shards.load_manifest(shard_dir), shards.load_manifest(perturbed_dir)
  speakers = plain["classes"]
  assert manifest["num_classes"] == len(speakers) * len(FACTORS)
  assert manifest["classes"] == (speakers + [f"sp0.9-{s}" for s in speakers]
                                 + [f"sp1.1-{s}" for s in speakers])
  assert manifest["speed_perturb"] == list(FACTORS)
  with open(os.path.join(perturbed_dir, shards.PLAN)) as f:
    assert json.load(f)["speed_perturb"] == list(FACTORS)
  assert plain["speed_perturb"] == [1.0]
  # The corrupt files are skipped once, not again for each copy.
  assert manifest["num_skipped"] == plain["num_skipped"] == 2
  assert manifest["unseen_speakers"] == plain["unseen_speakers"]
  text = prepare_cli.summary(manifest)
  assert f"copies at 0.9, 1.1 of the train split: {len(speakers)} speakers x 3 speeds" in text
  assert "speed" not in prepare_cli.summary(plain)


def test_held_out_and_unseen_splits_are_those_without_perturbation(perturbed_dir, shard_dir):
  for split in ("seen", "validation", "unseen"):
    assert _table(shards.open_split(perturbed_dir, split)) == _table(
        shards.open_split(shard_dir, split)), split


def test_the_train_split_holds_the_originals_and_their_copies_only(perturbed_dir, shard_dir):
  manifest = shards.load_manifest(perturbed_dir)
  class_of = {s: i for i, s in enumerate(manifest["classes"])}
  plain = _table(shards.open_split(shard_dir, "train"))
  train = _table(shards.open_split(perturbed_dir, "train"))
  assert {u: train[u] for u in plain} == plain
  copies = {u for u in train if u not in plain}
  assert copies == {f"sp{f:g}-{u}" for f in (0.9, 1.1) for u in plain}
  for u in copies:
    prefix, original = u.split("-", 1)
    factor = float(prefix[2:])
    label, frames, _ = train[u]
    assert manifest["classes"][label] == f"{prefix}-{original.split('-')[0]}"
    assert label == class_of[f"{prefix}-{original.split('-')[0]}"]
    assert abs(frames - plain[original][1] / factor) <= 2, u  # duration / f
  assert (manifest["splits"]["train"]["hours"] > 2.9 * shards.load_manifest(
      shard_dir)["splits"]["train"]["hours"])


def test_no_held_out_utterance_is_trained_on_at_any_speed(perturbed_dir):
  held_out = {str(u) for split in ("seen", "validation")
              for u in shards.open_split(perturbed_dir, split).utterance}
  train = {str(u) for u in shards.open_split(perturbed_dir, "train").utterance}
  assert held_out and not held_out & train
  assert not {f"sp{f:g}-{u}" for f in FACTORS for u in held_out} & train
  # Never even written: no shard holds a copy of one.
  written = []
  for name in os.listdir(perturbed_dir):
    if name.startswith("train_sp") and name.endswith(".json"):
      with open(os.path.join(perturbed_dir, name)) as f:
        written += [r["copy_of"] for r in json.load(f)["records"]]
  assert len(written) == 2 * len(train) // 3 and not set(written) & held_out


def test_a_copy_holds_the_original_at_its_speed(perturbed_dir, corpus):
  split = shards.open_split(perturbed_dir, "train")
  utterances = list(split.utterance)
  original = next(u for u in utterances if u.startswith("103-"))
  speaker, _, utt = (int(x) for x in original.split("-"))
  wave = librosa.resample(conftest.synth_voice(speaker, utt, conftest.utterance_seconds(
      speaker, utt)), orig_sr=features.SAMPLE_RATE * 1.1, target_sr=features.SAMPLE_RATE)
  wave = wave * shards.TARGET_RMS / np.sqrt(np.mean(np.square(wave, dtype=np.float64)))
  stored = split.read(utterances.index(f"sp1.1-{original}"))
  np.testing.assert_allclose(features.from_storage(stored), features.stft(wave), atol=2e-3,
                             rtol=2e-3)


def test_other_factors_in_the_same_directory_are_refused(corpus, perturbed_dir, shard_dir):
  for out, factors in ((perturbed_dir, (1.0,)), (perturbed_dir, (0.9, 1.0)),
                       (shard_dir, FACTORS)):
    with pytest.raises(shards.ShardError, match="another preparation.*speed factors"):
      shards.prepare(corpus["root"], out, utterances_per_shard=8, workers=1,
                     speed_factors=factors)


def test_an_interrupted_perturbed_preparation_resumes(corpus, perturbed_dir, tmp_path):
  out = str(tmp_path / "resumed")
  shutil.copytree(perturbed_dir, out)
  # Stopped while writing the copies: one copy shard not written, no index or manifest.
  names = sorted(n for n in os.listdir(out) if n.endswith(".array_record"))
  lost = next(n for n in names if n.startswith("train_sp1.1-"))
  os.remove(os.path.join(out, lost))
  os.remove(os.path.join(out, lost[:-len(".array_record")] + ".json"))
  os.remove(os.path.join(out, shards.INDEX))
  os.remove(os.path.join(out, shards.MANIFEST))
  kept = os.path.join(out, names[0])
  mtime = os.stat(kept).st_mtime_ns
  shards.prepare(corpus["root"], out, utterances_per_shard=8, workers=1,
                 speed_factors=FACTORS)
  assert os.stat(kept).st_mtime_ns == mtime
  assert _bytes_of(out) == _bytes_of(perturbed_dir)  # and workers=1 writes what 2 wrote
  assert shards.load_manifest(out) == shards.load_manifest(perturbed_dir)
  for split in ("train", "seen"):
    assert _table(shards.open_split(out, split)) == _table(
        shards.open_split(perturbed_dir, split))


def test_a_plan_written_before_speed_factors_resumes_unperturbed(corpus, shard_dir,
                                                                tmp_path):
  out = str(tmp_path / "older")
  shutil.copytree(shard_dir, out)
  plan_path = os.path.join(out, shards.PLAN)
  with open(plan_path) as f:
    plan = json.load(f)
  del plan["speed_perturb"]
  with open(plan_path, "w") as f:
    json.dump(plan, f)
  manifest = shards.prepare(corpus["root"], out, utterances_per_shard=8, workers=1)
  assert manifest == shards.load_manifest(shard_dir)
  with pytest.raises(shards.ShardError, match="another preparation"):
    shards.prepare(corpus["root"], out, utterances_per_shard=8, workers=1,
                   speed_factors=FACTORS)
