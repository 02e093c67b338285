"""One writer per workdir (workdir_lock.py): a second `main` or `prepare` into a directory
that another running process holds stops with a one-line error naming it and writes
nothing; a lock whose holder is gone is taken over; the lock goes when its holder ends,
however it ends.

The first writer is a small process holding the lock through the module (a real training
would cost tens of seconds); the second is the real command.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import soundfile as sf

from mirnet_jax import errors
from mirnet_jax import workdir_lock
from mirnet_jax.data import shards
from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = socket.gethostname()

# Holds argv[1]'s lock until its stdin closes, then ends as argv[2] says.
HOLDER = """
import sys
from mirnet_jax import workdir_lock
with workdir_lock.hold(sys.argv[1], "training"):
  print("held", flush=True)
  sys.stdin.read()
  if sys.argv[2] == "raise":
    raise RuntimeError("a crash")
"""


@contextlib.contextmanager
def _holder(directory, end="return"):
  proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), end], cwd=REPO,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline() == "held\n", proc.communicate()[1]
    yield proc
  finally:
    if proc.poll() is None:
      proc.stdin.close()
      proc.wait(timeout=30)


def _run(module, *args):
  return subprocess.run([sys.executable, "-m", f"mirnet_jax.{module}", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def _assert_held_error(result, *fragments):
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "is in use" in last, result.stderr
  for fragment in fragments:
    assert fragment in last, last


def _write_lock(directory, age_s=0.0, **record):
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, workdir_lock.LOCK_FILE)
  with open(path, "w") as f:
    json.dump(dict(dict(what="training", command="python -m mirnet_jax.main",
                        started="2026-01-01T00:00:00+00:00"), **record), f)
  os.utime(path, (time.time() - age_s,) * 2)
  return path


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


# ---------------------------------------------------------------------------- the commands

def test_a_second_training_stops_naming_the_first_and_writes_nothing(tmp_path):
  workdir = tmp_path / "w"
  with _holder(workdir) as first:
    # Shards that do not exist: without the lock, this would fail otherwise (and fast).
    result = _run("main", "--config=configs/tiny.py", f"--workdir={workdir}",
                  f"--config.data.shards={tmp_path / 'shards'}")
    assert os.listdir(workdir) == [workdir_lock.LOCK_FILE]
  _assert_held_error(result, str(workdir), f"training by {HOST} pid {first.pid}",
                     f"delete {workdir / workdir_lock.LOCK_FILE}")
  assert not workdir.exists()  # the first one made it for its lock, and removed both


def test_prepare_into_a_held_out_dir_stops_and_writes_nothing(tmp_path):
  out = tmp_path / "shards"
  with _holder(out) as first:
    result = _run("prepare", f"--source={tmp_path / 'corpus'}", f"--out={out}")
    assert os.listdir(out) == [workdir_lock.LOCK_FILE]
  _assert_held_error(result, str(out), f"{HOST} pid {first.pid}")


def test_prepare_takes_over_the_lock_of_a_dead_process_and_releases_it(tmp_path):
  for subset, speakers, count in (("train", (101, 102, 103), 6), ("test", (201, 202), 2)):
    for s in speakers:
      chapter = tmp_path / "corpus" / subset / str(s) / "7"
      chapter.mkdir(parents=True)
      for u in range(count):
        sf.write(str(chapter / f"{s}-7-{u:04d}.flac"), conftest.synth_voice(s, u, 1.5),
                 16000)
  out = tmp_path / "shards"
  pid = _dead_pid()
  lock = _write_lock(out, host=HOST, pid=pid)
  result = _run("prepare", f"--source={tmp_path / 'corpus'}", f"--out={out}",
                "--workers=1")
  assert result.returncode == 0, result.stderr
  assert (f"taking over the lock of {HOST} pid {pid}, which is no longer running"
          in result.stderr)
  assert not os.path.exists(lock)  # released at the end
  # A lock file among the shards does not disturb their readers (they list the directory).
  _write_lock(out, host=HOST, pid=os.getpid())
  assert len(shards.open_split(str(out), "train")) > 0


# ---------------------------------------------------------------------------- takeover

def test_a_lock_of_another_host_is_taken_over_once_its_heartbeat_is_stale(tmp_path,
                                                                          caplog):
  _write_lock(tmp_path, age_s=workdir_lock.STALE_S + 60, host="elsewhere", pid=7)
  with workdir_lock.hold(tmp_path, "evaluation"):
    held = json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())
  assert (held["host"], held["pid"], held["what"]) == (HOST, os.getpid(), "evaluation")
  assert ("taking over the lock of elsewhere pid 7, which is no longer running"
          in caplog.text)


def test_a_fresh_lock_of_another_host_is_not_taken_over(tmp_path):
  # Its pid is not running here, which says nothing of another host: only the heartbeat
  # counts.
  path = _write_lock(tmp_path, age_s=workdir_lock.STALE_S - 60, host="elsewhere",
                     pid=_dead_pid())
  with pytest.raises(workdir_lock.InUseError, match="training by elsewhere pid"):
    with workdir_lock.hold(tmp_path, "training"):
      pass
  assert json.loads(open(path).read())["host"] == "elsewhere"


def test_a_live_process_of_this_host_is_never_taken_over(tmp_path):
  _write_lock(tmp_path, age_s=workdir_lock.STALE_S + 60, host=HOST, pid=os.getpid())
  with pytest.raises(workdir_lock.InUseError, match=f"{HOST} pid {os.getpid()}"):
    with workdir_lock.hold(tmp_path, "training"):
      pass


def test_the_holder_refreshes_its_heartbeat(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, "HEARTBEAT_S", 0.05)
  with workdir_lock.hold(tmp_path, "training"):
    path = tmp_path / workdir_lock.LOCK_FILE
    os.utime(path, (time.time() - 1000,) * 2)
    time.sleep(0.5)
    assert time.time() - path.stat().st_mtime < 10


# ---------------------------------------------------------------------------- release

@pytest.mark.parametrize("end,status", [("return", 0), ("raise", 1), ("sigterm", 143)])
def test_the_lock_goes_when_its_holder_ends(tmp_path, end, status):
  with _holder(tmp_path, end) as proc:
    assert (tmp_path / workdir_lock.LOCK_FILE).exists()
    if end == "sigterm":
      proc.send_signal(signal.SIGTERM)
    proc.stdin.close()
    assert proc.wait(timeout=30) == status, proc.stderr.read()
  assert os.listdir(tmp_path) == []


def test_a_training_that_fails_releases_its_workdir(tmp_path):
  result = _run("main", "--config=configs/tiny.py", f"--workdir={tmp_path / 'w'}",
                f"--config.data.shards={tmp_path / 'shards'}")
  assert result.returncode == 1 and "error: no manifest.json" in result.stderr
  assert os.listdir(tmp_path) == []  # its lock, and the workdir made for it, are gone


def test_an_exception_releases_the_lock_and_the_directory_it_made(tmp_path):
  directory = tmp_path / "a" / "b"
  with pytest.raises(RuntimeError):
    with workdir_lock.hold(directory, "training"):
      assert (directory / workdir_lock.LOCK_FILE).exists()
      raise RuntimeError("a crash")
  assert os.listdir(tmp_path) == []  # nothing was written: nothing is left
  with workdir_lock.hold(directory, "training"):
    (directory / "metrics.jsonl").write_text("{}")
  assert os.listdir(directory) == ["metrics.jsonl"]


# ---------------------------------------------------------------------------- not locked

def test_a_remote_directory_is_not_locked_and_says_so(caplog):
  with workdir_lock.hold("gs://bucket/runs/m", "training"):
    pass
  assert "gs://bucket/runs/m is not locked" in caplog.text


def test_a_disabled_lock_holds_nothing(tmp_path):
  with workdir_lock.hold(tmp_path / "w", "training", enabled=False):
    assert not (tmp_path / "w").exists()


def test_a_file_as_directory_is_a_user_error(tmp_path):
  (tmp_path / "w").write_text("a file")
  with pytest.raises(errors.UserError, match="is not a directory"):
    with workdir_lock.hold(tmp_path / "w", "training"):
      pass
  assert (tmp_path / "w").read_text() == "a file"


def test_a_second_evaluation_into_the_same_folder_stops_naming_the_first(trained_workdir):
  eval_dir = os.path.join(trained_workdir, "eval")
  before = sorted(os.listdir(eval_dir)) if os.path.isdir(eval_dir) else None
  with _holder(eval_dir) as holder:
    result = _run("evaluate", f"--workdir={trained_workdir}", "--trials=8")
    _assert_held_error(result, HOST, f"pid {holder.pid}")
    assert sorted(os.listdir(eval_dir)) == sorted((before or []) + [workdir_lock.LOCK_FILE])
  # The eval folder is as it was (the holder's lock gone with it).
  assert (sorted(os.listdir(eval_dir)) if os.path.isdir(eval_dir) else None) == before


def test_a_second_separation_evaluation_stops_naming_the_first(tmp_path):
  root = tmp_path / "root"
  with _holder(root / "eval") as holder:
    # Refused before it reads anything: the system named does not even exist.
    result = _run("evaluate_separation", f"--workdir={root}", f"--systems={tmp_path}/x")
    assert os.listdir(root / "eval") == [workdir_lock.LOCK_FILE]  # nothing written
  _assert_held_error(result, HOST, f"pid {holder.pid}")
