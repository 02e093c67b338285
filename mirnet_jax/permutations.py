"""Assignments of N unordered output slots to N targets: the permutation table and the
exhaustive search for the cheapest assignment.

The output slots of the models are unordered, so losses, scoring, embedding and
separation all match slots to targets by the permutation of least total cost. N is a
handful of speakers, so all N! permutations are tried; every user goes through
`itertools.permutations` order, so ties resolve the same way everywhere: to the first
permutation in that order (row 0, the identity, first of all).
"""

import functools
import itertools
import math

import numpy as np


@functools.lru_cache(maxsize=None)
def _table(n: int) -> np.ndarray:
  rows = np.array(list(itertools.permutations(range(n))), np.int64).reshape(math.factorial(n), n)
  rows.flags.writeable = False  # shared by every caller
  return rows


def table(n: int) -> np.ndarray:
  """Every permutation of range(n), `[n!, n]` int64 (read-only), in
  `itertools.permutations` order: row 0 is the identity."""
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  return _table(int(n))


def best(cost) -> tuple[int, ...]:
  """The permutation `p` minimising `sum_i cost[i, p[i]]` for a `[N, N]` cost matrix.

  Ties go to the first permutation in `itertools.permutations` order, and the sums are
  taken left to right (i = 0, 1, ...), so the choice is exactly that of
  `min(itertools.permutations(range(N)), key=lambda p: sum(cost[i, p[i]] for i in
  range(N)))`, NaN included: a NaN total is never chosen over another, except that a
  NaN total of the identity (the first) keeps the identity. To maximise a score, pass its
  negation (negating commutes exactly with the sums, so ties still resolve alike).
  """
  cost = np.asarray(cost)
  if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
    raise ValueError(f"cost must be a square [N, N] matrix, got shape {cost.shape}")
  n = cost.shape[0]
  if n == 0:
    return ()
  perms = table(n)
  # [n!] totals, summed in the order of the Python sum above (bit-identical totals).
  totals = cost[0, perms[:, 0]]
  for i in range(1, n):
    totals = totals + cost[i, perms[:, i]]
  if np.isnan(totals[0]):
    index = 0  # min() compares every later total with it: `x < nan` is always False
  else:
    # The first of the smallest; NaN totals are never smaller than the current choice.
    index = int(np.argmin(np.where(np.isnan(totals), np.inf, totals)))
  return tuple(int(j) for j in perms[index])
