"""Spectrogram-masking separators (paper Section 4.2): VoiceFilter and uPIT.

`MaskNet` is the VoiceFilter mask network (Wang et al., Interspeech 2019, Table 1):
  * 2-D convolutions over (time, frequency) of the mixture's log-magnitude spectrogram:
    1x7, 7x1, then 5x5 with time dilations 1, 2, 4, 8, 16, then 1x1 down to a few
    channels; each followed by BatchNorm and ReLU;
  * the flattened [T, F * c] features, concatenated on every frame with the conditioning
    speaker embedding (VoiceFilter) or with nothing (uPIT);
  * a bidirectional LSTM (the issue asks for one; VoiceFilter's paper LSTM is forward
    only), a fully connected ReLU layer and a sigmoid output of `num_masks` x 257 masks.
The paper's uPIT baseline is "the same BLSTM structure while doubling the dimension of
the fully connected layer and output": `num_masks=2` and twice `fc_dim` (configs/separation.py).

The input is the per-utterance, per-bin normalised log-magnitude (the same CMVN front end
as MIRNet, so both see the same features); masks multiply the mixture's linear magnitude.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mirnet_jax.models import batch_norm
from mirnet_jax.models import frontend


class MaskNet(nn.Module):
  """Mixture `[B, T, 257, 2]` (+ embedding `[B, E]`) -> masks `[B, num_masks, T, 257]`."""
  num_masks: int = 1
  conv_channels: int = 64
  conv_out_channels: int = 8
  dilations: Sequence[int] = (1, 2, 4, 8, 16)
  lstm_dim: int = 400
  fc_dim: int = 600
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, mixture, embedding=None, train: bool = False):
    x = frontend.log_spectrum(mixture)[..., None].astype(self.dtype)  # [B, T, F, 1]
    b, t, f, _ = x.shape
    layers = [((1, 7), 1), ((7, 1), 1)] + [((5, 5), d) for d in self.dilations]
    for i, (kernel, dilation) in enumerate(layers):
      x = nn.Conv(self.conv_channels, kernel, kernel_dilation=(dilation, 1), use_bias=False,
                  dtype=self.dtype, name=f"conv{i + 1}")(x)
      x = nn.relu(batch_norm.BatchNorm(use_running_average=not train, momentum=0.9,
                                       dtype=self.dtype, name=f"bn{i + 1}")(x))
    x = nn.Conv(self.conv_out_channels, (1, 1), dtype=self.dtype, name="conv_out")(x)
    x = nn.relu(x).reshape(b, t, f * self.conv_out_channels)
    if embedding is not None:
      # VoiceFilter: the speaker embedding (unit length, so its scale does not depend on
      # the speaker model) on every frame.
      e = embedding / (jnp.linalg.norm(embedding, axis=-1, keepdims=True) + 1e-6)
      x = jnp.concatenate([x, jnp.broadcast_to(e[:, None, :].astype(x.dtype),
                                               (b, t, e.shape[-1]))], axis=-1)
    lstm = nn.Bidirectional(
        nn.RNN(nn.OptimizedLSTMCell(self.lstm_dim, dtype=self.dtype), name="forward"),
        nn.RNN(nn.OptimizedLSTMCell(self.lstm_dim, dtype=self.dtype), name="backward"),
        name="blstm")
    x = lstm(x)
    x = nn.relu(nn.Dense(self.fc_dim, dtype=self.dtype, name="fc1")(x))
    masks = nn.sigmoid(nn.Dense(self.num_masks * f, dtype=jnp.float32, name="fc2")(x))
    return masks.reshape(b, t, self.num_masks, f).transpose(0, 2, 1, 3)
