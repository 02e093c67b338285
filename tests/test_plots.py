"""The figures: each writes a valid PNG atomically (no temp file left behind)."""

import os

import numpy as np
import pytest

from mirnet_jax import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, directory):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  assert os.path.getsize(path) > 10_000  # a drawn figure, not an empty canvas
  assert sorted(os.listdir(directory)) == [os.path.basename(path)]  # no temp files


def test_tsne_small(tmp_path):
  rng = np.random.default_rng(0)
  m = 12  # six 2-speaker mixtures: the perplexity must adapt
  path = str(tmp_path / "tsne.png")
  out = plots.tsne(rng.standard_normal((m, 16)), rng.integers(0, 5, m),
                   np.tile([0, 1], m // 2), path, seed=1)
  assert out == path
  _check_png(path, tmp_path)


def test_tsne_rejects_mismatched_inputs(tmp_path):
  with pytest.raises(ValueError):
    plots.tsne(np.zeros((12, 4)), np.zeros(11, int), np.zeros(12, int),
               str(tmp_path / "x.png"))
  assert not os.listdir(tmp_path)


def test_attention(tmp_path):
  rng = np.random.default_rng(0)
  t, f, n = 120, 257, 2
  sources = rng.normal(-3, 1, (n, t, f))
  mixture = np.logaddexp(sources[0], sources[1])  # roughly |a + b| in the log domain
  weights = rng.uniform(0, 1, (n, t))
  path = str(tmp_path / "sub" / "attention.png")  # the directory is created
  assert plots.attention(mixture, sources, weights, path) == path
  _check_png(path, tmp_path / "sub")
  with pytest.raises(ValueError):
    plots.attention(mixture, sources, weights[:, :-1], str(tmp_path / "bad.png"))


def test_det(tmp_path):
  rng = np.random.default_rng(0)
  curves = {"seen": (rng.normal(2, 1, 300), rng.normal(0, 1, 300)),
            "unseen": (rng.normal(1, 1, 300), rng.normal(0, 1, 300)),
            "perfect": (np.array([3.0, 4.0]), np.array([0.0, 1.0]))}
  path = str(tmp_path / "det.png")
  assert plots.det(curves, path) == path
  _check_png(path, tmp_path)
