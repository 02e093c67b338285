"""Permutation-min cross-entropy (paper Eq. 3-5)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mirnet_jax import losses
from mirnet_jax import permutations


def _log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _brute_force(logits, labels):
  lp = _log_softmax(np.asarray(logits, np.float64))
  n = labels.shape[1]
  out = []
  for b in range(labels.shape[0]):
    out.append(min(sum(-lp[b, i, labels[b, p[i]]] for i in range(n))
                   for p in itertools.permutations(range(n))))
  return np.array(out)


def _random(batch, n, classes, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.standard_normal((batch, n, classes)).astype(np.float32) * 3
  labels = np.stack([rng.choice(classes, n, replace=False) for _ in range(batch)])
  return jnp.asarray(logits), jnp.asarray(labels, jnp.int32)


def test_two_speakers_hand_computed():
  logits = jnp.array([[[2.0, 0.0, -1.0], [0.5, 0.2, 3.0]]])
  labels = jnp.array([[2, 0]])
  lp = _log_softmax(np.asarray(logits))[0]
  l1 = -lp[0, 2] - lp[1, 0]  # Eq. 4: slot 1 <- A, slot 2 <- B
  l2 = -lp[1, 2] - lp[0, 0]  # Eq. 5: swapped
  result = losses.permutation_min_ce(logits, labels)
  np.testing.assert_allclose(result["loss"], [min(l1, l2)], rtol=1e-6)
  assert l2 < l1 and result["permutation"].tolist() == [[1, 0]]
  assert float(result["accuracy"][0]) == 1.0  # slot 0 says 0, slot 1 says 2: both right


@pytest.mark.parametrize("n", [2, 3])
def test_matches_brute_force_and_ignores_label_order(n):
  logits, labels = _random(16, n, 7)
  result = losses.permutation_min_ce(logits, labels)
  np.testing.assert_allclose(result["loss"], _brute_force(logits, labels), rtol=1e-5)
  for perm in itertools.permutations(range(n)):
    shuffled = losses.permutation_min_ce(logits, labels[:, list(perm)])
    np.testing.assert_allclose(shuffled["loss"], result["loss"], rtol=1e-6)
    np.testing.assert_allclose(shuffled["accuracy"], result["accuracy"])
  # The returned permutation achieves the minimum.
  lp = _log_softmax(np.asarray(logits))
  perm = np.asarray(result["permutation"])
  chosen = [-sum(lp[b, i, labels[b, perm[b, i]]] for i in range(n)) for b in range(16)]
  np.testing.assert_allclose(chosen, result["loss"], rtol=1e-5)


def test_gradient_flows_through_the_chosen_permutation_only():
  logits, labels = _random(8, 2, 5, seed=3)
  grad = jax.grad(lambda x: losses.permutation_min_ce(x, labels)["loss"].sum())(logits)
  perm = np.asarray(losses.permutation_min_ce(logits, labels)["permutation"])
  probs = np.exp(_log_softmax(np.asarray(logits)))
  for b in range(8):
    for i in range(2):
      expected = probs[b, i].copy()
      expected[labels[b, perm[b, i]]] -= 1.0  # d CE / d logits of the assigned label
      np.testing.assert_allclose(grad[b, i], expected, atol=1e-5)


def test_permutation_table():
  assert permutations.table(3).shape == (6, 3)
  assert permutations.table(2).tolist() == [[0, 1], [1, 0]]


def _permutation_min_mse_brute_force(estimates, references):
  est = np.asarray(estimates, np.float64) ** losses.COMPRESSION
  ref = np.asarray(references, np.float64) ** losses.COMPRESSION
  n = ref.shape[1]
  return np.array([min(np.mean([np.mean((est[b, i] - ref[b, p[i]]) ** 2) for i in range(n)])
                       for p in itertools.permutations(range(n)))
                   for b in range(ref.shape[0])])


@pytest.mark.parametrize("n", [1, 2, 3])
def test_permutation_min_mse_matches_brute_force(n):
  rng = np.random.default_rng(n)
  estimates = jnp.asarray(np.abs(rng.standard_normal((4, n, 6, 5))), jnp.float32)
  references = jnp.asarray(np.abs(rng.standard_normal((4, n, 6, 5))), jnp.float32)
  result = losses.permutation_min_mse(estimates, references)
  np.testing.assert_allclose(result["loss"],
                             _permutation_min_mse_brute_force(estimates, references),
                             rtol=1e-5)
  # Estimates in another order: the same loss, the permutation follows them.
  for perm in itertools.permutations(range(n)):
    shuffled = losses.permutation_min_mse(estimates[:, list(perm)], references)
    np.testing.assert_allclose(shuffled["loss"], result["loss"], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(shuffled["permutation"])[:, np.argsort(perm)],
                                  result["permutation"])


def test_ties_choose_the_identity():
  ce = losses.permutation_min_ce(jnp.zeros((2, 3, 5)), jnp.array([[0, 1, 2], [4, 2, 0]]))
  assert ce["permutation"].tolist() == [[0, 1, 2]] * 2
  mse = losses.permutation_min_mse(jnp.ones((2, 3, 4, 5)), jnp.ones((2, 3, 4, 5)))
  assert mse["permutation"].tolist() == [[0, 1, 2]] * 2
