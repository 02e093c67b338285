"""Blocks shared by the configs: the demo and tiny sizes of data, optimiser and schedule.

Each function changes `c` in place; the model stays the caller's.
"""

import ml_collections


def demo_size(c: ml_collections.ConfigDict, crop_frames: int = 200,
              val_mixtures: int = 512):
  """Data and schedule for a 2-core CPU and the demo corpus: 2 s crops, threads only."""
  c.data.shards = "runs/demo/shards"
  c.data.crop_frames = crop_frames
  c.data.train_hours = 1.0
  c.data.val_hours = val_mixtures * crop_frames / 100 / 3600
  c.data.workers = 0  # threads in-process: on 2 cores worker processes only compete
  c.data.read_threads = 2
  c.log_every = 50
  c.keep_checkpoints = 2


def tiny_size(c: ml_collections.ConfigDict):
  """Data, optimiser warmup and schedule of a few-second test run (1 s crops)."""
  c.data.shards = "runs/demo/shards"
  c.data.crop_frames = 100
  c.data.train_hours = 0.1
  c.data.val_hours = 16 * 1.0 / 3600  # 16 mixtures of 1 s
  c.data.workers = 0
  c.data.read_threads = 2
  c.optim.warmup_steps = 2
  c.batch_size = 8
  c.num_train_steps = 6
  c.log_every = 2
  c.eval_every = 3
  c.keep_checkpoints = 2


def size_arg(arg: str, sizes=("paper", "demo", "tiny")) -> str:
  if arg not in sizes:
    raise ValueError(f"unknown size {arg!r}: one of {', '.join(sizes)}")
  return arg
