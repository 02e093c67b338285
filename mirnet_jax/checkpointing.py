"""One orbax CheckpointManager for the train state and the data stream's position.

Keeps the latest `keep` checkpoints and the best one by the task's validation metric
(tasks.Task.best_metric; higher is better); config.json beside them says what the run
is (Run).

Restoring uses the abstract (sharded) state, so arrays come back already placed on the
mesh. The workdir is a local path or a gs:// URL (see storage.py).

The data position is the global index of the next training example, not grain's iterator
state: batches are a pure function of that index (pipeline.make_dataset), whereas grain's
state has another shape for every number of worker processes, so a run saved with workers
could not resume without them, or on a machine with another number of cores.
"""

import dataclasses
import json
import os

from absl import logging
from etils import epath
import jax
import ml_collections
import orbax.checkpoint as ocp

from mirnet_jax import errors
from mirnet_jax import storage

CONFIG_FILE = "config.json"


class CheckpointError(errors.UserError):
  """A workdir without a usable checkpoint or config."""


@dataclasses.dataclass
class Run:
  """What config.json says of a run: its config, its number of training classes, and,
  for a separator, the conditioner pinned in its checkpoints (`config`, `num_classes`,
  and the `workdir` and `step` it was taken from); for an exported directory, where from
  (`exported`: `from_workdir`, `step`, `trained_on`; see inference.export)."""
  config: ml_collections.ConfigDict
  num_classes: int
  conditioner: dict | None = None
  exported: dict | None = None

  def conditioner_config(self) -> ml_collections.ConfigDict | None:
    return (ml_collections.ConfigDict(self.conditioner["config"]) if self.conditioner
            else None)


def to_json(config: ml_collections.ConfigDict):
  return json.loads(config.to_json_best_effort())


def save_config(workdir: str, run: Run):
  """The run's config.json beside its checkpoints, so that inference can rebuild the
  model (and its pinned conditioner) from the workdir alone."""
  storage.makedirs(workdir)
  payload = dict(config=to_json(run.config), num_classes=run.num_classes)
  for key in ("conditioner", "exported"):
    if getattr(run, key):
      payload[key] = getattr(run, key)
  storage.write_text(os.path.join(workdir, CONFIG_FILE), json.dumps(payload, indent=1))


def load_run(workdir: str) -> Run:
  """The Run saved in `workdir` (a training workdir or an exported directory)."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise CheckpointError(f"no {CONFIG_FILE} in {workdir}: not a training workdir")
  payload = json.loads(path.read_text())
  return Run(ml_collections.ConfigDict(payload["config"]), int(payload["num_classes"]),
             payload.get("conditioner"), payload.get("exported"))


def load_config(workdir: str) -> tuple[ml_collections.ConfigDict, int]:
  """(config, num_classes) of the run in `workdir`."""
  run = load_run(workdir)
  return run.config, run.num_classes


def check_compatible(workdir: str, config: ml_collections.ConfigDict, num_classes: int):
  """Raises CheckpointError naming every model field in which the run saved in `workdir`
  differs from `config` (restoring would otherwise fail deep inside orbax)."""
  if not (epath.Path(workdir) / CONFIG_FILE).exists():
    return
  saved, saved_classes = load_config(workdir)
  diffs = [f"num_classes: {saved_classes} (checkpoint) vs {num_classes} (shards)"
           ] if saved_classes != num_classes else []
  if saved.get("task") != config.get("task"):
    diffs.append(f"task: {saved.get('task')} (checkpoint) vs {config.get('task')} (config)")
  old = _leaves(dict(model=saved.get("model", {}),
                     data=dict(num_speakers=saved.get("data", {}).get("num_speakers"))))
  new = _leaves(dict(model=config.model, data=dict(num_speakers=config.data.num_speakers)))
  for key in sorted(set(old) | set(new)):
    if old.get(key) != new.get(key):
      diffs.append(f"{key}: {old.get(key)} (checkpoint) vs {new.get(key)} (config)")
  if diffs:
    raise CheckpointError(f"{workdir} holds a checkpoint of another model: "
                          + "; ".join(diffs) + ". Use a new --workdir.")


def _leaves(tree, prefix: str = "") -> dict:
  """{"model.resnet.widths": [4, 8, 8, 8], ...}: the JSON values of a config's leaves."""
  tree = json.loads(json.dumps(tree.to_dict() if hasattr(tree, "to_dict") else tree,
                               default=lambda x: x.to_dict()))
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_leaves(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def make_manager(workdir: str, keep: int, best_metric: str = "val/accuracy",
                 read_only: bool = False) -> ocp.CheckpointManager:
  metric = lambda m: m[best_metric]
  # A checkpoint without metrics (a preemption save) is one of the latest or goes: BestN
  # would otherwise keep it for ever.
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=keep),
      ocp.checkpoint_managers.BestN(get_metric_fn=metric, n=1,
                                    keep_checkpoints_without_metrics=False),
  ])
  # best_fn as well as the policy: without it orbax writes no metrics into the steps, so
  # best_step() is the latest step, and a resumed run, finding no metrics, keeps every
  # step it started with for ever.
  # A step being written when the process died is never listed, hence never restored:
  # orbax writes it under a temporary name renamed on commit (`9.orbax-checkpoint-tmp`),
  # or, on Cloud Storage, counts it only once its `commit_success.txt` exists. A writer
  # also deletes such leftovers (a resumed run may never save that step again).
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=metric,
                                         best_mode="max", read_only=read_only,
                                         create=not read_only,
                                         cleanup_tmp_directories=not read_only)
  # A local path must be absolute for orbax; a gs:// URL must stay one.
  return ocp.CheckpointManager(
      storage.absolute(os.path.join(workdir, "checkpoints")), options=options,
      item_handlers=dict(state=ocp.StandardCheckpointHandler(),
                         position=ocp.JsonCheckpointHandler()))


def save(manager: ocp.CheckpointManager, step: int, state, next_example: int,
         metrics=None):
  """Saves `step`: the state and `next_example`, the global index of the first training
  example the run has not used yet."""
  manager.save(step, metrics=metrics, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      position=ocp.args.JsonSave(dict(next_example=int(next_example)))))


def restore(manager: ocp.CheckpointManager, abstract_state, step: int | None = None):
  """The state saved at `step` (default: the latest), in the shapes and shardings of
  `abstract_state`."""
  step = manager.latest_step() if step is None else step
  return manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state)))["state"]


def next_example(manager: ocp.CheckpointManager, step: int, batch_size: int) -> int:
  """The global index of the first training example not used by the run saved at `step`,
  for any number of hosts or worker processes.

  Checkpoints written before positions were saved hold grain's iterator state instead;
  their position is `step` global batches (a step draws one batch, skipped or not: see
  nonfinite.py), valid while the batch size is the one they were trained with.
  """
  if (epath.Path(manager.directory) / str(step) / "position").exists():
    saved = manager.restore(step, args=ocp.args.Composite(
        position=ocp.args.JsonRestore()))["position"]
    return int(saved["next_example"])
  logging.warning("step %d in %s has no saved data position (an earlier version's "
                  "checkpoint): resuming at example %d, step x batch size %d", step,
                  manager.directory, step * batch_size, batch_size)
  return step * batch_size
