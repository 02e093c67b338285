"""Speaker verification on mixtures (paper Section 4.1.2) and its metrics.

Protocol. A trial is three mixtures, each the sum of `num_speakers` (N) sources:

    anchor   = S_A  + S_B  (+ N-2 more speakers)
    positive = S_A' + S_C  (+ N-2 more speakers)
    negative = S_C' + S_D  (+ N-2 more speakers)

where A' is a *different* utterance of speaker A and C' a different utterance of C, and
every speaker in the trial is distinct apart from the A/A' and C/C' pairs (for N = 2: A, B,
C, D distinct, as in the paper; for general N a trial uses 3N - 2 speakers). So
(anchor, positive) share exactly one speaker (a target pair) and (anchor, negative) share
none (a non-target pair), while positive and negative share C and so look alike: a
system cannot tell them apart by "does the other mixture contain C".

Each source is a `crop_frames` crop of its utterance at a uniform random offset (a crop
may run past a short utterance's end; trial_sets.py cuts each mixture to its overlapped
span, so no such padding is embedded) scaled by a gain drawn
uniformly in [-gain_db_range/2, +gain_db_range/2] dB (the training recipe of
`mirnet_jax.data.pipeline`). The sources of a mixture are listed in the order above
(A or A' or C' first); the order does not matter to the scores, which are symmetric.

Scores (paper Eq. 6/7). The network returns N embeddings per mixture. A pair of mixtures
scores `-min_{i,j} ||e_i - f_j||` (Euclidean; the paper's choice) or
`max_{i,j} cos(e_i, f_j)`: the closest pair of slots decides, so higher score = more
likely to share a speaker, and the unordered output slots need no alignment. Each trial
gives one target score (anchor vs positive) and one non-target score (anchor vs negative),
so `target[i]` and `nontarget[i]` always come from the same trial `i` (which the bootstrap
respects).

Metrics (all take raw scores, higher = target):
  * EER in percent: the point where the false-acceptance rate (non-targets accepted)
    equals the false-rejection rate (targets rejected), linearly interpolated between the
    two operating points of the ROC that bracket the crossing. A trial is accepted when
    its score is >= the threshold.
  * minDCF: the NIST SRE normalised minimum detection cost,
    min_t [c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t)]
    / min(c_miss * p_target, c_fa * (1 - p_target)), in [0, 1] (1 = no better than
    always accepting or always rejecting).
  * A percentile bootstrap 95% interval of the EER, resampling whole trials.

Trial lists are made once per split and saved as JSON (`save_trials`), so every checkpoint
and every run is scored on exactly the same mixtures (for another toolkit's system they
become VoxCeleb-format lists of file pairs, and its scores are read back, in
trial_export.py).
"""

import dataclasses
import json
import os

from etils import epath
import numpy as np
from sklearn import metrics as skm

from mirnet_jax import storage
from mirnet_jax.data import shards

TRIALS_FORMAT = "mirnet_jax.verification.trials/1"
ROLES = ("anchor", "positive", "negative")


@dataclasses.dataclass(frozen=True)
class Source:
  """One source of a mixture.

  Attributes:
    utterance: index into the split's utterance list (`shards.Split` order).
    offset: first frame of the crop within the utterance.
    gain: linear amplitude gain applied to the (level-normalised) utterance.
  """
  utterance: int
  offset: int
  gain: float


@dataclasses.dataclass(frozen=True)
class Trial:
  """Three mixtures (tuples of `Source`); see the module docstring for their speakers."""
  anchor: tuple[Source, ...]
  positive: tuple[Source, ...]
  negative: tuple[Source, ...]


def make_trials(labels: np.ndarray, frames: np.ndarray, num_trials: int, seed: int,
                crop_frames: int, gain_db_range: float = 5.0,
                num_speakers: int = 2) -> list[Trial]:
  """Draws verification trials from one split.

  Trial k depends only on `(seed, k)` (it is drawn from `default_rng([seed, k])`), so the
  first k trials of a long list equal a k-trial list with the same seed.

  Args:
    labels: `[U]` speaker of each utterance of the split.
    frames: `[U]` length of each utterance in frames.
    num_trials: number of trials.
    seed: random seed.
    crop_frames: frames per source crop (offsets are uniform in
      `[0, max(frames - crop_frames, 0)]`).
    gain_db_range: each source's gain is uniform in +-gain_db_range/2 dB.
    num_speakers: N, speakers per mixture (>= 2).

  Returns:
    `num_trials` Trials; each mixture lists its N sources as in the module docstring.

  Raises:
    ValueError: when the split cannot supply the 3N - 2 distinct speakers of a trial, two
      of them (A and C) with at least 2 utterances, or on bad arguments.
  """
  labels = np.asarray(labels)
  frames = np.asarray(frames)
  n = int(num_speakers)
  if n < 2:
    raise ValueError(f"num_speakers must be >= 2, got {num_speakers}")
  if labels.shape != frames.shape or labels.ndim != 1:
    raise ValueError(f"labels {labels.shape} and frames {frames.shape} must be matching "
                     "1-D arrays")
  if num_trials < 0 or crop_frames <= 0 or gain_db_range < 0:
    raise ValueError(f"bad arguments: num_trials={num_trials}, crop_frames={crop_frames},"
                     f" gain_db_range={gain_db_range}")
  speakers, utterances_of = shards.utterances_by_speaker(labels)
  rich = np.flatnonzero([len(u) >= 2 for u in utterances_of])  # may be A or C
  needed = 3 * n - 2
  if len(speakers) < needed or len(rich) < 2:
    raise ValueError(
        f"a {n}-speaker verification trial needs {needed} distinct speakers, two of them "
        f"with >= 2 utterances; the split has {len(speakers)} speakers, {len(rich)} with "
        ">= 2 utterances")

  def source(rng, utterance: int) -> Source:
    spare = max(int(frames[utterance]) - crop_frames, 0)
    offset = int(rng.integers(spare + 1))
    gain_db = rng.uniform(-0.5, 0.5) * gain_db_range
    return Source(int(utterance), offset, float(10.0 ** (gain_db / 20)))

  def one_of(rng, speaker: int) -> int:
    candidates = utterances_of[speaker]
    return int(candidates[rng.integers(len(candidates))])

  trials = []
  for k in range(num_trials):
    rng = np.random.default_rng([seed, k])
    a, c = rng.choice(rich, size=2, replace=False)
    rest = np.setdiff1d(np.arange(len(speakers)), [a, c])
    others = rng.choice(rest, size=needed - 2, replace=False)
    a_utt, a2_utt = rng.choice(utterances_of[a], size=2, replace=False)
    c_utt, c2_utt = rng.choice(utterances_of[c], size=2, replace=False)
    anchor_utts = [a_utt] + [one_of(rng, s) for s in others[:n - 1]]
    positive_utts = [a2_utt, c_utt] + [one_of(rng, s) for s in others[n - 1:2 * n - 3]]
    negative_utts = [c2_utt] + [one_of(rng, s) for s in others[2 * n - 3:]]
    trials.append(Trial(*(tuple(source(rng, u) for u in utts)
                          for utts in (anchor_utts, positive_utts, negative_utts))))
  return trials


def trial_arrays(trials: list[Trial]) -> dict[str, np.ndarray]:
  """Trials as arrays, for batched mixing.

  Args:
    trials: T trials of N sources per mixture.

  Returns:
    `utterance` int64, `offset` int64 and `gain` float32 arrays, each `[T, 3, N]`, the
    second axis being (anchor, positive, negative).
  """
  cols = {"utterance": [], "offset": [], "gain": []}
  for t in trials:
    for name in cols:
      cols[name].append([[getattr(s, name) for s in getattr(t, r)] for r in ROLES])
  dtypes = {"utterance": np.int64, "offset": np.int64, "gain": np.float32}
  n = len(trials[0].anchor) if trials else 0
  return {k: np.asarray(v, dtypes[k]).reshape(len(trials), 3, n) for k, v in cols.items()}


def trial_speakers(trial: Trial, labels: np.ndarray) -> dict[str, tuple[int, ...]]:
  """The speakers of a trial, for checks and plots.

  Args:
    trial: a trial of the split.
    labels: `[U]` speaker of each utterance of that split.

  Returns:
    {"anchor" | "positive" | "negative": (speaker of each source, in source order)}.
  """
  labels = np.asarray(labels)
  return {r: tuple(int(labels[s.utterance]) for s in getattr(trial, r)) for r in ROLES}


def _jsonable(x):
  """numpy arrays/scalars (e.g. utterance ids in `meta`) -> plain JSON values."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, np.generic):
    return x.item()
  return x


def save_trials(path: str, trials: list[Trial], meta: dict):
  """Writes trials and `meta` as JSON, atomically (see storage.write_bytes).

  Args:
    path: output file.
    trials: the trials.
    meta: JSON-able description of where they come from, e.g. split name, seed,
      crop_frames and the split's utterance ids, so a reader can check the trials still
      index the same utterances (numpy arrays are converted to lists).
  """
  n = len(trials[0].anchor) if trials else 0
  doc = {
      "format": TRIALS_FORMAT,
      "meta": _jsonable(meta),
      "num_speakers": n,
      # One row per trial: [[[utterance, offset, gain] x N] for anchor, positive, negative].
      "trials": [[[[s.utterance, s.offset, s.gain] for s in getattr(t, r)] for r in ROLES]
                 for t in trials],
  }
  storage.makedirs(os.path.dirname(storage.absolute(path)))
  storage.write_text(path, json.dumps(doc, separators=(",", ":")))


def load_trials(path: str, expect: dict | None = None) -> tuple[list[Trial], dict]:
  """Reads a `save_trials` file.

  Args:
    path: the file.
    expect: optional {key: value} that `meta` must hold (compared after the same JSON
      conversion `save_trials` applies, so numpy arrays are fine).

  Returns:
    (trials, meta).

  Raises:
    ValueError: on another format, or when `meta` does not match `expect`.
  """
  doc = json.loads(epath.Path(path).read_text())
  if doc.get("format") != TRIALS_FORMAT:
    raise ValueError(f"{path} is not a trial list of format {TRIALS_FORMAT}")
  meta = doc["meta"]
  for key, value in (expect or {}).items():
    if meta.get(key) != _jsonable(value):
      raise ValueError(f"{path}: meta[{key!r}] does not match; the trials were made for "
                       "another split/configuration, make them again")
  trials = [Trial(*(tuple(Source(int(u), int(o), float(g)) for u, o, g in mixture)
                    for mixture in row)) for row in doc["trials"]]
  return trials, meta


def pair_scores(anchor: np.ndarray, other: np.ndarray,
                metric: str = "euclidean") -> np.ndarray:
  """Scores of mixture pairs from their slot embeddings (paper Eq. 6/7).

  Args:
    anchor: `[T, N, E]` embeddings of T mixtures (N output slots).
    other: `[T, M, E]` embeddings of the mixtures they are compared with.
    metric: "euclidean": `-min_{i,j} ||anchor[t,i] - other[t,j]||` (embeddings used as
      they are, not normalised); "cosine": `max_{i,j} cos(anchor[t,i], other[t,j])`.

  Returns:
    `[T]` float64 scores, higher = more likely the pair shares a speaker; invariant to the
    order of the slots.
  """
  a = np.asarray(anchor, np.float64)
  b = np.asarray(other, np.float64)
  if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
    raise ValueError(f"expected [T, N, E] and [T, M, E], got {a.shape} and {b.shape}")
  if metric == "euclidean":
    d = np.linalg.norm(a[:, :, None, :] - b[:, None, :, :], axis=-1)
    return -d.min(axis=(1, 2))
  if metric == "cosine":
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return np.einsum("tie,tje->tij", a, b).max(axis=(1, 2))
  raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")


def _error_rates(target, nontarget):
  """(P_fa, P_miss, thresholds) at every distinct threshold, from "accept none" to
  "accept all" (sklearn's first threshold is +inf)."""
  target = np.asarray(target, np.float64).ravel()
  nontarget = np.asarray(nontarget, np.float64).ravel()
  if target.size == 0 or nontarget.size == 0:
    raise ValueError("need at least one target and one non-target score")
  if not (np.all(np.isfinite(target)) and np.all(np.isfinite(nontarget))):
    raise ValueError("scores must be finite")
  y = np.r_[np.ones(target.size), np.zeros(nontarget.size)]
  # drop_intermediate=False keeps every threshold, so the interpolated EER threshold is
  # between two adjacent distinct scores.
  fpr, tpr, thresholds = skm.roc_curve(y, np.r_[target, nontarget],
                                       drop_intermediate=False)
  return fpr, 1.0 - tpr, thresholds


def eer(target_scores, nontarget_scores) -> tuple[float, float]:
  """Equal error rate.

  Convention: the false-acceptance rate (non-target scores >= threshold) and the
  false-rejection rate (target scores < threshold) are computed at every distinct
  threshold (sklearn's ROC); the EER is where the two are equal, linearly interpolated
  between the two adjacent operating points that bracket the crossing. The threshold is
  interpolated the same way between their thresholds (the highest score when the
  crossing lies before it).

  Args:
    target_scores: scores of same-speaker pairs (higher = more likely same).
    nontarget_scores: scores of different-speaker pairs.

  Returns:
    (eer in percent, threshold).
  """
  fpr, fnr, thresholds = _error_rates(target_scores, nontarget_scores)
  diff = fnr - fpr  # non-increasing: from +1 (accept none) to -1 (accept all)
  i = int(np.flatnonzero(diff > 0)[-1])  # last point with FRR > FAR; diff[i + 1] <= 0
  w = diff[i] / (diff[i] - diff[i + 1])
  rate = fpr[i] + w * (fpr[i + 1] - fpr[i])
  if np.isfinite(thresholds[i]):
    threshold = thresholds[i] + w * (thresholds[i + 1] - thresholds[i])
  else:  # thresholds[0] = +inf ("accept none")
    threshold = thresholds[i + 1]
  return float(100.0 * rate), float(threshold)


def min_dcf(target, nontarget, p_target: float, c_miss: float = 1.0,
            c_fa: float = 1.0) -> float:
  """Normalised minimum detection cost function (NIST SRE convention).

  Args:
    target, nontarget: scores (higher = same speaker).
    p_target: prior probability of a target trial.
    c_miss, c_fa: costs of a miss and of a false acceptance.

  Returns:
    min over thresholds of `c_miss * p_target * P_miss + c_fa * (1 - p_target) * P_fa`,
    divided by `min(c_miss * p_target, c_fa * (1 - p_target))` (the cost of the better
    of "accept all"/"reject all"), so it lies in [0, 1].
  """
  if not 0.0 < p_target < 1.0:
    raise ValueError(f"p_target must be in (0, 1), got {p_target}")
  p_fa, p_miss, _ = _error_rates(target, nontarget)
  cost = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
  return float(cost.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def bootstrap_eer_ci(target, nontarget, num_resamples: int = 1000, seed: int = 0,
                     alpha: float = 0.05) -> tuple[float, float]:
  """Percentile bootstrap confidence interval of the EER.

  Trials are resampled with replacement as wholes: resample i takes `target[idx]` and
  `nontarget[idx]` with the same indices, since both scores of trial i share its anchor.
  About 3 ms per resample at 10,000 trials.

  Args:
    target, nontarget: `[T]` scores, entry i of both from trial i.
    num_resamples: bootstrap resamples.
    seed: random seed.
    alpha: 1 - confidence level.

  Returns:
    (lo, hi) EER in percent: the alpha/2 and 1 - alpha/2 quantiles of the resampled EERs.
  """
  target = np.asarray(target, np.float64).ravel()
  nontarget = np.asarray(nontarget, np.float64).ravel()
  if target.shape != nontarget.shape:
    raise ValueError(f"target {target.shape} and nontarget {nontarget.shape} must pair up "
                     "trial by trial")
  rng = np.random.default_rng(seed)
  n = target.size
  values = np.empty(num_resamples)
  for r in range(num_resamples):
    idx = rng.integers(n, size=n)
    values[r] = eer(target[idx], nontarget[idx])[0]
  lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
  return float(lo), float(hi)


def summarise(target, nontarget, target_cos=None, nontarget_cos=None,
              ci: bool = True, num_resamples: int = 1000) -> dict:
  """All metrics of one condition, as a JSON-able dict.

  Args:
    target, nontarget: `[T]` Euclidean scores (`pair_scores`) of the T trials.
    target_cos, nontarget_cos: optional `[T]` cosine scores of the same trials.
    ci: whether to compute the bootstrap interval (the slow part).
    num_resamples: bootstrap resamples.

  Returns:
    {"trials": T, "eer": percent, "eer_threshold", "eer_ci95": [lo, hi] or None,
     "min_dcf_0.01", "min_dcf_0.05", "errors_at_eer" (misses + false acceptances at the
     EER threshold), "misses_at_eer", "false_accepts_at_eer", and "eer_cosine" (percent,
     None without cosine scores)}.
  """
  target = np.asarray(target, np.float64).ravel()
  nontarget = np.asarray(nontarget, np.float64).ravel()
  rate, threshold = eer(target, nontarget)
  misses = int(np.sum(target < threshold))
  false_accepts = int(np.sum(nontarget >= threshold))
  out = {
      "trials": int(target.size),
      "eer": rate,
      "eer_threshold": threshold,
      "eer_ci95": (list(bootstrap_eer_ci(target, nontarget, num_resamples))
                   if ci else None),
      "min_dcf_0.01": min_dcf(target, nontarget, 0.01),
      "min_dcf_0.05": min_dcf(target, nontarget, 0.05),
      "errors_at_eer": misses + false_accepts,
      "misses_at_eer": misses,
      "false_accepts_at_eer": false_accepts,
      "eer_cosine": None,
  }
  if target_cos is not None and nontarget_cos is not None:
    out["eer_cosine"] = eer(target_cos, nontarget_cos)[0]
  return out


def markdown_table(results: dict) -> str:
  """A Markdown table of `summarise` results, one row per condition.

  Args:
    results: {condition name (e.g. "seen", "unseen", "clean"): summarise() dict}.

  Returns:
    The table (with a trailing newline); missing values print as "-".
  """
  def num(value, fmt):
    return "-" if value is None else format(value, fmt)

  lines = ["| condition | trials | EER (%) | 95% CI | minDCF 0.01 | minDCF 0.05 | "
           "EER cosine (%) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for name, r in results.items():
    ci = r.get("eer_ci95")
    ci_text = "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"
    lines.append(f"| {name} | {r['trials']} | {num(r.get('eer'), '.2f')} | {ci_text} | "
                 f"{num(r.get('min_dcf_0.01'), '.4f')} | "
                 f"{num(r.get('min_dcf_0.05'), '.4f')} | "
                 f"{num(r.get('eer_cosine'), '.2f')} |")
  return "\n".join(lines) + "\n"
