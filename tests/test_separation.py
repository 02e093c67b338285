"""Separation: mask network, uPIT loss, metric wrappers, the three systems end to end."""

import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

import mirnet_jax
from mirnet_jax import errors
from mirnet_jax import inference
from mirnet_jax import losses
from mirnet_jax import separation_metrics as metrics
from mirnet_jax import separator as separator_lib
from mirnet_jax import train
from mirnet_jax.configs import separation as separation_configs
from mirnet_jax.configs import speaker as speaker_configs
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards
from mirnet_jax.data import wsj0_2mix
from mirnet_jax.models import separation
from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- model

def _mixture(b=2, t=20, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, t, 257, 2)).astype(jnp.float16)


def test_mask_network_shapes_range_and_conditioning():
  net = separation.MaskNet(num_masks=1, conv_channels=4, conv_out_channels=2,
                           dilations=(1, 2), lstm_dim=8, fc_dim=8)
  x, e = _mixture(), jax.random.normal(jax.random.key(1), (2, 6))
  variables = net.init(jax.random.key(0), x, e)
  masks = net.apply(variables, x, e)
  assert masks.shape == (2, 1, 20, 257)
  assert bool(jnp.all((masks > 0) & (masks < 1)))
  # The embedding is used: another speaker's embedding gives another mask.
  other = net.apply(variables, x, -e)
  assert float(jnp.max(jnp.abs(other - masks))) > 1e-4
  # Bidirectional: the first frame's mask depends on the last frame's input.
  late = x.at[:, -1].set(0)
  assert float(jnp.max(jnp.abs(net.apply(variables, late, e)[:, :, 0] - masks[:, :, 0]))) > 0


def test_upit_network_outputs_one_mask_per_speaker_for_any_length():
  net = separation.MaskNet(num_masks=2, conv_channels=4, conv_out_channels=1,
                           dilations=(1,), lstm_dim=8, fc_dim=16)
  variables = net.init(jax.random.key(0), _mixture(t=20))
  for t in (20, 37):
    assert net.apply(variables, _mixture(b=3, t=t)).shape == (3, 2, t, 257)


# ---------------------------------------------------------------------------- losses

def test_compressed_mse_by_hand():
  est = jnp.full((1, 1, 2, 3), 8.0)
  ref = jnp.ones((1, 2, 2, 3))
  mse = losses.pairwise_compressed_mse(est, ref)
  expected = (8.0 ** losses.COMPRESSION - 1.0) ** 2
  np.testing.assert_allclose(mse, [[[expected, expected]]], rtol=1e-5)


@pytest.mark.parametrize("n", [2, 3])
def test_upit_loss_is_permutation_invariant_and_the_brute_force_minimum(n):
  rng = np.random.default_rng(n)
  est = jnp.asarray(rng.uniform(0, 2, (4, n, 5, 7)), jnp.float32)
  ref = jnp.asarray(rng.uniform(0, 2, (4, n, 5, 7)), jnp.float32)
  result = losses.permutation_min_mse(est, ref)
  for perm in itertools.permutations(range(n)):
    shuffled = losses.permutation_min_mse(est, ref[:, list(perm)])
    np.testing.assert_allclose(shuffled["loss"], result["loss"], rtol=1e-6)
  brute = [min(np.mean([np.mean((np.asarray(est[b, i]) ** 0.3 - np.asarray(ref[b, p[i]]) ** 0.3)
                                ** 2) for i in range(n)])
               for p in itertools.permutations(range(n))) for b in range(4)]
  np.testing.assert_allclose(result["loss"], brute, rtol=1e-5)
  # The reported assignment is the one that attains the minimum.
  for b in range(4):
    p = np.asarray(result["permutation"][b])
    chosen = np.mean([np.mean((np.asarray(est[b, i]) ** 0.3 - np.asarray(ref[b, p[i]]) ** 0.3)
                              ** 2) for i in range(n)])
    np.testing.assert_allclose(chosen, brute[b], rtol=1e-5)


def test_upit_gradient_flows_through_the_chosen_assignment_only():
  ref = jnp.stack([jnp.full((3, 4), 1.0), jnp.full((3, 4), 4.0)])[None]
  est = ref[:, ::-1] * 1.1  # the swapped assignment is the near-perfect one
  grad = jax.grad(lambda e: losses.permutation_min_mse(e, ref)["loss"].sum())(est)
  swapped_only = jax.grad(lambda e: jnp.mean(jnp.stack([
      jnp.mean((e[0, 0] ** 0.3 - ref[0, 1] ** 0.3) ** 2),
      jnp.mean((e[0, 1] ** 0.3 - ref[0, 0] ** 0.3) ** 2)])))(est)
  np.testing.assert_allclose(grad, swapped_only, rtol=1e-5)


# ---------------------------------------------------------------------------- metrics

def _speechlike(seed, seconds=2.0):
  return conftest.synth_voice(300 + seed, seed, seconds).astype(np.float64)


def test_si_sdr_of_a_known_orthogonal_error():
  ref = _speechlike(1)
  noise = np.random.default_rng(0).standard_normal(ref.size)
  noise -= np.mean(noise)
  r0 = ref - ref.mean()
  noise -= np.dot(noise, r0) / np.dot(r0, r0) * r0  # orthogonal to the reference
  noise *= np.linalg.norm(r0) / np.linalg.norm(noise) / 10 ** (12 / 20)  # 12 dB below
  assert metrics.si_sdr(3.0 * ref + 3.0 * noise, ref) == pytest.approx(12.0, abs=1e-6)


def test_bss_eval_sdr_of_known_mixtures():
  refs = np.stack([_speechlike(1), _speechlike(2)])
  noise = np.random.default_rng(1).standard_normal(refs.shape)
  noise *= (np.linalg.norm(refs, axis=1) / np.linalg.norm(noise, axis=1))[:, None] * 0.1
  values = metrics.sdr(refs + noise, refs)  # white noise 20 dB below each reference
  np.testing.assert_allclose(values, [20.0, 20.0], atol=0.5)
  # A half-and-half mixture of two equal-power sources scores about 0 dB.
  equal = refs / np.linalg.norm(refs, axis=1, keepdims=True)
  mix = equal.sum(axis=0)
  np.testing.assert_allclose(metrics.sdr(np.stack([mix, mix]), equal), [0, 0], atol=0.5)


def test_pesq_wrapper_scores_identity_at_the_top_and_noise_lower():
  ref = conftest.synth_voice(310, 1, 3.0)
  assert metrics.pesq_wb(ref, ref) == pytest.approx(4.64, abs=0.01)
  noisy = ref + 0.05 * np.random.default_rng(0).standard_normal(ref.size).astype(np.float32)
  assert metrics.pesq_wb(noisy, ref) < 3.0
  assert np.isnan(metrics.pesq_wb(ref, np.zeros_like(ref)))  # no speech in the reference


def test_score_matches_estimates_to_references_and_subtracts_the_mixture():
  refs = np.stack([_speechlike(1, 3.0), _speechlike(2, 3.0)])
  mix = refs.sum(axis=0)
  base = metrics.baseline(mix, refs)
  estimates = refs[::-1] + 0.001 * np.random.default_rng(2).standard_normal(refs.shape)
  out = metrics.score(refs, estimates, base)  # swapped order: matched back
  assert np.all(out["sdr"] > 30) and np.all(out["si_sdr"] > 30)
  np.testing.assert_allclose(out["sdri"], out["sdr"] - base["sdr"])
  np.testing.assert_allclose(out["pesqi"], out["pesq"] - base["pesq"])
  assert np.all(out["pesqi"] > 1)


class _SwappingSeparator:
  """Stands in for separator.Separator: returns the references in swapped order (the
  right voices, each on the other speaker's output)."""

  def __init__(self, enrolled, references):
    self.task = type("Task", (), dict(enrolled=enrolled))()
    self.num_speakers = 2
    self.references = references

  def conditioning(self, waveform, enroll):
    return None

  def separate(self, waveform, embeddings=None):
    noise = 0.001 * np.random.default_rng(3).standard_normal(self.references.shape)
    return self.references[::-1] + noise, None


def test_an_enrolled_system_that_swaps_its_outputs_is_scored_wrong_and_pit_ones_are_not():
  from mirnet_jax import evaluate_separation
  refs = np.stack([_speechlike(1, 2.0), _speechlike(2, 2.0)])
  items = [dict(mixture=refs.sum(axis=0), references=refs, enroll=[refs[0], refs[1]],
                speakers=[0, 1])]
  base = [metrics.baseline(items[0]["mixture"], refs)]
  scored = {}
  for enrolled in (True, False):
    separator = _SwappingSeparator(enrolled, refs)
    estimates = evaluate_separation._separate_all(separator, items)
    scored[enrolled], = evaluate_separation._score_all(
        lambda f, args: [f(*a) for a in args], items, estimates, base,
        evaluate_separation.assignment_of(separator))
  enrolled, pit = scored[True], scored[False]
  assert np.all(pit["sdri"] > 20) and np.all(pit["si_sdr"] > 30)
  assert np.all(enrolled["sdri"] < 0) and np.all(enrolled["si_sdr"] < 0)
  swapped = metrics.score(refs, refs[::-1], base[0], assignment=(1, 0))  # told the order
  assert np.all(swapped["si_sdr"] > 30)


def test_controls_condition_on_other_speakers_reproducibly():
  from mirnet_jax import evaluate_separation
  wave = lambda speaker, n: np.full(n, float(speaker), np.float32)
  items = [dict(speakers=s, enroll=[wave(x, 100 + x) for x in s])
           for s in ([0, 1], [1, 2], [2, 3], [0, 3])]
  controls = evaluate_separation.control_conditioning(items, seed=0)
  for item, control in zip(items, controls):
    assert len(set(control["speakers"])) == 2
    assert not set(control["speakers"]) & set(item["speakers"])
    # Each enrolment is one of that speaker's own; the mixture is their sum, cut short.
    assert [e[0] for e in control["enroll"]] == control["speakers"]
    length = min(100 + s for s in control["speakers"])
    np.testing.assert_array_equal(control["mixture"], np.full(length, sum(control["speakers"])))
  again = evaluate_separation.control_conditioning(items, seed=0)
  assert [c["speakers"] for c in again] == [c["speakers"] for c in controls]
  assert evaluate_separation.control_conditioning(items[:1], seed=0) == [None]


def test_bootstrap_interval_covers_the_mean_narrows_with_data_and_skips_nans():
  rng = np.random.default_rng(0)
  small, large = rng.normal(2.0, 1.0, 30), rng.normal(2.0, 1.0, 3000)
  lo_s, hi_s = metrics.bootstrap_ci(small)
  lo_l, hi_l = metrics.bootstrap_ci(large)
  assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
  assert hi_l - lo_l < (hi_s - lo_s) / 5
  assert metrics.bootstrap_ci(np.append(small, np.nan)) == (lo_s, hi_s)
  assert np.isnan(metrics.bootstrap_ci([np.nan])[0])


def test_the_control_comparison_says_whether_conditioning_matters():
  from mirnet_jax import evaluate_separation
  rng = np.random.default_rng(0)
  system = dict(sdri_per_mixture=list(rng.normal(3.0, 1.0, 300)))
  better = evaluate_separation._paired_difference(
      system, dict(sdri_per_mixture=list(np.subtract(system["sdri_per_mixture"], 1.0)
                                         + rng.normal(0, 0.5, 300))), seed=0)
  assert better["conditioning_matters"] and 0.8 < better["sdri_difference"] < 1.2
  same = evaluate_separation._paired_difference(
      system, dict(sdri_per_mixture=list(np.add(system["sdri_per_mixture"],
                                                rng.normal(0, 0.5, 300)))), seed=0)
  assert not same["conditioning_matters"]
  assert same["sdri_difference_ci95"][0] < 0 < same["sdri_difference_ci95"][1]


# ---------------------------------------------------------------------------- data

def test_references_are_other_utterances_of_the_same_speakers(shard_dir):
  split = shards.open_split(shard_dir, "train")
  plain = pipeline.MixtureMaker(split, pipeline.MixtureSpec(2, 100, return_sources=True),
                                seed=3, epoch_length=50)
  spec = pipeline.MixtureSpec(2, 100, return_sources=True, return_references=True)
  maker = pipeline.MixtureMaker(split, spec, seed=3, epoch_length=50)
  for i in range(20):
    choice, example = maker.draw(i), maker(i)
    assert np.array_equal(example["mixture"], plain(i)["mixture"])  # mixtures unchanged
    refs = choice["reference_utterances"]
    assert np.array_equal(split.label[refs], choice["labels"])
    assert np.all(refs != choice["utterances"])
    assert example["references"].shape == (2, 100, 257, 2)


def test_wsj0_2mix_layout_reader(tmp_path):
  root = tmp_path / "wsj0-2mix"
  names = ["01aa0101_1.2_02bb0202_-1.2.wav", "01aa0103_0.5_02bb0202_-0.5.wav"]
  for subset in ("tr", "tt"):
    for kind in ("mix", "s1", "s2"):
      os.makedirs(root / subset / kind)
      for k, name in enumerate(names):
        sf.write(root / subset / kind / name, conftest.synth_voice(k, len(kind), 1.0, 8000),
                 8000)
  found = wsj0_2mix.mixtures(str(root / "tt"))
  assert [m.speakers for m in found] == [("01a", "02b"), ("01a", "02b")]
  assert found[0].utterances == ("01aa0101", "02bb0202")
  corpus = wsj0_2mix.Wsj0Mix2Dir(str(root))
  assert corpus.subsets() == ["tr", "tt"]
  refs = corpus.refs("tr")  # 02bb0202 is in both mixtures: listed once
  assert sorted(r.utterance for r in refs) == ["01aa0101", "01aa0103", "02bb0202"]
  utterance = corpus.load(refs[0])
  assert utterance.speaker == "01a" and len(utterance.waveform) == 16000  # 8k -> 16k
  with pytest.raises(Exception, match="no mix/ directory"):
    wsj0_2mix.mixtures(str(root))


# ---------------------------------------------------------------------------- systems

@pytest.fixture(scope="module")
def systems(shard_dir, trained_workdir, tmp_path_factory):
  """The speaker model and the three separators, tiny, trained a few steps each."""
  root = tmp_path_factory.mktemp("separators")
  workdirs = {}
  for name, conditioner in (("speaker", None), ("upit", None),
                            ("vf_mirnet", trained_workdir), ("vf_enrolled", "speaker")):
    if name == "speaker":
      config = speaker_configs.get_config("tiny")
    else:
      config = separation_configs.get_config(f"{name},tiny")
      config.condition.workdir = workdirs.get(conditioner, conditioner) or ""
    config.data.shards = shard_dir
    workdirs[name] = str(root / name)
    train.train_and_evaluate(config, workdirs[name])
  return workdirs


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_every_system_trains_and_validates(systems):
  assert "val/accuracy" in _metrics(systems["speaker"])[-1]
  for name in ("upit", "vf_mirnet", "vf_enrolled"):
    last = [r for r in _metrics(systems[name]) if "val/snri" in r][-1]
    assert np.isfinite(last["val/snri"]) and np.isfinite(last["val/loss"]), name


def test_a_separator_without_its_conditioner_is_a_clear_error(shard_dir, tmp_path):
  from mirnet_jax import checkpointing
  config = separation_configs.get_config("vf_mirnet,tiny")
  config.data.shards = shard_dir
  config.condition.workdir = str(tmp_path / "nothing")
  with pytest.raises(checkpointing.CheckpointError, match="train the mirnet model first"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_long_input_separates_in_chunks_with_consistent_slots(systems):
  separator = separator_lib.Separator(inference.restore(systems["upit"]), chunk_seconds=1.0,
                                      overlap_seconds=0.25)
  a, b = conftest.synth_voice(201, 0, 3.3), conftest.synth_voice(203, 1, 3.3)
  out, embeddings = separator.separate(a + b)
  assert out.shape == (2, a.size) and embeddings is None and np.all(np.isfinite(out))
  with pytest.raises(separator_lib.SeparationError, match="silent"):
    separator.separate(np.zeros(16000, np.float32))


def test_separate_cli_end_to_end(systems, tmp_path):
  mix = conftest.synth_voice(201, 0, 2.5) + conftest.synth_voice(202, 1, 2.5)
  stereo_44k = tmp_path / "mix.wav"
  import librosa
  sf.write(stereo_44k, np.stack([librosa.resample(mix, orig_sr=16000, target_sr=44100)] * 2,
                                axis=1), 44100)
  out_dir = tmp_path / "out"
  run = lambda *args: subprocess.run(
      [sys.executable, "-m", "mirnet_jax.separate", *args], cwd=REPO, capture_output=True,
      text=True, timeout=300)
  result = run(f"--workdir={systems['vf_mirnet']}", f"--out={out_dir}", str(stereo_44k))
  assert result.returncode == 0, result.stderr[-2000:]
  assert sorted(os.listdir(out_dir)) == ["mix_embeddings.npy", "mix_s1.wav", "mix_s2.wav"]
  for k in (1, 2):
    audio, rate = sf.read(out_dir / f"mix_s{k}.wav")
    assert rate == 16000 and abs(len(audio) - mix.size) <= 16
  assert np.load(out_dir / "mix_embeddings.npy").shape == (2, 16)
  # The enrolled baseline needs its enrolment files: a one-line error, nothing written.
  result = run(f"--workdir={systems['vf_enrolled']}", f"--out={tmp_path / 'none'}",
               str(stereo_44k))
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "--enroll" in result.stderr.strip().splitlines()[-1]
  assert not os.path.exists(tmp_path / "none")
  # With enrolment files it separates.
  enroll = [tmp_path / "a.wav", tmp_path / "b.wav"]
  for k, path in enumerate(enroll):
    sf.write(path, conftest.synth_voice(201 + k, 3, 2.0), 16000)
  result = run(f"--workdir={systems['vf_enrolled']}", f"--out={out_dir}",
               f"--enroll={enroll[0]},{enroll[1]}", str(stereo_44k))
  assert result.returncode == 0, result.stderr[-2000:]


def test_evaluate_separation_reports_every_system(systems, shard_dir):
  from mirnet_jax import evaluate_separation
  root = os.path.dirname(systems["upit"])
  found = evaluate_separation.find_systems(root)
  assert [os.path.basename(p) for p in found] == ["vf_enrolled", "vf_mirnet", "upit"]
  items = evaluate_separation.shard_mixtures(shard_dir, 4, 1.0, seed=0, gain_db_range=5.0)
  results = evaluate_separation.evaluate(found, items, chunk_seconds=1.0)
  assert list(results) == ["vf_enrolled", "vf_enrolled_control", "vf_mirnet",
                           "vf_mirnet_control", "upit"]
  assert results["vf_enrolled"]["scoring"] == "enrolled order"
  assert results["vf_mirnet"]["scoring"] == results["upit"]["scoring"] == "best permutation"
  for name, r in results.items():
    assert r["mixtures"] == 4 and r["skipped"] == 0, name
    for key in ("sdri", "si_sdri", "pesqi"):
      assert np.isfinite(r[key]), (name, key)
      low, high = r[f"{key}_ci95"]
      assert low <= r[key] <= high, (name, key)
  # A control conditions on other speakers: it separates the same mixtures differently.
  for name in ("vf_enrolled", "vf_mirnet"):
    control = results[f"{name}_control"]
    assert control["control"] and control["vs_system"]["mixtures"] == control["mixtures"]
    assert control["sdri_per_mixture"] != results[name]["sdri_per_mixture"]
  table = evaluate_separation.markdown_table(results, "test")
  assert table.count("\n| ") == 6  # header + 5 rows
  assert table.count("over its control") == 2


def _trees_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                 strict=True))


@pytest.mark.slow
def test_a_separator_keeps_its_conditioner_when_that_model_trains_on(shard_dir,
                                                                     trained_workdir,
                                                                     tmp_path):
  import shutil
  from mirnet_jax.configs import tiny
  mirnet_dir = str(tmp_path / "mirnet")
  shutil.copytree(trained_workdir, mirnet_dir)
  config = separation_configs.get_config("vf_mirnet,tiny")
  config.data.shards, config.condition.workdir = shard_dir, mirnet_dir
  config.num_train_steps = 3
  separator_dir = str(tmp_path / "vf_mirnet")
  train.train_and_evaluate(config, separator_dir)
  pinned = inference.restore(mirnet_dir)
  before = inference.restore(separator_dir)
  assert _trees_equal(before.frozen, pinned.variables)
  saved = json.loads(open(os.path.join(separator_dir, "config.json")).read())["conditioner"]
  assert (saved["step"], saved["config"]["task"]) == (pinned.step, "mirnet")
  mix = conftest.synth_voice(201, 0, 2.0) + conftest.synth_voice(202, 1, 2.0)
  separated = mirnet_jax.load(separator_dir).separate(mix, 16000)

  # The MIRNet trains on (its best checkpoint and its parameters change); then the
  # separator resumes in its workdir, conditioned on what it was trained with.
  more = tiny.get_config()
  more.data.shards, more.num_train_steps = shard_dir, 12
  train.train_and_evaluate(more, mirnet_dir)
  assert not _trees_equal(inference.restore(mirnet_dir).variables, pinned.variables)
  config.num_train_steps = 6
  train.train_and_evaluate(config, separator_dir)
  after = inference.restore(separator_dir)
  assert after.step == 6 and _trees_equal(after.frozen, pinned.variables)
  assert np.array_equal(mirnet_jax.load(separator_dir, step=3).separate(mix, 16000),
                        separated)


def test_the_python_api_separates_at_any_rate_and_exports(systems, tmp_path):
  import librosa
  mix = conftest.synth_voice(201, 0, 2.0) + conftest.synth_voice(202, 1, 2.0)
  stereo_8k = np.stack([librosa.resample(mix, orig_sr=16000, target_sr=8000)] * 2, axis=1)
  for name in ("upit", "vf_mirnet"):
    model = mirnet_jax.load(systems[name])
    out = model.separate(stereo_8k, 8000)
    assert out.shape == (2, mix.size) and np.all(np.isfinite(out)), name
    exported = mirnet_jax.export(systems[name], str(tmp_path / name))
    again = mirnet_jax.load(exported)
    assert again.step == model.step
    np.testing.assert_array_equal(again.separate(stereo_8k, 8000), out)
  # vf_mirnet's embeddings are those of its pinned MIRNet; uPIT has none.
  assert mirnet_jax.load(systems["vf_mirnet"]).embed(mix, 16000).shape == (2, 16)
  with pytest.raises(errors.UserError, match="no speaker embeddings"):
    mirnet_jax.load(systems["upit"]).embed(mix, 16000)
  enrolled = mirnet_jax.load(systems["vf_enrolled"])
  enroll = [conftest.synth_voice(201 + k, 3, 2.0) for k in range(2)]
  assert enrolled.separate(mix, 16000, enroll=enroll).shape == (2, mix.size)
