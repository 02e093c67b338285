"""The Python API on a tiny trained workdir: load, embed at any rate, export."""

import json
import os
import subprocess
import sys

import librosa
import numpy as np
import pytest

import mirnet_jax
from mirnet_jax import errors
from mirnet_jax import extraction
from mirnet_jax import inference
from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mixture(seconds=3.0):
  return conftest.synth_voice(101, 0, seconds) + conftest.synth_voice(203, 1, seconds)


def test_load_embeds_like_the_extractor_and_takes_any_rate_and_channels(trained_workdir):
  model = mirnet_jax.load(trained_workdir)
  mix = _mixture()
  embeddings = model.embed(mix, 16000)
  assert embeddings.shape == (2, 16) and model.task.name == "mirnet"
  extractor = extraction.Extractor(inference.restore(trained_workdir))
  np.testing.assert_array_equal(embeddings, extractor.embed_waveform(mix))
  stereo_44k = np.stack([librosa.resample(mix, orig_sr=16000, target_sr=44100)] * 2, axis=1)
  resampled = model.embed(stereo_44k, 44100)
  cosine = np.sum(resampled * embeddings, -1) / (
      np.linalg.norm(resampled, axis=-1) * np.linalg.norm(embeddings, axis=-1))
  assert np.all(cosine > 0.99), cosine
  with pytest.raises(errors.UserError, match="does not separate"):
    model.separate(mix, 16000)


def test_export_holds_no_optimizer_state_and_loads_everywhere(trained_workdir, tmp_path):
  out = str(tmp_path / "exported")
  assert mirnet_jax.export(trained_workdir, out) == out
  meta = json.load(open(os.path.join(out, "config.json")))
  assert meta["exported"]["step"] == inference.restore(trained_workdir).step
  assert meta["exported"]["trained_on"]["num_classes"] == len(conftest.TRAIN_SPEAKERS)
  assert not os.path.exists(os.path.join(out, "checkpoints"))
  restored = inference.restore(out)
  assert set(restored.variables) == {"params", "batch_stats"} and restored.frozen == {}
  mix = _mixture()
  np.testing.assert_array_equal(mirnet_jax.load(out).embed(mix, 16000),
                                mirnet_jax.load(trained_workdir).embed(mix, 16000))
  # Never over an earlier export.
  with pytest.raises(errors.UserError, match="already exists"):
    mirnet_jax.export(trained_workdir, out)
  # The command-line tools take an export as --workdir.
  import soundfile as sf
  sf.write(tmp_path / "mix.wav", mix, 16000, subtype="FLOAT")
  result = subprocess.run([sys.executable, "-m", "mirnet_jax.embed", f"--workdir={out}",
                           f"--out_dir={tmp_path / 'npy'}", str(tmp_path / "mix.wav")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  np.testing.assert_allclose(np.load(tmp_path / "npy" / "mix.npy"),
                             mirnet_jax.load(out).embed(mix, 16000), rtol=1e-5, atol=1e-6)
