"""Verification protocol on mixtures (paper Section 4.1.2) and its metrics."""

import os

import numpy as np
import pytest

from mirnet_jax import verification as V


# --- EER ----------------------------------------------------------------------------

def test_eer_perfect_separation_is_zero():
  rate, threshold = V.eer([2.0, 3.0, 4.0], [-1.0, 0.0, 1.0])
  assert rate == 0.0
  # Accepting scores >= threshold makes no error.
  assert 1.0 < threshold <= 2.0


def test_eer_fully_inverted_is_hundred():
  assert V.eer([-1.0, 0.0], [2.0, 3.0])[0] == pytest.approx(100.0)


def test_eer_identical_distributions_is_half():
  rng = np.random.default_rng(0)
  rate, _ = V.eer(rng.standard_normal(20000), rng.standard_normal(20000))
  assert abs(rate - 50.0) < 2.0


def test_eer_hand_computed_on_an_operating_point():
  # Descending: .9T .8T .7N .3T .2N .1N. Threshold .7 accepts 1 of 3 non-targets and
  # rejects 1 of 3 targets: FAR = FRR = 1/3 exactly.
  rate, threshold = V.eer([0.9, 0.8, 0.3], [0.7, 0.2, 0.1])
  assert rate == pytest.approx(100 / 3)
  assert threshold == pytest.approx(0.7)


def test_eer_hand_computed_interpolated():
  # Descending: .9T .8T .75N .7T .2T .1N .05N (4 targets, 3 non-targets).
  # At .75: FAR 1/3, FRR 2/4; at .7: FAR 1/3, FRR 1/4. FRR - FAR goes 1/6 -> -1/12, so the
  # crossing is 2/3 of the way: EER = 1/3, threshold = .75 + 2/3 * (.7 - .75).
  rate, threshold = V.eer([0.9, 0.8, 0.7, 0.2], [0.75, 0.1, 0.05])
  assert rate == pytest.approx(100 / 3)
  assert threshold == pytest.approx(0.75 - 0.05 * 2 / 3)


def _brute_force_eer(target, nontarget):
  """min over thresholds of max(FAR, FRR), accepting score >= threshold."""
  best = 1.0
  for t in np.r_[np.unique(np.r_[target, nontarget]), np.inf]:
    far = np.mean(nontarget >= t)
    frr = np.mean(target < t)
    best = min(best, max(far, frr))
  return 100 * best


@pytest.mark.parametrize("seed,nt,nn", [(0, 50, 50), (1, 37, 80), (2, 200, 31),
                                        (3, 5, 7)])
def test_eer_agrees_with_threshold_sweep(seed, nt, nn):
  rng = np.random.default_rng(seed)
  target = rng.normal(1.0, 1.0, nt)
  nontarget = rng.normal(0.0, 1.0, nn)
  rate, _ = V.eer(target, nontarget)
  brute = _brute_force_eer(target, nontarget)
  # The interpolated crossing lies below the better bracketing point by at most one step.
  assert brute - 1e-9 <= rate + 100 / min(nt, nn)
  assert rate <= brute + 1e-9


# --- minDCF -------------------------------------------------------------------------

def test_min_dcf_hand_computed():
  # Descending: .9T .7N .3T .2N .1N. Operating points (P_fa, P_miss):
  # (0,1) (0,1/2) (1/3,1/2) (1/3,0) (2/3,0) (1,0).
  target, nontarget = [0.9, 0.3], [0.7, 0.2, 0.1]
  # p=0.5: min 0.5*(P_miss + P_fa) = 0.5/3 at (1/3, 0); normalised by 0.5 -> 1/3.
  assert V.min_dcf(target, nontarget, 0.5) == pytest.approx(1 / 3)
  # p=0.1: min 0.1*P_miss + 0.9*P_fa = 0.05 at (0, 1/2); normalised by 0.1 -> 1/2.
  assert V.min_dcf(target, nontarget, 0.1) == pytest.approx(0.5)
  # Costs: c_miss=2, p=0.1: 0.2*P_miss + 0.9*P_fa -> 0.1 at (0, 1/2); / 0.2 -> 1/2.
  assert V.min_dcf(target, nontarget, 0.1, c_miss=2.0) == pytest.approx(0.5)


def test_min_dcf_bounds():
  rng = np.random.default_rng(0)
  for p in (0.01, 0.05, 0.5):
    assert V.min_dcf([1.0, 2.0], [-1.0, 0.0], p) == 0.0
    # Random scores: no better than the trivial systems, never worse.
    value = V.min_dcf(rng.standard_normal(300), rng.standard_normal(300), p)
    assert 0.0 <= value <= 1.0
    assert V.min_dcf([-1.0, 0.0], [1.0, 2.0], p) == pytest.approx(1.0)


# --- bootstrap ------------------------------------------------------------------------

def test_bootstrap_ci_contains_estimate_and_narrows():
  rng = np.random.default_rng(0)
  widths = []
  for n in (100, 1600):
    target = rng.normal(1.5, 1.0, n)
    nontarget = rng.normal(0.0, 1.0, n)
    rate, _ = V.eer(target, nontarget)
    lo, hi = V.bootstrap_eer_ci(target, nontarget, num_resamples=200, seed=1)
    assert lo <= rate <= hi
    widths.append(hi - lo)
  assert widths[1] < 0.6 * widths[0]  # ~1/sqrt(16) = 1/4 in theory


def test_bootstrap_needs_paired_scores():
  with pytest.raises(ValueError):
    V.bootstrap_eer_ci([1.0, 2.0], [0.0], num_resamples=5)


# --- trials ---------------------------------------------------------------------------

def _split(num_speakers=8, per_speaker=3, single=()):
  """labels/frames of a split; speakers in `single` have one utterance."""
  labels, frames = [], []
  rng = np.random.default_rng(7)
  for s in range(num_speakers):
    for _ in range(1 if s in single else per_speaker):
      labels.append(100 + s)
      frames.append(int(rng.integers(100, 700)))
  return np.array(labels), np.array(frames)


@pytest.mark.parametrize("num_speakers", [2, 3])
def test_make_trials_speakers_utterances_offsets_gains(num_speakers):
  n = num_speakers
  labels, frames = _split(num_speakers=9, single=(0, 1, 2))
  crop, r = 300, 5.0
  trials = V.make_trials(labels, frames, 200, seed=3, crop_frames=crop,
                         gain_db_range=r, num_speakers=n)
  assert len(trials) == 200
  rich = {s for s in set(labels.tolist()) if np.sum(labels == s) >= 2}
  for t in trials:
    spk = V.trial_speakers(t, labels)
    assert all(len(spk[role]) == n for role in V.ROLES)
    a, c = spk["anchor"][0], spk["positive"][1]
    assert spk["positive"][0] == a and spk["negative"][0] == c
    assert a in rich and c in rich
    # A != A' and C != C' as utterances.
    assert t.anchor[0].utterance != t.positive[0].utterance
    assert t.positive[1].utterance != t.negative[0].utterance
    # All speakers distinct apart from the A/A' and C/C' pairs: 3N - 2 of them.
    everyone = (spk["anchor"] + spk["positive"][1:] + spk["negative"][1:])
    assert len(set(everyone)) == len(everyone) == 3 * n - 2
    # Positive shares exactly A with the anchor; the negative shares nobody.
    assert set(spk["anchor"]) & set(spk["positive"]) == {a}
    assert not set(spk["anchor"]) & set(spk["negative"])
    for role in V.ROLES:
      for s in getattr(t, role):
        assert 0 <= s.offset <= max(frames[s.utterance] - crop, 0)
        assert abs(20 * np.log10(s.gain)) <= r / 2 + 1e-9


def test_make_trials_short_utterances_get_offset_zero():
  labels, frames = _split()
  trials = V.make_trials(labels, frames, 20, seed=0, crop_frames=10_000)
  assert all(s.offset == 0 for t in trials for r in V.ROLES for s in getattr(t, r))


def test_make_trials_deterministic_and_prefix():
  labels, frames = _split()
  long = V.make_trials(labels, frames, 300, seed=5, crop_frames=300)
  assert V.make_trials(labels, frames, 300, seed=5, crop_frames=300) == long
  assert V.make_trials(labels, frames, 17, seed=5, crop_frames=300) == long[:17]
  assert V.make_trials(labels, frames, 17, seed=6, crop_frames=300) != long[:17]


def test_make_trials_errors():
  labels, frames = _split(num_speakers=3)
  with pytest.raises(ValueError, match="4 distinct speakers"):
    V.make_trials(labels, frames, 5, seed=0, crop_frames=300)
  labels, frames = _split(num_speakers=5)
  with pytest.raises(ValueError, match="7 distinct speakers"):
    V.make_trials(labels, frames, 5, seed=0, crop_frames=300, num_speakers=3)
  # Enough speakers but only one with two utterances: no A and C.
  labels, frames = _split(num_speakers=6, single=(1, 2, 3, 4, 5))
  with pytest.raises(ValueError, match=">= 2 utterances"):
    V.make_trials(labels, frames, 5, seed=0, crop_frames=300)
  with pytest.raises(ValueError):
    V.make_trials(labels, frames, 5, seed=0, crop_frames=300, num_speakers=1)


def test_trial_arrays_shapes():
  labels, frames = _split()
  trials = V.make_trials(labels, frames, 4, seed=0, crop_frames=300)
  arrays = V.trial_arrays(trials)
  assert arrays["utterance"].shape == (4, 3, 2)
  assert arrays["utterance"][2, 1, 0] == trials[2].positive[0].utterance
  assert arrays["gain"][3, 2, 1] == pytest.approx(trials[3].negative[1].gain)


def test_save_load_round_trip(tmp_path):
  labels, frames = _split()
  trials = V.make_trials(labels, frames, 25, seed=2, crop_frames=300)
  ids = np.array([f"utt-{i}" for i in range(len(labels))])
  meta = dict(split="unseen", seed=2, crop_frames=300, utterances=ids)
  path = str(tmp_path / "sub" / "trials.json")
  V.save_trials(path, trials, meta)
  assert os.listdir(tmp_path / "sub") == ["trials.json"]  # no temp file left
  loaded, loaded_meta = V.load_trials(path, expect=dict(split="unseen", utterances=ids))
  assert loaded == trials
  assert loaded_meta["utterances"] == ids.tolist()
  with pytest.raises(ValueError, match="split"):
    V.load_trials(path, expect=dict(split="seen"))


# --- scores ---------------------------------------------------------------------------

def test_pair_scores_min_over_pairs():
  anchor = np.array([[[0.0, 0.0], [10.0, 0.0]]])   # slots at (0,0) and (10,0)
  other = np.array([[[10.0, 3.0], [0.0, 5.0]]])    # distances 5, ~10.4, 3, ~11.2
  assert V.pair_scores(anchor, other) == pytest.approx([-3.0])
  # Output slots are unordered: swapping them changes nothing.
  assert V.pair_scores(anchor[:, ::-1], other) == pytest.approx([-3.0])
  assert V.pair_scores(anchor, other[:, ::-1]) == pytest.approx([-3.0])
  # Cosine: best pair is (10,0) with (10,3).
  assert V.pair_scores(anchor + 1e-3, other, "cosine") == pytest.approx(
      [10 / np.hypot(10, 3)], rel=1e-3)
  with pytest.raises(ValueError):
    V.pair_scores(anchor, other, "manhattan")


def test_pair_scores_batch_matches_loop():
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal((6, 2, 8)), rng.standard_normal((6, 3, 8))
  want = [-min(np.linalg.norm(x - y) for x in a[t] for y in b[t]) for t in range(6)]
  assert V.pair_scores(a, b) == pytest.approx(want)


# --- summary and table ----------------------------------------------------------------

def test_summarise_and_markdown_table():
  rng = np.random.default_rng(0)
  target, nontarget = rng.normal(2, 1, 300), rng.normal(0, 1, 300)
  s = V.summarise(target, nontarget, target + 0.1, nontarget, num_resamples=50)
  rate, threshold = V.eer(target, nontarget)
  assert s["trials"] == 300 and s["eer"] == rate
  assert s["eer_ci95"][0] <= rate <= s["eer_ci95"][1]
  assert s["errors_at_eer"] == (np.sum(target < threshold) + np.sum(nontarget >= threshold))
  # At the EER the two error counts are about equal and about EER * trials each.
  assert abs(s["misses_at_eer"] - rate / 100 * 300) <= 2
  assert 0 <= s["min_dcf_0.01"] <= 1 and 0 <= s["min_dcf_0.05"] <= 1
  assert s["eer_cosine"] is not None
  plain = V.summarise(target, nontarget, ci=False)
  assert plain["eer_ci95"] is None and plain["eer_cosine"] is None

  table = V.markdown_table({"seen": s, "unseen": plain})
  lines = table.strip().splitlines()
  assert lines[0].startswith("| condition | trials | EER (%) | 95% CI |")
  assert len(lines) == 4
  assert f"{s['eer']:.2f}" in lines[2] and f"{s['min_dcf_0.01']:.4f}" in lines[2]
  assert f"[{s['eer_ci95'][0]:.2f}, {s['eer_ci95'][1]:.2f}]" in lines[2]
  assert f"{s['eer_cosine']:.2f}" in lines[2]
  assert lines[3].startswith("| unseen | 300 |") and lines[3].endswith("| - |")
