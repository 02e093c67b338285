"""One orbax CheckpointManager for the train state and the grain iterator state.

Keeps the latest `keep` checkpoints and the best one by validation accuracy. Restoring
uses the abstract (sharded) state, so arrays come back already placed on the mesh.
"""

import os

import grain
import orbax.checkpoint as ocp

BEST_METRIC = "val/accuracy"


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=keep),
      ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1),
  ])
  options = ocp.CheckpointManagerOptions(preservation_policy=policy)
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")), options=options,
      item_handlers=dict(state=ocp.StandardCheckpointHandler(),
                         data=grain.checkpoint.CheckpointHandler()))


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, metrics=None):
  manager.save(step, metrics=metrics, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(data_iterator)))


def restore(manager: ocp.CheckpointManager, abstract_state, data_iterator=None,
            step: int | None = None):
  """Restores `step` (default: the latest) into the shapes/shardings of `abstract_state`;
  also rewinds `data_iterator` when given. Returns the state."""
  step = manager.latest_step() if step is None else step
  items = dict(state=ocp.args.StandardRestore(abstract_state))
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  return manager.restore(step, args=ocp.args.Composite(**items))["state"]
