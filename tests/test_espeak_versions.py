"""The espeak-ng version behind a demo corpus travels with its data: prepare copies it
from the corpus's manifest into the shards' (older shards load without it, version
unknown), a preparation is not completed from a corpus another version made, and
evaluate warns when it scores a model on shards of another version than it was trained
on. Versions are faked in the manifests: no espeak-ng is needed."""

import json
import logging
import os
import shutil

import pytest

from mirnet_jax import checkpointing
from mirnet_jax import evaluate
from mirnet_jax import prepare
from mirnet_jax.configs import tiny
from mirnet_jax.data import demo_corpus
from mirnet_jax.data import shards

VOICES = dict(accents=["en", "en-us"], variants={"F": ["f1"], "M": ["m1"]},
              klatt_variants={"F": [], "M": ["klatt"]})


def _demo_corpus(corpus, root, version):
  """The synthetic corpus at `root` as a demo corpus made by espeak-ng `version`."""
  shutil.copytree(corpus["root"], root)
  _set_corpus_version(root, version)
  return root


def _set_corpus_version(root, version):
  with open(os.path.join(root, demo_corpus.MANIFEST), "w") as f:
    json.dump(dict(generator=demo_corpus.GENERATOR, seed=0,
                   recipe=demo_corpus.recipe(2, 1, True, 1),
                   espeak_ng=dict(VOICES, version=version)), f)


def _shards_of_version(shard_dir, out, version):
  """A copy of `shard_dir` whose manifest records `version` (None: no record)."""
  shutil.copytree(shard_dir, out)
  path = os.path.join(out, shards.MANIFEST)
  with open(path) as f:
    manifest = json.load(f)
  manifest.pop("espeak_ng", None)
  if version:
    manifest["espeak_ng"] = dict(VOICES, version=version)
  with open(path, "w") as f:
    json.dump(manifest, f)
  return out


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records
          if r.levelno == logging.WARNING and "espeak-ng" in r.getMessage()]


def test_prepare_copies_the_version_and_voice_lists_into_the_shards(corpus, tmp_path):
  source = _demo_corpus(corpus, str(tmp_path / "corpus"), "1.51")
  out = str(tmp_path / "shards")
  made = shards.prepare(source, out, utterances_per_shard=64, workers=1)
  manifest = shards.load_manifest(out)
  assert manifest["espeak_ng"] == dict(VOICES, version="1.51") == made["espeak_ng"]
  assert shards.espeak_version(manifest) == "1.51"
  assert "demo corpus made by espeak-ng 1.51" in prepare.summary(manifest)


def test_shards_of_other_corpora_and_older_shards_load_with_the_version_unknown(
    shard_dir, tmp_path):
  manifest = shards.load_manifest(shard_dir)  # not a demo corpus: nothing recorded
  assert "espeak_ng" not in manifest and shards.espeak_version(manifest) is None
  assert "espeak-ng" not in prepare.summary(manifest)
  older = _shards_of_version(shard_dir, str(tmp_path / "older"), None)
  assert shards.espeak_version(shards.load_manifest(older)) is None
  utterances = len(shards.open_split(shard_dir, "train"))
  assert len(shards.open_split(older, "train")) == utterances


def test_a_preparation_is_not_completed_from_a_corpus_of_another_version(corpus,
                                                                        tmp_path):
  source = _demo_corpus(corpus, str(tmp_path / "corpus"), "1.51")
  out = str(tmp_path / "shards")
  shards.prepare(source, out, utterances_per_shard=64, workers=1)
  _set_corpus_version(source, "1.52")  # made again in its place by another espeak-ng
  with pytest.raises(shards.ShardError, match="the espeak-ng that made the corpus"):
    shards.prepare(source, out, utterances_per_shard=64, workers=1)
  # A plan written before versions were recorded: completed, and the version recorded.
  plan_path = os.path.join(out, shards.PLAN)
  with open(plan_path) as f:
    plan = json.load(f)
  del plan["espeak_ng"]
  with open(plan_path, "w") as f:
    json.dump(plan, f)
  assert shards.espeak_version(shards.prepare(source, out, utterances_per_shard=64,
                                              workers=1)) == "1.52"


def _workdir(path, shard_dir, exported=None):
  """A run's config.json (all evaluate reads of what the model was trained on)."""
  config = tiny.get_config()
  config.data.shards = shard_dir
  checkpointing.save_config(path, checkpointing.Run(config, 5, exported=exported))
  return path


@pytest.mark.parametrize("trained, evaluated, warns", [
    ("1.51", "1.52", True), ("1.51", "1.51", False), ("1.51", "1.51+1.52", True),
    (None, "1.52", False), ("1.51", None, False)])
def test_evaluate_warns_when_the_shards_come_from_another_version(
    shard_dir, tmp_path, caplog, trained, evaluated, warns):
  train = _shards_of_version(shard_dir, str(tmp_path / "train"), trained)
  other = shards.load_manifest(_shards_of_version(shard_dir, str(tmp_path / "other"),
                                                  evaluated))
  workdir = _workdir(str(tmp_path / "workdir"), train)
  assert evaluate.trained_espeak_version(workdir) == trained
  with caplog.at_level(logging.WARNING):
    evaluate.warn_if_other_espeak(workdir, other)
  assert len(_warnings(caplog)) == warns
  if warns:
    assert (f"a demo corpus made by espeak-ng {evaluated}, the model was trained on one "
            f"made by espeak-ng {trained}") in _warnings(caplog)[0]


def test_an_export_compares_with_the_version_it_recorded(shard_dir, tmp_path, caplog):
  gone = str(tmp_path / "deleted_shards")  # an export's training shards may be gone
  workdir = _workdir(str(tmp_path / "export"), gone,
                     exported=dict(trained_on=dict(espeak_ng=dict(version="1.50"))))
  assert evaluate.trained_espeak_version(workdir) == "1.50"
  assert evaluate.trained_espeak_version(_workdir(str(tmp_path / "w"), gone)) is None
  other = shards.load_manifest(_shards_of_version(shard_dir, str(tmp_path / "o"), "1.51"))
  with caplog.at_level(logging.WARNING):
    evaluate.warn_if_other_espeak(workdir, other)
  assert len(_warnings(caplog)) == 1


def test_an_evaluation_records_the_version_and_warns(trained_workdir, shard_dir,
                                                     tmp_path, caplog):
  workdir = str(tmp_path / "workdir")
  shutil.copytree(trained_workdir, workdir, ignore=shutil.ignore_patterns("eval"))
  train = _shards_of_version(shard_dir, str(tmp_path / "train"), "1.51")
  run = checkpointing.load_run(workdir)
  run.config.data.shards = train
  checkpointing.save_config(workdir, run)
  other = _shards_of_version(shard_dir, str(tmp_path / "other"), "1.52")
  with caplog.at_level(logging.WARNING):
    results = evaluate.evaluate(workdir, other, num_trials=4, make_plots=False)
  assert results["meta"]["espeak_ng"] == "1.52"
  assert len(_warnings(caplog)) == 1
