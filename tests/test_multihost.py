"""Multi-host: two processes x 4 simulated CPU devices (gloo collectives on localhost),
launched through the real entry point with a grain worker process each, train like one
process with 8 devices and no workers; their checkpoint resumes in one process without
workers; initialization failures are one-line errors. Without flags, JAX's own cluster
detection finds two processes launched like Slurm's, and no cluster on a plain machine."""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mirnet_jax import checkpointing
from mirnet_jax.configs import tiny
from mirnet_jax import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4
TIMEOUT_S = 400  # per stage; a healthy run takes ~1-2 minutes on 2 busy cores


def _env(devices):
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _main_flags(workdir, shard_dir, steps):
  return ["--config=configs/tiny.py", f"--workdir={workdir}",
          f"--config.data.shards={shard_dir}", f"--config.num_train_steps={steps}",
          "--config.log_every=1", f"--config.eval_every={steps}"]


def _run_together(commands, env, log_dir):
  """Runs the commands at once; returns their stderr. If one fails or they outlast
  TIMEOUT_S, kills the others and fails with every stderr in the message."""
  logs = [os.path.join(log_dir, f"stderr_{time.monotonic_ns()}_{i}") for i in range(
      len(commands))]
  procs = []
  for command, log in zip(commands, logs):
    with open(log, "w") as f:  # a file, not a pipe: a full pipe would block the child
      procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                    stderr=f))
  deadline = time.monotonic() + TIMEOUT_S
  try:
    while (any(p.poll() is None for p in procs) and time.monotonic() < deadline
           and not any(p.poll() for p in procs)):
      time.sleep(0.5)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  stderrs = []
  for log in logs:
    with open(log) as f:
      stderrs.append(f.read())
  report = "\n".join(f"--- process {i} (exit {p.returncode}):\n{s[-3000:]}"
                     for i, (p, s) in enumerate(zip(procs, stderrs)))
  assert all(p.returncode == 0 for p in procs), report
  return stderrs


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _losses(workdir):
  return [(r["step"], r.get("train/loss", r.get("val/loss"))) for r in _metrics(workdir)]


def _restored(workdir):
  """(the latest train state in `workdir` on this process's first device, its shapes from
  the checkpoint's metadata; the data position saved with it)."""
  manager = checkpointing.make_manager(workdir, 2, read_only=True)
  step = manager.latest_step()
  one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device),
      manager.item_metadata(step)["state"])
  return (jax.device_get(checkpointing.restore(manager, abstract)),
          checkpointing.next_example(manager, step, tiny.get_config().batch_size))


@pytest.mark.slow
def test_two_processes_train_like_one_and_their_checkpoint_resumes_in_one(shard_dir,
                                                                          tmp_path):
  two, one = str(tmp_path / "two_processes"), str(tmp_path / "one_process")
  coordinator = f"--coordinator_address=localhost:{_free_port()}"
  stderrs = _run_together(
      [[sys.executable, "-m", "mirnet_jax.main", *_main_flags(two, shard_dir, STEPS),
        coordinator, "--num_processes=2", f"--process_id={i}", "--config.data.workers=1"]
       for i in range(2)],
      _env(4), tmp_path)
  assert "process 1 of 2, 4 local / 8 global devices (cpu)" in stderrs[1], stderrs[1]
  _run_together([[sys.executable, "-m", "tests.train_on_devices", "8", shard_dir, one,
                  str(STEPS)]], _env(8), tmp_path)

  # The same global batches (each process fed its half of every one): the same losses.
  # Only the order of floating-point reductions differs.
  two_losses, one_losses = _losses(two), _losses(one)
  assert [s for s, _ in two_losses] == [s for s, _ in one_losses] == [1, 2, 3, 4, 4]
  np.testing.assert_allclose([v for _, v in two_losses], [v for _, v in one_losses],
                             rtol=1e-4)
  # Only process 0 wrote metrics and TensorBoard events.
  assert "train/loss=" not in stderrs[1] and "train/loss=" in stderrs[0]
  assert len(os.listdir(os.path.join(two, "tensorboard"))) == 1

  # One process restores the two-process checkpoint: parameters and data position.
  (from_two, two_position), (from_one, one_position) = _restored(two), _restored(one)
  assert two_position == one_position == STEPS * tiny.get_config().batch_size
  assert jax.tree.structure(from_two) == jax.tree.structure(from_one)
  # Adam divides each gradient by its own running RMS, so an element whose gradient is
  # near zero moves by up to the learning rate (1e-3) either way on reduction-order noise
  # alone: typically up to 1e-4 after 4 steps, and now and then one element by two whole
  # steps (measured: 1 of the tiny model's ~30,000, with XLA:CPU's own convolutions). A
  # lost, doubled or other update moves nearly every element by a whole step: so at most
  # 1 in 1,000 elements may differ by more than a quarter step, none by more than the
  # 4 steps' reach either way.
  differ = [np.abs(np.asarray(a) - np.asarray(b)).ravel()
            for a, b in zip(jax.tree.leaves(from_two), jax.tree.leaves(from_one))]
  differ = np.concatenate(differ)
  assert np.mean(differ > 2.5e-4) <= 1e-3, np.sort(differ)[-10:]
  assert differ.max() <= 2 * STEPS * 1e-3, differ.max()
  # ... and the same command without multi-host flags or workers resumes it in one
  # process, on the batches the one-process run resumes on.
  stderr, = _run_together([[sys.executable, "-m", "mirnet_jax.main",
                            *_main_flags(two, shard_dir, STEPS + 2)]], _env(8),
                           tmp_path)
  assert f"resumed from step {STEPS}" in stderr and "process 0 of 1" in stderr
  _run_together([[sys.executable, "-m", "tests.train_on_devices", "8", shard_dir, one,
                  str(STEPS + 2)]], _env(8), tmp_path)
  assert [s for s, _ in _losses(two)][len(two_losses):] == [5, 6, 6]
  np.testing.assert_allclose([v for _, v in _losses(two)[len(two_losses):]],
                             [v for _, v in _losses(one)[len(one_losses):]], rtol=1e-4)


def test_unreachable_coordinator_is_a_one_line_error_within_the_timeout(tmp_path):
  start = time.monotonic()
  result = subprocess.run(
      [sys.executable, "-m", "mirnet_jax.main", *_main_flags(tmp_path, tmp_path, 1),
       f"--coordinator_address=localhost:{_free_port()}", "--num_processes=2",
       "--process_id=1", "--distributed_timeout=2"],
      cwd=REPO, env=_env(1), capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: cannot reach the coordinator at localhost:"), result.stderr
  assert "within 2 s" in last
  assert time.monotonic() - start < 60


@pytest.mark.parametrize("kwargs, message", [
    (dict(process_id=0), "--process_id also needs --coordinator_address, --num_processes"),
    (dict(coordinator_address="h:1", num_processes=2), "also needs --process_id"),
    (dict(coordinator_address="h", num_processes=2, process_id=0), "expected host:port"),
    (dict(coordinator_address="h:1", num_processes=2, process_id=2), "not in [0, "),
    (dict(mode="off", coordinator_address="h:1", num_processes=2, process_id=0),
     "contradicts"),
    (dict(mode="sometimes"), "expected one of auto, on, off"),
])
def test_inconsistent_flags_are_errors_before_anything_starts(kwargs, message):
  with pytest.raises(distributed.DistributedError, match=message.replace("[", r"\[")):
    distributed.initialize(**kwargs)


# What JAX's cluster detection reads (jax/_src/clusters), and the launchers' counts.
_CLUSTER_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS",
                      "SLURM_PROCID", "SLURM_LOCALID", "OMPI_MCA_orte_hnp_uri",
                      "OMPI_COMM_WORLD_SIZE", "KUBERNETES_SERVICE_HOST",
                      "TPU_WORKER_HOSTNAMES", "JAX_COORDINATOR_ADDRESS")


def _plain_machine(monkeypatch):
  for name in _CLUSTER_VARIABLES:
    monkeypatch.delenv(name, raising=False)


def _slurm(monkeypatch, tasks, process=0):
  for name, value in (("SLURM_JOB_ID", "7"), ("SLURM_STEP_NODELIST", "localhost"),
                      ("SLURM_NTASKS", str(tasks)), ("SLURM_PROCID", str(process)),
                      ("SLURM_LOCALID", str(process))):
    monkeypatch.setenv(name, value)


def _fake_initialize(monkeypatch, error=None):
  """Replaces jax.distributed.initialize (and the config update after it); returns the
  keyword arguments of each call."""
  calls = []

  def fake(**kwargs):
    calls.append(kwargs)
    if error:
      raise error

  monkeypatch.setattr(jax.distributed, "initialize", fake)
  monkeypatch.setattr(jax.config, "update", lambda *args: None)
  return calls


def test_a_single_host_run_initializes_nothing_without_delay():
  # JAX's own detection, for real: it finds no cluster here. In a fresh interpreter, as
  # in `main`: JAX refuses to initialize once a backend has started.
  code = ("import sys, time, jax; from mirnet_jax import distributed; "
          "start = time.monotonic(); found = distributed.initialize(); "
          "seconds = time.monotonic() - start; off = distributed.initialize('off'); "
          "print(found, off, seconds < 2, jax.distributed.is_initialized(), "
          "jax.process_count())")
  env = {k: v for k, v in _env(1).items() if k not in _CLUSTER_VARIABLES}
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ["None", "None", "True", "False", "1"], result.stderr


def test_without_flags_jax_detects_the_cluster(monkeypatch):
  _plain_machine(monkeypatch)
  _slurm(monkeypatch, tasks=4)
  calls = _fake_initialize(monkeypatch)
  assert distributed.initialize(timeout_s=9) == distributed.DETECTED
  assert calls == [dict(initialization_timeout=9)]  # no arguments: JAX reads the cluster


@pytest.mark.parametrize("variable", ["SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"])
def test_a_one_process_launch_is_not_handed_to_jax(monkeypatch, variable):
  # JAX would pin it to one GPU; --distributed=on still asks JAX.
  _plain_machine(monkeypatch)
  _slurm(monkeypatch, tasks=2)
  monkeypatch.setenv(variable, "1")
  calls = _fake_initialize(monkeypatch)
  assert distributed.initialize() is None and not calls
  assert distributed.initialize("on") == distributed.DETECTED and len(calls) == 1


def test_no_cluster_found_is_an_error_only_when_asked_for(monkeypatch):
  _plain_machine(monkeypatch)
  _fake_initialize(monkeypatch, ValueError("coordinator_address should be defined."))
  assert distributed.initialize() is None
  with pytest.raises(distributed.DistributedError, match=(
      r"^jax.distributed.initialize\(\) failed \(multi-process run from JAX cluster "
      r"detection\): coordinator_address should be defined.; a single-host run can skip "
      r"it with --distributed=off$")):
    distributed.initialize("on")


@pytest.mark.parametrize("failure", [
    RuntimeError("metadata server:\n  unreachable"),
    ValueError("metadata server:\n  unreachable"),  # only "no cluster" means one process
])
def test_a_failing_detected_cluster_is_a_one_line_error(monkeypatch, failure):
  _plain_machine(monkeypatch)
  _fake_initialize(monkeypatch, failure)
  with pytest.raises(distributed.DistributedError,
                     match=r"detection\): metadata server: unreachable;"):
    distributed.initialize()


def test_two_processes_launched_like_slurm_are_found_by_jax(tmp_path):
  # JAX's Slurm detection, for real, on localhost (the port from JAX_COORDINATOR_PORT).
  code = ("import sys; from mirnet_jax import distributed; "
          "found = distributed.initialize(timeout_s=60); import jax; "
          "print(found, jax.process_index(), jax.process_count(), file=sys.stderr)")
  env = {k: v for k, v in _env(1).items() if k not in _CLUSTER_VARIABLES}
  env.update(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
             JAX_COORDINATOR_PORT=str(_free_port()))
  stderrs = _run_together([["env", f"SLURM_PROCID={i}", f"SLURM_LOCALID={i}",
                            sys.executable, "-c", code] for i in range(2)], env, tmp_path)
  for i, stderr in enumerate(stderrs):
    assert f"{distributed.DETECTED} {i} 2" in stderr, stderr[-3000:]
