"""The benchmark command in a reduced mode (tiny model, short pipeline window), and the FLOP
count it reports."""

import functools
import json
import os
import subprocess
import sys

import jax
from jax.sharding import PartitionSpec as P
import pytest

from mirnet_jax import benchmark
from mirnet_jax import tasks
from mirnet_jax import train
from mirnet_jax import train_state
from mirnet_jax import xla_cpu
from mirnet_jax.configs import tiny
from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_elsewhere(cwd, *args: str) -> subprocess.CompletedProcess:
  """The command run from `cwd`, outside the clone: configs come from the package."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  return subprocess.run([sys.executable, "-m", "mirnet_jax.benchmark", *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=600)


def test_benchmark_prints_the_promised_json(tmp_path):
  result = _run_elsewhere(tmp_path, "--config=configs/tiny.py", "--batch_size=4", "--steps=1",
                          "--pipeline_seconds=1", "--num_classes=10",
                          "--pipeline_speakers=40", "--end_to_end_steps=1",
                          f"--profile_dir={tmp_path / 'profile'}")
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  for key in ("device", "train_examples_per_s", "train_flops_fraction_of_matmul_peak",
              "pipeline_mixtures_per_s_per_core", "extract_mixtures_per_s"):
    assert key in report, key
  assert report["train_examples_per_s"] > 0 and report["extract_mixtures_per_s"] > 0
  assert report["pipeline_mixtures_per_s_per_core"] > 0
  assert report["cpu"] and report["jax_version"] == jax.__version__
  # The command ran with the project's XLA:CPU convolution path (xla_cpu.py).
  assert report["xla_flags"] == f"{xla_cpu.FUSION_FLAG}={xla_cpu.PATHS['xla']}"
  # Chunked reads: at most ceil(crop / chunk) + 1 chunks a source, far below the whole
  # LibriSpeech-length utterances (12.3 s on average against the tiny config's 1 s crop).
  crop = report["pipeline_crop_bytes_per_mixture"]
  chunks = -(-report["crop_frames"] // 100) + 1
  assert crop < report["pipeline_bytes_per_mixture"] <= chunks * 100 / report["crop_frames"] * crop
  assert report["pipeline_whole_utterance_bytes_per_mixture"] > 4 * report[
      "pipeline_bytes_per_mixture"]
  cores = os.cpu_count()
  assert sorted(map(int, report["pipeline_mixtures_per_s_by_workers"])) == sorted(
      {*range(1, min(cores, 4) + 1), cores})
  assert report["pipeline_mixtures_per_s_per_core_workers"] > 0
  assert 0 < report["end_to_end_fraction_of_step"] < 2
  assert "end to end" in result.stdout and "bytes read" in result.stdout
  assert 0 < report["train_flops_fraction_of_matmul_peak"] < 2
  assert "matmul peak" in result.stdout  # the human-readable table
  # The profile: a trace on disk and the ops that took the step's time.
  assert list((tmp_path / "profile").rglob("*.xplane.pb"))
  ops = report["profile_top_ops"]
  assert ops and all(op["ms_per_step"] > 0 for op in ops)
  assert 0 < sum(op["share"] for op in ops) <= 1 + 1e-9
  assert ops[0]["op"] in result.stdout


def test_the_convolution_paths_are_compared_each_in_its_own_process(
    tmp_path, monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)  # conftest's choice: each run makes its own
  result = _run_elsewhere(tmp_path, "--config=configs/tiny.py", "--batch_size=2",
                          "--steps=1", "--num_classes=10", "--compare_cpu_conv_paths",
                          "--rounds=1")
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  paths = report["cpu_conv_paths"]
  assert list(paths) == list(xla_cpu.PATHS)
  assert paths["ynnpack"]["xla_flags"] == ""
  assert paths["xla"]["xla_flags"] == f"{xla_cpu.FUSION_FLAG}=dot"
  assert all(r["train_examples_per_s"] > 0 and r["train_step_cpu_s"] > 0
             for r in paths.values())
  assert report["cpu_conv_path_fastest"] in paths
  assert report["train_batch_size"] == 2 and report["rounds"] == 1
  assert "fastest:" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["stray"], "error: unexpected arguments: stray"),
    (["--steps=abc"], "error: "),
    (["--config.optim.learning_rate=abc"], "error: "),
])
def test_usage_errors_are_one_line_with_the_packaged_default_config(tmp_path, args, message):
  # Run from outside the clone: the default config (configs/default.py) is found in the
  # package before any of these is reported.
  result = _run_elsewhere(tmp_path, *args)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_step_flops_match_the_compiled_step_and_scale_with_the_batch():
  config = tiny.get_config()
  task = tasks.create(config, len(conftest.TRAIN_SPEAKERS))
  tx, schedule = train_state.make_optimizer(config)
  mesh = train_state.make_mesh(jax.local_devices()[:1])
  batch = task.abstract_batch(8, jax.sharding.NamedSharding(mesh, P("data")))
  step = functools.partial(train.train_step, task=task, tx=tx, schedule=schedule)
  compiled_step = jax.jit(step).lower(train_state.abstract_state(task, tx, mesh), batch).compile()
  cost = compiled_step.cost_analysis()
  compiled = (cost[0] if isinstance(cost, list) else cost)["flops"]
  eight = benchmark.step_flops(task, tx, schedule, 8)
  assert eight == pytest.approx(compiled, rel=0.1)
  assert eight == pytest.approx(2 * benchmark.step_flops(task, tx, schedule, 4), rel=0.05)
  if jax.default_backend() == "cpu":  # a compiled CPU step is asked directly
    assert benchmark.step_flops(task, tx, schedule, 8, compiled=compiled_step) == compiled
