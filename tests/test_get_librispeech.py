"""launch/get_librispeech.sh against a loopback HTTP server serving tiny tarballs in the
real LibriSpeech layout: download, MD5 check, extraction, resume, reruns, bad input.

Nothing here leaves the machine: the script runs with --mirror on 127.0.0.1 and a PATH
of only the tools it needs, with a stand-in df that reports a chosen free space.
"""

import hashlib
import http.server
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import threading

import numpy as np
import pytest
import soundfile as sf

from mirnet_jax.data import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "launch", "get_librispeech.sh")
TOOLS = ("bash", "awk", "tr", "wc", "mkdir", "rm", "mv", "tar", "gzip", "md5sum")
# Folders of the tiny subsets: speaker -> chapters; two utterances a chapter.
LAYOUT = {"dev-clean": {"84": ["121123"], "174": ["50561", "84280"]},
          "train-clean-100": {"19": ["198"]}}
FAKE_DF = """#!/bin/bash
# Stands in for df -Pk: the free space in $FAKE_DF_FREE_KB (1024-byte blocks).
echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
echo "/dev/fake 999999999 0 $FAKE_DF_FREE_KB 1% /"
"""


def _waveform(seed):
  return np.random.default_rng(seed).uniform(-0.5, 0.5, 8000).astype(np.float32)


def _tarball(subset):
  """NAME.tar.gz's bytes, laid out as the official one (top-level files too)."""
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:

    def add(name, data):
      info = tarfile.TarInfo(f"LibriSpeech/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))

    for name in ("SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT", "LICENSE.TXT",
                 "README.TXT"):
      add(name, f";; {name} of the tiny test corpus\n".encode())
    for spk, chapters in LAYOUT[subset].items():
      for ch in chapters:
        lines = []
        for utt in range(2):
          utt_id = f"{spk}-{ch}-{utt:04d}"
          flac = io.BytesIO()
          sf.write(flac, _waveform(int(ch) + utt), 16000, format="FLAC")
          add(f"{subset}/{spk}/{ch}/{utt_id}.flac", flac.getvalue())
          lines.append(f"{utt_id} WORDS OF UTTERANCE {utt}\n")
        add(f"{subset}/{spk}/{ch}/{spk}-{ch}.trans.txt", "".join(lines).encode())
  return buf.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves the server's folder with Range requests; the first `server.cuts` responses
  stop halfway (the connection closes), as a dropped download does."""

  def do_GET(self):  # noqa: N802  (http.server's name)
    server = self.server
    server.requests.append((self.path, self.headers.get("Range")))
    path = os.path.join(server.root, self.path.lstrip("/"))
    if not os.path.isfile(path):
      self.send_error(404)
      return
    with open(path, "rb") as f:
      data = f.read()
    start = 0
    ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
    if ranged:
      start = int(ranged.group(1))
      if start >= len(data):
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{len(data)}")
        self.send_header("Content-Length", "0")
        self.end_headers()
        return
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
      self.send_response(200)
    body = data[start:]
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if server.cuts > 0:
      server.cuts -= 1
      body = body[:len(body) // 2]
    self.wfile.write(body)

  def log_message(self, *args):
    pass


@pytest.fixture
def server(tmp_path):
  """A loopback HTTP server of a folder holding the tiny tarballs and their md5sums."""
  root = tmp_path / "served"
  root.mkdir()
  sums = []
  for subset in LAYOUT:
    data = _tarball(subset)
    (root / f"{subset}.tar.gz").write_bytes(data)
    sums.append(f"{hashlib.md5(data).hexdigest()}  {subset}.tar.gz\n")
  (tmp_path / "md5sum.txt").write_text("".join(sums))
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  httpd.root, httpd.requests, httpd.cuts = str(root), [], 0
  httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.md5sums = str(tmp_path / "md5sum.txt")
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield httpd
  httpd.shutdown()
  httpd.server_close()


def _bin(tmp_path, downloader="curl"):
  """A PATH folder: TOOLS and the downloader (symlinks), and the stand-in df."""
  path = tmp_path / f"bin-{downloader or 'none'}"
  if not path.exists():
    path.mkdir()
    for tool in TOOLS + ((downloader,) if downloader else ()):
      found = shutil.which(tool)
      if found is None:
        pytest.skip(f"{tool} is not installed")
      os.symlink(found, path / tool)
    (path / "df").write_text(FAKE_DF)
    (path / "df").chmod(0o755)
  return path


def _get(tmp_path, server, *args, downloader="curl", free_kb=10**9, mirror=True):
  """Runs the script on DIR = tmp_path/data with the server as its mirror."""
  extra = ["--mirror", server.url, "--md5sums", server.md5sums] if mirror else []
  env = {"PATH": str(_bin(tmp_path, downloader)), "LC_ALL": "C",
         "FAKE_DF_FREE_KB": str(free_kb), "HOME": str(tmp_path)}
  return subprocess.run([shutil.which("bash"), SCRIPT, str(tmp_path / "data"), *args,
                         *extra], check=False, capture_output=True, text=True, env=env,
                        cwd=REPO, timeout=60)


def _prepare_command(stdout):
  return shlex.split(stdout.splitlines()[-1])


def _assert_subset_on_disk(data, subset):
  corpus = sources.open_corpus(str(data / "LibriSpeech"))
  assert subset in corpus.subsets()
  refs = corpus.refs(subset)
  expected = sum(2 * len(chapters) for chapters in LAYOUT[subset].values())
  assert len(refs) == expected
  ref = refs[0]
  utterance = corpus.load(ref)
  seed = int(ref.chapter) + int(ref.utterance.rsplit("-", 1)[1])
  # FLAC stores 16-bit samples: equal to the written waveform within a quantum.
  np.testing.assert_allclose(utterance.waveform, _waveform(seed), atol=2**-14)
  for name in ("SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT"):
    assert (data / "LibriSpeech" / name).is_file()


def _leftovers(data):
  """What a finished run must not leave in DIR: tarballs, partials, extract folders."""
  return sorted(n for n in os.listdir(data) if n not in ("LibriSpeech",))


def test_full_run_extracts_and_prints_prepare_command(tmp_path, server):
  result = _get(tmp_path, server, "--subsets=dev-clean,train-clean-100")
  assert result.returncode == 0, result.stderr
  data = (tmp_path / "data").resolve()
  for subset in LAYOUT:
    _assert_subset_on_disk(data, subset)
  assert sources.open_corpus(str(data / "LibriSpeech")).subsets() == sorted(LAYOUT)
  assert _leftovers(data) == []
  assert [r for _, r in server.requests] == [None, None]
  assert _prepare_command(result.stdout) == [
      "python", "-m", "mirnet_jax.prepare", f"--source={data}/LibriSpeech",
      f"--out={data}/shards", "--train_subsets=train-clean-100",
      "--test_subsets=dev-clean"]


def test_rerun_skips_finished_subset(tmp_path, server):
  assert _get(tmp_path, server, "--subsets", "dev-clean").returncode == 0
  server.requests.clear()
  # The disk check counts only what is left to download: none here, so none is refused.
  result = _get(tmp_path, server, "--subsets", "dev-clean", free_kb=0)
  assert result.returncode == 0, result.stderr
  assert server.requests == []
  data = (tmp_path / "data").resolve()
  assert f"dev-clean: complete, skipped ({data}/LibriSpeech/dev-clean)" in result.stdout
  # No training subset: prepare's evaluation-only corpus.
  assert _prepare_command(result.stdout)[-2:] == ["--train_subsets=",
                                                  "--test_subsets=dev-clean"]


@pytest.mark.parametrize("downloader", ["curl", "wget"])
def test_dropped_download_resumes_in_the_same_run(tmp_path, server, downloader):
  server.cuts = 1
  result = _get(tmp_path, server, "--subsets", "dev-clean", downloader=downloader)
  assert result.returncode == 0, result.stderr
  size = os.path.getsize(os.path.join(server.root, "dev-clean.tar.gz"))
  assert server.requests == [("/dev-clean.tar.gz", None),
                             ("/dev-clean.tar.gz", f"bytes={size // 2}-")]
  _assert_subset_on_disk((tmp_path / "data").resolve(), "dev-clean")


def test_interrupted_download_resumes_on_rerun(tmp_path, server):
  server.cuts = 3  # every try of the first run is dropped halfway
  result = _get(tmp_path, server, "--subsets", "dev-clean")
  assert result.returncode == 1
  last = result.stderr.splitlines()[-1]
  assert last.startswith("error: downloading ") and "rerun to resume" in last
  data = tmp_path / "data"
  partial = data / "dev-clean.tar.gz.partial"
  kept = partial.stat().st_size
  assert kept > 0 and f"{kept} bytes kept" in last
  assert not (data / "LibriSpeech" / "dev-clean").exists()

  server.requests.clear()
  result = _get(tmp_path, server, "--subsets", "dev-clean")
  assert result.returncode == 0, result.stderr
  assert server.requests == [("/dev-clean.tar.gz", f"bytes={kept}-")]
  assert f"resuming {server.url}/dev-clean.tar.gz after {kept} bytes" in result.stdout
  # Extracted only after the MD5 of the joined bytes matched.
  _assert_subset_on_disk(data.resolve(), "dev-clean")
  assert _leftovers(data) == []


@pytest.mark.parametrize("downloader", ["curl", "wget"])
def test_complete_partial_download_is_used(tmp_path, server, downloader):
  # A run stopped after the last byte, before the rename: the server refuses the range.
  data = tmp_path / "data"
  data.mkdir()
  shutil.copy(os.path.join(server.root, "dev-clean.tar.gz"),
              data / "dev-clean.tar.gz.partial")
  result = _get(tmp_path, server, "--subsets", "dev-clean", downloader=downloader)
  assert result.returncode == 0, result.stderr
  size = os.path.getsize(os.path.join(server.root, "dev-clean.tar.gz"))
  assert server.requests[0] == ("/dev-clean.tar.gz", f"bytes={size}-")
  _assert_subset_on_disk(data.resolve(), "dev-clean")
  assert _leftovers(data) == []


def test_corrupted_tarball_is_refused_then_fetched_again(tmp_path, server):
  path = os.path.join(server.root, "dev-clean.tar.gz")
  with open(path, "rb") as f:
    good = f.read()
  bad = bytearray(good)
  bad[len(bad) // 2] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bad)
  result = _get(tmp_path, server, "--subsets", "dev-clean")
  assert result.returncode == 1
  assert result.stdout.splitlines()[-1].startswith("dev-clean: ")
  data = (tmp_path / "data").resolve()
  assert result.stderr == (
      f"error: {data}/dev-clean.tar.gz: MD5 {hashlib.md5(bad).hexdigest()}, expected "
      f"{hashlib.md5(good).hexdigest()}; the file was deleted, rerun to download it "
      "again\n")
  assert not (data / "LibriSpeech").exists()
  assert _leftovers(data) == []

  with open(path, "wb") as f:
    f.write(good)
  result = _get(tmp_path, server, "--subsets", "dev-clean")
  assert result.returncode == 0, result.stderr
  _assert_subset_on_disk(data, "dev-clean")


def test_too_little_disk_is_refused_before_downloading(tmp_path, server):
  # dev-clean: about 338 MB of tarball and as much extracted; 500 MB free.
  result = _get(tmp_path, server, "--subsets", "dev-clean", free_kb=500_000)
  assert result.returncode == 1 and server.requests == []
  data = (tmp_path / "data").resolve()
  assert result.stderr == (
      f"error: {data} has 0.5 GB free; dev-clean need about 0.7 GB (approximate sizes): "
      "free some space, choose fewer --subsets, or pass --skip-disk-check\n")
  result = _get(tmp_path, server, "--subsets", "dev-clean", "--skip-disk-check",
                free_kb=500_000)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args, message", [
    (["--subsets", "dev-clean,train-clean-50"],
     "unknown subset 'train-clean-50' in --subsets (LibriSpeech has: train-clean-100,"
     "train-clean-360,train-other-500,dev-clean,dev-other,test-clean,test-other)"),
    (["--subsets"], "--subsets needs a value"),
    (["--bogus"], "unknown flag '--bogus'"),
    (["--md5sums", "/no/such/md5sum.txt"],
     "--md5sums: cannot read '/no/such/md5sum.txt'")])
def test_bad_arguments_give_one_line_error(tmp_path, server, args, message):
  result = _get(tmp_path, server, *args, mirror=False)
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.splitlines() == [
      f"error: {message} (see: bash {SCRIPT} --help)"]
  assert not (tmp_path / "data").exists() and server.requests == []


def test_missing_md5_sum_stops_before_downloading(tmp_path, server):
  result = _get(tmp_path, server, "--subsets", "test-clean")
  assert result.returncode == 1 and server.requests == []
  assert result.stderr == f"error: {server.md5sums} has no MD5 for test-clean.tar.gz\n"


def test_without_curl_or_wget(tmp_path, server):
  result = _get(tmp_path, server, "--subsets", "dev-clean", downloader=None)
  assert result.returncode == 1 and server.requests == []
  assert result.stderr.startswith("error: neither curl nor wget is installed")


def test_help_names_the_default_subsets():
  result = subprocess.run(["bash", SCRIPT, "--help"], check=False, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0
  assert "bash launch/get_librispeech.sh DIR" in result.stdout
  assert "default all seven, the paper's recipe" in result.stdout
