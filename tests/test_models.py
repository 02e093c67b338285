"""Shapes and structure of every module; the paper-size parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirnet_jax.configs import default
from mirnet_jax import tasks
from mirnet_jax.models import mirnet
from mirnet_jax.models import resnet

TINY = dict(encoder=dict(channels=(16, 16, 16, 16, 24, 12)),
            attention=dict(dim=8, out_dim=20),
            resnet=dict(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1)), embedding_dim=10)


def _init_apply(module, *args, **kwargs):
  variables = module.init(jax.random.key(0), *args, **kwargs)
  if "batch_stats" in variables and kwargs.get("train"):
    out, _ = module.apply(variables, *args, mutable=["batch_stats"], **kwargs)
    return variables, out
  return variables, module.apply(variables, *args, **kwargs)


def test_speech_encoder_shape():
  x = jnp.ones((3, 50, 257))
  _, y = _init_apply(mirnet.SpeechEncoder((32, 32, 32, 32, 64, 20)), x, train=False)
  assert y.shape == (3, 50, 20)


def test_encoder_norm_switch():
  x = jnp.ones((2, 10, 257))
  v, _ = _init_apply(mirnet.SpeechEncoder((8,) * 6, norm="none"), x, train=False)
  assert "batch_stats" not in v and "bias" in v["params"]["conv1"]
  with pytest.raises(ValueError, match="batch"):
    _init_apply(mirnet.SpeechEncoder((8,) * 6, norm="layer"), x, train=False)


def test_channel_exchange_is_the_papers_for_two_speakers():
  v = jnp.arange(2 * 3 * 8.0).reshape(2, 3, 8)
  np.testing.assert_array_equal(mirnet.rotate_blocks(v, 2, 1),
                                jnp.concatenate([v[..., 4:], v[..., :4]], axis=-1))
  np.testing.assert_array_equal(mirnet.rotate_blocks(v, 2, 0), v)
  np.testing.assert_array_equal(
      mirnet.rotate_blocks(jnp.arange(6.0), 3, 2), jnp.array([4.0, 5, 0, 1, 2, 3]))


@pytest.mark.parametrize("n", [2, 3])
def test_spectral_attention_shapes_and_range(n):
  v1 = jax.random.normal(jax.random.key(1), (2, 40, 6 * n))
  _, (z, w) = _init_apply(mirnet.SpectralAttention(n, 8, 257), v1)
  assert z.shape == (2, n, 40, 257) and w.shape == (2, n, 40)
  assert np.all((np.asarray(w) >= 0) & (np.asarray(w) <= 1))
  # Slots differ only through their attention weights (shared layers, Section 3.2).
  assert not np.allclose(w[:, 0], w[:, 1])


def test_resnet_tap_shape_and_length_independence():
  net = resnet.ResNetTAP((4, 8, 8, 8), (2, 2, 2, 2), embedding_dim=12)
  v, y = _init_apply(net, jnp.ones((2, 64, 40)), train=False)
  assert y.shape == (2, 12)
  # TAP: the same weights take any number of frames.
  assert net.apply(v, jnp.ones((2, 100, 40)), train=False).shape == (2, 12)


@pytest.mark.parametrize("n", [2, 3])
def test_mirnet_outputs(n):
  model = mirnet.MIRNet(num_classes=11, num_speakers=n, **dict(
      TINY, encoder=dict(channels=TINY["encoder"]["channels"][:-1] + (4 * n,))))
  mixture = jax.random.normal(jax.random.key(2), (3, 60, 257, 2)).astype(jnp.float16)
  variables, out = _init_apply(model, mixture, train=True)
  assert out["embeddings"].shape == (3, n, 10)
  assert out["logits"].shape == (3, n, 11)
  assert out["attention"].shape == (3, n, 60)
  # One trunk for all slots: a single set of ResNet weights.
  assert set(variables["params"]) == {"encoder", "attention", "resnet", "classifier"}


def test_bfloat16_compute_keeps_float32_parameters():
  model = mirnet.MIRNet(num_classes=5, dtype=jnp.bfloat16, **TINY)
  mixture = jnp.ones((2, 30, 257, 2), jnp.float16)
  variables, out = _init_apply(model, mixture, train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  assert out["embeddings"].dtype == jnp.float32
  assert np.all(np.isfinite(out["logits"]))


def expected_paper_parameters(num_classes: int) -> int:
  """Table 1 + ResNet-18 + TAP + classifier, counted by hand."""
  enc, kernels, cin, count = (512, 512, 512, 512, 1500, 514), (5, 3, 3, 1, 1, 1), 257, 0
  for c, k in zip(enc, kernels):
    count += k * cin * c + 2 * c  # conv (no bias) + BatchNorm scale/bias
    cin = c
  count += 514 * 64 + 64 + 64 + 1 + 514 * 257 + 257  # fc1, fc2, projection to 257
  count += 7 * 7 * 1 * 64 + 2 * 64  # stem
  cin = 64
  for stage, width in enumerate((64, 128, 256, 512)):
    for block in range(2):
      count += 9 * cin * width + 2 * width + 9 * width * width + 2 * width
      if cin != width:
        count += cin * width + 2 * width  # 1x1 projection + BatchNorm
      cin = width
  count += 512 * 512 + 512  # embedding
  return count + 512 * num_classes + num_classes


@pytest.mark.parametrize("num_classes", [251, 2338])
def test_paper_size_parameter_count(num_classes):
  config = default.get_config()
  model = tasks.create(config, num_classes).model
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 300, 257, 2), jnp.float16)))
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))
  assert count == expected_paper_parameters(num_classes)


def test_attention_readings_differ_only_in_what_the_weights_multiply():
  """"v1" (Section 3.2 as written): slot i is project(w_i * V1); "rotated": project(w_i * V_i).
  Same parameters, same weights; the slots' inputs to the projection differ."""
  n, v1 = 2, jax.random.normal(jax.random.key(3), (2, 30, 12))
  literal = mirnet.SpectralAttention(n, 8, 16, value="v1")
  variables = literal.init(jax.random.key(0), v1)
  z_v1, w_v1 = literal.apply(variables, v1)
  z_rot, w_rot = mirnet.SpectralAttention(n, 8, 16, value="rotated").apply(variables, v1)
  np.testing.assert_array_equal(w_v1, w_rot)
  np.testing.assert_array_equal(z_v1[:, 0], z_rot[:, 0])  # rotation 0 is V1 itself
  assert not np.allclose(z_v1[:, 1], z_rot[:, 1])
  project = lambda x: mirnet.leaky_relu(
      x @ variables["params"]["project"]["kernel"] + variables["params"]["project"]["bias"])
  v2 = mirnet.rotate_blocks(v1, n, 1)
  np.testing.assert_allclose(z_rot[:, 1], project(w_rot[:, 1, :, None] * v2), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(z_v1[:, 1], project(w_v1[:, 1, :, None] * v1), rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(ValueError, match="rotated"):
    mirnet.SpectralAttention(n, 8, 16, value="V2").init(jax.random.key(0), v1)


def test_input_masks_zero_the_masked_frames_and_bins_of_the_normalised_input():
  from mirnet_jax.models import frontend
  stored = jax.random.normal(jax.random.key(4), (2, 20, 257, 2)).astype(jnp.float16)
  time_keep = np.ones((2, 20), bool)
  time_keep[0, 5:9] = False
  freq_keep = np.ones((2, 257), bool)
  freq_keep[1, 100:130] = False
  plain = np.asarray(frontend.log_spectrum(stored))
  masked = np.asarray(frontend.log_spectrum(stored, time_keep=time_keep,
                                            freq_keep=freq_keep))
  keep = time_keep[:, :, None] & freq_keep[:, None, :]
  np.testing.assert_array_equal(masked[~keep], 0.0)
  np.testing.assert_array_equal(masked[keep], plain[keep])  # normalised before masking
  # The model reads them: masked frames change the output, in training as given.
  model = mirnet.MIRNet(num_classes=5, **TINY)
  variables = model.init(jax.random.key(0), stored, train=False)
  out = lambda **k: model.apply(variables, stored, train=False, **k)["embeddings"]
  assert not np.allclose(out(), out(time_keep=time_keep, freq_keep=freq_keep))
  np.testing.assert_array_equal(out(), out(time_keep=np.ones((2, 20), bool)))
