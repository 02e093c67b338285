"""Trained models for inference: restored from a training workdir or an exported directory.

A training workdir holds orbax checkpoints of the whole train state and config.json
(checkpointing.Run); `restore` takes the best checkpoint by the task's validation metric
(or `step`) and keeps the parameters, the BatchNorm statistics and, for a separator, the
variables of its conditioner, which are pinned in the separator's own checkpoints (the
conditioner's config in its config.json): a separator never reads the MIRNet or speaker
workdir it was trained from again, so training that model further changes nothing here.

`export(workdir, out)` writes an inference-only directory: config.json (with what the run
was trained on and which checkpoint was exported) and `variables/` (parameters, BatchNorm
statistics and the pinned conditioner, without optimizer state). `restore`, the Python API
(mirnet_jax.load) and the command-line tools take either.
"""

import dataclasses
import os
from typing import Any

from absl import logging
from etils import epath
import jax
import ml_collections
import orbax.checkpoint as ocp

from mirnet_jax import checkpointing
from mirnet_jax import errors
from mirnet_jax import storage
from mirnet_jax import tasks
from mirnet_jax import train_state
from mirnet_jax.data import shards

VARIABLES = "variables"  # an exported directory's parameters and statistics


@dataclasses.dataclass
class Restored:
  """A trained model: `variables` ({params, batch_stats}) of `task.model`, and `frozen`
  (the variables of `task.conditioner.model`, {} if it has none)."""
  task: tasks.Task
  variables: Any
  frozen: Any
  step: int
  path: str

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.task.config

  def conditioner(self) -> "Restored | None":
    """The frozen conditioner as a Restored model of its own (None if there is none)."""
    if self.task.conditioner is None:
      return None
    return Restored(self.task.conditioner, self.frozen, {}, self.step, self.path)


def is_export(path: str) -> bool:
  return (epath.Path(path) / VARIABLES).exists()


def task_of(run: checkpointing.Run) -> tasks.Task:
  """The Task of a saved run, with its pinned conditioner's Task."""
  conditioner = None
  if run.conditioner:
    conditioner = tasks.create(run.conditioner_config(), int(run.conditioner["num_classes"]))
  return tasks.create(run.config, run.num_classes, conditioner)


def restore(path: str, step: int | None = None, mesh=None) -> Restored:
  """The trained model in `path` (a training workdir or an exported directory), replicated
  on `mesh` (default: this host's first device); the best checkpoint unless `step`."""
  run = checkpointing.load_run(path)
  task = task_of(run)
  mesh = mesh or train_state.make_mesh(jax.local_devices()[:1])
  if is_export(path):
    if step is not None and step != run.exported["step"]:
      raise checkpointing.CheckpointError(
          f"{path} is an export of step {run.exported['step']}, not {step}")
    abstract = train_state.replicated_like(_variable_shapes(task), mesh)
    tree = ocp.StandardCheckpointer().restore(
        storage.absolute(os.path.join(path, VARIABLES)), abstract)
    return Restored(task, dict(params=tree["params"], batch_stats=tree["batch_stats"]),
                    tree["frozen"], int(run.exported["step"]), path)
  manager = checkpointing.make_manager(path, int(run.config.keep_checkpoints),
                                       best_metric=task.best_metric, read_only=True)
  if step is None:
    step = manager.best_step()
    step = manager.latest_step() if step is None else step
  if step is None or step not in manager.all_steps():
    raise checkpointing.CheckpointError(
        f"no checkpoint{'' if step is None else f' at step {step}'} in {path}")
  tx, _ = train_state.make_optimizer(run.config)
  state = checkpointing.restore(manager, train_state.abstract_state(task, tx, mesh),
                                step=step)
  return Restored(task, dict(params=state.params, batch_stats=state.batch_stats),
                  state.frozen, int(step), path)


def _variable_shapes(task: tasks.Task) -> dict:
  shapes = jax.eval_shape(task.init_variables, jax.random.key(0))
  return dict(params=shapes["params"], batch_stats=shapes.get("batch_stats", {}),
              frozen=task.frozen_shapes())


def conditioner_for(config: ml_collections.ConfigDict, mesh) -> tuple[Any, Any, dict]:
  """(Task, variables, what config.json pins of it) of the trained model that
  `config.condition.workdir` names, for a new separator run; (None, {}, None) for a task
  without a conditioner."""
  needed = tasks.get(config).conditioner_task
  if not needed:
    return None, {}, None
  workdir = config.condition.workdir
  try:
    model = restore(workdir, mesh=mesh)
  except checkpointing.CheckpointError as e:
    raise checkpointing.CheckpointError(
        f"config.condition.workdir: {e}; train the {needed} model first") from None
  if model.task.name != needed:
    raise checkpointing.CheckpointError(
        f"config.condition.workdir {workdir} holds a {model.task.name} model, not a "
        f"{needed} one")
  logging.info("conditioner: %s model from %s, step %d", needed, workdir, model.step)
  pinned = dict(config=checkpointing.to_json(model.config),
                num_classes=model.task.num_classes, workdir=storage.absolute(workdir),
                step=model.step)
  return model.task, model.variables, pinned


def export(path: str, out: str, step: int | None = None) -> str:
  """Writes the inference-only directory `out` of the model in `path` (see the module
  docstring); `out` must not exist yet, or be empty. Returns `out`."""
  target = epath.Path(out)
  if target.exists() and (not target.is_dir() or any(target.iterdir())):
    raise errors.UserError(f"{out} already exists: export to a new directory")
  model = restore(path, step)
  run = checkpointing.load_run(path)
  trained_on = dict(shards=storage.absolute(run.config.data.shards))
  try:
    manifest = shards.load_manifest(run.config.data.shards)
    trained_on.update(source=manifest.get("source"), num_classes=manifest["num_classes"],
                      features=manifest.get("features"),
                      espeak_ng=manifest.get("espeak_ng"))  # evaluate compares it
  except shards.ShardError as e:
    logging.warning("%s; the export records the shards' path only", e)
  run.exported = dict(from_workdir=storage.absolute(path), step=model.step,
                      trained_on=trained_on)
  # The variables are written first and config.json last: a directory with a config.json
  # is a complete export.
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(storage.absolute(os.path.join(out, VARIABLES)),
                    dict(model.variables, frozen=model.frozen))
  checkpointer.wait_until_finished()
  checkpointing.save_config(out, run)
  return out
