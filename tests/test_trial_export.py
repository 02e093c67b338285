"""Trials for other toolkits: WAV + VoxCeleb-list export, and their scores read back."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mirnet_jax import checkpointing
from mirnet_jax import errors
from mirnet_jax import evaluate
from mirnet_jax import extraction
from mirnet_jax import features
from mirnet_jax import inference
from mirnet_jax import trial_export
from mirnet_jax import trial_sets
from mirnet_jax import verification
from mirnet_jax.data import shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIALS = 8
SEGMENT = trial_sets.segment_frames_of(6.0)  # the default --segment_seconds
CONDITIONS = ("seen", "unseen", "clean")


@pytest.fixture(scope="module")
def run(trained_workdir, tmp_path_factory):
  """A copy of the trained workdir, evaluated, then its trials exported."""
  root = tmp_path_factory.mktemp("trial_export")
  workdir = str(root / "workdir")
  shutil.copytree(trained_workdir, workdir, ignore=shutil.ignore_patterns("eval"))
  results = evaluate.evaluate(workdir, num_trials=TRIALS, make_plots=False)
  out = str(root / "export")
  manifest = trial_export.export_trials(workdir, out, num_trials=3)  # the evaluation's 8 win
  return dict(workdir=workdir, results=results, out=out, manifest=manifest, root=root)


def _split_and_trials(run, condition):
  shard_dir = checkpointing.load_run(run["workdir"]).config.data.shards
  name = "unseen" if condition == "clean" else condition
  split = shards.open_split(shard_dir, name, shards.load_manifest(shard_dir))
  trials, _ = verification.load_trials(os.path.join(run["out"], f"trials_{name}.json"))
  return split, trials


def test_export_writes_every_mixture_and_a_voxceleb_list(run):
  assert [c["name"] for c in run["manifest"]["conditions"]] == list(CONDITIONS)
  for condition in CONDITIONS:
    wavs = sorted(os.listdir(os.path.join(run["out"], condition)))
    assert len(wavs) == 3 * TRIALS
    rows = trial_export.read_voxceleb_trials(
        os.path.join(run["out"], f"trials_{condition}.txt"))
    assert len(rows) == 2 * TRIALS
    for i in range(TRIALS):  # trial i: its target line, then its non-target line
      anchor = f"{condition}/{i:05d}_anchor.wav"
      assert rows[2 * i] == (1, anchor, f"{condition}/{i:05d}_positive.wav")
      assert rows[2 * i + 1] == (0, anchor, f"{condition}/{i:05d}_negative.wav")
    assert {b for _, _, b in rows} | {a for _, a, _ in rows} == {f"{condition}/{w}"
                                                                 for w in wavs}
  # The exported trials are the evaluation's: --trials_from=EXPORT scores the same.
  for name in ("seen", "unseen"):
    exported, _ = verification.load_trials(os.path.join(run["out"], f"trials_{name}.json"))
    own, _ = verification.load_trials(os.path.join(run["workdir"], "eval",
                                                   f"trials_{name}.json"))
    assert exported == own


@pytest.mark.parametrize("condition,trial,part", [("unseen", 3, 1), ("clean", 5, 0),
                                                  ("seen", 0, 2)])
def test_a_wav_is_the_mixture_within_pcm16_rounding(run, condition, trial, part):
  split, trials = _split_and_trials(run, condition)
  mixture = trial_sets.trial_mixtures(split, trials[trial:trial + 1], SEGMENT,
                                      first_source_only=condition == "clean")[part]
  expected = features.istft(features.from_storage(mixture),
                            length=(len(mixture) - 1) * features.HOP_LENGTH)
  name = f"{trial:05d}_{verification.ROLES[part]}.wav"
  wave, rate = sf.read(os.path.join(run["out"], condition, name), dtype="float32")
  info = sf.info(os.path.join(run["out"], condition, name))
  assert rate == 16000 and info.subtype == "PCM_16" and info.channels == 1
  assert len(wave) == len(expected) and np.abs(expected).max() > 0.01
  np.testing.assert_allclose(wave, expected, rtol=0, atol=2 / 32768)


def _own_score_lines(run) -> list[str]:
  """The project's own Euclidean scores of the exported pairs, as a score file's lines."""
  extractor = extraction.Extractor(inference.restore(run["workdir"]))
  lines = []
  for condition in CONDITIONS:
    split, trials = _split_and_trials(run, condition)
    target, nontarget = evaluate.score_trials(extractor, split, trials, SEGMENT,
                                              first_source_only=condition == "clean"
                                              )["euclidean"]
    rows = trial_export.read_voxceleb_trials(
        os.path.join(run["out"], f"trials_{condition}.txt"))
    scores = np.stack([target, nontarget], axis=1).ravel()  # the lists' line order
    lines += [f"{label} {a} {b} {float(score)!r}" for (label, a, b), score in zip(rows, scores)]
  return lines


@pytest.fixture(scope="module")
def own_scores(run):
  lines = _own_score_lines(run)
  path = os.path.join(run["out"], "scores.txt")
  with open(path, "w") as f:
    f.write("\n".join(lines[::-1]) + "\n")  # in any order
  return dict(path=path, lines=lines)


def test_own_scores_read_back_give_the_evaluations_metrics(run, own_scores):
  got = trial_export.score_file(own_scores["path"])  # the export: the file's directory
  assert list(got) == list(CONDITIONS)
  for condition in CONDITIONS:
    want = run["results"][condition]
    for key in ("trials", "eer", "eer_ci95", "min_dcf_0.01", "min_dcf_0.05",
                "errors_at_eer"):
      assert got[condition][key] == pytest.approx(want[key], abs=1e-9), (condition, key)


def _run(*args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "mirnet_jax.evaluate", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def _one_line_error(result, *fragments):
  assert result.returncode == 1, result.stdout + result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), result.stderr
  for fragment in fragments:
    assert fragment in last, last


def _bad(lines):
  """Each bad score file: its lines, and what the error must say."""
  extra = lines[0].split()
  return {
      "missing_line": (lines[:5] + lines[6:], ["no score for 1 of the 16 lines", "line 6"]),
      "unknown_pair": (lines + [f"1 {extra[1]} seen/99999_positive.wav 0.5"],
                       [f"line {len(lines) + 1}", "not a trial pair"]),
      "repeated_pair": (lines + [lines[3]], [f"line {len(lines) + 1}", "scored twice",
                                             "first on line 4"]),
      "score_not_a_number": ([lines[0].rsplit(" ", 1)[0] + " abc"] + lines[1:],
                             ["line 1", "'abc' is not a finite number"]),
      "three_fields": ([" ".join(extra[1:])] + lines[1:], ["line 1", "expected"]),
      "wrong_label": (["0 " + lines[0].split(" ", 1)[1]] + lines[1:],
                      ["line 1", "label 0", "has 1"]),
  }


def test_scores_from_prints_the_table(run, own_scores):
  result = _run(f"--scores_from={own_scores['path']}", f"--export_trials={run['out']}")
  assert result.returncode == 0, result.stderr
  eer = run["results"]["unseen"]["eer"]
  assert f"| unseen | {TRIALS} | {eer:.2f} |" in result.stdout


def test_bad_score_files_give_one_line_errors(run, own_scores, tmp_path):
  # One process per bad file would cost seconds each: the library call is the CLI's path,
  # and one bad file goes through the command itself.
  for kind, (lines, fragments) in _bad(own_scores["lines"]).items():
    path = tmp_path / f"{kind}.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(errors.UserError) as e:
      trial_export.score_file(str(path), run["out"])
    message = str(e.value)
    assert "\n" not in message and str(path) in message, (kind, message)
    for fragment in fragments:
      assert fragment in message, (kind, message)
  _one_line_error(_run(f"--scores_from={tmp_path / 'wrong_label.txt'}",
                       f"--export_trials={run['out']}"), "line 1", "label 0")
  _one_line_error(_run(f"--scores_from={tmp_path / 'nope.txt'}",
                       f"--export_trials={run['out']}"), "cannot read", "nope.txt")
  _one_line_error(_run(f"--scores_from={tmp_path / 'wrong_label.txt'}"),
                  "no export.json", str(tmp_path))


def test_export_refuses_a_directory_of_other_files(run, tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(errors.UserError, match="not a trial export"):
    trial_export.export_trials(run["workdir"], str(tmp_path))
  assert os.listdir(tmp_path) == ["notes.txt"]
  other = run["root"] / "other_export"
  other.mkdir()
  (other / trial_export.EXPORT_MANIFEST).write_text('{"fingerprint": "of other trials"}')
  _one_line_error(_run(f"--workdir={run['workdir']}", f"--export_trials={other}"),
                  "an export of other trials", str(other))
  assert os.listdir(other) == [trial_export.EXPORT_MANIFEST]


def test_exporting_the_same_trials_again_rewrites_the_same_bytes(run):
  path = os.path.join(run["out"], "unseen", "00002_negative.wav")
  with open(path, "rb") as f:
    before = f.read()
  os.remove(os.path.join(run["out"], "clean", "00007_anchor.wav"))  # an export cut short
  assert trial_export.export_trials(run["workdir"], run["out"]) == run["manifest"]
  with open(path, "rb") as f:
    assert f.read() == before
  assert os.path.exists(os.path.join(run["out"], "clean", "00007_anchor.wav"))
  assert not [n for _, _, names in os.walk(run["out"]) for n in names if ".tmp-" in n]
