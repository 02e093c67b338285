"""Shared fixtures: a tiny synthetic corpus in LibriSpeech layout and its shards.

The synthetic "voices" are harmonic tones with noise (fast to make, no espeak-ng);
tests of the espeak-ng demo corpus itself are in test_demo_corpus.py.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One persistent XLA compilation cache for the suite and every command it runs in a
# subprocess (they inherit the environment): the same tiny models are compiled by dozens
# of processes. Set before anything imports JAX; every compilation is cached (the
# defaults skip those under a second, which is all of them here).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(REPO, ".pytest_cache", "jax_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The XLA:CPU convolution path every command runs with (cli.run), for the suite's own
# JAX too, so that results computed here and by a command compare bit for bit.
from mirnet_jax import xla_cpu  # pylint: disable=g-import-not-at-top,wrong-import-position
xla_cpu.configure()

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import soundfile as sf  # pylint: disable=g-import-not-at-top,wrong-import-position

from mirnet_jax.data import shards  # pylint: disable=g-import-not-at-top,wrong-import-position

# End-to-end tests (training runs, commands in subprocesses) are marked `slow`, so that
# `pytest -m "not slow"` is a quick loop of the unit tests.
END_TO_END_MODULES = {"test_api", "test_benchmark", "test_cli_inputs", "test_embed",
                      "test_evaluate", "test_multihost", "test_notebook", "test_train"}
END_TO_END_FIXTURES = {"trained_workdir", "systems"}


def pytest_collection_modifyitems(items):
  for item in items:
    if (item.module.__name__.rsplit(".", 1)[-1] in END_TO_END_MODULES
        or END_TO_END_FIXTURES & set(item.fixturenames)):
      item.add_marker(pytest.mark.slow)

TRAIN_SPEAKERS = (101, 102, 103, 104, 105)
TEST_SPEAKERS = (201, 202, 203, 204)
UTTERANCES = 6


def synth_voice(speaker: int, utt: int, seconds: float, rate: int = 16000) -> np.ndarray:
  rng = np.random.default_rng([speaker, utt])
  t = np.arange(int(seconds * rate)) / rate
  f0 = 80 + 7 * (speaker % 30) + 3 * rng.standard_normal()
  wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t + utt)
  return (0.1 * wave * envelope + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def utterance_seconds(speaker: int, utt: int) -> float:
  """From 1.5 s (shorter than a 3 s crop) to 6.6 s."""
  return 1.5 + utt * 0.9 + speaker % 3 * 0.3


def make_corpus(root: str) -> dict:
  """Writes the corpus; returns what it holds, including the deliberately bad files."""
  info = dict(bad=[])
  for subset, speakers in (("train", TRAIN_SPEAKERS), ("test", TEST_SPEAKERS)):
    for s in speakers:
      chapter_dir = os.path.join(root, subset, str(s), "7")
      os.makedirs(chapter_dir, exist_ok=True)
      for u in range(UTTERANCES):
        sf.write(os.path.join(chapter_dir, f"{s}-7-{u:04d}.flac"),
                 synth_voice(s, u, utterance_seconds(s, u)), 16000)
  # A stereo 44.1 kHz WAV: must be mixed down and resampled, not skipped.
  stereo = np.stack([synth_voice(101, 90, 4.0, 44100)] * 2, axis=1)
  sf.write(os.path.join(root, "train", "101", "7", "101-7-0090.wav"), stereo, 44100)
  # A corrupt FLAC and a zero-length one: skipped and counted.
  bad_dir = os.path.join(root, "train", "102", "7")
  with open(os.path.join(bad_dir, "102-7-0091.flac"), "wb") as f:
    f.write(b"fLaC" + bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8)))
  open(os.path.join(bad_dir, "102-7-0092.flac"), "wb").close()
  info["bad"] = [os.path.join(bad_dir, "102-7-0091.flac"),
                 os.path.join(bad_dir, "102-7-0092.flac")]
  return info


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("corpus"))
  info = make_corpus(root)
  info["root"] = root
  return info


@pytest.fixture(scope="session")
def shard_dir(corpus, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("shards"))
  shards.prepare(corpus["root"], out, utterances_per_shard=8, workers=1)
  return out


@pytest.fixture(scope="session")
def trained_workdir(shard_dir, tmp_path_factory):
  """A tiny model trained for a few steps on the synthetic shards."""
  from mirnet_jax.configs import tiny  # pylint: disable=g-import-not-at-top
  from mirnet_jax import train  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.data.shards = shard_dir
  workdir = str(tmp_path_factory.mktemp("trained"))
  train.train_and_evaluate(config, workdir)
  return workdir
