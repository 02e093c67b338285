r"""A few-second configuration for tests: tiny widths, 1 s crops, small batches.

  python -m mirnet_jax.main --config=configs/tiny.py --workdir=/tmp/tiny \
      --config.data.shards=runs/demo/shards

Expected result: trains 6 steps in seconds on a CPU; the numbers mean nothing.
"""

from mirnet_jax.configs import common
from mirnet_jax.configs import default


def get_config():
  c = default.get_config()
  common.tiny_size(c)
  c.model.encoder.channels = (16, 16, 16, 16, 32, 16)
  c.model.attention.update(dict(dim=8, out_dim=16))
  c.model.resnet.update(TINY_RESNET)
  c.model.embedding_dim = 16
  return c


TINY_RESNET = dict(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), stem_kernel=3)
