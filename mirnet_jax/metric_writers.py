"""Metric writers: console (absl logging), TensorBoard (tensorboardX, no TensorFlow) and
`metrics.jsonl` (one JSON object per logged point, for comparing runs by script).

Only process 0 writes; the others get a writer that does nothing. In a `gs://` workdir
both files are objects that are uploaded again, whole, at every logged point (objects
cannot be appended to; see storage.ObjectAppender), so they are up to date in the bucket
at every point, as local files are.

A run resumed from step S (`resume_step`) first drops what a run that died after its
checkpoint S logged for later steps: the rows of `metrics.jsonl` (rewritten atomically)
and, through TensorBoard's purge step, the TensorBoard events. The resumed run logs those
steps again, so the logs read as those of a run that never stopped.
"""

import json
import os

from absl import logging
from etils import epath
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

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    self._tb = None
    self._jsonl = None
    if enabled:
      import tensorboardX  # imported here: only process 0 needs it
      from tensorboardX import record_writer
      if storage.is_remote(workdir):
        record_writer.register_writer_factory(workdir.split(":")[0], _ObjectFactory())
      storage.makedirs(workdir)
      purge = None if resume_step is None else resume_step + 1
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"),
                                            purge_step=purge)
      jsonl = os.path.join(workdir, "metrics.jsonl")
      if resume_step is not None:
        _drop_rows_after(jsonl, resume_step)
      self._jsonl = storage.open_append(jsonl)

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


def read_rows(workdir: str) -> list[dict]:
  """The rows of `workdir/metrics.jsonl` (none if it does not exist), without a torn line."""
  path = epath.Path(workdir) / "metrics.jsonl"
  rows = []
  for line in path.read_text().splitlines() if path.exists() else []:
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      continue  # torn by a kill in mid-write
  return rows


def _drop_rows_after(path: str, step: int):
  """Rewrites the `metrics.jsonl` at `path` without its rows of steps after `step`, and
  without a line torn by a kill in mid-write."""
  if not epath.Path(path).exists():
    return
  text = epath.Path(path).read_text()
  lines = text.splitlines()
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      continue  # torn
    if row["step"] <= step:
      kept.append(line + "\n")
  if len(kept) != len(lines) or text and not text.endswith("\n"):  # torn before "\n"
    storage.write_text(path, "".join(kept))
