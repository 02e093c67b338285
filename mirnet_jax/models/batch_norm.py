"""BatchNorm over every axis but the last, with the reductions XLA:CPU runs fastest.

The same variables (params `scale`, `bias`; batch_stats `mean`, `var`), initialisers,
statistics (float32, E[x^2] - E[x]^2 clipped at zero: flax's `use_fast_variance`) and
running-average update as `flax.linen.BatchNorm` with its defaults, so checkpoints are
interchangeable. Two things differ, both for the CPU step (docs/results.md, "The CPU step:
BatchNorm reductions as dot products"):
- XLA:CPU runs a reduction over a large activation as a tree of single-threaded
  reduce-windows, about 3-6x slower than a matrix-vector product with a vector of ones on
  its multithreaded dot kernels; on the CPU every per-channel sum here is that product.
  Other backends keep XLA's reductions.
- The backward pass is written out (the standard one of batch normalisation: the input
  gradient from the two per-channel sums of the output gradient), so that its reductions
  are those sums too rather than what autodiff makes of the broadcasts.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


# Backends on which a per-channel sum is a matrix-vector product (measured on XLA:CPU only).
DOT_SUM_BACKENDS = ("cpu",)


def channel_sum(x2):
  """Sum over the rows of `[N, C]`, in float32: `[C]`."""
  x2 = x2.astype(jnp.float32)
  if jax.default_backend() not in DOT_SUM_BACKENDS:
    return jnp.sum(x2, axis=0)
  ones = jnp.ones((x2.shape[0],), jnp.float32)
  return jax.lax.dot_general(ones, x2, (((0,), (0,)), ((), ())))


def _statistics(x2, scale, bias, epsilon):
  n = x2.shape[0]
  x2 = x2.astype(jnp.float32)
  mean = channel_sum(x2) / n
  var = jnp.maximum(channel_sum(x2 * x2) / n - mean * mean, 0.0)
  inverse_std = jax.lax.rsqrt(var + epsilon)
  y = (x2 - mean) * (inverse_std * scale) + bias
  return y, mean, var, inverse_std


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalise(x2, scale, bias, epsilon: float):
  """`[N, C]` -> (float32 normalised, scaled and shifted `[N, C]`, batch mean `[C]`,
  batch variance `[C]`). The mean and variance only feed running averages: their
  cotangents must be zero (stop their gradients), as the backward pass ignores them."""
  y, mean, var, _ = _statistics(x2, scale, bias, epsilon)
  return y, mean, var


def _normalise_forward(x2, scale, bias, epsilon):
  y, mean, var, inverse_std = _statistics(x2, scale, bias, epsilon)
  return (y, mean, var), (x2, mean, inverse_std, scale)


def _normalise_backward(epsilon, residuals, cotangents):
  del epsilon
  x2, mean, inverse_std, scale = residuals
  g = cotangents[0]
  n = x2.shape[0]
  normalised = (x2.astype(jnp.float32) - mean) * inverse_std
  d_bias = channel_sum(g)
  d_scale = channel_sum(g * normalised)
  d_x = (scale * inverse_std) * (g - d_bias / n - normalised * (d_scale / n))
  return d_x.astype(x2.dtype), d_scale.astype(scale.dtype), d_bias.astype(scale.dtype)


normalise.defvjp(_normalise_forward, _normalise_backward)


class BatchNorm(nn.Module):
  """`flax.linen.BatchNorm(axis=-1)` over the other axes; see the module docstring."""
  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32
  scale_init: Callable = nn.initializers.ones
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None):
    use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                         use_running_average)
    features = (x.shape[-1],)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
    scale = self.param("scale", self.scale_init, features, self.param_dtype)
    bias = self.param("bias", self.bias_init, features, self.param_dtype)
    dtype = self.dtype or jnp.result_type(x, scale)
    if use_running_average:
      inverse_std = jax.lax.rsqrt(running_var.value + self.epsilon)
      y = (x.astype(jnp.float32) - running_mean.value) * (inverse_std * scale) + bias
      return y.astype(dtype)
    y, mean, var = normalise(x.reshape(-1, features[0]), scale, bias, self.epsilon)
    if not self.is_initializing():
      keep = self.momentum
      running_mean.value = keep * running_mean.value + (1 - keep) * jax.lax.stop_gradient(mean)
      running_var.value = keep * running_var.value + (1 - keep) * jax.lax.stop_gradient(var)
    return y.reshape(x.shape).astype(dtype)
