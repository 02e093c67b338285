"""Training: the jitted train/eval steps, the loop, validation, metrics, checkpoints.

The loop is the same for every system (tasks.py: MIRNet, the speaker model, the
separators); a task supplies the model, the batch layout, the loss and the metrics.

The pjit model: one `jax.jit` step over a Mesh whose `data` axis shards the batch; the
train state is replicated (train_state.py). Under jit, BatchNorm statistics are over the
global batch with no collectives written by hand. NaN/inf handling: nonfinite.py.
"""

import functools
import signal
import threading
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mirnet_jax import checkpointing
from mirnet_jax import errors
from mirnet_jax import inference
from mirnet_jax import metric_writers
from mirnet_jax import nonfinite
from mirnet_jax import tasks
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards
from mirnet_jax import train_state

P = jax.sharding.PartitionSpec


class ConfigError(errors.UserError):
  """A configuration that cannot run here (sizes, devices)."""


# ---------------------------------------------------------------------------- steps

def train_step(state: train_state.TrainState, batch, *, task: tasks.Task, tx, schedule,
               nonfinite_mode: str = "stop"):
  """One optimizer step; with `nonfinite_mode="skip"` a non-finite step changes nothing
  but the step counter (nonfinite.keep_if_finite)."""
  def loss_fn(params):
    loss, per_example, batch_stats = task.loss(params, state.batch_stats, batch,
                                               state.frozen, train=True)
    return loss, (per_example, batch_stats)

  (loss, (per_example, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  grad_norm = optax.tree.norm(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1,
                            params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  metrics = {f"train/{k}": v.mean() for k, v in per_example.items()}
  metrics.update({"train/loss": loss, "train/grad_norm": grad_norm,
                  # The optimizer's own count, not `step`: they differ by the skipped steps.
                  "train/learning_rate": schedule(_schedule_count(state.opt_state))})
  if nonfinite_mode == "skip":
    new_state, metrics["train/skipped_steps"] = nonfinite.keep_if_finite(
        new_state, state, loss, grad_norm)
  return new_state, metrics


def _schedule_count(opt_state):
  """How many updates the optimizer has applied: the learning-rate schedule's position."""
  is_schedule = lambda path, _: getattr(path[-1], "tuple_name", "") == "ScaleByScheduleState"
  return optax.tree_utils.tree_get(opt_state, "count", filtering=is_schedule)


def eval_step(state: train_state.TrainState, batch, *, task: tasks.Task):
  """Sums (not means) so that a pass over several batches averages exactly."""
  _, per_example, _ = task.loss(state.params, state.batch_stats, batch, state.frozen,
                                train=False)
  sums = {k: v.sum() for k, v in per_example.items()}
  sums["count"] = jnp.asarray(batch["mixture"].shape[0], jnp.float32)
  return sums


def to_global(batch: dict, sharding, keys=("mixture", "labels")) -> dict:
  """This host's numpy batch -> global jax arrays sharded on `data` (model inputs only)."""
  return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in keys}


# ---------------------------------------------------------------------------- loop

def _check(config, mesh):
  devices = mesh.devices.size
  if config.batch_size % devices or config.batch_size % jax.process_count():
    raise ConfigError(f"batch_size {config.batch_size} must be a multiple of the "
                      f"{devices} devices and {jax.process_count()} processes")
  if config.optim.nonfinite not in nonfinite.MODES:
    raise ConfigError(f"optim.nonfinite must be one of {', '.join(nonfinite.MODES)}, not "
                      f"{config.optim.nonfinite!r}")
  tasks.get(config)
  try:
    jnp.dtype(config.model.dtype)
  except TypeError as e:
    raise ConfigError(f"config.model.dtype: {e}") from None


def evaluate(state, eval_fn, task, batch_sharding, manifest) -> dict:
  """Validation metrics (loss, PIT accuracy or SNR improvement) on fixed mixtures of
  validation utterances of the training speakers."""
  config, spec = task.config, task.spec
  num = pipeline.examples_per_epoch(config.data.val_hours, spec)
  num = max(num - num % config.batch_size, config.batch_size)
  ds = pipeline.make_dataset(
      config.data.shards, "validation", spec, seed=config.seed + 1, epoch_length=num,
      local_batch=config.batch_size // jax.process_count(),
      process_index=jax.process_index(), process_count=jax.process_count(),
      num_examples=num, read_threads=config.data.read_threads, manifest=manifest)
  totals = None
  for batch in ds:
    sums = eval_fn(state, to_global(batch, batch_sharding, task.input_keys))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  return {f"val/{k}": v / totals["count"] for k, v in totals.items() if k != "count"}


def _task_and_conditioner(config, workdir, manager, num_classes, mesh):
  """(task, the conditioner's variables or None, the checkpointing.Run to save).

  A separator resuming in `workdir` keeps the conditioner pinned there (its variables come
  back with the checkpoint); a new one takes config.condition.workdir's best checkpoint.
  """
  if manager.latest_step() is not None:
    checkpointing.check_compatible(workdir, config, num_classes)
    saved = checkpointing.load_run(workdir)
    if tasks.get(config).conditioner_task and saved.conditioner:
      conditioner = inference.task_of(saved).conditioner
      return (tasks.create(config, num_classes, conditioner), None,
              checkpointing.Run(config, num_classes, saved.conditioner))
  conditioner, frozen, pinned = inference.conditioner_for(config, mesh)
  return (tasks.create(config, num_classes, conditioner), frozen,
          checkpointing.Run(config, num_classes, pinned))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       edit_batch=None) -> dict:
  """Trains (resuming from the latest checkpoint in `workdir`); returns the last metrics.

  `edit_batch(step, batch) -> batch`, if given, may change each host-local training batch
  before it reaches the step (fault injection in tests: the data position a checkpoint
  records stays the real stream's).
  """
  mesh = train_state.make_mesh()
  _check(config, mesh)
  manifest = shards.load_manifest(config.data.shards)
  num_classes = manifest["num_classes"]
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints,
                                       tasks.get(config).best_metric)
  task, frozen, run = _task_and_conditioner(config, workdir, manager, num_classes, mesh)
  tx, schedule = train_state.make_optimizer(config)
  state, state_sharding = train_state.create_state(task, tx, mesh,
                                                   jax.random.key(config.seed), frozen)
  batch_sharding = jax.sharding.NamedSharding(mesh, P("data"))
  replicated = jax.sharding.NamedSharding(mesh, P())

  next_example = 0
  if manager.latest_step() is not None:
    state = checkpointing.restore(manager, state)
    next_example = checkpointing.next_example(manager, int(state.step), config.batch_size)
    logging.info("resumed from step %d", int(state.step))
  start = int(state.step)
  # The validation metric so far, for early stopping (every process reads the same rows,
  # so every process stops at the same step).
  history = [r[task.best_metric] for r in metric_writers.read_rows(workdir)
             if r["step"] <= start and task.best_metric in r]
  patience = config.get("early_stopping_evals", 0)
  if start >= config.num_train_steps or _stalled(history, patience):
    logging.info("already trained to step %d (num_train_steps %d%s): nothing to do", start,
                 config.num_train_steps, ", early-stopped" if start < config.num_train_steps
                 else "")
    return {}
  if jax.process_index() == 0:
    checkpointing.save_config(workdir, run)
  train_iter = iter(pipeline.make_dataset(
      config.data.shards, "train", task.train_spec, seed=config.seed,
      epoch_length=pipeline.examples_per_epoch(config.data.train_hours, task.train_spec),
      local_batch=config.batch_size // jax.process_count(),
      process_index=jax.process_index(), process_count=jax.process_count(),
      first_example=next_example, workers=config.data.workers,
      read_threads=config.data.read_threads, manifest=manifest))

  # Rows of steps after `start` were written by a run that died after its last checkpoint:
  # this run writes them again.
  writer = metric_writers.MetricWriter(workdir, enabled=jax.process_index() == 0,
                                       resume_step=start)
  batch_abstract = task.abstract_batch(config.batch_size, batch_sharding)
  # Compiled once, ahead of time: a batch of another shape is an error, not a recompile.
  step_fn = jax.jit(functools.partial(train_step, task=task, tx=tx, schedule=schedule,
                                      nonfinite_mode=config.optim.nonfinite),
                    in_shardings=(state_sharding, batch_sharding),
                    out_shardings=(state_sharding, replicated),
                    donate_argnums=0).lower(state, batch_abstract).compile()
  eval_fn = jax.jit(functools.partial(eval_step, task=task),
                    in_shardings=(state_sharding, batch_sharding), out_shardings=replicated)
  logging.info("model: %d parameters; %d classes; training steps %d -> %d",
               sum(x.size for x in jax.tree.leaves(state.params)), num_classes, start,
               config.num_train_steps)

  def last_good() -> str:
    manager.wait_until_finished()
    return f"step {manager.latest_step()} in {workdir}"

  guard = nonfinite.Guard(config.optim.max_consecutive_skips, last_good)
  pending, last = [], {}
  tick, tick_step = time.time(), start
  # An exception out of the loop (a test's simulated crash, a KeyboardInterrupt in a
  # notebook) still lets the checkpoint being written finish: a process that goes on must
  # not leave orbax writing into a step that its next run would clean up.
  try:
    # Several processes: JAX's preemption service (started by jax.distributed.initialize)
    # owns SIGTERM and makes every process stop at the same step (reached_preemption); a
    # handler of our own would replace it and let each process stop alone (a deadlock).
    with _SigtermFlag(enabled=jax.process_count() == 1) as sigterm:
      for step in range(start + 1, config.num_train_steps + 1):
        batch = next(train_iter)
        next_example += config.batch_size
        if edit_batch is not None:
          batch = edit_batch(step, batch)
        state, metrics = step_fn(state, to_global(batch, batch_sharding,
                                                  task.train_input_keys))
        pending.append(metrics)
        if step % config.log_every == 0 or step == config.num_train_steps:
          # Read back only here: reading every step would stall the device.
          summed = jax.device_get(pending)
          guard.check(summed, step, state)
          # Skipped steps ("skip" mode) have NaN metrics by design: averages leave them out.
          done = [m for m in summed if not m.get("train/skipped_steps")]
          last = {k: float(np.mean([m[k] for m in done])) for k in done[0]} if done else {}
          if "train/skipped_steps" in summed[0]:  # a count, not a mean
            last["train/skipped_steps"] = float(sum(m["train/skipped_steps"] for m in summed))
          rate = (step - tick_step) / max(time.time() - tick, 1e-9)
          last["train/steps_per_s"] = rate
          last["train/examples_per_s"] = rate * config.batch_size
          writer.write(step, last)
          logging.info("progress: step %d/%d (%.0f%%), eta %.0f s", step,
                       config.num_train_steps, 100 * step / config.num_train_steps,
                       (config.num_train_steps - step) / max(rate, 1e-9))
          pending, tick, tick_step = [], time.time(), step
        saved = step % config.eval_every == 0 or step == config.num_train_steps
        if saved:
          # A checkpoint never holds what the next log point would reject.
          guard.peek(jax.device_get(pending), step, state)
          val = evaluate(state, eval_fn, task, batch_sharding, manifest)
          writer.write(step, val)
          last.update(val)
          checkpointing.save(manager, step, state, next_example,
                             metrics={k: float(v) for k, v in val.items()})
          tick, tick_step = time.time(), step  # throughput excludes validation
          history.append(float(val[task.best_metric]))
          if _stalled(history, patience):
            logging.info("early stop at step %d: the last %d validations did not beat "
                         "%s %.4g", step, patience, task.best_metric,
                         max(history[:-patience]))
            break
        if sigterm.received or manager.reached_preemption(step):
          # Preempted (SIGTERM here, or JAX's multi-host preemption sync point): save this
          # step with the data position and stop; the same command resumes.
          if not saved:
            guard.peek(jax.device_get(pending), step, state)
            checkpointing.save(manager, step, state, next_example)
          logging.info("preempted: saved step %d; rerun the same command to resume", step)
          break
  finally:
    manager.wait_until_finished()
    writer.close()
  return last


def _stalled(history: list[float], patience: int) -> bool:
  """Whether none of the last `patience` validation metrics (higher is better) beat the
  best one before them (a tie is no improvement); never when `patience` is 0."""
  return 0 < patience < len(history) and max(history[-patience:]) <= max(history[:-patience])


class _SigtermFlag:
  """Within the block, SIGTERM sets `received` instead of killing the process (if
  `enabled`; otherwise `received` stays False)."""

  def __init__(self, enabled: bool = True):
    self._enabled = enabled

  def __enter__(self):
    self.received = False
    self._previous = None
    # Signals can be handled in the main thread only.
    if self._enabled and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
