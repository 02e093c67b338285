"""Metric writers: console (absl logging), TensorBoard (tensorboardX, no TensorFlow) and
`metrics.jsonl` (one JSON object per logged point, for comparing runs by script).

Only process 0 writes; the others get a writer that does nothing.
"""

import json
import os

from absl import logging
import numpy as np


class MetricWriter:

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._tb = None
    self._jsonl = None
    if enabled:
      import tensorboardX  # imported here: only process 0 needs it
      os.makedirs(workdir, exist_ok=True)
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

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
