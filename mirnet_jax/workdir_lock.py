"""One writer per directory: a lock file that stops a second training, preparation or
evaluation into the same directory with a one-line error naming the first.

  with workdir_lock.hold(workdir, "training"):
    ...

`hold` creates `DIR/.lock` (JSON: what, host, pid, command, start time) with
O_CREAT|O_EXCL, so of two processes starting at once exactly one gets it, and removes it
when the block ends: normally, by an exception, or by SIGTERM (which it turns into
SystemExit where nothing else handles it). A lock whose holder is gone is taken over with
a warning naming that holder. On the holder's host, gone means its pid is not running.
From another host (a shared file system) the pid cannot be checked, so the holder touches
the file every HEARTBEAT_S seconds, and a lock untouched for STALE_S counts as gone. Any
other lock is an InUseError. A gs:// directory is not locked (object storage offers no
exclusive create through etils): a warning says so and the block runs.
"""

import contextlib
import datetime
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time

from absl import logging

from mirnet_jax import errors
from mirnet_jax import storage

LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0
# Well above HEARTBEAT_S: a busy file server or a small clock skew between hosts (the
# mtime is the server's clock, the age is measured on ours) must not look like a death.
STALE_S = 300.0


class InUseError(errors.UserError):
  """Another process, still running, holds the directory's lock."""


@contextlib.contextmanager
def hold(directory, what: str, *, enabled: bool = True, exit_on_sigterm: bool = True):
  """Holds `directory`'s lock for the block (creating the directory if needed).

  Args:
    directory: a local directory (a training workdir, a shard or evaluation output
      directory); a gs:// URL is not locked (a warning says so).
    what: what this process does there ("training", "evaluation"): shown to the next
      process that finds the lock.
    enabled: False holds nothing (e.g. processes other than 0 of a multi-host run, whose
      process 0 holds the lock for all).
    exit_on_sigterm: SIGTERM raises SystemExit(143) inside the block, so the lock is
      removed, where SIGTERM would otherwise kill the process (its handler is the
      default). Pass False where a handler that Python does not see owns SIGTERM: JAX's
      preemption service in a multi-host run.

  Raises:
    InUseError: a running process holds the lock.
    errors.UserError: `directory` is not a directory or cannot be created.
  """
  if not enabled:
    yield
    return
  if storage.is_remote(directory):
    logging.warning("%s is not locked (Cloud Storage): nothing stops a second %s into it "
                    "at the same time; start one at a time", directory, what)
    yield
    return
  directory = os.path.abspath(directory)
  created = _makedirs(directory)
  path = os.path.join(directory, LOCK_FILE)
  content = json.dumps(dict(
      what=what, host=socket.gethostname(), pid=os.getpid(),
      command=shlex.join(sys.orig_argv),
      started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))).encode()
  try:
    _acquire(path, content)
  except BaseException:
    _remove_empty(created)
    raise
  stop = threading.Event()
  beat = threading.Thread(target=_heartbeat, args=(path, content, stop), daemon=True,
                          name="workdir_lock heartbeat")
  beat.start()
  previous = _exit_on_sigterm() if exit_on_sigterm else None
  try:
    yield
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
    stop.set()
    beat.join()
    _release(path, content)
    _remove_empty(created)


def _makedirs(directory: str) -> list[str]:
  """Creates `directory`; returns the directories it created, deepest first."""
  created, d = [], directory
  while not os.path.lexists(d):
    created.append(d)
    d = os.path.dirname(d)
  try:
    os.makedirs(directory, exist_ok=True)
  except (FileExistsError, NotADirectoryError):
    raise errors.UserError(f"{directory} is not a directory") from None
  except OSError as e:
    raise errors.UserError(f"cannot create {directory}: {e.strerror or e}") from e
  return created


def _remove_empty(created: list[str]):
  """Removes the directories made only to hold the lock, so that a run that failed
  before writing anything leaves nothing behind."""
  for d in created:
    try:
      os.rmdir(d)
    except OSError:  # not empty: the run wrote something
      return


def _acquire(path: str, content: bytes):
  while True:
    try:
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      pass
    except FileNotFoundError:  # its directory, made by a holder that just removed it
      os.makedirs(os.path.dirname(path), exist_ok=True)
      continue
    except OSError as e:  # e.g. a directory this user cannot write
      raise errors.UserError(f"cannot lock {os.path.dirname(path)}: "
                             f"{e.strerror or e}") from e
    else:
      with os.fdopen(fd, "wb") as f:
        f.write(content)
      return
    found = _inspect(path)
    if found is None:  # released meanwhile
      continue
    theirs, holder, gone = found
    if gone is None:
      directory = os.path.dirname(path)
      raise InUseError(f"{directory} is in use: {_describe(holder)}; wait until it ends "
                       f"or stop that process (if you are sure it is gone, delete {path})")
    if _take_away(path, theirs):
      logging.warning("taking over the lock of %s pid %s, which is no longer running "
                      "(%s)", holder.get("host", "?"), holder.get("pid", "?"), gone)


def _inspect(path: str):
  """(the lock's bytes, its record, why its holder counts as gone or None), or None if
  there is no lock any more."""
  for _ in range(20):
    try:
      with open(path, "rb") as f:
        theirs = f.read()
      age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
      return None
    try:
      holder = json.loads(theirs)
      break
    except ValueError:  # being written (O_EXCL creates the file before its content)
      time.sleep(0.05)
  else:
    holder = None
  holder = holder if isinstance(holder, dict) else {}  # unreadable: judged by its age
  if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
    return theirs, holder, None if _running(holder["pid"]) else "no such process here"
  return theirs, holder, f"no heartbeat for {age:.0f} s" if age > STALE_S else None


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def _take_away(path: str, theirs: bytes) -> bool:
  """Removes the stale lock `theirs`, unless another process took it over first."""
  # A rename, then a look at what it moved: two processes taking over at once must not
  # both succeed, the second removing the first one's fresh lock.
  moved = f"{path}.stale-{os.getpid()}"
  try:
    os.rename(path, moved)
  except FileNotFoundError:
    return False
  with open(moved, "rb") as f:
    ours = f.read() == theirs
  if not ours:
    os.rename(moved, path)  # the other's fresh lock: put it back
    return False
  os.remove(moved)
  return True


def _heartbeat(path: str, content: bytes, stop: threading.Event):
  while not stop.wait(HEARTBEAT_S):
    try:
      with open(path, "rb") as f:
        ours = f.read() == content
      if ours:
        os.utime(path)
    except FileNotFoundError:
      ours = False
    except OSError as e:  # e.g. a file server away for a moment: try again next time
      logging.warning("cannot refresh the lock %s: %s", path, e)
      continue
    if not ours:
      logging.warning("the lock %s was removed or taken over while this process held it: "
                      "another process may be writing there too", path)
      return


def _release(path: str, content: bytes):
  try:
    with open(path, "rb") as f:
      if f.read() != content:  # taken over (the heartbeat warned): not ours to remove
        return
    os.remove(path)
  except FileNotFoundError:
    pass


def _describe(holder: dict) -> str:
  if not holder:
    return "an unreadable lock file (its holder is unknown)"
  command = " ".join(str(holder.get("command", "?")).split())  # one line
  return (f"{holder.get('what', '?')} by {holder.get('host', '?')} pid "
          f"{holder.get('pid', '?')} since {holder.get('started', '?')} ({command})")


def _exit_on_sigterm():
  """Makes SIGTERM raise SystemExit, so that the block's `finally` removes the lock;
  returns the handler to restore, or None where SIGTERM is left alone (not the main
  thread, or a handler set already, e.g. train.py's own inside the training loop)."""
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL):
    return None
  owner = os.getpid()

  def handle(signum, frame):
    del frame
    if os.getpid() != owner:  # a forked child inherited this handler: die as before
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
      return
    raise SystemExit(128 + signum)

  signal.signal(signal.SIGTERM, handle)
  return signal.SIG_DFL
