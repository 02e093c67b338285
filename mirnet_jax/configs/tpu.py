r"""The paper's model on a Cloud TPU slice (e.g. v4-32 / v5e-32), LibriSpeech shards on GCS.

  python -m mirnet_jax.main --config=configs/tpu.py --workdir=gs://BUCKET/runs/mirnet \
      --config.data.shards=gs://BUCKET/librispeech_shards

Same model, data recipe and optimiser as configs/default.py; a global batch of 1024 (a
multiple of every common slice's chip count), bfloat16 compute with float32 parameters, and
the learning rate scaled with the batch (linear rule from 128 -> 1e-3). Expected result:
the paper's 5.00% / 6.00% EER (seen / unseen) on LibriSpeech is the reference.
"""

from mirnet_jax.configs import default


def get_config():
  c = default.get_config()
  c.batch_size = 1024
  c.model.dtype = "bfloat16"
  c.optim.learning_rate = 1e-3 * 1024 / 128
  c.optim.warmup_steps = 1000
  c.num_train_steps = 20_000
  c.data.workers = 16
  c.eval_every = 1000
  return c
