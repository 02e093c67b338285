"""Separation metrics: SDRi, SI-SDRi and PESQi of one mixture's estimates.

* SDR: BSS-eval v3 `bss_eval_sources` from mir_eval (512-tap distortion filter), the
  implementation behind published WSJ0-2mix tables, including the paper's Table 2.
  mir_eval 0.8 marks its separation module deprecated (0.9 removes it; setup.cfg pins
  below 0.9): its suggested successor, museval, computes BSS-eval v4, whose numbers are
  not comparable with those tables, and fast_bss_eval 0.1.4 fails under numpy 2.
* SI-SDR (Le Roux et al., 2019): zero-mean signals, the reference scaled by the
  least-squares gain; a few lines of numpy, written out here so its convention is explicit.
* PESQ: ITU-T P.862.2 wide-band from the `pesq` package, at 16 kHz.
mir_eval and pesq are the `[separation]` extra, imported when first used: without them
this module imports, and a metric that needs one raises a UserError naming the extra.
Improvements are the estimate's score minus the unprocessed mixture's score against the
same reference. A system whose outputs have an identity (the enrolled baseline: output i
is enrolled speaker i) is scored under that assignment, so extracting the wrong speaker
counts as wrong; the others (uPIT, MIRNet's slots) are matched to references by the
permutation with the best mean SI-SDR (the scoring convention of PIT papers). Intervals
are percentile bootstraps over mixtures (both sources of a mixture resampled together).
"""

import importlib
import warnings

import numpy as np

from mirnet_jax import errors
from mirnet_jax import permutations

SAMPLE_RATE = 16000


def _extra(module: str):
  """`module` of the [separation] extra, imported; a UserError naming the extra if it is
  not installed."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise errors.UserError(f"separation metrics need {module.split('.')[0]}: "
                           "pip install -e '.[separation]'") from None


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
  """Scale-invariant SDR in dB of a 1-D `estimate` against `reference`."""
  estimate = np.asarray(estimate, np.float64) - np.mean(estimate)
  reference = np.asarray(reference, np.float64) - np.mean(reference)
  gain = np.dot(estimate, reference) / (np.dot(reference, reference) + 1e-12)
  target = gain * reference
  noise = estimate - target
  return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(noise, noise) + 1e-12)))


def sdr(estimates: np.ndarray, references: np.ndarray) -> np.ndarray:
  """BSS-eval SDR in dB of `estimates[i]` against `references[i]` (`[N, L]` each)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # the deprecation (module docstring)
    values, _, _, _ = _extra("mir_eval.separation").bss_eval_sources(
        np.asarray(references, np.float64), np.asarray(estimates, np.float64),
        compute_permutation=False)
  return values


def pesq_wb(estimate: np.ndarray, reference: np.ndarray) -> float:
  """Wide-band PESQ (MOS-LQO, about 1.0-4.64) of `estimate` against `reference`, 16 kHz;
  NaN when PESQ finds no speech in the reference."""
  pesq_lib = _extra("pesq")
  try:
    return float(pesq_lib.pesq(SAMPLE_RATE, np.asarray(reference, np.float32),
                               np.asarray(estimate, np.float32), "wb"))
  except pesq_lib.NoUtterancesError:
    return float("nan")


def best_permutation(estimates: np.ndarray, references: np.ndarray) -> tuple[int, ...]:
  """`perm` such that estimate `perm[i]` is matched to reference i (best mean SI-SDR)."""
  scores = np.array([[si_sdr(e, r) for r in references] for e in estimates])  # [est, ref]
  # Least cost [ref i, est j] = -score: the same choice as maximising the summed score,
  # ties included (permutations.best).
  return permutations.best(-scores.T)


def baseline(mixture: np.ndarray, references: np.ndarray, with_pesq: bool = True) -> dict:
  """Scores `[N]` of the unprocessed `mixture` `[L]` against each reference `[N, L]`: the
  starting point of every improvement (computed once per mixture for all systems)."""
  references = np.asarray(references, np.float64)
  mixtures = np.broadcast_to(np.asarray(mixture, np.float64), references.shape)
  out = {"sdr": sdr(mixtures, references),
         "si_sdr": np.array([si_sdr(mixture, r) for r in references])}
  if with_pesq:
    out["pesq"] = np.array([pesq_wb(mixture, r) for r in references])
  return out


def score(references: np.ndarray, estimates: np.ndarray, mixture_scores: dict,
          assignment: tuple[int, ...] | None = None) -> dict:
  """Per-source scores of `estimates` `[N, L]` and their improvements over
  `mixture_scores` (from `baseline`). Estimate `assignment[i]` is scored against reference
  i; without an assignment, the `best_permutation`.

  Returns dict of `[N]` arrays: sdr, si_sdr, sdri, si_sdri, and pesq, pesqi when the
  baseline has PESQ.
  """
  references = np.asarray(references, np.float64)
  perm = assignment if assignment is not None else best_permutation(estimates, references)
  matched = np.asarray(estimates, np.float64)[list(perm)]
  out = {"sdr": sdr(matched, references),
         "si_sdr": np.array([si_sdr(e, r) for e, r in zip(matched, references)])}
  if "pesq" in mixture_scores:
    out["pesq"] = np.array([pesq_wb(e, r) for e, r in zip(matched, references)])
  for key in list(out):
    out[f"{key}i"] = out[key] - mixture_scores[key]
  return out


def bootstrap_ci(per_mixture: np.ndarray, num_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of `per_mixture` values (NaNs, e.g. PESQ
  without speech, left out), resampling mixtures."""
  values = np.asarray(per_mixture, np.float64)
  values = values[np.isfinite(values)]
  if not len(values):
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  means = values[rng.integers(len(values), size=(num_resamples, len(values)))].mean(axis=1)
  tail = 100 * (1 - level) / 2
  return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))
