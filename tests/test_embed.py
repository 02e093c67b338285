"""The embedding extractor: restore from a workdir, fixed-shape windows, CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mirnet_jax import checkpointing
from mirnet_jax import embed
from mirnet_jax import errors
from mirnet_jax import extraction
from mirnet_jax import inference
from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def extractor(trained_workdir):
  return extraction.Extractor(inference.restore(trained_workdir), batch_size=4)


def test_restores_the_best_checkpoint_and_embeds(extractor, trained_workdir):
  assert extractor.step in (3, 6)
  windows = np.random.default_rng(0).standard_normal(
      (5, extractor.window, 257, 2)).astype(np.float16)
  out = extractor.embed_windows(windows)
  assert out["embeddings"].shape == (5, 2, 16)
  assert out["logits"].shape == (5, 2, len(conftest.TRAIN_SPEAKERS))
  assert out["attention"].shape == (5, 2, extractor.window)
  # Batched in fixed-size batches: results do not depend on the batch a window lands in.
  np.testing.assert_allclose(extractor.embed_windows(windows[3:4])["embeddings"][0],
                             out["embeddings"][3], rtol=1e-5, atol=1e-5)


def test_any_length_compiles_once(extractor):
  rng = np.random.default_rng(1)
  w = extractor.window
  for frames in (7, w, w + 1, 3 * w + 17):
    stored = rng.standard_normal((frames, 257, 2)).astype(np.float16)
    starts = extractor.window_starts(frames)
    assert starts[0] == 0 and starts[-1] == max(frames - w, 0)
    assert all(b - a <= w // 2 for a, b in zip(starts, starts[1:]))
    assert extractor.embed(stored).shape == (2, 16)
  assert extractor._forward._cache_size() == 1  # pylint: disable=protected-access


def test_windows_are_aligned_before_averaging():
  rng = np.random.default_rng(2)
  speakers = rng.standard_normal((2, 8)) * 5
  windows = np.stack([speakers + 0.1 * rng.standard_normal((2, 8)) for _ in range(4)])
  windows[1] = windows[1][::-1]  # slots come out swapped in window 1
  windows[3] = windows[3][::-1]
  np.testing.assert_allclose(extraction.align_and_average(windows), speakers, atol=0.2)


def test_cli_writes_one_npy_per_file(trained_workdir, tmp_path):
  mix = conftest.synth_voice(101, 0, 5.0, 44100) + conftest.synth_voice(103, 1, 5.0, 44100)
  sf.write(str(tmp_path / "mix.wav"), np.stack([mix, mix], axis=1), 44100)
  (tmp_path / "bad.wav").write_bytes(b"not audio at all")
  result = subprocess.run(
      [sys.executable, "-m", "mirnet_jax.embed", f"--workdir={trained_workdir}",
       f"--out_dir={tmp_path / 'out'}", str(tmp_path / "mix.wav"), str(tmp_path / "bad.wav")],
      cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 1, result.stderr
  assert "mix.wav: 2 x 16 embeddings from 5.00 s" in result.stdout
  assert "bad.wav: skipped" in result.stderr
  assert sorted(os.listdir(tmp_path / "out")) == ["mix.npy"]
  assert np.load(tmp_path / "out" / "mix.npy").shape == (2, 16)


def test_workdir_without_checkpoint(tmp_path):
  with pytest.raises(checkpointing.CheckpointError, match="config.json"):
    inference.restore(str(tmp_path))


def test_cli_inputs_of_one_name_get_distinct_outputs(trained_workdir, extractor, tmp_path):
  inputs = {"a/mix.wav": (101, 102), "b/mix.wav": (103, 104), "b/mix.flac": (105, 101)}
  for name, (s1, s2) in inputs.items():
    (tmp_path / name).parent.mkdir(exist_ok=True)
    sf.write(str(tmp_path / name), conftest.synth_voice(s1, 0, 2.0)
             + conftest.synth_voice(s2, 1, 2.0), 16000)
  given = [str(tmp_path / n) for n in inputs] + [str(tmp_path / "b" / ".." / "a" / "mix.wav")]
  result = subprocess.run(
      [sys.executable, "-m", "mirnet_jax.embed", f"--workdir={trained_workdir}",
       f"--out_dir={tmp_path / 'out'}", *given], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert len(result.stdout.splitlines()) == 3  # the file named twice is embedded once
  # Mirrored from the inputs' common folder; x.wav and x.flac of one folder keep the
  # extension.
  expected = {"a/mix.wav": "a/mix.npy", "b/mix.wav": "b/mix.wav.npy",
              "b/mix.flac": "b/mix.flac.npy"}
  assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob(
      "*.npy")) == sorted(expected.values())
  for name, out in expected.items():
    np.testing.assert_allclose(np.load(tmp_path / "out" / out),
                               extractor.embed_file(str(tmp_path / name))[0],
                               rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.load(tmp_path / "out" / "b/mix.wav.npy"),
                         np.load(tmp_path / "out" / "b/mix.flac.npy"))


def test_outputs_beside_the_inputs_never_collide(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  assert embed.output_paths([f"{a}/x.wav", f"{b}/x.wav", f"{a}/x.flac", f"{a}/y.wav"],
                            None) == [(f"{a}/x.wav", f"{a}/x.wav.npy"),
                                      (f"{b}/x.wav", f"{b}/x.npy"),
                                      (f"{a}/x.flac", f"{a}/x.flac.npy"),
                                      (f"{a}/y.wav", f"{a}/y.npy")]
  assert embed.output_paths([f"{a}/x.wav", f"{a}/y.wav"], "gs://bucket/out") == [
      (f"{a}/x.wav", "gs://bucket/out/x.npy"), (f"{a}/y.wav", "gs://bucket/out/y.npy")]
  with pytest.raises(errors.UsageError, match="would both be embedded to"):
    embed.output_paths([f"{a}/x.wav", f"{a}/x.flac", f"{a}/x.wav.flac"], None)
