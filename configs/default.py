r"""The paper's setup (Section 4.1.1, Table 1) on LibriSpeech shards.

  python -m mirnet_jax.prepare --source=/data/LibriSpeech --out=/data/shards
  python -m mirnet_jax.main --config=configs/default.py --workdir=/data/runs/mirnet \
      --config.data.shards=/data/shards

Model: 257-bin log-spectrum input, Table 1 encoder (512, 512, 512, 512, 1500, 514; kernels
5, 3, 3, 1, 1, 1; LeakyReLU 0.2), attention fc1 64 / fc2 1, ResNet-18 (BasicBlock
[2, 2, 2, 2], 64-512 channels) + TAP, 512-d embeddings; 3 s segments; an epoch is 93 h of
training mixtures, validation on 15 h of mixtures of held-out utterances.

Optimiser (not in the paper): AdamW (b1 0.9, b2 0.999, weight decay 1e-4 on kernels),
peak learning rate 1e-3 reached by linear warmup over 2,000 steps, then cosine decay to
zero; global gradient-norm clipping at 5. Adam-family optimisers are what speaker
recognition recipes of the time used (e.g. Chung et al. 2020); warmup protects the
freshly initialised BatchNorm statistics; clipping guards the first steps, when the
permutation choice is arbitrary.

Expected result: the paper reports 5.00% (seen) / 6.00% (unseen) EER on 200 + 200 trials.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "mirnet"  # see mirnet_jax/tasks.py
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.shards = "runs/librispeech/shards"
  c.data.num_speakers = 2
  c.data.crop_frames = 300  # 3 s
  c.data.gain_db_range = 5.0  # each source uniform in [-2.5, 2.5] dB
  c.data.train_hours = 93.0  # one epoch of training mixtures
  c.data.val_hours = 15.0
  c.data.workers = 8  # grain worker processes per host
  c.data.read_threads = 4

  c.model = ml_collections.ConfigDict()
  c.model.encoder_channels = (512, 512, 512, 512, 1500, 514)
  c.model.encoder_kernels = (5, 3, 3, 1, 1, 1)
  c.model.encoder_norm = "batch"  # or "none"
  c.model.input_norm = True
  c.model.attention_dim = 64
  c.model.attention_out_dim = 257
  c.model.resnet_widths = (64, 128, 256, 512)
  c.model.resnet_blocks = (2, 2, 2, 2)
  c.model.resnet_stem_kernel = 7
  c.model.resnet_stem_stride = 2
  c.model.resnet_stem_pool = True
  c.model.embedding_dim = 512
  c.model.dtype = "float32"  # compute dtype; "bfloat16" keeps float32 parameters

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 2000
  c.optim.weight_decay = 1e-4
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.clip_norm = 5.0
  # A NaN/inf loss or gradient: "stop" the run at the next log point, naming the step and
  # the last good checkpoint; or "skip" the step (parameters, optimizer state and BatchNorm
  # statistics stay as they were; the step still counts as a batch drawn; logged as
  # train/skipped_steps) and stop only after more than `max_consecutive_skips` in a row.
  c.optim.nonfinite = "stop"
  c.optim.max_consecutive_skips = 10

  c.batch_size = 128  # global
  c.num_train_steps = 100_000
  c.log_every = 100
  c.eval_every = 2000  # validation + checkpoint
  c.keep_checkpoints = 3  # the latest K, plus the best by validation accuracy
  return c
