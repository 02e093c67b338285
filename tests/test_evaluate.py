"""The verification protocol end to end on a tiny trained model."""

import json
import os
import subprocess
import sys

import pytest

from mirnet_jax import evaluate
from mirnet_jax import trial_sets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def results(trained_workdir):
  return evaluate.evaluate(trained_workdir, num_trials=24)


def test_results_cover_every_condition(results, trained_workdir):
  for condition in ("seen", "unseen", "clean"):
    r = results[condition]
    assert r["trials"] == 24
    assert 0 <= r["eer"] <= 100 and 0 <= r["eer_cosine"] <= 100
    lo, hi = r["eer_ci95"]
    assert lo <= r["eer"] <= hi
    assert 0 <= r["min_dcf_0.01"] <= 1 and 0 <= r["min_dcf_0.05"] <= 1
  with open(os.path.join(trained_workdir, "eval", "results.json")) as f:
    assert json.load(f)["unseen"] == results["unseen"]
  for path in results["plots"]:
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert {os.path.basename(p) for p in results["plots"]} == {"det.png", "tsne.png",
                                                              "attention.png"}


def test_same_trials_from_a_file_give_the_same_scores(results, trained_workdir):
  eval_dir = os.path.join(trained_workdir, "eval")
  again = evaluate.evaluate(trained_workdir, num_trials=5, trials_from=eval_dir,
                            make_plots=False)
  for condition in ("seen", "unseen", "clean"):
    assert again[condition] == results[condition]  # 24 trials read back, not 5 made


def _eval_files(eval_dir) -> dict:
  """{name: bytes} of the files directly in `eval_dir` (results, trial lists, plots)."""
  out = {}
  for name in sorted(os.listdir(eval_dir)):
    if os.path.isfile(os.path.join(eval_dir, name)):
      with open(os.path.join(eval_dir, name), "rb") as f:
        out[name] = f.read()
  return out


def test_another_corpus_is_all_unseen_and_in_a_folder_of_its_own(results, trained_workdir,
                                                                 shard_dir, tmp_path):
  import shutil
  from mirnet_jax import errors
  eval_dir = os.path.join(trained_workdir, "eval")
  own = _eval_files(eval_dir)
  assert {"results.json", "trials_seen.json", "trials_unseen.json", "det.png"} <= set(own)
  other = os.path.join(os.path.dirname(shard_dir), "copy_of_shards")
  if not os.path.exists(other):
    shutil.copytree(shard_dir, other)
  r = evaluate.evaluate(trained_workdir, shard_dir=other, num_trials=10)
  assert "seen" not in r and r["unseen"]["trials"] == 10 and r["clean"]["trials"] == 10
  # Nothing the run's own evaluation wrote is replaced; the other corpus has its folder.
  assert _eval_files(eval_dir) == own
  other_dir = os.path.join(eval_dir, "copy_of_shards")
  with open(os.path.join(other_dir, "results.json")) as f:
    assert json.load(f)["unseen"] == r["unseen"]
  assert set(os.listdir(other_dir)) == {"results.json", "trials_unseen.json", "det.png"}
  assert {os.path.dirname(p) for p in r["plots"]} == {other_dir}

  # Other shards of the same name are refused before anything is written, and named apart.
  namesake = tmp_path / "copy_of_shards"
  shutil.copytree(shard_dir, namesake)
  written = _eval_files(other_dir)
  with pytest.raises(errors.UserError, match="--eval_name=NAME") as e:
    evaluate.evaluate(trained_workdir, shard_dir=str(namesake), num_trials=4)
  assert str(other) in str(e.value) and "\n" not in str(e.value)
  assert _eval_files(other_dir) == written
  named = evaluate.evaluate(trained_workdir, shard_dir=str(namesake), num_trials=4,
                            make_plots=False, eval_name="namesake")
  assert named["meta"]["shards"] == str(namesake)
  assert os.path.exists(os.path.join(eval_dir, "namesake", "results.json"))
  assert _eval_files(eval_dir) == own and _eval_files(other_dir) == written

  # --report_only --shards=OTHER reads that folder.
  shown = subprocess.run([sys.executable, "-m", "mirnet_jax.evaluate",
                          f"--workdir={trained_workdir}", f"--shards={other}",
                          "--report_only"], capture_output=True, text=True, timeout=600)
  assert shown.returncode == 0, shown.stderr
  assert f"results: {os.path.join(other_dir, 'results.json')}" in shown.stdout
  assert "| unseen | 10 |" in shown.stdout and "| seen |" not in shown.stdout


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", f"mirnet_jax.{module}", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def test_an_evaluation_only_corpus_from_the_command_line(results, trained_workdir, corpus,
                                                         tmp_path):
  # `prepare --train_subsets=` makes shards of unseen speakers only (no seen or validation
  # split): evaluate --shards must take them as another corpus, in a folder of its own.
  eval_dir = os.path.join(trained_workdir, "eval")
  own = _eval_files(eval_dir)
  assert "results.json" in own  # the run's own evaluation, which must stay as it is
  out = tmp_path / "eval_only"
  prepared = _run("prepare", f"--source={corpus['root']}", f"--out={out}",
                  "--train_subsets=", "--workers=1")
  assert prepared.returncode == 0, prepared.stderr
  assert "evaluation only" in prepared.stdout
  result = _run("evaluate", f"--workdir={trained_workdir}", f"--shards={out}", "--trials=8",
                "--plots=false")
  assert result.returncode == 0, result.stderr
  other_dir = os.path.join(eval_dir, "eval_only")
  with open(os.path.join(other_dir, "results.json")) as f:
    written = json.load(f)
  assert set(written) == {"unseen", "clean", "meta", "plots"}
  assert written["unseen"]["trials"] == written["clean"]["trials"] == 8
  assert written["meta"]["shards"] == str(out) and written["plots"] == []
  assert set(os.listdir(other_dir)) == {"results.json", "trials_unseen.json"}
  assert f"results: {os.path.join(other_dir, 'results.json')}" in result.stdout
  assert "| unseen | 8 |" in result.stdout and "| seen |" not in result.stdout
  assert _eval_files(eval_dir) == own


def test_trial_mixtures_are_the_overlapped_span(trained_workdir):
  # "min" convention: a mixture ends with its shortest crop (no zero tail), capped at the
  # segment; the clean condition keeps the first source alone over the same span.
  import numpy as np
  from mirnet_jax import extraction, inference, verification
  from mirnet_jax.data import pipeline, shards
  extractor = extraction.Extractor(inference.restore(trained_workdir))
  shard_dir = extractor.config.data.shards
  split = shards.open_split(shard_dir, "unseen", shards.load_manifest(shard_dir))
  segment = int(split.frames.max())  # longer than most utterances: spans are shorter
  trials = verification.make_trials(split.label, split.frames, 6, 0, segment)
  mixtures = trial_sets.trial_mixtures(split, trials, segment)
  clean = trial_sets.trial_mixtures(split, trials, segment, first_source_only=True)
  spans = []
  for k, trial in enumerate(trials):
    for p, part in enumerate(("anchor", "positive", "negative")):
      sources = getattr(trial, part)
      ends = [int(split.frames[s.utterance]) - s.offset for s in sources]
      span = min(ends)
      spans.append(span)
      mixture, alone = mixtures[3 * k + p], clean[3 * k + p]
      assert mixture.shape[0] == alone.shape[0] == min(span, segment)
      assert np.abs(mixture[-1].astype(np.float32)).max() > 0  # the shortest crop's last frame
      first = pipeline.crop_sources(split, [sources[0].utterance], [sources[0].offset],
                                    [sources[0].gain], span)[0]
      np.testing.assert_allclose(alone.astype(np.float32), first, rtol=1e-3, atol=1e-3)
  assert min(spans) < segment  # the test saw truncation
  assert trial_sets.overlapped_frames(split, trials[0].anchor, 5) == 5
  # Mixtures of different lengths embed together, each like it does alone.
  together = evaluate.embed_mixtures(extractor, mixtures[:3])
  for mixture, emb in zip(mixtures[:3], together):
    np.testing.assert_allclose(emb, extractor.embed(mixture), rtol=1e-4, atol=1e-5)


def test_a_crossdomain_split_adds_its_condition_and_clean_control(trained_workdir, tmp_path):
  """Shards with a `crossdomain` split (here of an evaluation-only corpus) are scored on
  it beside `unseen`, each with its clean control, and read back by --trials_from."""
  import soundfile as sf
  from mirnet_jax.data import shards
  from tests import conftest
  root = tmp_path / "corpus"
  for subset, speakers in (("test", (201, 202, 203, 204)),
                           ("crossdomain", (301, 302, 303, 304))):
    for s in speakers:
      chapter = root / subset / str(s) / "7"
      chapter.mkdir(parents=True)
      for u in range(3):
        sf.write(str(chapter / f"{s}-7-{u:04d}.flac"),
                 conftest.synth_voice(s, u, conftest.utterance_seconds(s, u)), 16000)
  out = str(tmp_path / "shards")
  shards.prepare(str(root), out, train_subsets=(), utterances_per_shard=8, workers=1)
  r = evaluate.evaluate(trained_workdir, shard_dir=out, num_trials=8, make_plots=False)
  assert set(r) == {"unseen", "crossdomain", "clean", "crossdomain_clean", "meta", "plots"}
  assert r["crossdomain"]["trials"] == r["crossdomain_clean"]["trials"] == 8
  assert r["crossdomain"] != r["crossdomain_clean"]
  eval_dir = os.path.join(trained_workdir, "eval", "shards")
  assert set(os.listdir(eval_dir)) == {"results.json", "trials_unseen.json",
                                       "trials_crossdomain.json"}
  # Its trials are of its own speakers (a split of their own labels, not unseen's).
  with open(os.path.join(eval_dir, "trials_crossdomain.json")) as f:
    assert json.load(f)["meta"]["split"] == "crossdomain"
  again = evaluate.evaluate(trained_workdir, shard_dir=out, num_trials=3, make_plots=False,
                            trials_from=eval_dir, eval_name="again")
  for condition in ("crossdomain", "crossdomain_clean"):
    assert again[condition] == r[condition]
  table = evaluate.report(r, os.path.join(eval_dir, "results.json"))
  assert "| crossdomain | 8 |" in table and "| crossdomain_clean | 8 |" in table
