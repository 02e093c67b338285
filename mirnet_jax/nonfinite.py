"""What training does about a NaN/inf loss or gradient (config.optim.nonfinite).

  * "stop" (the default): the run stops at the next log point with a NonFiniteError
    naming the steps and the last good checkpoint; no checkpoint is written after them.
  * "skip": inside the step, a non-finite step leaves parameters, optimizer state and
    BatchNorm statistics as they were (`keep_if_finite`) and reports
    `train/skipped_steps` = 1; the run stops only after more than
    `optim.max_consecutive_skips` such steps in a row.
Either way a Guard checks the metrics read back at every log point and checkpoint, and
that the parameters and statistics themselves are finite.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mirnet_jax import errors

MODES = ("stop", "skip")


class NonFiniteError(errors.UserError):
  """The loss or the gradient became NaN/inf: training stops instead of going on."""


def keep_if_finite(new_state, old_state, loss, grad_norm):
  """(`new_state`, or `old_state` but for its step counter if the step was non-finite;
  the skipped-step metric: 1.0 if it was).

  Not optax.apply_if_finite: BatchNorm statistics live outside the optimizer and must be
  kept too. `step` still advances, so that it keeps counting the batches drawn (checkpoint
  names, resume); the optimizer's count (hence the learning-rate schedule and Adam's bias
  correction) advances only with an update.
  """
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  state = new_state.replace(params=keep(new_state.params, old_state.params),
                            batch_stats=keep(new_state.batch_stats, old_state.batch_stats),
                            opt_state=keep(new_state.opt_state, old_state.opt_state))
  return state, 1.0 - finite.astype(jnp.float32)


def all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def problem(summed, step: int, skips: int, max_skips: int, state_finite: bool):
  """(what went non-finite by `step`, or None; consecutive skipped steps by `step`).

  `summed` holds the metrics of the steps up to `step` not yet checked, `skips` the
  consecutive skipped steps before them. A skipped step ("skip" mode) has a NaN loss by
  design and is not an error unless more than `max_skips` come in a row; a non-finite
  loss or gradient of a step that was applied ("stop" mode), and non-finite parameters or
  BatchNorm statistics, always are.
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


class Guard:
  """Checks training at its log points: `check` raises NonFiniteError, naming the steps
  and `last_good()` (the last checkpoint), when training went non-finite."""

  def __init__(self, max_consecutive_skips: int, last_good):
    self.max_skips = max_consecutive_skips
    self.last_good = last_good
    self.skips = 0
    self._state_finite = jax.jit(lambda s: all_finite((s.params, s.batch_stats)))

  def check(self, summed, step: int, state):
    """`summed`: the host metrics of the steps since the last check, up to `step`."""
    found, self.skips = problem(summed, step, self.skips, self.max_skips,
                                bool(self._state_finite(state)))
    if found:
      raise NonFiniteError(f"{found}; last good checkpoint: {self.last_good()}")

  def peek(self, summed, step: int, state):
    """`check` without counting: for a checkpoint in the middle of a log interval."""
    skips = self.skips
    try:
      self.check(summed, step, state)
    finally:
      self.skips = skips
