"""Training end to end: tiny runs, resume, sharded equals single-device, entry point."""

import json
import os
import shutil
import subprocess
import sys
import types

import chex
import jax
import numpy as np
import pytest

from mirnet_jax.configs import tiny
from mirnet_jax import checkpointing
from mirnet_jax import errors
from mirnet_jax import inference
from mirnet_jax import nonfinite
from mirnet_jax import tasks
from mirnet_jax import train
from mirnet_jax import train_state
from mirnet_jax.data import pipeline
from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _config(shard_dir, steps):
  config = tiny.get_config()
  config.data.shards = shard_dir
  config.num_train_steps = steps
  return config


def _restore(workdir, config, step=None):
  """The TrainState saved in `workdir` at `step` (default: the latest), on the host."""
  manager = checkpointing.make_manager(workdir, 2, read_only=True)
  task = tasks.create(config, len(conftest.TRAIN_SPEAKERS))
  tx, _ = train_state.make_optimizer(config)
  mesh = train_state.make_mesh(jax.local_devices()[:1])
  abstract = train_state.abstract_state(task, tx, mesh)
  return jax.device_get(checkpointing.restore(manager, abstract, step=step))


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def _poison(steps):
  """A train_and_evaluate `edit_batch` that makes the training batches of `steps` all-NaN
  mixtures (validation batches never pass through it)."""
  def edit_batch(step, batch):
    if step in steps:
      batch = dict(batch, mixture=np.full_like(batch["mixture"], np.nan))
    return batch
  return edit_batch


def test_the_mesh_spans_every_device_and_leaves_sharding_to_xla():
  # Auto axes (the pjit model): with JAX's default Explicit axes, JAX 0.11 refuses the
  # permutation-min loss's gradient (an ambiguous scatter) on any device count.
  mesh = train_state.make_mesh()
  assert mesh.axis_names == ("data",)
  assert mesh.devices.size == jax.device_count()
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,)
  assert train_state.make_mesh(jax.local_devices()[:1]).devices.size == 1


def test_tiny_run_trains_checkpoints_and_resumes(shard_dir, tmp_path, monkeypatch):
  # Each step function is traced once per run: no recompiles inside the loop.
  monkeypatch.setattr(train, "train_step", chex.assert_max_traces(train.train_step, n=1))
  monkeypatch.setattr(train, "eval_step", chex.assert_max_traces(train.eval_step, n=1))
  workdir = str(tmp_path / "run")
  last = train.train_and_evaluate(_config(shard_dir, 6), workdir)
  for key in ("train/loss", "train/accuracy", "train/grad_norm", "train/learning_rate",
              "train/steps_per_s", "train/examples_per_s", "val/loss", "val/accuracy"):
    assert np.isfinite(last[key]), key
  rows = _metrics(workdir)
  assert [r["step"] for r in rows if "train/loss" in r] == [2, 4, 6]
  assert [r["step"] for r in rows if "val/loss" in r] == [3, 6]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  assert os.listdir(os.path.join(workdir, "tensorboard"))

  chex.clear_trace_counter()
  train.train_and_evaluate(_config(shard_dir, 8), workdir)  # resumes at step 6
  rows = _metrics(workdir)
  assert [r["step"] for r in rows if "train/loss" in r] == [2, 4, 6, 8]
  # keep_checkpoints=2 keeps the latest two (plus the best by val accuracy).
  kept = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))
  assert kept[-2:] == [6, 8] and len(kept) <= 3


def test_training_stops_early_once_validation_stops_improving_and_stays_stopped(
    shard_dir, tmp_path, monkeypatch):
  # Scripted validation accuracies: step 6 only ties step 4's, which is no improvement.
  scripted = iter([0.1, 0.3, 0.3, 0.2] + [0.5] * 10)
  monkeypatch.setattr(train, "evaluate", lambda *args: {"val/loss": 1.0,
                                                        "val/accuracy": next(scripted)})
  config = _config(shard_dir, 20)
  config.eval_every, config.log_every, config.early_stopping_evals = 2, 2, 2
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  assert [r["step"] for r in _metrics(workdir) if "val/loss" in r] == [2, 4, 6, 8]
  # A rerun reads the history from metrics.jsonl: still stopped, nothing trained.
  assert train.train_and_evaluate(config, workdir) == {}
  assert [r["step"] for r in _metrics(workdir) if "val/loss" in r] == [2, 4, 6, 8]
  config.early_stopping_evals = 0  # off: the same run trains on to the end
  train.train_and_evaluate(config, workdir)
  assert [r["step"] for r in _metrics(workdir) if "val/loss" in r][-1] == 20


def test_stalled_counts_only_strict_improvements():
  assert not train._stalled([0.1, 0.2, 0.3], 2)
  assert train._stalled([0.3, 0.3, 0.2], 2)
  assert not train._stalled([0.3, 0.2, 0.4], 2)
  assert not train._stalled([0.1, 0.1], 2)  # too few validations to judge
  assert not train._stalled([0.5, 0.1, 0.1], 0)


def test_eight_devices_give_the_same_losses_as_one(shard_dir, tmp_path):
  losses = {}
  for devices in (1, 8):
    workdir = str(tmp_path / f"d{devices}")
    subprocess.run([sys.executable, "-m", "tests.train_on_devices", str(devices), shard_dir,
                    workdir, "4"], cwd=REPO, check=True, capture_output=True)
    losses[devices] = [(r["step"], r.get("train/loss"), r.get("val/loss"))
                       for r in _metrics(workdir)]
  assert [s for s, *_ in losses[1]] == [s for s, *_ in losses[8]] == [1, 2, 3, 4, 4]
  for (_, t1, v1), (_, t8, v8) in zip(losses[1], losses[8]):
    # Same global batches; only the order of floating-point reductions differs.
    np.testing.assert_allclose(t8 if t1 is not None else v8, t1 if t1 is not None else v1,
                               rtol=1e-4)


def _main(*flags):
  return subprocess.run([sys.executable, "-m", "mirnet_jax.main", *flags], cwd=REPO,
                        capture_output=True, text=True)


def test_main_without_data_fails_with_one_line(tmp_path):
  result = _main("--config=configs/tpu.py", f"--workdir={tmp_path}",
                 f"--config.data.shards={tmp_path / 'none'}")
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith("error: no manifest.json")


def test_main_rejects_unknown_config_keys(tmp_path):
  result = _main("--config=configs/tiny.py", f"--workdir={tmp_path}",
                 "--config.optim.learnin_rate=0.1")
  assert result.returncode != 0 and "learnin_rate" in result.stderr


def test_batch_not_divisible_by_devices_is_a_config_error(shard_dir):
  config = _config(shard_dir, 1)
  config.batch_size = 12
  eight_devices = types.SimpleNamespace(devices=np.empty(8))
  with pytest.raises(train.ConfigError, match="multiple of the 8 devices"):
    train._check(config, eight_devices)
  config.batch_size = 16
  train._check(config, eight_devices)


def test_non_finite_loss_stops_the_run_naming_the_step(shard_dir, tmp_path):
  with pytest.raises(nonfinite.NonFiniteError, match="between steps 3 and 4; last good "
                     "checkpoint: step 3"):
    train.train_and_evaluate(_config(shard_dir, 6), str(tmp_path),
                             edit_batch=_poison(range(4, 7)))


def test_skip_mode_skips_a_non_finite_step_leaving_the_state_as_it_was(shard_dir, tmp_path):
  config = _config(shard_dir, 5)
  config.optim.nonfinite = "skip"
  config.log_every, config.eval_every, config.keep_checkpoints = 1, 1, 3
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir, edit_batch=_poison({4}))

  rows = {(r["step"], "val/loss" in r): r for r in _metrics(workdir)}
  assert [rows[s, False]["train/skipped_steps"] for s in range(1, 6)] == [0, 0, 0, 1, 0]
  assert "train/loss" not in rows[4, False]  # a skipped step's NaN loss is not averaged in
  assert all(np.isfinite(rows[s, False]["train/loss"]) for s in (1, 2, 3, 5))
  # Step 4 changed nothing but the step counter: parameters, optimizer state (its count,
  # hence the learning-rate schedule, included) and BatchNorm statistics are step 3's.
  before, skipped, after = (_restore(workdir, config, s) for s in (3, 4, 5))
  assert (int(before.step), int(skipped.step), int(after.step)) == (3, 4, 5)
  _assert_trees_equal(skipped.replace(step=3), before)
  assert rows[4, True] == dict(rows[3, True], step=4)  # the same validation numbers
  # Step 5 trains again, at the learning rate step 4 would have had.
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(after.params))
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after.params),
                                                      jax.tree.leaves(skipped.params)))
  _, schedule = train_state.make_optimizer(config)
  assert rows[5, False]["train/learning_rate"] == pytest.approx(float(schedule(3)))


def test_skip_mode_stops_after_too_many_consecutive_skips(shard_dir, tmp_path):
  config = _config(shard_dir, 8)
  config.optim.nonfinite, config.optim.max_consecutive_skips = "skip", 2
  # Log every 2, checkpoint every 3.
  with pytest.raises(nonfinite.NonFiniteError, match=r"3 consecutive steps \(2 to 4\) had a "
                     r"non-finite loss or gradient and were skipped .*last good checkpoint: "
                     r"step 3"):
    train.train_and_evaluate(config, str(tmp_path), edit_batch=_poison(range(2, 9)))
  # Checkpoint 3 (steps 2 and 3 skipped) holds step 1's finite parameters.
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(_restore(str(tmp_path), config)))


def test_sigterm_saves_the_current_step_and_the_same_command_resumes(shard_dir, tmp_path):
  import signal
  import time
  workdir = tmp_path / "run"
  flags = ["--config=configs/tiny.py", f"--workdir={workdir}",
           f"--config.data.shards={shard_dir}", "--config.num_train_steps=100000",
           "--config.eval_every=100000", "--config.log_every=1"]
  proc = subprocess.Popen([sys.executable, "-m", "mirnet_jax.main", *flags], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while not (workdir / "metrics.jsonl").exists() or len(_metrics(str(workdir))) < 3:
    assert time.time() < deadline and proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 0, stderr[-2000:]
  saved = sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
  assert len(saved) == 1 and saved[0] >= 3 and "preempted: saved step" in stderr
  # The same command resumes from that step (here stopped by a smaller step budget).
  result = _main(*flags[:3], f"--config.num_train_steps={saved[0] + 2}",
                 "--config.eval_every=100000", "--config.log_every=1")
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"resumed from step {saved[0]}" in result.stderr
  steps = [r["step"] for r in _metrics(str(workdir)) if "train/loss" in r]
  assert steps[-2:] == [saved[0] + 1, saved[0] + 2]


def test_a_crash_resumes_to_bit_identical_parameters_and_metrics_with_other_workers(
    shard_dir, tmp_path):
  config = _config(shard_dir, 8)
  config.eval_every, config.log_every = 4, 2
  # Every augmentation on: its draws, keyed on the example index, resume as the rest.
  config.data.augment.update(dict(extra_gain_db_range=5.0, spectral_shaping_db=12.0,
                                  time_masks=2, freq_masks=2))
  config.model.attention.value = "rotated"
  train.train_and_evaluate(config, str(tmp_path / "whole"))  # in-process reading

  def crash_at_step_5(step, batch):
    if step == 5:
      raise KeyboardInterrupt("simulated crash")
    return batch

  # Crashed with a grain worker process, resumed without (grain's own iterator state
  # could not cross that change).
  with_worker = config.copy_and_resolve_references()
  with_worker.data.workers = 1
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(with_worker, str(tmp_path / "crashed"),
                             edit_batch=crash_at_step_5)
  # A checkpoint of an earlier version holds grain's iterator state ("data") instead of
  # the position: it resumes at step x batch size.
  shutil.copytree(tmp_path / "crashed", tmp_path / "earlier")
  os.rename(tmp_path / "earlier/checkpoints/4/position", tmp_path / "earlier/checkpoints/4/data")
  train.train_and_evaluate(config, str(tmp_path / "crashed"))  # resumes from step 4
  train.train_and_evaluate(config, str(tmp_path / "earlier"))

  whole = _restore(str(tmp_path / "whole"), config)
  resumed = _restore(str(tmp_path / "crashed"), config)
  assert int(whole.step) == int(resumed.step) == 8
  _assert_trees_equal(whole, resumed)
  _assert_trees_equal(whole, _restore(str(tmp_path / "earlier"), config))
  drop_rates = lambda rows: [{k: v for k, v in r.items() if "_per_s" not in k}
                             for r in rows if r["step"] > 4]
  resumed_rows = drop_rates(_metrics(str(tmp_path / "crashed")))
  assert drop_rates(_metrics(str(tmp_path / "whole"))) == resumed_rows[-3:]


def test_a_sigkilled_run_rerun_reaches_bit_identical_parameters_and_metrics(shard_dir,
                                                                           tmp_path):
  import signal
  import time

  def flags(workdir):  # 24 steps, logged every 2, checkpointed every 4
    return ["--config=configs/tiny.py", f"--workdir={workdir}",
            f"--config.data.shards={shard_dir}", "--config.num_train_steps=24",
            "--config.log_every=2", "--config.eval_every=4"]

  def start(workdir):
    log = open(tmp_path / f"{workdir.name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "mirnet_jax.main", *flags(workdir)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

  def logged_steps(workdir):  # tolerates a row being written
    try:
      with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line)["step"] for line in f if line.endswith("\n")]
    except FileNotFoundError:
      return []

  whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
  whole, killed = start(whole_dir), start(killed_dir)  # side by side, to save time
  # SIGKILL once the run is past its first checkpoint and has logged step 10 (checkpoint 8
  # may be in mid-write), well before step 24.
  deadline = time.time() + 300
  while not (max(logged_steps(killed_dir), default=0) >= 10
             and any(n.isdigit() for n in os.listdir(killed_dir / "checkpoints"))):
    assert time.time() < deadline and killed.poll() is None, (tmp_path / "killed.log").read_text()
    time.sleep(0.05)
  killed.send_signal(signal.SIGKILL)
  assert killed.wait(60) == -signal.SIGKILL  # killed, not finished

  result = _main(*flags(killed_dir))  # the same command
  assert result.returncode == 0, result.stderr[-2000:]
  resumed_from = int(result.stderr.split("resumed from step ")[1].split()[0])
  assert 4 <= resumed_from < 24
  assert whole.wait(300) == 0, (tmp_path / "whole.log").read_text()[-2000:]

  config = _config(shard_dir, 24)
  whole_state, killed_state = _restore(str(whole_dir), config), _restore(str(killed_dir), config)
  assert int(whole_state.step) == int(killed_state.step) == 24
  _assert_trees_equal(whole_state, killed_state)
  # metrics.jsonl too: the rows logged between checkpoint `resumed_from` and the kill were
  # dropped on resume and logged again, once.
  drop_rates = lambda rows: [{k: v for k, v in r.items() if "_per_s" not in k} for r in rows]
  assert drop_rates(_metrics(str(killed_dir))) == drop_rates(_metrics(str(whole_dir)))
  # The same checkpoints kept (the latest 2 and the best by validation accuracy, whose
  # metrics the resumed run read back), and the best is what inference restores.
  assert sorted(os.listdir(killed_dir / "checkpoints")) == sorted(
      os.listdir(whole_dir / "checkpoints"))
  best = max((r["val/accuracy"], r["step"]) for r in _metrics(str(whole_dir))
             if "val/accuracy" in r)[1]  # (a tie goes to the later step)
  assert inference.restore(str(killed_dir)).step == best


def test_resuming_drops_the_rows_logged_after_the_checkpoint_and_a_torn_one(tmp_path):
  from mirnet_jax import metric_writers
  with open(tmp_path / "metrics.jsonl", "w") as f:  # killed in mid-write after step 5
    f.write("".join(json.dumps({"step": s, "a": 1.0}) + "\n" for s in range(1, 6)))
    f.write('{"step": 6, "a": 1.')
  writer = metric_writers.MetricWriter(str(tmp_path), resume_step=3)
  writer.write(4, {"a": 2.0})
  writer.close()
  assert [(r["step"], r["a"]) for r in _metrics(str(tmp_path))] == [(1, 1), (2, 1), (3, 1),
                                                                     (4, 2)]


def test_a_checkpoint_cut_off_in_mid_write_is_never_restored(shard_dir, trained_workdir,
                                                            tmp_path):
  import shutil
  workdir = str(tmp_path / "run")
  shutil.copytree(trained_workdir, workdir)  # 6 steps, checkpoints 3 and 6
  checkpoints = tmp_path / "run" / "checkpoints"
  # What orbax 0.12.8 leaves of step 6 if the process dies before committing it: the step
  # written under a temporary name that the commit would have renamed to `6`. Its files
  # are all there here, the hardest case: orbax goes by the name alone.
  os.rename(checkpoints / "6", checkpoints / "6.orbax-checkpoint-tmp")
  assert inference.restore(workdir).step == 3  # embed's and evaluate's restore
  with pytest.raises(checkpointing.CheckpointError, match="no checkpoint at step 6"):
    inference.restore(workdir, step=6)

  # Resuming (to step 5, which never saves step 6 again) starts from step 3, logs steps 4
  # and 5 once, and deletes the leftover.
  last = train.train_and_evaluate(_config(shard_dir, 5), workdir)
  assert np.isfinite(last["train/loss"])
  rows = _metrics(workdir)
  assert [r["step"] for r in rows if "train/loss" in r] == [2, 4, 5]
  assert [r["step"] for r in rows if "val/loss" in r] == [3, 5]
  assert sorted(os.listdir(checkpoints)) == ["3", "5"]


def test_a_config_value_of_the_wrong_type_fails_naming_the_key_before_any_work(tmp_path):
  workdir = tmp_path / "run"
  for override, key in (("--config.optim.learning_rate=fast", "optim.learning_rate"),
                        ("--config.batch_size=1.5", "batch_size"),
                        ("--config.model.resnet.widths=abc", "model.resnet.widths")):
    result = _main("--config=configs/tiny.py", f"--workdir={workdir}", override)
    assert result.returncode != 0, override
    assert f"--config.{key}=" in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and not last_line.startswith(" "), last_line
    assert not workdir.exists()


def test_a_checkpoint_of_another_model_is_refused_naming_the_fields(shard_dir, tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_config(shard_dir, 3), workdir)
  config = _config(shard_dir, 6)
  config.model.embedding_dim = 24
  config.model.resnet.widths = (4, 8, 8, 16)
  with pytest.raises(checkpointing.CheckpointError, match="another model") as error:
    train.train_and_evaluate(config, workdir)
  assert "model.resnet.widths: [4, 8, 8, 8] (checkpoint) vs [4, 8, 8, 16]" in str(error.value)
  assert "model.embedding_dim: 16 (checkpoint) vs 24 (config)" in str(error.value)
  assert "num_classes" not in str(error.value)


@pytest.mark.parametrize("override, message", [
    ("--config.task=nonsense", "unknown task 'nonsense'"),
    ("--config.model.dtype=float99", "config.model.dtype"),
])
def test_bad_task_or_dtype_is_a_one_line_error(shard_dir, tmp_path, override, message):
  result = _main("--config=configs/tiny.py", f"--workdir={tmp_path / 'run'}",
                 f"--config.data.shards={shard_dir}", override)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert message in result.stderr.strip().splitlines()[-1]


def test_training_spec_takes_the_augment_block_and_validation_does_not():
  from mirnet_jax.configs import speaker as speaker_config
  from mirnet_jax.configs import separation as separation_config
  c = tiny.get_config()
  c.data.augment.update(dict(extra_gain_db_range=5.0, spectral_shaping_db=10.0,
                             time_masks=1))
  task = tasks.create(c, num_classes=6)
  assert task.train_spec.gain_db_range == 10.0 and task.spec.gain_db_range == 5.0
  assert task.train_spec.augment.spectral_shaping_db == 10.0
  assert task.spec.augment == pipeline.Augmentation()
  assert task.train_input_keys == ("mixture", "labels", "time_keep", "freq_keep")
  assert task.input_keys == ("mixture", "labels")
  assert set(task.abstract_batch(4)) == set(task.train_input_keys)
  # A config without the block (a run from before it) trains as it did.
  del c.data["augment"]
  assert tasks.create(c, num_classes=6).train_spec == tasks.create(c, 6).spec
  # Masks on a separator, or a negative value, are config errors.
  sep = separation_config.get_config("upit,tiny")
  sep.data.augment.time_masks = 2
  with pytest.raises(errors.UserError, match="masks"):
    tasks.create(sep, num_classes=6)
  spk = speaker_config.get_config("tiny")
  spk.data.augment.extra_gain_db_range = -1.0
  with pytest.raises(errors.UserError, match="extra_gain_db_range"):
    tasks.create(spk, num_classes=6)
