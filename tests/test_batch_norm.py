"""The project's BatchNorm and max-pool against flax's: same values, gradients, statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirnet_jax.models import batch_norm
from mirnet_jax.models import resnet


def _loss_and_grads(module, variables, x, weights):
  def loss(params, x):
    y, updates = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                              mutable=["batch_stats"])
    return jnp.sum(jnp.sin(y) * weights), updates["batch_stats"]

  (value, stats), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      variables["params"], x)
  return value, stats, grads


@pytest.mark.parametrize("shape", [(4, 30, 20, 8), (3, 50, 16)])
@pytest.mark.parametrize("backend_sum", [False, True])
def test_batch_norm_matches_flax(shape, backend_sum, monkeypatch):
  if backend_sum:  # the reduction other backends use (jnp.sum), on this CPU
    monkeypatch.setattr(batch_norm, "DOT_SUM_BACKENDS", ())
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape) * 3 + 1, jnp.float32)
  weights = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  features = shape[-1]
  ours = batch_norm.BatchNorm(use_running_average=False, momentum=0.9)
  theirs = nn.BatchNorm(use_running_average=False, momentum=0.9)
  variables = theirs.init(jax.random.key(0), x)
  assert (jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x))
          == jax.tree.map(jnp.shape, variables))
  variables = {"params": {"scale": jnp.linspace(0.5, 1.5, features),
                          "bias": jnp.linspace(-1.0, 1.0, features)},
               "batch_stats": {"mean": jnp.linspace(-0.1, 0.1, features),
                               "var": jnp.linspace(0.9, 1.1, features)}}
  value, stats, (param_grads, input_grads) = _loss_and_grads(ours, variables, x, weights)
  value_f, stats_f, (param_grads_f, input_grads_f) = _loss_and_grads(theirs, variables, x,
                                                                      weights)
  np.testing.assert_allclose(value, value_f, rtol=1e-5)
  for a, b in ((stats, stats_f), (param_grads, param_grads_f)):
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(input_grads, input_grads_f, rtol=1e-4, atol=1e-5)
  # Inference: the running statistics, as flax.
  np.testing.assert_allclose(
      batch_norm.BatchNorm(use_running_average=True).apply(variables, x),
      nn.BatchNorm(use_running_average=True).apply(variables, x), rtol=1e-5, atol=1e-6)


def test_batch_norm_bfloat16_compute_keeps_float32_statistics():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 10, 6)), jnp.bfloat16)
  module = batch_norm.BatchNorm(use_running_average=False, dtype=jnp.bfloat16)
  variables = module.init(jax.random.key(0), x)
  y, updates = module.apply(variables, x, mutable=["batch_stats"])
  assert y.dtype == jnp.bfloat16
  assert variables["params"]["scale"].dtype == jnp.float32
  assert updates["batch_stats"]["var"].dtype == jnp.float32
  expected = nn.BatchNorm(use_running_average=False, dtype=jnp.bfloat16).apply(
      variables, x, mutable=["batch_stats"])[0]
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(expected, np.float32),
                             atol=0.05)


@pytest.mark.parametrize("shape", [(2, 151, 129, 3), (1, 8, 9, 2), (2, 1, 5, 1)])
@pytest.mark.parametrize("window,stride", [(3, 2), (2, 2), (3, 1)])
def test_max_pool_matches_flax(shape, window, stride):
  x = jnp.asarray(np.random.default_rng(2).standard_normal(shape), jnp.float32)
  pooled = resnet.max_pool(x, window, stride)
  expected = nn.max_pool(x, (window, window), (stride, stride), padding="SAME")
  np.testing.assert_array_equal(pooled, expected)
  # Without ties (normal noise), the gradient is flax's too.
  weights = jnp.asarray(np.random.default_rng(3).standard_normal(expected.shape), jnp.float32)
  grad = jax.grad(lambda x: jnp.sum(resnet.max_pool(x, window, stride) * weights))(x)
  grad_f = jax.grad(lambda x: jnp.sum(
      nn.max_pool(x, (window, window), (stride, stride), padding="SAME") * weights))(x)
  np.testing.assert_allclose(grad, grad_f, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's lowering")
def test_batch_norm_step_has_no_reductions_on_the_cpu():
  """Forward and backward compile to dot products, not XLA:CPU's reduce(-window) trees:
  what the CPU step's speed rests on (a rewrite of the dots into reductions would undo it)."""
  module = batch_norm.BatchNorm(use_running_average=False)
  x = jnp.ones((8, 60, 50, 16))
  variables = module.init(jax.random.key(0), x)

  def forward_backward(params, x, cotangent):
    apply = lambda params, x: module.apply(
        {"params": params, "batch_stats": variables["batch_stats"]}, x, mutable=["batch_stats"])
    y, vjp, updates = jax.vjp(apply, params, x, has_aux=True)
    return y, vjp(cotangent), updates

  hlo = jax.jit(forward_backward).lower(variables["params"], x, x).compile().as_text()
  assert " dot(" in hlo
  assert " reduce(" not in hlo and " reduce-window(" not in hlo
