"""The train state, the optimizer and the mesh they live on (the pjit model).

One `data` mesh axis shards the batch; the state is replicated, created already sharded
(eval_shape for its shapes, then a jit with out_shardings), so restoring it for training
(train.py) or for inference (inference.py) puts arrays straight onto the mesh.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mirnet_jax import tasks

P = jax.sharding.PartitionSpec


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  # The variables of the frozen model a separator is conditioned on ({} for others): in
  # the state, hence in every checkpoint, so that a trained separator keeps the
  # conditioner it was trained with whatever later happens to that model's workdir.
  frozen: Any


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
  def init(rng, frozen):
    variables = task.init_variables(rng)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), frozen=frozen)
  return init


def replicated_like(tree, mesh):
  """Abstract arrays of `tree`'s shapes and dtypes, replicated on `mesh`."""
  replicated = jax.sharding.NamedSharding(mesh, P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      tree)


def abstract_state(task: tasks.Task, tx, mesh):
  """Shapes, dtypes and (replicated) shardings of the TrainState, without computing it."""
  shapes = jax.eval_shape(_init_fn(task, tx), jax.random.key(0), task.frozen_shapes())
  return replicated_like(shapes, mesh)


def create_state(task: tasks.Task, tx, mesh, rng, frozen=None):
  """The initial TrainState, created directly with replicated shardings on `mesh`;
  `frozen`: the conditioner's variables (zeros of their shapes if None: a state to
  restore into)."""
  sharding = jax.tree.map(lambda x: x.sharding, abstract_state(task, tx, mesh))
  if frozen is None:
    frozen = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), task.frozen_shapes())
  return jax.jit(_init_fn(task, tx), out_shardings=sharding)(rng, frozen), sharding
