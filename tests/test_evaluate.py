"""The verification protocol end to end on a tiny trained model."""

import json
import os

import pytest

from mirnet_jax import evaluate


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


def test_another_corpus_is_all_unseen(trained_workdir, shard_dir):
  import shutil
  other = os.path.join(os.path.dirname(shard_dir), "copy_of_shards")
  if not os.path.exists(other):
    shutil.copytree(shard_dir, other)
  r = evaluate.evaluate(trained_workdir, shard_dir=other, num_trials=10, make_plots=False)
  assert "seen" not in r and r["unseen"]["trials"] == 10 and r["clean"]["trials"] == 10
