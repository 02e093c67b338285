"""Training: mesh, sharded state, jitted train/eval steps, the loop, metrics, checkpoints.

The loop is the same for every system (tasks.py: MIRNet, the speaker model, the
separators); a task supplies the model, the batch layout, the loss and the metrics.

The pjit model: one `jax.jit` step over a Mesh whose `data` axis shards the batch; the
train state is replicated (created already sharded, via eval_shape + jit with
out_shardings). Under jit, BatchNorm statistics are over the global batch with no
collectives written by hand.
"""

import functools
import signal
import threading
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mirnet_jax import checkpointing
from mirnet_jax import metric_writers
from mirnet_jax import tasks
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards

P = jax.sharding.PartitionSpec


class ConfigError(ValueError):
  """A configuration that cannot run here (sizes, devices)."""


class NonFiniteError(RuntimeError):
  """The loss or the gradient became NaN/inf: training stops instead of going on."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


# ---------------------------------------------------------------------------- state

def make_optimizer(config: ml_collections.ConfigDict):
  """AdamW with linear warmup + cosine decay and global-norm clipping (see configs/)."""
  o = config.optim
  # A run shorter than the warmup (a test, a smoke run) still gets one step of decay.
  warmup = max(0, min(o.warmup_steps, config.num_train_steps - 1))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, o.learning_rate, warmup, max(config.num_train_steps, 1), end_value=0.0)
  # Decay kernels only, not biases or BatchNorm scales.
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  tx = optax.chain(optax.clip_by_global_norm(o.clip_norm),
                   optax.adamw(schedule, o.b1, o.b2, weight_decay=o.weight_decay,
                               mask=decay_mask))
  return tx, schedule


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D `data` mesh over `devices` (default: every device of every host).

  Its axis is Auto: the pjit model, in which the jit's in/out shardings are given and XLA
  propagates the rest. `jax.make_mesh` defaults to Explicit axes (shardings in the array
  types), under which JAX 0.11 rejects the gradient of the permutation-min loss's gather
  as an ambiguous scatter; nothing here needs per-op sharding annotations.
  """
  count = jax.device_count() if devices is None else len(devices)
  return jax.make_mesh((count,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def _init_fn(task: tasks.Task, tx):
  def init(rng):
    variables = task.init_variables(rng)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params))
  return init


def abstract_state(task: tasks.Task, tx, mesh):
  """Shapes, dtypes and (replicated) shardings of the TrainState, without computing it."""
  shapes = jax.eval_shape(_init_fn(task, tx), jax.random.key(0))
  replicated = jax.sharding.NamedSharding(mesh, P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      shapes)


def create_state(task: tasks.Task, tx, mesh, rng):
  """The initial TrainState, created directly with replicated shardings on `mesh`."""
  sharding = jax.tree.map(lambda x: x.sharding, abstract_state(task, tx, mesh))
  return jax.jit(_init_fn(task, tx), out_shardings=sharding)(rng), sharding


def restore_inference(workdir: str, step: int | None = None, mesh=None):
  """(task, variables, step) of the trained model in `workdir`, for inference.

  Restores the best checkpoint by the task's validation metric (or `step`), replicated on
  `mesh` (default: this host's first device). A separator's frozen conditioner is
  restored from the workdir its config names.
  """
  config, num_classes = checkpointing.load_config(workdir)
  mesh = mesh or make_mesh(jax.local_devices()[:1])
  conditioner = load_conditioner(config, mesh)
  task = tasks.Task(config, num_classes, conditioner)
  manager = checkpointing.make_manager(workdir, int(config.keep_checkpoints),
                                       best_metric=task.best_metric, read_only=True)
  if step is None:
    step = manager.best_step()
    step = manager.latest_step() if step is None else step
  if step is None or step not in manager.all_steps():
    raise checkpointing.CheckpointError(
        f"no checkpoint{'' if step is None else f' at step {step}'} in {workdir}")
  tx, _ = make_optimizer(config)
  state = checkpointing.restore(manager, abstract_state(task, tx, mesh), step=step)
  return task, {"params": state.params, "batch_stats": state.batch_stats}, step


def load_conditioner(config: ml_collections.ConfigDict, mesh) -> tasks.Conditioner | None:
  """The frozen embedding model a separator is conditioned on, replicated on `mesh`."""
  needed = tasks.CONDITIONER_TASK.get(tasks.task_name(config))
  if not needed:
    return None
  workdir = config.condition.workdir
  try:
    task, variables, step = restore_inference(workdir, mesh=mesh)
  except checkpointing.CheckpointError as e:
    raise checkpointing.CheckpointError(
        f"config.condition.workdir: {e}; train the {needed} model first") from None
  if task.name != needed:
    raise checkpointing.CheckpointError(
        f"config.condition.workdir {workdir} holds a {task.name} model, not a {needed} one")
  logging.info("conditioner: %s model from %s, step %d", needed, workdir, step)
  return tasks.Conditioner(task.model, variables, int(task.config.model.embedding_dim),
                           needed)


# ---------------------------------------------------------------------------- steps

def train_step(state: TrainState, batch, frozen, *, task: tasks.Task, tx, schedule,
               nonfinite: str = "stop"):
  """One optimizer step. With `nonfinite="skip"` (config.optim.nonfinite), a step whose
  loss or gradient is NaN/inf leaves parameters, optimizer state and BatchNorm statistics
  as they were and reports `train/skipped_steps` = 1; `step` counts batches either way."""
  def loss_fn(params):
    loss, per_example, batch_stats = task.loss(params, state.batch_stats, batch, frozen,
                                               train=True)
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
  if nonfinite == "skip":
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # Not optax.apply_if_finite: BatchNorm statistics live outside the optimizer and must
    # be kept too. `step` still advances, so that it keeps counting the batches drawn (the
    # data iterator's position, checkpoint names, resume); the optimizer's count (hence the
    # learning-rate schedule and Adam's bias correction) advances only with an update.
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = new_state.replace(params=keep(new_state.params, state.params),
                                  batch_stats=keep(new_state.batch_stats, state.batch_stats),
                                  opt_state=keep(new_state.opt_state, state.opt_state))
    metrics["train/skipped_steps"] = 1.0 - finite.astype(jnp.float32)
  return new_state, metrics


def _schedule_count(opt_state):
  """How many updates the optimizer has applied: the learning-rate schedule's position."""
  is_schedule = lambda path, _: getattr(path[-1], "tuple_name", "") == "ScaleByScheduleState"
  return optax.tree_utils.tree_get(opt_state, "count", filtering=is_schedule)


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _flops(cost) -> float | None:
  """The FLOP count of an XLA cost analysis (a dict, or a list of one per computation)."""
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"]) if cost and "flops" in cost else None


def step_flops(task: tasks.Task, tx, schedule, batch_size: int, frozen=None,
               compiled=None) -> float | None:
  """FLOPs of one train step on `batch_size` examples: the model's count on every backend.

  XLA:CPU's compiled count is the model's, so a `compiled` CPU step is asked directly.
  Otherwise the step is lowered (traced once more) for the CPU backend and counted before
  compilation: XLA:GPU's compiled cost analysis leaves out the convolutions it hands to
  cuDNN (an H200 reported 1.05 of the paper model's 40 GFLOP per example), and the PJRT
  plugins of GPUs and TPUs do not analyse uncompiled HLO. None where no CPU backend is
  available.
  """
  if compiled is not None and jax.default_backend() == "cpu":
    return _flops(compiled.cost_analysis())
  try:
    mesh = make_mesh(jax.devices("cpu")[:1])
  except RuntimeError:  # JAX_PLATFORMS without cpu
    return None
  replicated = jax.sharding.NamedSharding(mesh, P())
  frozen = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                        frozen or {})
  batch = task.abstract_batch(batch_size, jax.sharding.NamedSharding(mesh, P("data")))
  lowered = jax.jit(functools.partial(train_step, task=task, tx=tx, schedule=schedule)).lower(
      abstract_state(task, tx, mesh), batch, frozen)
  return _flops(lowered.cost_analysis())


def eval_step(state: TrainState, batch, frozen, *, task: tasks.Task):
  """Sums (not means) so that a pass over several batches averages exactly."""
  _, per_example, _ = task.loss(state.params, state.batch_stats, batch, frozen, train=False)
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
  if config.optim.nonfinite not in ("stop", "skip"):
    raise ConfigError(f"optim.nonfinite must be 'stop' or 'skip', not "
                      f"{config.optim.nonfinite!r}")
  try:
    tasks.task_name(config)
    jnp.dtype(config.model.dtype)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.task / config.model.dtype: {e}") from None


def evaluate(state, eval_fn, task, batch_sharding, manifest) -> dict:
  """Validation metrics (loss, PIT accuracy or SNR improvement) on fixed mixtures of
  held-out utterances of the training speakers."""
  config, spec = task.config, task.spec
  num = pipeline.examples_per_epoch(config.data.val_hours, spec)
  num = max(num - num % config.batch_size, config.batch_size)
  ds = pipeline.make_dataset(
      config.data.shards, "heldout", spec, seed=config.seed + 1, epoch_length=num,
      local_batch=config.batch_size // jax.process_count(),
      process_index=jax.process_index(), process_count=jax.process_count(),
      num_examples=num, read_threads=config.data.read_threads, manifest=manifest)
  totals = None
  for batch in ds:
    sums = eval_fn(state, to_global(batch, batch_sharding, task.input_keys))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  return {f"val/{k}": v / totals["count"] for k, v in totals.items() if k != "count"}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from the latest checkpoint in `workdir`); returns the last metrics."""
  mesh = make_mesh()
  _check(config, mesh)
  manifest = shards.load_manifest(config.data.shards)
  task = tasks.Task(config, manifest["num_classes"], load_conditioner(config, mesh))
  tx, schedule = make_optimizer(config)
  state, state_sharding = create_state(task, tx, mesh, jax.random.key(config.seed))
  batch_sharding = jax.sharding.NamedSharding(mesh, P("data"))
  replicated = jax.sharding.NamedSharding(mesh, P())
  frozen = task.frozen_variables()
  frozen_sharding = jax.tree.map(lambda _: replicated, frozen)

  spec = task.spec
  local_batch = config.batch_size // jax.process_count()
  train_ds = pipeline.make_dataset(
      config.data.shards, "train", spec, seed=config.seed,
      epoch_length=pipeline.examples_per_epoch(config.data.train_hours, spec),
      local_batch=local_batch, process_index=jax.process_index(),
      process_count=jax.process_count(), workers=config.data.workers,
      read_threads=config.data.read_threads, manifest=manifest)
  train_iter = iter(train_ds)

  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, task.best_metric)
  if manager.latest_step() is not None:
    checkpointing.check_compatible(workdir, config, manifest["num_classes"])
    state = checkpointing.restore(manager, state, train_iter)
    logging.info("resumed from step %d", int(state.step))
  start = int(state.step)
  if start >= config.num_train_steps:
    logging.info("already trained to step %d (num_train_steps %d): nothing to do", start,
                 config.num_train_steps)
    return {}
  if jax.process_index() == 0:
    checkpointing.save_config(config, workdir, manifest["num_classes"])

  # Rows of steps after `start` were written by a run that died after its last checkpoint:
  # this run writes them again.
  writer = metric_writers.MetricWriter(workdir, enabled=jax.process_index() == 0,
                                       resume_step=start)
  batch_abstract = task.abstract_batch(config.batch_size, batch_sharding)
  # Compiled once, ahead of time: a batch of another shape is an error, not a recompile.
  step_fn = jax.jit(functools.partial(train_step, task=task, tx=tx, schedule=schedule,
                                      nonfinite=config.optim.nonfinite),
                    in_shardings=(state_sharding, batch_sharding, frozen_sharding),
                    out_shardings=(state_sharding, replicated),
                    donate_argnums=0).lower(state, batch_abstract, frozen).compile()
  eval_jit = jax.jit(functools.partial(eval_step, task=task),
                     in_shardings=(state_sharding, batch_sharding, frozen_sharding),
                     out_shardings=replicated)
  eval_fn = lambda state, batch: eval_jit(state, batch, frozen)
  flops = step_flops(task, tx, schedule, config.batch_size, frozen, compiled=step_fn)
  if flops:
    logging.info("train step: %.3g GFLOP per global batch", flops / 1e9)
  logging.info("model: %d parameters; %d classes; training steps %d -> %d",
               sum(x.size for x in jax.tree.leaves(state.params)),
               manifest["num_classes"], start, config.num_train_steps)

  state_finite = jax.jit(lambda s: _all_finite((s.params, s.batch_stats)))

  def stop_if_nonfinite(summed, step, state, skips):
    """Raises NonFiniteError if training went non-finite by `step` (`summed`: the metrics
    of the steps since the last log point); returns the consecutive skips by `step`."""
    problem, skips = _nonfinite(summed, step, skips, config.optim.max_consecutive_skips,
                                bool(state_finite(state)))
    if problem:
      manager.wait_until_finished()
      raise NonFiniteError(f"{problem}; last good checkpoint: step {manager.latest_step()} "
                           f"in {workdir}")
    return skips

  pending, last, skips = [], {}, 0
  tick, tick_step = time.time(), start
  # Several processes: JAX's preemption service (started by jax.distributed.initialize)
  # owns SIGTERM and makes every process stop at the same step (reached_preemption); a
  # handler of our own would replace it and let each process stop alone (a deadlock).
  with _SigtermFlag(enabled=jax.process_count() == 1) as sigterm:
    for step in range(start + 1, config.num_train_steps + 1):
      state, metrics = step_fn(state, to_global(next(train_iter), batch_sharding,
                                               task.input_keys), frozen)
      pending.append(metrics)
      if step % config.log_every == 0 or step == config.num_train_steps:
        # Read back only here: reading every step would stall the device.
        summed = jax.device_get(pending)
        skips = stop_if_nonfinite(summed, step, state, skips)
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
        stop_if_nonfinite(jax.device_get(pending), step, state, skips)
        val = evaluate(state, eval_fn, task, batch_sharding, manifest)
        writer.write(step, val)
        last.update(val)
        checkpointing.save(manager, step, state, train_iter,
                           metrics={k: float(v) for k, v in val.items()})
        tick, tick_step = time.time(), step  # throughput excludes validation
      if sigterm.received or manager.reached_preemption(step):
        # Preempted (SIGTERM here, or JAX's multi-host preemption sync point): save this
        # step with the data iterator's position and stop; the same command resumes.
        if not saved:
          stop_if_nonfinite(jax.device_get(pending), step, state, skips)
          checkpointing.save(manager, step, state, train_iter)
        logging.info("preempted: saved step %d; rerun the same command to resume", step)
        break
  manager.wait_until_finished()
  writer.close()
  return last


def _nonfinite(summed, step: int, skips: int, max_skips: int, state_finite: bool):
  """(what went non-finite by `step`, or None; consecutive skipped steps by `step`).

  `summed` holds the metrics of the steps up to `step` not yet checked, `skips` the
  consecutive skipped steps before them. A skipped step (config.optim.nonfinite = "skip")
  has a NaN loss by design and is not an error unless more than `max_skips` come in a row;
  a non-finite loss or gradient of a step that was applied ("stop" mode), and non-finite
  parameters or BatchNorm statistics, always are.
  """
  first = step - len(summed) + 1
  for i, m in enumerate(summed):
    skipped = bool(m.get("train/skipped_steps", 0.0))
    skips = skips + 1 if skipped else 0
    if skips > max_skips:
      return (f"{skips} consecutive steps ({first + i - skips + 1} to {first + i}) had a "
              f"non-finite loss or gradient and were skipped (more than "
              f"optim.max_consecutive_skips={max_skips})"), skips
    if not skipped and not (np.isfinite(m["train/loss"]) and np.isfinite(m["train/grad_norm"])):
      return f"non-finite loss or gradient between steps {first} and {step}", skips
  if not state_finite:
    return f"non-finite parameters or BatchNorm statistics at step {step}", skips
  return None, skips


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
