r"""The single-speaker embedding model of the enrolled VoiceFilter baseline: MIRNet's
ResNet-18 + TAP trunk trained with cross-entropy on clean single-speaker segments.

  python -m mirnet_jax.main --config=configs/speaker.py:demo --workdir=runs/demo/speaker

Sizes after the colon: paper (the default), demo, tiny.

Expected result (demo corpus): validation accuracy about 31% over 400 speakers.
"""

import ml_collections

from mirnet_jax.configs import common
from mirnet_jax.configs import default
from mirnet_jax.configs import demo
from mirnet_jax.configs import tiny


def get_config(size: str = "paper") -> ml_collections.ConfigDict:
  common.size_arg(size)
  c = default.get_config()
  c.task = "speaker"
  c.data.num_speakers = 1
  m = c.model
  # The fields of models.speaker.SpeakerNet.
  c.model = ml_collections.ConfigDict(dict(resnet=m.resnet, embedding_dim=m.embedding_dim,
                                           dtype=m.dtype))
  if size == "demo":
    d = demo.get_config()
    c.data, c.optim = d.data, d.optim
    c.data.num_speakers = 1
    c.model.update(dict(resnet=d.model.resnet, embedding_dim=d.model.embedding_dim,
                        dtype=d.model.dtype))
    c.batch_size = 32
    # 400 demo speakers with 6 training utterances each: 900 steps left it at 27%
    # validation accuracy, too weak a reference for the enrolled baseline.
    c.num_train_steps = 1800
    c.log_every = 50
    c.eval_every = 300
    c.keep_checkpoints = 2
  elif size == "tiny":
    common.tiny_size(c)
    c.model.resnet.update(tiny.TINY_RESNET)
    c.model.embedding_dim = 16
  return c
