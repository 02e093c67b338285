r"""The paper's model on one GPU (e.g. A100/H100 80 GB).

  python -m mirnet_jax.main --config=configs/gpu.py --workdir=runs/mirnet_gpu \
      --config.data.shards=/data/librispeech_shards

Same model, data recipe and optimiser as configs/default.py; batch 128 with bfloat16
compute (float32 parameters). Expected result: the paper's 5.00% / 6.00% EER (seen /
unseen) on LibriSpeech is the reference.
"""

from mirnet_jax.configs import default


def get_config():
  c = default.get_config()
  c.batch_size = 128
  c.model.dtype = "bfloat16"
  c.data.workers = 12
  return c
