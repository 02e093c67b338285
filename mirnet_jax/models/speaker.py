"""The single-speaker embedding model of the enrolled-reference VoiceFilter baseline."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mirnet_jax.models import resnet
from mirnet_jax.models import separation


class SpeakerNet(nn.Module):
  """The enrolled-reference baseline's speaker model: MIRNet's ResNet-18 + TAP trunk on
  the normalised log-spectrum of a single speaker, and a classifier.

  Clean `[B, T, 257, 2]` -> dict(embeddings [B, 1, E], logits [B, 1, C]): one slot, so
  that the permutation-min cross-entropy (N = 1: plain cross-entropy), the training loop
  and the extractor are MIRNet's.
  """
  num_classes: int
  resnet_widths: Sequence[int] = (64, 128, 256, 512)
  resnet_blocks: Sequence[int] = (2, 2, 2, 2)
  resnet_stem_kernel: int = 7
  resnet_stem_stride: int = 2
  resnet_stem_pool: bool = True
  embedding_dim: int = 512
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, utterance, train: bool = False):
    x = separation.normalised_log_magnitude(utterance)
    embeddings = resnet.ResNetTAP(self.resnet_widths, self.resnet_blocks,
                                  self.resnet_stem_kernel, self.resnet_stem_stride,
                                  self.resnet_stem_pool, self.embedding_dim, self.dtype,
                                  name="resnet")(x, train)
    embeddings = embeddings.astype(jnp.float32)[:, None]
    logits = nn.Dense(self.num_classes, dtype=jnp.float32, name="classifier")(embeddings)
    return dict(embeddings=embeddings, logits=logits)
