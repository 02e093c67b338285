"""Training: mesh, sharded state, jitted train/eval steps, the loop, metrics, checkpoints.

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
from mirnet_jax import features
from mirnet_jax import losses
from mirnet_jax import metric_writers
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards
from mirnet_jax.models import mirnet

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


# ---------------------------------------------------------------------------- model

def build_model(config: ml_collections.ConfigDict, num_classes: int) -> mirnet.MIRNet:
  m = config.model
  return mirnet.MIRNet(
      num_classes=num_classes, num_speakers=config.data.num_speakers,
      encoder_channels=tuple(m.encoder_channels), encoder_kernels=tuple(m.encoder_kernels),
      encoder_norm=m.encoder_norm, input_norm=m.input_norm, attention_dim=m.attention_dim,
      attention_out_dim=m.attention_out_dim, resnet_widths=tuple(m.resnet_widths),
      resnet_blocks=tuple(m.resnet_blocks), resnet_stem_kernel=m.resnet_stem_kernel,
      resnet_stem_stride=m.resnet_stem_stride, resnet_stem_pool=m.resnet_stem_pool,
      embedding_dim=m.embedding_dim, dtype=jnp.dtype(m.dtype))


def mixture_spec(config: ml_collections.ConfigDict, return_sources: bool = False):
  return pipeline.MixtureSpec(config.data.num_speakers, config.data.crop_frames,
                              config.data.gain_db_range, return_sources)


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


def _init_fn(model, tx, config):
  def init(rng):
    dummy = jnp.zeros((1, config.data.crop_frames, features.NUM_BINS, 2), jnp.float16)
    variables = model.init(rng, dummy, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params))
  return init


def abstract_state(model, tx, config, mesh):
  """Shapes, dtypes and (replicated) shardings of the TrainState, without computing it."""
  shapes = jax.eval_shape(_init_fn(model, tx, config), jax.random.key(0))
  replicated = jax.sharding.NamedSharding(mesh, P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      shapes)


def create_state(model, tx, config, mesh, rng):
  """The initial TrainState, created directly with replicated shardings on `mesh`."""
  sharding = jax.tree.map(lambda x: x.sharding, abstract_state(model, tx, config, mesh))
  return jax.jit(_init_fn(model, tx, config), out_shardings=sharding)(rng), sharding


# ---------------------------------------------------------------------------- steps

def train_step(state: TrainState, batch, *, model, tx, schedule):
  def loss_fn(params):
    out, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                               batch["mixture"], train=True, mutable=["batch_stats"])
    result = losses.permutation_min_ce(out["logits"], batch["labels"])
    return result["loss"].mean(), (result, updates["batch_stats"])

  (loss, (result, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1,
                            params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  metrics = {"train/loss": loss, "train/accuracy": result["accuracy"].mean(),
             "train/grad_norm": optax.tree.norm(grads),
             "train/learning_rate": schedule(state.step)}
  return new_state, metrics


def eval_step(state: TrainState, batch, *, model):
  """Sums (not means) so that a pass over several batches averages exactly."""
  out = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                    batch["mixture"], train=False)
  result = losses.permutation_min_ce(out["logits"], batch["labels"])
  return dict(loss=result["loss"].sum(), accuracy=result["accuracy"].sum(),
              count=jnp.asarray(result["loss"].shape[0], jnp.float32))


def to_global(batch: dict, sharding) -> dict:
  """This host's numpy batch -> global jax arrays sharded on `data` (model inputs only)."""
  return {k: jax.make_array_from_process_local_data(sharding, batch[k])
          for k in ("mixture", "labels")}


# ---------------------------------------------------------------------------- loop

def _check(config, mesh):
  devices = mesh.devices.size
  if config.batch_size % devices or config.batch_size % jax.process_count():
    raise ConfigError(f"batch_size {config.batch_size} must be a multiple of the "
                      f"{devices} devices and {jax.process_count()} processes")


def evaluate(state, eval_fn, config, batch_sharding, manifest) -> dict:
  """Validation loss and PIT accuracy on fixed mixtures of held-out utterances."""
  spec = mixture_spec(config)
  num = pipeline.examples_per_epoch(config.data.val_hours, spec)
  num = max(num - num % config.batch_size, config.batch_size)
  ds = pipeline.make_dataset(
      config.data.shards, "heldout", spec, seed=config.seed + 1, epoch_length=num,
      local_batch=config.batch_size // jax.process_count(),
      process_index=jax.process_index(), process_count=jax.process_count(),
      num_examples=num, read_threads=config.data.read_threads, manifest=manifest)
  totals = None
  for batch in ds:
    sums = eval_fn(state, to_global(batch, batch_sharding))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  return {"val/loss": totals["loss"] / totals["count"],
          "val/accuracy": totals["accuracy"] / totals["count"]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from the latest checkpoint in `workdir`); returns the last metrics."""
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  _check(config, mesh)
  manifest = shards.load_manifest(config.data.shards)
  model = build_model(config, manifest["num_classes"])
  tx, schedule = make_optimizer(config)
  state, state_sharding = create_state(model, tx, config, mesh,
                                       jax.random.key(config.seed))
  batch_sharding = jax.sharding.NamedSharding(mesh, P("data"))
  replicated = jax.sharding.NamedSharding(mesh, P())

  spec = mixture_spec(config)
  local_batch = config.batch_size // jax.process_count()
  train_ds = pipeline.make_dataset(
      config.data.shards, "train", spec, seed=config.seed,
      epoch_length=pipeline.examples_per_epoch(config.data.train_hours, spec),
      local_batch=local_batch, process_index=jax.process_index(),
      process_count=jax.process_count(), workers=config.data.workers,
      read_threads=config.data.read_threads, manifest=manifest)
  train_iter = iter(train_ds)

  manager = checkpointing.make_manager(workdir, config.keep_checkpoints)
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

  writer = metric_writers.MetricWriter(workdir, enabled=jax.process_index() == 0)
  batch_abstract = {
      "mixture": jax.ShapeDtypeStruct((config.batch_size, spec.crop_frames,
                                       features.NUM_BINS, 2), jnp.float16,
                                      sharding=batch_sharding),
      "labels": jax.ShapeDtypeStruct((config.batch_size, spec.num_speakers), jnp.int32,
                                     sharding=batch_sharding)}
  # Compiled once, ahead of time: a batch of another shape is an error, not a recompile.
  step_fn = jax.jit(functools.partial(train_step, model=model, tx=tx, schedule=schedule),
                    in_shardings=(state_sharding, batch_sharding),
                    out_shardings=(state_sharding, replicated),
                    donate_argnums=0).lower(state, batch_abstract).compile()
  eval_fn = jax.jit(functools.partial(eval_step, model=model),
                    in_shardings=(state_sharding, batch_sharding),
                    out_shardings=replicated)
  cost = step_fn.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  if cost and "flops" in cost:
    logging.info("train step: %.3g GFLOP per global batch", cost["flops"] / 1e9)
  logging.info("model: %d parameters; %d classes; training steps %d -> %d",
               sum(x.size for x in jax.tree.leaves(state.params)),
               manifest["num_classes"], start, config.num_train_steps)

  pending, last = [], {}
  tick, tick_step = time.time(), start
  with _SigtermFlag() as sigterm:
    for step in range(start + 1, config.num_train_steps + 1):
      state, metrics = step_fn(state, to_global(next(train_iter), batch_sharding))
      pending.append(metrics)
      if step % config.log_every == 0 or step == config.num_train_steps:
        # Read back only here: reading every step would stall the device.
        summed = jax.device_get(pending)
        last = {k: float(np.mean([m[k] for m in summed])) for k in summed[0]}
        if not all(np.isfinite(m[k]) for m in summed for k in ("train/loss",
                                                                "train/grad_norm")):
          manager.wait_until_finished()
          raise NonFiniteError(
              f"non-finite loss or gradient between steps {step - len(summed) + 1} and "
              f"{step}; last good checkpoint: step {manager.latest_step()} in {workdir}")
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
        val = evaluate(state, eval_fn, config, batch_sharding, manifest)
        writer.write(step, val)
        last.update(val)
        checkpointing.save(manager, step, state, train_iter,
                           metrics={k: float(v) for k, v in val.items()})
        tick, tick_step = time.time(), step  # throughput excludes validation
      if sigterm.received or manager.reached_preemption(step):
        # Preempted (SIGTERM here, or JAX's multi-host preemption sync point): save this
        # step with the data iterator's position and stop; the same command resumes.
        if not saved:
          checkpointing.save(manager, step, state, train_iter)
        logging.info("preempted: saved step %d; rerun the same command to resume", step)
        break
  manager.wait_until_finished()
  writer.close()
  return last


class _SigtermFlag:
  """Within the block, SIGTERM sets `received` instead of killing the process."""

  def __enter__(self):
    self.received = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():  # signals: main thread only
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
