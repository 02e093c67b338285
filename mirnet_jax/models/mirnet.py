"""MIRNet (paper Section 3, Table 1): speech encoder -> spectral attention -> ResNet/TAP.

Speech encoder: 1-D convolutions over time on the 257-bin log-magnitude spectrum, Table 1
channels (512, 512, 512, 512, 1500, N*D) and kernels (5, 3, 3, 1, 1, 1), LeakyReLU(0.2)
after each. Normalisation is not in the paper; by default each convolution is followed by
BatchNorm (`encoder_norm="batch"`), as in the x-vector TDNN this encoder resembles: without
it a six-layer LeakyReLU stack on unnormalised log-spectra trains slowly and is sensitive to
the input level. `encoder_norm="none"` gives the bare Table 1 stack. The input log-spectrum
is mean- and variance-normalised per utterance and frequency bin (`input_norm`; see
frontend.py).

Spectral attention: for N speakers, the N cyclic rotations of the N blocks of D channels of
V1 (for N = 2: V2 = concat(V1[D:2D], V1[0:D]), Eq. 2). A shared fc1 (64, tanh) -> fc2 (1,
sigmoid) gives one weight per frame for each rotation; a shared fully connected layer
(LeakyReLU) maps the weighted embedding to 257 channels: Z_1..Z_N. Section 3.2 can be read
two ways, a config choice (`attention.value`): "v1" (the default, the text's "each
multiplied with the spectral embedding V1") multiplies every weight with V1, so that the
slots differ only by a per-frame scalar before the shared projection; "rotated" multiplies
weight i with its own rotation V_i, so that slot i also sees the channels in its order.

Speaker embedding: one ResNet-18 + TAP (shared weights) on each Z_i, folded into the batch.
A linear classifier over the training speakers follows.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mirnet_jax import features
from mirnet_jax.models import batch_norm
from mirnet_jax.models import frontend
from mirnet_jax.models import resnet


def leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=0.2)


class SpeechEncoder(nn.Module):
  """`[B, T, F]` log-spectrum -> `[B, T, channels[-1]]` (V1)."""
  channels: Sequence[int] = (512, 512, 512, 512, 1500, 514)
  kernels: Sequence[int] = (5, 3, 3, 1, 1, 1)
  norm: str = "batch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if self.norm not in ("batch", "none"):
      raise ValueError(f"encoder norm must be 'batch' or 'none', not {self.norm!r}")
    for i, (c, k) in enumerate(zip(self.channels, self.kernels)):
      x = nn.Conv(c, (k,), use_bias=self.norm == "none", dtype=self.dtype,
                  name=f"conv{i + 1}")(x)
      if self.norm == "batch":
        x = batch_norm.BatchNorm(use_running_average=not train, momentum=0.9,
                                 dtype=self.dtype, name=f"bn{i + 1}")(x)
      x = leaky_relu(x)
    return x


def rotate_blocks(v, num_speakers: int, shift: int):
  """Cyclic rotation of the `num_speakers` channel blocks of `v` by `shift` blocks.

  shift=1, N=2: concat(V[D:2D], V[0:D]), the paper's channel exchange (Eq. 2).
  """
  d = v.shape[-1] // num_speakers
  return jnp.concatenate([v[..., shift * d:], v[..., :shift * d]], axis=-1)


ATTENTION_VALUES = ("v1", "rotated")


class SpectralAttention(nn.Module):
  """V1 `[B, T, N*D]` -> Z `[B, N, T, out_dim]` and attention weights `[B, N, T]`."""
  num_speakers: int = 2
  dim: int = 64  # fc1
  out_dim: int = features.NUM_BINS
  value: str = "v1"  # what each weight multiplies: "v1" (as written) or "rotated" (its V_i)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, v1):
    if v1.shape[-1] % self.num_speakers:
      raise ValueError(f"encoder output {v1.shape[-1]} is not {self.num_speakers} blocks")
    if self.value not in ATTENTION_VALUES:
      raise ValueError(f"attention value must be one of {', '.join(ATTENTION_VALUES)}, "
                       f"not {self.value!r}")
    fc1 = nn.Dense(self.dim, dtype=self.dtype, name="fc1")
    fc2 = nn.Dense(1, dtype=self.dtype, name="fc2")
    project = nn.Dense(self.out_dim, dtype=self.dtype, name="project")
    zs, weights = [], []
    for shift in range(self.num_speakers):
      v = rotate_blocks(v1, self.num_speakers, shift)
      w = nn.sigmoid(fc2(jnp.tanh(fc1(v))))  # [B, T, 1]
      zs.append(leaky_relu(project(w * (v1 if self.value == "v1" else v))))
      weights.append(w[..., 0])
    return jnp.stack(zs, axis=1), jnp.stack(weights, axis=1)


class MIRNet(nn.Module):
  """Mixture (float16 real/imag STFT `[B, T, 257, 2]`, or a log-spectrum `[B, T, 257]`)
  -> dict(embeddings [B, N, E], logits [B, N, C], attention [B, N, T]). `time_keep` and
  `freq_keep`: training's SpecAugment masks (frontend.log_spectrum).

  `encoder`, `attention` and `resnet` hold the fields of SpeechEncoder, SpectralAttention
  and resnet.ResNetTAP (None: their defaults, the paper's sizes), as the config's nested
  blocks `config.model.encoder` etc. do.
  """
  num_classes: int
  num_speakers: int = 2
  encoder: Mapping[str, Any] | None = None
  input_norm: bool = True
  attention: Mapping[str, Any] | None = None
  resnet: Mapping[str, Any] | None = None
  embedding_dim: int = 512
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, mixture, train: bool = False, time_keep=None, freq_keep=None):
    x = frontend.log_spectrum(mixture, normalise=self.input_norm, time_keep=time_keep,
                              freq_keep=freq_keep)
    v1 = SpeechEncoder(**(self.encoder or {}), dtype=self.dtype, name="encoder")(
        x.astype(self.dtype), train)
    z, attention = SpectralAttention(self.num_speakers, **(self.attention or {}),
                                     dtype=self.dtype, name="attention")(v1)
    b, n, t, f = z.shape
    trunk = resnet.ResNetTAP(**(self.resnet or {}), embedding_dim=self.embedding_dim,
                             dtype=self.dtype, name="resnet")
    # One set of trunk weights for every speaker slot: fold the slots into the batch.
    embeddings = trunk(z.reshape(b * n, t, f), train).reshape(b, n, -1)
    embeddings = embeddings.astype(jnp.float32)
    logits = nn.Dense(self.num_classes, dtype=jnp.float32, name="classifier")(embeddings)
    return dict(embeddings=embeddings, logits=logits,
                attention=attention.astype(jnp.float32))
