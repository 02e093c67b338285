r"""A few-second configuration for tests: tiny widths, 1 s crops, small batches.

  python -m mirnet_jax.main --config=configs/tiny.py --workdir=/tmp/tiny \
      --config.data.shards=runs/demo/shards

Expected result: trains 6 steps in seconds on a CPU; the numbers mean nothing.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.data.shards = "runs/demo/shards"
  c.data.crop_frames = 100
  c.data.train_hours = 0.1
  c.data.val_hours = 16 * 1.0 / 3600  # 16 mixtures of 1 s
  c.data.workers = 0
  c.data.read_threads = 2
  c.model.encoder_channels = (16, 16, 16, 16, 32, 16)
  c.model.attention_dim = 8
  c.model.attention_out_dim = 16
  c.model.resnet_widths = (4, 8, 8, 8)
  c.model.resnet_blocks = (1, 1, 1, 1)
  c.model.resnet_stem_kernel = 3
  c.model.embedding_dim = 16
  c.optim.warmup_steps = 2
  c.batch_size = 8
  c.num_train_steps = 6
  c.log_every = 2
  c.eval_every = 3
  c.keep_checkpoints = 2
  return c
