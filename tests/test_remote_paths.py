"""gs:// workdirs and shard directories, on a fake Cloud Storage.

There is no Cloud Storage here, so `gs://BUCKET/KEY` is the local file `ROOT/BUCKET/KEY`
for each of the three clients that reach it:
  * etils.epath (config.json, metrics, TensorBoard, evaluation outputs, manifest and
    index, orbax's directories and small files): `epath.testing.mock_epath`, with
    EPATH_USE_TF=false so that gs:// is not handed to tf.io.gfile first;
  * ArrayRecord, whose reader opens gs:// with its own Cloud Storage client (the JSON
    API over HTTP): a read-only fake of that API on 127.0.0.1, which it is pointed at by
    CLOUD_STORAGE_EMULATOR_ENDPOINT, as that client allows;
  * TensorStore (orbax's array data): orbax's gs:// kvstore spec is swapped for a local
    `file` one, and its bucket-metadata query (hierarchical namespace) answers "no".
So what runs unchanged is every line of this project and of epath's, grain's and
ArrayRecord's callers; what is faked is the transport: tf.io.gfile (or gcsfs),
TensorStore's GCS driver and orbax's google-cloud-storage calls are not exercised.
"""

import http.server
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse

from etils import epath
from etils.epath import gpath as epath_gpath
import numpy as np
from orbax.checkpoint._src.path import gcs_utils
import pytest

from mirnet_jax.configs import tiny
from mirnet_jax import checkpointing
from mirnet_jax import evaluate
from mirnet_jax import extraction
from mirnet_jax import inference
from mirnet_jax import metric_writers
from mirnet_jax import storage
from mirnet_jax import train
from mirnet_jax.data import shards
from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "gs://fake-bucket"


class FakeGcs:
  """`gs://` <-> local files under `root`, and the objects the HTTP fake served."""

  def __init__(self, root: str):
    self.root = root
    self.served = []

  def local(self, path) -> str:
    path = os.fspath(path)
    return os.path.join(self.root, path[len("gs://"):]) if path.startswith("gs://") else path

  def url(self, path: str) -> str:
    prefix = self.root + os.sep
    return "gs://" + path[len(prefix):] if path.startswith(prefix) else path


def _epath_fakes(gcs: FakeGcs) -> dict:
  """mock_epath's functions: each gets the real (os) one first, then epath's arguments."""
  one = lambda fn, path, *args, **kwargs: fn(gcs.local(path), *args, **kwargs)
  two = lambda fn, src, dst, *args, **kwargs: fn(gcs.local(src), gcs.local(dst), *args,
                                                 **kwargs)

  def open_(fn, path, mode):
    if any(m in mode for m in "wa") and os.fspath(path).startswith("gs://"):
      # Cloud Storage has no directories: an object can be written under any name.
      os.makedirs(os.path.dirname(gcs.local(path)), exist_ok=True)
    return fn(gcs.local(path), mode)

  def glob(fn, pattern):
    return [gcs.url(p) for p in fn(gcs.local(pattern))]

  def walk(fn, top, **kwargs):
    for dirpath, dirnames, filenames in fn(gcs.local(top), **kwargs):
      yield gcs.url(dirpath), dirnames, filenames

  return dict(open=open_, glob=glob, walk=walk, exists=one, isdir=one, listdir=one,
              makedirs=one, mkdir=one, remove=one, rmtree=one, stat=one, rename=two,
              replace=two, copy=two)


def _http_fake(gcs: FakeGcs) -> http.server.ThreadingHTTPServer:
  """The Cloud Storage JSON API's object reads (`GET .../b/BUCKET/o/NAME?alt=media`,
  with or without a byte range) over the files under `gcs.root`."""

  class Handler(http.server.BaseHTTPRequestHandler):

    def log_message(self, *args):
      del args

    def _send(self, status, body=b"", headers=()):
      self.send_response(status)
      for k, v in (("Content-Length", str(len(body))),) + tuple(headers):
        self.send_header(k, v)
      self.end_headers()
      try:
        self.wfile.write(body)
      except ConnectionError:
        pass  # a reader that has what it needs closes the rest of an open-ended range

    def do_GET(self):  # pylint: disable=invalid-name
      url = urllib.parse.urlsplit(self.path)
      match = re.fullmatch(r"/(?:download/)?storage/v1/b/([^/]+)/o/([^/]+)", url.path)
      name = match and f"{match.group(1)}/{urllib.parse.unquote(match.group(2))}"
      path = name and os.path.join(gcs.root, name)
      if not path or not os.path.isfile(path):
        return self._send(404, b'{"error": {"code": 404, "message": "No such object"}}')
      with open(path, "rb") as f:
        data = f.read()
      if urllib.parse.parse_qs(url.query).get("alt") != ["media"]:
        meta = dict(kind="storage#object", bucket=match.group(1),
                    name=urllib.parse.unquote(match.group(2)), size=str(len(data)),
                    generation="1")
        return self._send(200, json.dumps(meta).encode(), [("Content-Type",
                                                            "application/json")])
      gcs.served.append("gs://" + name)
      byte_range = self.headers.get("Range")
      if not byte_range:
        return self._send(200, data)
      first, last = re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range).groups()
      if not first:  # the last N bytes
        start, stop = max(0, len(data) - int(last)), len(data)
      else:
        start, stop = int(first), min(len(data), int(last) + 1 if last else len(data))
      if start >= len(data):
        return self._send(416)
      return self._send(206, data[start:stop],
                        [("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")])

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  server.daemon_threads = True
  return server


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  gcs = FakeGcs(str(tmp_path / "gcs"))
  os.makedirs(gcs.local(BUCKET))
  monkeypatch.setenv("EPATH_USE_TF", "false")
  # epath caches "is TensorFlow installed" on first use: an earlier test (TFDS) may have
  # cached True, and gs:// would then go to tf.io.gfile, past the fake.
  monkeypatch.setattr(epath_gpath, "_is_tf_installed", lambda: False)
  monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
  monkeypatch.setattr(gcs_utils, "get_kvstore_for_gcs",
                      lambda path: {"driver": "file", "path": gcs.local(path)})
  server = _http_fake(gcs)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  monkeypatch.setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT",
                     f"http://127.0.0.1:{server.server_address[1]}")
  try:
    with epath.testing.mock_epath(**_epath_fakes(gcs)):
      yield gcs
  finally:
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def in_empty_cwd(tmp_path, monkeypatch):
  """Runs the test in an empty directory; returns a check that nothing there is named
  `gs:` (what `os.path.abspath("gs://b/x")` and `os.makedirs` would make)."""
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)

  def no_local_gs():
    found = [os.path.join(d, n) for d, dirs, files in os.walk(cwd) for n in dirs + files
             if n.startswith("gs:")]
    assert not found, found
  return no_local_gs


def _tiny(shard_dir: str, steps: int):
  config = tiny.get_config()
  config.data.shards = shard_dir
  config.num_train_steps = steps
  return config


@pytest.mark.slow
def test_a_tiny_run_trains_resumes_and_evaluates_in_a_bucket(shard_dir, fake_gcs,
                                                             in_empty_cwd):
  shutil.copytree(shard_dir, fake_gcs.local(f"{BUCKET}/shards"))
  workdir, shard_url = f"{BUCKET}/run", f"{BUCKET}/shards"
  run = fake_gcs.local(workdir)

  last = train.train_and_evaluate(_tiny(shard_url, 6), workdir)
  assert np.isfinite(last["train/loss"]) and np.isfinite(last["val/accuracy"])
  # Every output is in the bucket, none in a local folder named "gs:".
  in_empty_cwd()
  assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["3", "6"]
  with open(os.path.join(run, checkpointing.CONFIG_FILE)) as f:
    assert json.load(f)["config"]["data"]["shards"] == shard_url
  with open(os.path.join(run, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows if "train/loss" in r] == [2, 4, 6]
  events = os.listdir(os.path.join(run, "tensorboard"))
  assert len(events) == 1 and os.path.getsize(os.path.join(run, "tensorboard", events[0]))
  # The shards were read through the Cloud Storage API, from the gs:// URLs.
  names = shards.load_manifest(shard_url)["shards"]
  assert {u for u in fake_gcs.served} == {f"{shard_url}/{n}" for n in names["train"]}

  # Resuming reads the checkpoint (and the data position) back from the bucket, and
  # metrics.jsonl grows instead of starting over.
  train.train_and_evaluate(_tiny(shard_url, 8), workdir)
  with open(os.path.join(run, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows if "train/loss" in r] == [2, 4, 6, 8]
  assert sorted(int(s) for s in os.listdir(os.path.join(run, "checkpoints")))[-2:] == [6, 8]

  extractor = extraction.Extractor(inference.restore(workdir))
  mixture = conftest.synth_voice(101, 0, 2.0) + conftest.synth_voice(201, 1, 2.0)
  assert extractor.embed_waveform(mixture).shape == (2, 16)

  results = evaluate.evaluate(workdir, num_trials=8)
  assert results["meta"]["shards"] == shard_url
  assert {os.path.basename(p) for p in results["plots"]} == {"det.png", "tsne.png",
                                                              "attention.png"}
  eval_dir = os.path.join(run, "eval")
  assert {"results.json", "trials_seen.json", "trials_unseen.json", "det.png", "tsne.png",
          "attention.png"} <= set(os.listdir(eval_dir))
  with open(os.path.join(eval_dir, "results.json")) as f:
    assert json.load(f)["unseen"] == results["unseen"]
  again = evaluate.evaluate(workdir, num_trials=3, trials_from=f"{workdir}/eval",
                            make_plots=False)
  assert again["unseen"] == results["unseen"]  # the 8 trials read back from the bucket
  assert {f"{shard_url}/{n}" for n in names["test"]} <= set(fake_gcs.served)
  in_empty_cwd()


def test_manager_keeps_a_gs_url_and_makes_a_local_path_absolute(fake_gcs, in_empty_cwd):
  manager = checkpointing.make_manager(f"{BUCKET}/run", keep=2)
  assert str(manager.directory) == f"{BUCKET}/run/checkpoints"
  manager.close()
  local = checkpointing.make_manager("run", keep=2)
  assert str(local.directory) == os.path.join(os.getcwd(), "run", "checkpoints")
  local.close()
  assert storage.absolute(f"{BUCKET}/x") == f"{BUCKET}/x"
  in_empty_cwd()
  # orbax lists the steps of a gs:// directory with this client (and does not require it).
  importlib.import_module("google.cloud.storage")


def test_a_step_without_its_commit_file_is_never_listed_in_a_bucket(fake_gcs, in_empty_cwd):
  # Cloud Storage has no rename: orbax writes a step in place and commits it by writing
  # `commit_success.txt` last, so a step cut off in mid-write has none and is not restored.
  root = fake_gcs.local(f"{BUCKET}/run/checkpoints")
  for step in (3, 6, 9):
    os.makedirs(os.path.join(root, str(step), "state"))
    if step != 9:
      open(os.path.join(root, str(step), "commit_success.txt"), "w").close()
  manager = checkpointing.make_manager(f"{BUCKET}/run", keep=2, read_only=True)
  assert sorted(manager.all_steps()) == [3, 6] and manager.latest_step() == 6
  manager.close()
  in_empty_cwd()


def test_metrics_objects_are_rewritten_whole_and_resume(fake_gcs, in_empty_cwd):
  workdir = f"{BUCKET}/metrics"
  writer = metric_writers.MetricWriter(workdir)
  writer.write(1, {"a": 1.0})
  jsonl = os.path.join(fake_gcs.local(workdir), "metrics.jsonl")
  with open(jsonl) as f:  # in the bucket at every logged point, not only at close
    assert [json.loads(line)["step"] for line in f] == [1]
  writer.close()
  writer = metric_writers.MetricWriter(workdir)
  writer.write(2, {"a": 2.0})
  writer.close()
  with open(jsonl) as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2]
  tensorboard = os.path.join(fake_gcs.local(workdir), "tensorboard")
  assert all(os.path.getsize(os.path.join(tensorboard, n)) for n in os.listdir(tensorboard))
  in_empty_cwd()


def test_missing_or_incomplete_shards_in_a_bucket(shard_dir, fake_gcs):
  with pytest.raises(shards.ShardError, match="gcloud storage rsync --recursive DIR "
                     f"{BUCKET}/none"):
    shards.load_manifest(f"{BUCKET}/none")
  copy = fake_gcs.local(f"{BUCKET}/partial")
  shutil.copytree(shard_dir, copy)
  name = shards.load_manifest(f"{BUCKET}/partial")["shards"]["test"][0]
  os.remove(os.path.join(copy, name))
  with pytest.raises(shards.ShardError, match=f"incomplete: 1 files missing .e.g. {name}"):
    shards.open_split(f"{BUCKET}/partial", "unseen")


def test_local_writes_are_atomic_and_leave_no_temp_file(tmp_path):
  path = tmp_path / "out.json"
  storage.write_text(path, "old")
  storage.write_text(path, "new")
  assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.json"]


def test_prepare_to_a_bucket_is_a_one_line_error(corpus, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "mirnet_jax.prepare", f"--source={corpus['root']}",
       f"--out={BUCKET}/shards"], cwd=tmp_path, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=REPO))
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: prepare writes to local disk only, not gs://fake-bucket/"
                         "shards"), last
  assert "gcloud storage rsync" in last
  assert os.listdir(tmp_path) == []  # no local folder named "gs:"
