"""The single-speaker embedding model of the enrolled-reference VoiceFilter baseline."""

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from mirnet_jax.models import frontend
from mirnet_jax.models import resnet


class SpeakerNet(nn.Module):
  """The enrolled-reference baseline's speaker model: MIRNet's ResNet-18 + TAP trunk on
  the normalised log-spectrum of a single speaker, and a classifier.

  Clean `[B, T, 257, 2]` -> dict(embeddings [B, 1, E], logits [B, 1, C]): one slot, so
  that the permutation-min cross-entropy (N = 1: plain cross-entropy), the training loop
  and the extractor are MIRNet's. `resnet`: the fields of resnet.ResNetTAP.
  """
  num_classes: int
  resnet: Mapping[str, Any] | None = None
  embedding_dim: int = 512
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, utterance, train: bool = False, time_keep=None, freq_keep=None):
    x = frontend.log_spectrum(utterance, time_keep=time_keep, freq_keep=freq_keep)
    embeddings = resnet.ResNetTAP(**(self.resnet or {}), embedding_dim=self.embedding_dim,
                                  dtype=self.dtype, name="resnet")(x, train)
    embeddings = embeddings.astype(jnp.float32)[:, None]
    logits = nn.Dense(self.num_classes, dtype=jnp.float32, name="classifier")(embeddings)
    return dict(embeddings=embeddings, logits=logits)
