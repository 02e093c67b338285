"""Local paths and Cloud Storage URLs (`gs://bucket/...`) behind one set of file calls.

Workdirs and shard directories may be either. Everything goes through `etils.epath` (what
orbax and grain use too): local paths through `os`, `gs://` through TensorFlow's
`tf.io.gfile` when TensorFlow is installed (the `[tfds]` extra), else through gcsfs (the
`[gcs]` extra, which also brings the google-cloud-storage client orbax lists checkpoint
steps with). The first gs:// path seen without them is a UserError naming the extra.

Object storage has no rename and no append, so two calls differ by kind of path:
`write_bytes` (and `write_text`, `write_json`) is a temp file + `os.replace` locally and
one upload to Cloud Storage (an object becomes visible only once its upload completes, and
replaces the old one whole: already atomic); `open_append` appends to a local file, and for
an object keeps the whole content and uploads it again at every flush. `atomic_path` is
the local temp file + rename for writers that need a file name of their own.
"""

import contextlib
import functools
import importlib.util
import json
import os
import re
import threading

from etils import epath

from mirnet_jax import errors

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_remote(path) -> bool:
  """True for a URL (`gs://...`), False for a local path. A gs:// URL on a machine
  without the packages that reach Cloud Storage raises a UserError naming them."""
  path = os.fspath(path)
  if path.startswith("gs://"):
    _check_gcs_packages()
  return bool(_URL.match(path))


@functools.cache
def _check_gcs_packages():
  """Raises a UserError unless epath can reach gs:// (tf.io.gfile or gcsfs) and orbax
  can list its checkpoints (google-cloud-storage). The packages are looked up, not
  imported: TensorFlow's import takes seconds."""
  missing = []
  if not (_found("gcsfs") or _found("tensorflow")):
    missing.append("gcsfs")
  if not _found("google.cloud.storage"):
    missing.append("google-cloud-storage")
  if missing:
    raise errors.UserError(f"gs:// paths need {' and '.join(missing)}: "
                           "pip install -e '.[gcs]'")


def _found(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # a parent package (google, google.cloud) is missing
    return False


def absolute(path) -> str:
  """A local path made absolute; a URL unchanged (`os.path.abspath` would turn
  `gs://b/x` into `$PWD/gs:/b/x`)."""
  path = os.fspath(path)
  return path if is_remote(path) else os.path.abspath(path)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
  """Yields a temporary name beside the local file `path` to write it under; renames it
  onto `path` when the block succeeds, deletes it when the block (or the rename) fails.

  So a reader of `path` sees the old file or the new one, never a part of it. For writers
  that open the file themselves (ArrayRecordWriter, np.savez, soundfile); `suffix` ends
  the temporary name for those that go by its extension (np.savez appends `.npz` to a
  name without it). The name is `<path>.tmp-<pid><suffix>`, in the same directory so the
  rename stays on one file system.
  """
  if is_remote(path):
    raise ValueError(f"atomic_path takes a local path, not {os.fspath(path)}: write an "
                     "object with write_bytes (one upload is atomic by itself)")
  path = os.fspath(path)
  tmp = f"{path}.tmp-{os.getpid()}{suffix}"
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes(path, data: bytes):
  """Writes `path` atomically: a reader sees the old content or the new, never a part."""
  if is_remote(path):
    epath.Path(path).write_bytes(data)  # one object upload: atomic by itself
    return
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)


def write_text(path, text: str):
  write_bytes(path, text.encode())


def write_json(path, obj):
  """Writes `obj` as indented JSON with sorted keys (stable bytes for equal objects)."""
  write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def makedirs(path):
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def open_append(path):
  """A text file opened for appending (`write`, `flush`, `close`)."""
  if is_remote(path):
    return ObjectAppender(path)
  return open(path, "a")


class ObjectAppender:
  """Appending to an object: holds the object's whole content (read once, at open) and
  uploads all of it again at each `flush` or `close` that follows a `write`. Meant for
  small, growing logs (metrics, TensorBoard scalars), not for bulk data.

  Also serves as tensorboardX's writer for an event file on object storage (its
  `RecordWriter` writes bytes, flushes and closes; its background thread flushes too,
  hence the lock).
  """

  def __init__(self, path):
    self._path = epath.Path(path)
    self._data = bytearray(self._path.read_bytes() if self._path.exists() else b"")
    self._pending = False
    self._lock = threading.Lock()

  def write(self, data):
    with self._lock:
      self._data += data.encode() if isinstance(data, str) else data
      self._pending = True

  def flush(self):
    with self._lock:  # one upload at a time: a later one never carries less content
      if self._pending:
        self._path.write_bytes(bytes(self._data))
        self._pending = False

  def close(self):
    self.flush()
