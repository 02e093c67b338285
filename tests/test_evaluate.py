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
  mixtures = evaluate._trial_mixtures(split, trials, segment)
  clean = evaluate._trial_mixtures(split, trials, segment, first_source_only=True)
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
  assert evaluate.overlapped_frames(split, trials[0].anchor, 5) == 5
  # Mixtures of different lengths embed together, each like it does alone.
  together = evaluate.embed_mixtures(extractor, mixtures[:3])
  for mixture, emb in zip(mixtures[:3], together):
    np.testing.assert_allclose(emb, extractor.embed(mixture), rtol=1e-4, atol=1e-5)
