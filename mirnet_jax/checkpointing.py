"""One orbax CheckpointManager for the train state and the grain iterator state.

Keeps the latest `keep` checkpoints and the best one by validation accuracy. Restoring
uses the abstract (sharded) state, so arrays come back already placed on the mesh.
"""

import json
import os

import grain
import ml_collections
import orbax.checkpoint as ocp

BEST_METRIC = "val/accuracy"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
  """A workdir without a usable checkpoint or config."""


def save_config(config: ml_collections.ConfigDict, workdir: str, num_classes: int):
  """The run's config (and class count) beside its checkpoints, so that the extractor can
  rebuild the model from the workdir alone."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  payload = dict(config=json.loads(config.to_json_best_effort()), num_classes=num_classes)
  with open(f"{path}.tmp-{os.getpid()}", "w") as f:
    json.dump(payload, f, indent=1)
  os.replace(f"{path}.tmp-{os.getpid()}", path)


def load_config(workdir: str) -> tuple[ml_collections.ConfigDict, int]:
  """(config, num_classes) of the run in `workdir`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f"no {CONFIG_FILE} in {workdir}: not a training workdir")
  with open(path) as f:
    payload = json.load(f)
  return ml_collections.ConfigDict(payload["config"]), int(payload["num_classes"])


def check_compatible(workdir: str, config: ml_collections.ConfigDict, num_classes: int):
  """Raises CheckpointError naming every model field in which the run saved in `workdir`
  differs from `config` (restoring would otherwise fail deep inside orbax)."""
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return
  saved, saved_classes = load_config(workdir)
  normal = lambda x: json.loads(json.dumps(x.to_dict() if hasattr(x, "to_dict") else x))
  diffs = [f"num_classes: {saved_classes} (checkpoint) vs {num_classes} (shards)"
           ] if saved_classes != num_classes else []
  fields = [("model", k) for k in config.model] + [("data", "num_speakers")]
  for group, key in fields:
    old = normal(saved[group].get(key)) if group in saved else None
    new = normal(config[group][key])
    if old != new:
      diffs.append(f"{group}.{key}: {old} (checkpoint) vs {new} (config)")
  if diffs:
    raise CheckpointError(f"{workdir} holds a checkpoint of another model: "
                          + "; ".join(diffs) + ". Use a new --workdir.")


def make_manager(workdir: str, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=keep),
      ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1),
  ])
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, read_only=read_only,
                                         create=not read_only)
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
