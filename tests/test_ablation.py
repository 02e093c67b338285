"""The ablation driver: its arms are valid configs that differ in what they say, each
stage runs once, and the table reads the evaluations that exist."""

import json
import os
import subprocess
import sys

import pytest

from mirnet_jax import ablation
from mirnet_jax import errors
from mirnet_jax import tasks
from mirnet_jax.configs import demo


def _config_of(arm: ablation.Arm):
  c = demo.get_config()
  for key, value in arm.overrides.items():
    *path, field = key.split(".")
    block = c
    for name in path:
      block = block[name]
    assert field in block, key  # an override of a field that exists
    block[field] = value
  return c


def test_each_arm_has_its_pieces_on_and_no_other():
  for name, arm in ablation.ARMS.items():
    config = _config_of(arm).to_dict()
    task = tasks.create(_config_of(arm), num_classes=10)  # a valid config
    for piece, (on, off) in ablation.PIECES.items():
      expected = on if piece in arm.on else off
      assert {k: _get(config, k) for k in expected} == expected, (name, piece)
    assert task.train_spec.augment.masks == ("masks" in arm.on)
    assert ("wide" in arm.corpus) == ("wide_corpus" in arm.on)
    assert arm.shards.endswith("_speed") == ("speed" in arm.on)
  assert ablation.ARMS["none"].shards == "shards_plain" and not ablation.ARMS["none"].on
  assert ablation.ARMS["all"].shards == "shards_wide_speed"
  assert ablation.ARMS["only_masks"].on == ("masks",)
  assert "masks" not in ablation.ARMS["no_masks"].on
  assert len(ablation.ARMS["no_masks"].on) == len(ablation.ALL_PIECES) - 1


def test_pieces_joined_by_plus_make_an_arm_with_those_on():
  both = ablation.arm("masks+wide_corpus")
  assert both.on == ("wide_corpus", "masks")  # in ALL_PIECES' order
  assert both.corpus == "corpus_wide" and both.shards == "shards_wide"
  assert _config_of(both).data.augment.time_masks == 2
  assert _config_of(both).model.attention.value == "v1"
  assert ablation.arm("only_masks") is ablation.ARMS["only_masks"]
  for bad in ("masks", "masks+bogus", "masks+masks", "only_masks+speed"):
    with pytest.raises(errors.UsageError, match="unknown arm"):
      ablation.arm(bad)


def _get(tree, dotted):
  for name in dotted.split("."):
    tree = tree[name]
  return tree


def test_commands_run_each_shared_stage_once_in_order(tmp_path):
  steps = ablation.commands(str(tmp_path), ["all", "no_masks", "none"], trials=100)
  modules = [c[2] for _, c in steps]
  assert modules.count("mirnet_jax.demo_corpus") == 2  # wide and plain
  assert modules.count("mirnet_jax.prepare") == 2  # wide+speed, plain
  assert modules.count("mirnet_jax.main") == 3 and modules.count("mirnet_jax.evaluate") == 3
  # A run's shards are prepared before it trains, and it trains before it is evaluated.
  order = [" ".join(c) for _, c in steps]
  first = lambda text: next(i for i, c in enumerate(order) if text in c)
  assert first("shards_plain --") < first("--workdir=" + str(tmp_path / "none"))
  assert first("main --config=configs/demo.py --workdir=" + str(tmp_path / "none")) < first(
      "evaluate --workdir=" + str(tmp_path / "none"))
  assert all(c[0] == sys.executable for _, c in steps)


def _results(root, arm, unseen, crossdomain, step=5400):
  row = lambda eer: dict(trials=100, eer=eer, eer_ci95=[eer - 1, eer + 1])
  path = os.path.join(root, arm, "eval", "trials100", "results.json")
  os.makedirs(os.path.dirname(path))
  with open(path, "w") as f:
    json.dump(dict(unseen=row(unseen), crossdomain=row(crossdomain), clean=row(4.0),
                   meta=dict(step=step)), f)
  return path


def test_table_lists_the_evaluated_arms_with_the_ratio(tmp_path):
  _results(str(tmp_path), "all", 10.0, 15.0)
  _results(str(tmp_path), "none", 12.0, 36.0)
  text = ablation.table(str(tmp_path), list(ablation.ARMS), trials=100)
  rows = text.splitlines()[2:]
  assert len(rows) == 2 and rows[0].startswith("| all ") and rows[1].startswith("| none ")
  assert "10.00 [9.00, 11.00]" in rows[0] and rows[0].endswith("| 1.50 |")
  assert rows[1].endswith("| 3.00 |")
  assert "| - |" in rows[0]  # no crossdomain_clean in these results


def test_an_evaluation_older_than_the_checkpoints_runs_again(tmp_path):
  path = _results(str(tmp_path), "all", 10.0, 15.0)
  assert ablation._complete(path)
  os.makedirs(tmp_path / "all" / "checkpoints")
  os.utime(path, (1, 1))
  assert not ablation._complete(path)
  assert not ablation._complete(str(tmp_path / "missing" / "results.json"))


def test_unknown_arms_and_a_missing_root_are_usage_errors():
  for flags, message in ((["--root=/tmp/x", "--arms=bogus"], "unknown arm"),
                         ([], "--root is required")):
    proc = subprocess.run([sys.executable, "-m", "mirnet_jax.ablation", *flags],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr
