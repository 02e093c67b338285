"""Metric writers: console (absl logging), TensorBoard (tensorboardX, no TensorFlow) and
`metrics.jsonl` (one JSON object per logged point, for comparing runs by script).

Only process 0 writes; the others get a writer that does nothing. In a `gs://` workdir
both files are objects that are uploaded again, whole, at every logged point (objects
cannot be appended to; see storage.ObjectAppender), so they are up to date in the bucket
at every point, as local files are.
"""

import json
import os

from absl import logging
import numpy as np

from mirnet_jax import storage


class _ObjectFactory:
  """tensorboardX's writer factory for a URL scheme: event files as storage objects
  (instead of its own `gs://` writer, which needs the google-cloud-storage client with
  credentials of its own; this goes through etils.epath like every other file here)."""

  def open(self, path):
    return storage.ObjectAppender(path)

  def directory_check(self, path):
    del path  # object storage has no directories to create


class MetricWriter:

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._tb = None
    self._jsonl = None
    if enabled:
      import tensorboardX  # imported here: only process 0 needs it
      from tensorboardX import record_writer
      if storage.is_remote(workdir):
        record_writer.register_writer_factory(workdir.split(":")[0], _ObjectFactory())
      storage.makedirs(workdir)
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = storage.open_append(os.path.join(workdir, "metrics.jsonl"))

  def write(self, step: int, metrics: dict):
    if not self.enabled:
      return
    scalars = {k: float(np.asarray(v)) for k, v in metrics.items()}
    logging.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)
    self._jsonl.write(json.dumps(dict(step=int(step), **scalars)) + "\n")
    self._jsonl.flush()
    self._tb.flush()

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
