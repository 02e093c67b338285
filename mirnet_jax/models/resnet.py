"""ResNet-18 speaker trunk with temporal average pooling (paper Section 3.3).

The input is a `[B, T, F]` spectrogram-like map treated as a one-channel image. The
stem, widths and depths are configurable: the default is torchvision's ResNet-18
(7x7/2 convolution and 3x3/2 max-pool stem, BasicBlock stages [2, 2, 2, 2] of 64, 128,
256, 512 channels), which is what "ResNet-18" names in the paper. After the last stage the
frequency axis is averaged away and TAP averages over time, then a linear layer gives the
embedding (as the ResNet speaker models of Chung et al. 2020 do).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirnet_jax.models import batch_norm


def max_pool(x, window: int, stride: int):
  """`nn.max_pool(x, (window,) * 2, (stride,) * 2, padding="SAME")` on `[B, H, W, C]`, as
  maxima of strided slices, over H and then W. The same values; the gradient of a tie is
  shared among the tied inputs rather than given to the first (after a ReLU, ties are
  zeros, whose gradient the ReLU stops either way). Why: XLA's gradient of
  `nn.max_pool` (select-and-scatter) was the largest op of the CPU step (docs/results.md,
  "The CPU step: BatchNorm reductions as dot products")."""
  for axis in (1, 2):
    size = x.shape[axis]
    out = -(-size // stride)
    pad = max((out - 1) * stride + window - size, 0)
    widths = [(0, 0)] * x.ndim
    widths[axis] = (pad // 2, pad - pad // 2)
    padded = jnp.pad(x, widths, constant_values=-jnp.inf)
    slices = [jax.lax.slice_in_dim(padded, start, start + (out - 1) * stride + 1, stride, axis)
              for start in range(window)]
    x = functools.reduce(jnp.maximum, slices)
  return x


class BasicBlock(nn.Module):
  features: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(batch_norm.BatchNorm, use_running_average=not train,
                             momentum=0.9, dtype=self.dtype)
    residual = x
    y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False, dtype=self.dtype,
                name="conv1")(x)
    y = nn.relu(norm(name="bn1")(y))
    y = nn.Conv(self.features, (3, 3), 1, use_bias=False, dtype=self.dtype, name="conv2")(y)
    # Zero-initialised last scale: each block starts as the identity (Goyal et al. 2017).
    y = norm(scale_init=nn.initializers.zeros, name="bn2")(y)
    if residual.shape != y.shape:
      residual = nn.Conv(self.features, (1, 1), self.strides, use_bias=False,
                         dtype=self.dtype, name="proj")(residual)
      residual = norm(name="proj_bn")(residual)
    return nn.relu(y + residual)


class ResNetTAP(nn.Module):
  """`[B, T, F]` -> `[B, embedding_dim]`."""
  widths: Sequence[int] = (64, 128, 256, 512)
  blocks: Sequence[int] = (2, 2, 2, 2)
  stem_kernel: int = 7
  stem_stride: int = 2
  stem_pool: bool = True
  embedding_dim: int = 512
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = x[..., None].astype(self.dtype)
    x = nn.Conv(self.widths[0], (self.stem_kernel,) * 2, self.stem_stride, use_bias=False,
                dtype=self.dtype, name="stem")(x)
    x = nn.relu(batch_norm.BatchNorm(use_running_average=not train, momentum=0.9,
                                     dtype=self.dtype, name="stem_bn")(x))
    if self.stem_pool:
      x = max_pool(x, 3, 2)
    for stage, (width, depth) in enumerate(zip(self.widths, self.blocks)):
      for block in range(depth):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(width, strides, self.dtype, name=f"stage{stage + 1}_block{block + 1}")(
            x, train)
    x = jnp.mean(x, axis=(1, 2))  # frequency, then time (TAP): a mean over both
    return nn.Dense(self.embedding_dim, dtype=self.dtype, name="embedding")(x)
