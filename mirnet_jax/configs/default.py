r"""The paper's setup (Section 4.1.1, Table 1) on LibriSpeech shards.

  python -m mirnet_jax.prepare --source=/data/LibriSpeech --out=/data/shards
  python -m mirnet_jax.main --config=configs/default.py --workdir=/data/runs/mirnet \
      --config.data.shards=/data/shards

Model: 257-bin log-spectrum input, Table 1 encoder, attention fc1 64 / fc2 1, ResNet-18 +
TAP, 512-d embeddings; 3 s segments; 93 h epochs. The optimiser (AdamW, warmup + cosine,
clipping) is not in the paper; docs/results.md says why these choices.

Expected result: the paper reports 5.00% (seen) / 6.00% (unseen) EER on 200 + 200 trials.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "mirnet"  # a name of mirnet_jax.tasks.REGISTRY
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
  # Training-time augmentation (data/pipeline.py). Off: the paper uses none, and this is
  # the config that reproduces it. extra_gain_db_range widens the training mixtures' level
  # range beyond data.gain_db_range (validation and the trials keep that one);
  # spectral_shaping_db is the spread of each source's random smooth gain curve over
  # frequency; time/freq masks: SpecAugment on the mixture's log-spectrum.
  c.data.augment = ml_collections.ConfigDict(dict(
      extra_gain_db_range=0.0, spectral_shaping_db=0.0, time_masks=0, time_mask_frames=20,
      freq_masks=0, freq_mask_bins=20))

  # The fields of models.mirnet.MIRNet; each nested block is one submodule's fields.
  c.model = ml_collections.ConfigDict()
  c.model.encoder = ml_collections.ConfigDict(dict(
      channels=(512, 512, 512, 512, 1500, 514), kernels=(5, 3, 3, 1, 1, 1),
      norm="batch"))  # norm: "batch" or "none"
  c.model.input_norm = True
  # value: what each attention weight multiplies, "v1" (Section 3.2 as written) or "rotated"
  # (its own channel-rotated V_i); models/mirnet.py.
  c.model.attention = ml_collections.ConfigDict(dict(dim=64, out_dim=257, value="v1"))
  c.model.resnet = resnet()
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
  c.keep_checkpoints = 3  # the latest K, plus the best by validation metric
  # Stop once this many validations in a row have not beaten the best one (0: never).
  c.early_stopping_evals = 0
  return c


def resnet(**overrides) -> ml_collections.ConfigDict:
  """The fields of models.resnet.ResNetTAP: torchvision's ResNet-18 by default."""
  return ml_collections.ConfigDict(dict(dict(
      widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem_kernel=7, stem_stride=2,
      stem_pool=True), **overrides))
