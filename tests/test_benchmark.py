"""The benchmark command in a reduced mode (tiny model, short pipeline window)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_prints_the_promised_json(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "mirnet_jax.benchmark", "--config=configs/tiny.py",
       "--batch_size=4", "--steps=1", "--pipeline_seconds=1", "--num_classes=10",
       f"--profile_dir={tmp_path / 'profile'}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  for key in ("device", "train_examples_per_s", "train_flops_fraction_of_matmul_peak",
              "pipeline_mixtures_per_s_per_core", "extract_mixtures_per_s"):
    assert key in report, key
  assert report["train_examples_per_s"] > 0 and report["extract_mixtures_per_s"] > 0
  assert report["pipeline_mixtures_per_s_per_core"] > 0
  assert 0 < report["train_flops_fraction_of_matmul_peak"] < 2
  assert "matmul peak" in result.stdout  # the human-readable table
  # The profile: a trace on disk and the ops that took the step's time.
  assert list((tmp_path / "profile").rglob("*.xplane.pb"))
  ops = report["profile_top_ops"]
  assert ops and all(op["ms_per_step"] > 0 for op in ops)
  assert 0 < sum(op["share"] for op in ops) <= 1 + 1e-9
  assert ops[0]["op"] in result.stdout
