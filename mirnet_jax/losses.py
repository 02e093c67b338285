"""Permutation-min cross-entropy (paper Eq. 3-5), generalised to N speakers.

L = min over the N! assignments pi of sum_i CE(logits_i, label_pi(i)). The CE of every
(output slot, label) pair is computed once (`[B, N, N]`); the per-permutation sums are a
`jax.vmap` over the permutation table, and the minimum is taken by selecting the argmin
(its index carries no gradient), so the gradient flows through the chosen assignment only.
"""

import jax
import jax.numpy as jnp

from mirnet_jax import permutations


def pairwise_cross_entropy(logits, labels):
  """`ce[b, i, j]` = CE of output slot i against label j. logits [B, N, C], labels [B, N]."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  # ce[b, i, j] = -log_probs[b, i, labels[b, j]]
  return -jnp.take_along_axis(log_probs, labels[:, None, :], axis=-1)


def _permutation_min(pairwise, reduce):
  """The assignment of least total over the permutation table.

  Args:
    pairwise: `[B, M, N]` cost of output slot i against target j (slots past N unused).
    reduce: combines the N costs of one assignment, `reduce(x, axis=-1)` (jnp.sum or
      jnp.mean).

  Returns:
    (`[B]` the least total, `[B, N]` int32 the target index assigned to each slot).
  """
  n = pairwise.shape[-1]
  perms = jnp.asarray(permutations.table(n), jnp.int32)
  slots = jnp.arange(n)
  # [P, B]: the total of each assignment, vmapped over the permutation table.
  totals = jax.vmap(lambda p: reduce(pairwise[:, slots, p], axis=-1))(perms)
  best = jax.lax.stop_gradient(jnp.argmin(totals, axis=0))  # [B]
  loss = jnp.take_along_axis(totals, best[None], axis=0)[0]
  # Selected with take_along_axis over the vmapped axis (not by indexing the constant
  # table with `best`), which keeps the batch sharding of every operand.
  table = jnp.broadcast_to(perms[:, None, :], (perms.shape[0], pairwise.shape[0], n))
  permutation = jnp.take_along_axis(table, best[None, :, None], axis=0)[0]
  return loss, permutation


def permutation_min_ce(logits, labels):
  """Permutation-invariant CE.

  Args:
    logits: `[B, N, C]` classifier outputs of the N slots.
    labels: `[B, N]` speaker classes of the mixture's sources (any order).

  Returns:
    dict with `loss` `[B]` (the minimum summed CE), `permutation` `[B, N]` (label index
    assigned to each slot), `accuracy` `[B]` (share of slots whose argmax is the label
    assigned to it).
  """
  loss, permutation = _permutation_min(pairwise_cross_entropy(logits, labels), jnp.sum)
  assigned = jnp.take_along_axis(labels, permutation, axis=1)
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == assigned, axis=-1)
  return dict(loss=loss, permutation=permutation, accuracy=accuracy.astype(jnp.float32))


# ---------------------------------------------------------------------------- separation
#
# Masks are trained on power-law compressed magnitudes, |X|^0.3 (VoiceFilter's choice, after
# Wilson et al. 2018): a plain magnitude MSE is dominated by the few loud low-frequency
# bins, a log-magnitude MSE by the silent ones; the 0.3 power weighs them in between.

COMPRESSION = 0.3


def magnitude(real_imag):
  """`[..., F, 2]` real/imag pairs -> `[..., F]` linear magnitude (float32)."""
  re = real_imag[..., 0].astype(jnp.float32)
  im = real_imag[..., 1].astype(jnp.float32)
  return jnp.sqrt(re * re + im * im + 1e-12)


def pairwise_compressed_mse(estimates, references):
  """`mse[b, i, j]`: compressed-magnitude MSE of estimate i against reference j.

  estimates `[B, M, T, F]` and references `[B, N, T, F]` are linear magnitudes.
  """
  est = estimates[:, :, None] ** COMPRESSION
  ref = references[:, None, :] ** COMPRESSION
  return jnp.mean((est - ref) ** 2, axis=(-2, -1))


def permutation_min_mse(estimates, references):
  """Utterance-level PIT (Kolbaek et al. 2017): the compressed-magnitude MSE under the
  assignment of estimates to references that minimises it over the whole utterance.

  Returns dict(loss [B]: the minimum mean MSE over the N sources, permutation [B, N]:
  the reference assigned to each estimate). Like `permutation_min_ce`, a vmap over the
  permutation table with the argmin selected without gradient.
  """
  loss, permutation = _permutation_min(pairwise_compressed_mse(estimates, references),
                                       jnp.mean)
  return dict(loss=loss, permutation=permutation)
