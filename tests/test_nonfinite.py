"""The non-finite check of the training loop (nonfinite.py), without training."""

import numpy as np

from mirnet_jax import nonfinite


def test_the_non_finite_check_passes_skipped_steps_but_not_parameters():
  ok = {"train/loss": 1.0, "train/grad_norm": 1.0}
  nan = {"train/loss": np.nan, "train/grad_norm": np.nan}
  skip = dict(nan, **{"train/skipped_steps": 1.0})
  applied = dict(ok, **{"train/skipped_steps": 0.0})
  # "skip" mode: a skipped step's NaN loss is no error; consecutive skips carry over.
  assert nonfinite.problem([applied, skip, skip], 6, 0, 2, True) == (None, 2)
  problem, skips = nonfinite.problem([skip, applied], 8, 2, 2, True)
  assert (problem, skips) == ("3 consecutive steps (5 to 7) had a non-finite loss or gradient "
                              "and were skipped (more than optim.max_consecutive_skips=2)", 3)
  # Non-finite parameters are caught whatever the steps say; so is a NaN step in "stop" mode.
  assert nonfinite.problem([skip], 4, 0, 2, False)[0] == (
      "non-finite parameters or BatchNorm statistics at step 4")
  assert nonfinite.problem([ok, nan], 4, 0, 2, True)[0] == (
      "non-finite loss or gradient between steps 3 and 4")
