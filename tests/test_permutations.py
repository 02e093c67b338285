"""The permutation table and the least-cost assignment search."""

import itertools
import math

import numpy as np
import pytest

from mirnet_jax import permutations


def _brute_force(cost):
  """The search `permutations.best` replaces, as the call sites wrote it."""
  n = len(cost)
  return min(itertools.permutations(range(n)), key=lambda p: sum(cost[i, p[i]] for i in range(n)))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5])
def test_table_is_itertools_order_identity_first(n):
  table = permutations.table(n)
  assert table.shape == (math.factorial(n), n) and np.issubdtype(table.dtype, np.integer)
  assert [tuple(row) for row in table] == list(itertools.permutations(range(n)))
  assert table[0].tolist() == list(range(n))


def test_table_is_shared_and_read_only():
  assert permutations.table(3) is permutations.table(3)
  with pytest.raises(ValueError):
    permutations.table(3)[0, 0] = 2
  with pytest.raises(ValueError):
    permutations.table(-1)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_best_matches_brute_force_on_random_matrices(n):
  rng = np.random.default_rng(n)
  for _ in range(50):
    cost = rng.standard_normal((n, n))
    assert permutations.best(cost) == _brute_force(cost)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_best_breaks_ties_like_brute_force(n):
  rng = np.random.default_rng(10 + n)
  for _ in range(100):
    # Few distinct integer costs: many assignments share the least total.
    cost = rng.integers(0, 3, (n, n)).astype(np.float64)
    assert permutations.best(cost) == _brute_force(cost)
  assert permutations.best(np.zeros((n, n))) == tuple(range(n))
  # Each slot costs the same whatever its target: every assignment has the same total.
  assert permutations.best(np.tile(rng.standard_normal((n, 1)), (1, n))) == tuple(range(n))


def test_best_sums_like_the_python_sum():
  # Floating-point sums depend on their order ((1e16 + 1) - 1e16 == 0, (1e16 - 1e16) + 1
  # == 1): the totals are summed in slot order, as the Python sum does, so that near-ties
  # resolve the same way.
  cost = np.array([[1e16, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1e16]])
  assert permutations.best(cost) == _brute_force(cost)
  rng = np.random.default_rng(0)
  for _ in range(200):
    cost = rng.choice([0.1, 0.2, 0.3, 0.7, 1e16, -1e16], size=(3, 3))
    assert permutations.best(cost) == _brute_force(cost)


def test_best_with_nan_and_inf_like_brute_force():
  rng = np.random.default_rng(1)
  for _ in range(300):
    cost = rng.standard_normal((3, 3))
    mask = rng.random((3, 3))
    cost[mask < 0.15] = np.nan
    cost[(mask >= 0.15) & (mask < 0.25)] = np.inf
    cost[(mask >= 0.25) & (mask < 0.3)] = -np.inf
    with np.errstate(invalid="ignore"):  # inf - inf
      assert permutations.best(cost) == _brute_force(cost), cost


def test_best_maximises_a_negated_score_like_max():
  rng = np.random.default_rng(2)
  for _ in range(100):
    scores = rng.integers(-2, 3, (3, 3)).astype(np.float64) * 0.1
    expected = max(itertools.permutations(range(3)),
                   key=lambda p: sum(scores[i, p[i]] for i in range(3)))
    assert permutations.best(-scores) == expected


def test_best_rejects_a_non_square_matrix():
  assert permutations.best(np.zeros((0, 0))) == ()
  with pytest.raises(ValueError, match="square"):
    permutations.best(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="square"):
    permutations.best(np.zeros(3))
