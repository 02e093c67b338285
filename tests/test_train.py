"""Training end to end: tiny runs, resume, sharded equals single-device, entry point."""

import json
import os
import subprocess
import sys
import types

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from mirnet_jax import tasks
from mirnet_jax import train
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


def test_non_finite_loss_stops_the_run_naming_the_step(shard_dir, tmp_path, monkeypatch):
  real_step = train.train_step

  def poisoned(state, batch, frozen, **kwargs):
    new_state, metrics = real_step(state, batch, frozen, **kwargs)
    bad = jnp.where(state.step >= 3, jnp.nan, metrics["train/loss"])  # from step 4 on
    return new_state, dict(metrics, **{"train/loss": bad})

  monkeypatch.setattr(train, "train_step", poisoned)
  with pytest.raises(train.NonFiniteError, match="between steps 3 and 4; last good "
                     "checkpoint: step 3"):
    train.train_and_evaluate(_config(shard_dir, 6), str(tmp_path))


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


def test_a_crash_resumes_to_bit_identical_parameters_and_metrics(shard_dir, tmp_path,
                                                                  monkeypatch):
  import jax
  from mirnet_jax import checkpointing
  config = _config(shard_dir, 8)
  config.eval_every, config.log_every = 4, 2

  def final_params(workdir):
    manager = checkpointing.make_manager(workdir, 2, read_only=True)
    task = tasks.Task(config, len(conftest.TRAIN_SPEAKERS))
    tx, _ = train.make_optimizer(config)
    mesh = jax.make_mesh((1,), ("data",), devices=jax.local_devices()[:1])
    state = checkpointing.restore(manager, train.abstract_state(task, tx, mesh))
    return jax.device_get(state)

  train.train_and_evaluate(config, str(tmp_path / "whole"))

  real_to_global, calls = train.to_global, []

  def crash_at_step_7(batch, sharding, keys):
    calls.append(1)
    if len(calls) == 7:
      raise KeyboardInterrupt("simulated crash")
    return real_to_global(batch, sharding, keys)

  monkeypatch.setattr(train, "to_global", crash_at_step_7)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, str(tmp_path / "crashed"))
  monkeypatch.setattr(train, "to_global", real_to_global)
  train.train_and_evaluate(config, str(tmp_path / "crashed"))  # resumes from step 4

  whole, resumed = final_params(str(tmp_path / "whole")), final_params(str(tmp_path / "crashed"))
  assert int(whole.step) == int(resumed.step) == 8
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  drop_rates = lambda rows: [{k: v for k, v in r.items() if "_per_s" not in k}
                             for r in rows if r["step"] > 4]
  resumed_rows = drop_rates(_metrics(str(tmp_path / "crashed")))
  assert drop_rates(_metrics(str(tmp_path / "whole"))) == resumed_rows[-3:]


def test_a_checkpoint_of_another_model_is_refused_naming_the_fields(shard_dir, tmp_path):
  from mirnet_jax import checkpointing
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_config(shard_dir, 3), workdir)
  config = _config(shard_dir, 6)
  config.model.embedding_dim = 24
  config.model.resnet_widths = (4, 8, 8, 16)
  with pytest.raises(checkpointing.CheckpointError, match="another model") as error:
    train.train_and_evaluate(config, workdir)
  assert "model.resnet_widths: [4, 8, 8, 8] (checkpoint) vs [4, 8, 8, 16]" in str(error.value)
  assert "model.embedding_dim: 16 (checkpoint) vs 24 (config)" in str(error.value)
  assert "num_classes" not in str(error.value)
