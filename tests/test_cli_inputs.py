"""Bad inputs at every command-line entry point (issue 7, section 4).

Each case runs the real command in a subprocess and checks what a user sees: an exit status
that is non-zero where the command could not do its job, a last stderr line `error: ...`
naming the path or the reason (never a traceback), and no partial output. Where a command
goes on past a bad file (prepare skips it, embed embeds the other files), the file is
reported and counted. Commands that import JAX cost a few seconds each, so one embed and
one prepare invocation cover many files; each case is still its own test.
"""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mirnet_jax import features
from mirnet_jax.data import shards
from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", f"mirnet_jax.{module}", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def _last_line(result: subprocess.CompletedProcess) -> str:
  lines = result.stderr.strip().splitlines()
  return lines[-1] if lines else ""


def _assert_fails(result: subprocess.CompletedProcess, *fragments: str):
  """Non-zero exit, no traceback, and a one-line `error: ...` naming `fragments`."""
  assert result.returncode != 0, result.stdout + result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  last = _last_line(result)
  assert last.startswith(("error: ", "demo_corpus: error: ")), result.stderr
  for fragment in fragments:
    assert fragment in last, last


def _leftovers(directory) -> list[str]:
  """Temporary files a command would leave if it died mid-write."""
  return [os.path.join(d, n) for d, _, names in os.walk(directory) for n in names
          if ".tmp-" in n]


def _mixture(seconds: float, rate: int) -> np.ndarray:
  return (conftest.synth_voice(101, 0, seconds, rate)
          + conftest.synth_voice(103, 1, seconds, rate))


def _file_bytes(data: np.ndarray, rate: int, fmt: str, subtype: str = "PCM_16") -> bytes:
  buffer = io.BytesIO()
  sf.write(buffer, data, rate, format=fmt, subtype=subtype)
  return buffer.getvalue()


# The bad audio files, each with what the command must say about it. Written under any
# name (LibriSpeech-style names for prepare).
BAD_AUDIO = {
    "corrupt_flac": (".flac", "cannot decode"),
    "truncated_flac": (".flac", "cannot decode"),
    "truncated_wav": (".wav", "truncated"),
    "zero_byte_file": (".wav", "empty file (0 bytes)"),
    "zero_samples": (".wav", "no samples"),
    "all_silent": (".flac", "silent"),
    "not_audio_renamed_wav": (".wav", "cannot decode"),
    "nan_samples": (".wav", "non-finite samples"),
}
# Inputs at other rates and channel counts: resampled to 16 kHz and mixed down, not skipped.
GOOD_AUDIO = {
    "rate_8k": (".wav", 8000, 1),
    "rate_44k_stereo": (".wav", 44100, 2),
    "rate_16k": (".flac", 16000, 1),
}


def _write_bad(path_stem: str, kind: str) -> str:
  ext, _ = BAD_AUDIO[kind]
  path = path_stem + ext
  rng = np.random.default_rng(0)
  if kind == "corrupt_flac":
    content = b"fLaC" + bytes(rng.integers(0, 256, 4000, np.uint8))
  elif kind == "truncated_flac":
    content = _file_bytes(_mixture(3.0, 16000), 16000, "FLAC")
    content = content[:len(content) // 2]
  elif kind == "truncated_wav":
    content = _file_bytes(_mixture(3.0, 16000), 16000, "WAV")
    content = content[:len(content) // 2]
  elif kind == "zero_byte_file":
    content = b""
  elif kind == "zero_samples":
    content = _file_bytes(np.zeros(0, np.float32), 16000, "WAV")
  elif kind == "all_silent":
    content = _file_bytes(np.zeros(3 * 16000, np.float32), 16000, "FLAC")
  elif kind == "not_audio_renamed_wav":
    content = json.dumps({"this": "is a JSON file", "not": "audio"}).encode() * 20
  elif kind == "nan_samples":
    wave = _mixture(2.0, 16000)
    wave[1000:1010] = np.nan
    content = _file_bytes(wave, 16000, "WAV", subtype="FLOAT")
  with open(path, "wb") as f:
    f.write(content)
  return path


def _write_good(path_stem: str, kind: str) -> str:
  ext, rate, channels = GOOD_AUDIO[kind]
  wave = _mixture(3.0, rate)
  if channels == 2:
    wave = np.stack([wave, 0.5 * wave], axis=1)
  sf.write(path_stem + ext, wave, rate)
  return path_stem + ext


# ---------------------------------------------------------------------------- embed

@pytest.fixture(scope="module")
def embed_run(trained_workdir, tmp_path_factory):
  """One embed invocation over every good and bad input (the convention: bad files are
  reported and counted, the others embedded)."""
  root = tmp_path_factory.mktemp("embed_inputs")
  paths = {kind: _write_bad(str(root / kind), kind) for kind in BAD_AUDIO}
  paths["missing_path"] = str(root / "missing_path.wav")
  (root / "a_directory").mkdir()
  (root / "a_directory" / "notes.txt").write_text("no audio here")
  paths["a_directory"] = str(root / "a_directory")
  paths.update({kind: _write_good(str(root / kind), kind) for kind in GOOD_AUDIO})
  out = root / "out"
  result = _run("embed", f"--workdir={trained_workdir}", f"--out_dir={out}", *paths.values())
  return dict(result=result, paths=paths, out=out)


EMBED_BAD = {kind: reason for kind, (_, reason) in BAD_AUDIO.items()}
EMBED_BAD.update(missing_path="no such file", a_directory="a directory, not an audio file")


@pytest.mark.parametrize("kind", sorted(EMBED_BAD))
def test_embed_reports_a_bad_file_and_writes_nothing_for_it(embed_run, kind):
  path = embed_run["paths"][kind]
  lines = [l for l in embed_run["result"].stderr.splitlines() if l.startswith(f"{path}: ")]
  assert len(lines) == 1 and lines[0].startswith(f"{path}: skipped: {EMBED_BAD[kind]}"), lines
  assert not os.path.exists(embed_run["out"] / f"{kind}.npy")


@pytest.mark.parametrize("kind", sorted(GOOD_AUDIO))
def test_embed_resamples_and_mixes_down_other_rates_and_channels(embed_run, kind):
  embeddings = np.load(embed_run["out"] / f"{kind}.npy")
  assert embeddings.shape == (2, 16) and np.all(np.isfinite(embeddings))
  assert f"{embed_run['paths'][kind]}: 2 x 16 embeddings from 3.00 s" in \
      embed_run["result"].stdout


def test_embed_counts_the_failures_in_its_exit_status(embed_run):
  result = embed_run["result"]
  assert "Traceback" not in result.stderr
  assert result.returncode == 1
  assert _last_line(result) == (f"error: {len(EMBED_BAD)} of {len(EMBED_BAD) + len(GOOD_AUDIO)}"
                                " files could not be embedded")
  assert sorted(os.listdir(embed_run["out"])) == sorted(f"{k}.npy" for k in GOOD_AUDIO)


def test_embed_of_a_missing_workdir_writes_nothing(tmp_path):
  wave = tmp_path / "mix.wav"
  sf.write(str(wave), _mixture(2.0, 16000), 16000)
  result = _run("embed", f"--workdir={tmp_path / 'nope'}", f"--out_dir={tmp_path / 'out'}",
                str(wave))
  _assert_fails(result, "no config.json", str(tmp_path / "nope"))
  assert sorted(os.listdir(tmp_path)) == ["mix.wav"]


def test_embed_of_a_workdir_without_checkpoint_writes_nothing(trained_workdir, tmp_path):
  workdir = tmp_path / "no_checkpoint"
  workdir.mkdir()
  shutil.copy(os.path.join(trained_workdir, "config.json"), workdir)
  wave = tmp_path / "mix.wav"
  sf.write(str(wave), _mixture(2.0, 16000), 16000)
  result = _run("embed", f"--workdir={workdir}", str(wave))
  _assert_fails(result, "no checkpoint", str(workdir))
  assert sorted(os.listdir(tmp_path)) == ["mix.wav", "no_checkpoint"]


def test_embed_into_a_file_as_out_dir(trained_workdir, tmp_path):
  sf.write(str(tmp_path / "mix.wav"), _mixture(2.0, 16000), 16000)
  (tmp_path / "out").write_text("a file")
  _assert_fails(_run("embed", f"--workdir={trained_workdir}", f"--out_dir={tmp_path / 'out'}",
                     str(tmp_path / "mix.wav")), "not a directory", str(tmp_path / "out"))
  assert sorted(os.listdir(tmp_path)) == ["mix.wav", "out"]


def _run_measured(args: list[str], log_dir) -> tuple[int, float, str, str]:
  """Runs `args`; returns (exit status, peak RSS in MiB of that process alone, stdout,
  stderr)."""
  out, err = log_dir / "stdout.txt", log_dir / "stderr.txt"
  with open(out, "w") as o, open(err, "w") as e:
    proc = subprocess.Popen(args, cwd=REPO, stdout=o, stderr=e)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
  return proc.returncode, usage.ru_maxrss / 1024, out.read_text(), err.read_text()


@pytest.mark.slow
def test_embed_of_a_one_hour_file_runs_in_bounded_memory(trained_workdir, tmp_path):
  # Low-level noise as 16 kHz int16 WAVs (115 MB for the hour), written a minute at a time.
  rng = np.random.default_rng(0)
  for name, minutes in (("ten_seconds", 1 / 6), ("one_hour", 60)):
    with sf.SoundFile(str(tmp_path / f"{name}.wav"), "w", 16000, 1, subtype="PCM_16") as f:
      for _ in range(max(1, int(minutes))):
        f.write((0.01 * rng.standard_normal(int(min(minutes, 1) * 60 * 16000))
                 ).astype(np.float32))
  command = [sys.executable, "-m", "mirnet_jax.embed", f"--workdir={trained_workdir}",
             f"--out_dir={tmp_path / 'out'}"]
  rc, base_mib, _, err = _run_measured(command + [str(tmp_path / "ten_seconds.wav")], tmp_path)
  assert rc == 0, err
  rc, hour_mib, out, err = _run_measured(command + [str(tmp_path / "one_hour.wav")], tmp_path)
  assert rc == 0, err
  assert "2 x 16 embeddings from 3600.00 s (7200 windows)" in out
  assert np.load(tmp_path / "out" / "one_hour.npy").shape == (2, 16)
  # Holding the hour at once would cost at least its 16 kHz float32 waveform (230 MB),
  # and its stored STFT twice that; streamed, the peak is that of a 10 s file plus
  # allocator noise (measured: +24 MB on the 2-core CI machine).
  assert hour_mib - base_mib < 100, (base_mib, hour_mib)


# ---------------------------------------------------------------------------- prepare

def _speaker_dir(root, subset: str, speaker: int):
  path = root / subset / str(speaker) / "7"
  path.mkdir(parents=True, exist_ok=True)
  return path


def _write_good_corpus(root, train=(101, 102, 103), test=(201, 202)):
  for subset, speakers in (("train", train), ("test", test)):
    for s in speakers:
      for u in range(6):  # 6: 3 to train on, 2 seen and 1 validation utterance
        sf.write(str(_speaker_dir(root, subset, s) / f"{s}-7-{u:04d}.flac"),
                 conftest.synth_voice(s, u, 2.0), 16000)


@pytest.fixture(scope="module")
def prepare_run(tmp_path_factory):
  """One preparation of a corpus holding every kind of bad file among good ones."""
  root = tmp_path_factory.mktemp("prepare_inputs")
  corpus = root / "corpus"
  _write_good_corpus(corpus)
  paths = {}
  for i, kind in enumerate(sorted(BAD_AUDIO)):
    paths[kind] = _write_bad(str(_speaker_dir(corpus, "train", 101) / f"101-7-09{i:02d}"), kind)
  for i, kind in enumerate(sorted(GOOD_AUDIO)):
    paths[kind] = _write_good(str(_speaker_dir(corpus, "train", 102) / f"102-7-08{i:02d}"),
                              kind)
  out = root / "shards"
  result = _run("prepare", f"--source={corpus}", f"--out={out}", "--workers=1")
  manifest = json.loads((out / shards.MANIFEST).read_text()) if result.returncode == 0 else {}
  return dict(result=result, paths=paths, out=out, manifest=manifest)


@pytest.mark.parametrize("kind", sorted(BAD_AUDIO))
def test_prepare_skips_and_lists_a_bad_file(prepare_run, kind):
  skipped = {s["locator"]: s["reason"] for s in prepare_run["manifest"]["skipped"]}
  assert BAD_AUDIO[kind][1] in skipped[prepare_run["paths"][kind]]


@pytest.mark.parametrize("kind", sorted(GOOD_AUDIO))
def test_prepare_uses_other_rates_and_channels(prepare_run, kind):
  utterance = os.path.splitext(os.path.basename(prepare_run["paths"][kind]))[0]
  found = []
  for split in ("train", "validation", "seen"):
    s = shards.open_split(str(prepare_run["out"]), split)
    found += [s.frames[i] for i in range(len(s)) if s.utterance[i] == utterance]
  assert found == [features.num_frames(3 * 16000)]


def test_prepare_with_skipped_files_succeeds_and_counts_them(prepare_run):
  result = prepare_run["result"]
  assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
  assert prepare_run["manifest"]["num_skipped"] == len(BAD_AUDIO)
  assert f"skipped    {len(BAD_AUDIO)} files" in result.stdout
  assert not _leftovers(prepare_run["out"])


def test_prepare_of_a_missing_source_writes_nothing(tmp_path):
  _assert_fails(_run("prepare", f"--source={tmp_path / 'nope'}", f"--out={tmp_path / 'out'}"),
                "corpus directory not found", str(tmp_path / "nope"))
  assert os.listdir(tmp_path) == []


def test_prepare_of_a_file_as_source(tmp_path):
  (tmp_path / "corpus.tar").write_bytes(b"not a directory")
  _assert_fails(_run("prepare", f"--source={tmp_path / 'corpus.tar'}",
                     f"--out={tmp_path / 'out'}"), "not a directory")
  assert os.listdir(tmp_path) == ["corpus.tar"]


def test_prepare_of_an_empty_directory(tmp_path):
  (tmp_path / "corpus").mkdir()
  _assert_fails(_run("prepare", f"--source={tmp_path / 'corpus'}", f"--out={tmp_path / 'out'}"),
                "no train subsets match", str(tmp_path / "corpus"))
  assert os.listdir(tmp_path) == ["corpus"]


def test_prepare_of_subsets_without_audio_files(tmp_path):
  for subset in ("train", "test"):
    _speaker_dir(tmp_path / "corpus", subset, 1)
  (tmp_path / "corpus" / "train" / "1" / "7" / "README.txt").write_text("not audio")
  _assert_fails(_run("prepare", f"--source={tmp_path / 'corpus'}", f"--out={tmp_path / 'out'}"),
                "no audio files in the train subsets", str(tmp_path / "corpus"))
  assert sorted(os.listdir(tmp_path)) == ["corpus"]


def test_prepare_of_only_unusable_training_files_writes_no_manifest(tmp_path):
  corpus = tmp_path / "corpus"
  _write_good_corpus(corpus, train=())
  for i, kind in enumerate(sorted(BAD_AUDIO)):
    _write_bad(str(_speaker_dir(corpus, "train", 101) / f"101-7-{i:04d}"), kind)
  out = tmp_path / "out"
  result = _run("prepare", f"--source={corpus}", f"--out={out}", "--workers=1")
  _assert_fails(result, f"none of the {len(BAD_AUDIO)} audio files of the train subsets")
  left = sorted(os.listdir(out))
  assert shards.MANIFEST not in left and shards.INDEX not in left
  assert not [n for n in left if n.startswith("train-")] and not _leftovers(out), left


def test_prepare_into_a_file(tmp_path):
  _write_good_corpus(tmp_path / "corpus")
  (tmp_path / "out").write_text("a file")
  _assert_fails(_run("prepare", f"--source={tmp_path / 'corpus'}", f"--out={tmp_path / 'out'}"),
                "not a directory", str(tmp_path / "out"))
  assert (tmp_path / "out").read_text() == "a file"


# ---------------------------------------------------------------------------- demo_corpus

_DEMO_FLAGS = ("--train_speakers=1", "--test_speakers=0", "--crossdomain_speakers=0",
               "--utterances_per_speaker=2", "--workers=1")


def test_demo_corpus_into_a_file(tmp_path):
  (tmp_path / "out").write_text("a file")
  _assert_fails(_run("demo_corpus", f"--out={tmp_path / 'out'}", *_DEMO_FLAGS),
                "not a directory", str(tmp_path / "out"))
  assert (tmp_path / "out").read_text() == "a file"


def test_demo_corpus_remakes_a_damaged_file_with_a_counted_warning(tmp_path):
  if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed")
  out = tmp_path / "corpus"
  assert _run("demo_corpus", f"--out={out}", *_DEMO_FLAGS).returncode == 0
  flacs = sorted(str(p) for p in out.rglob("*.flac"))
  with open(flacs[0], "rb") as f:
    original = f.read()
  with open(flacs[0], "wb") as f:
    f.write(original[:len(original) // 3])
  result = _run("demo_corpus", f"--out={out}", *_DEMO_FLAGS)
  assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
  assert "1 synthesised, 1 kept, 1 unreadable files remade" in result.stdout
  assert f"{flacs[0]} is unreadable" in result.stderr
  with open(flacs[0], "rb") as f:
    assert f.read() == original


# ---------------------------------------------------------------------------- evaluate, main

@pytest.fixture(scope="module")
def foreign_shards(shard_dir, tmp_path_factory):
  """Shard directories that must be refused: prepared with other STFT settings, of another
  format version, with a corrupt manifest, with shard files missing."""
  with open(os.path.join(shard_dir, shards.MANIFEST)) as f:
    manifest = json.load(f)
  root = tmp_path_factory.mktemp("foreign_shards")
  dirs = {}
  for name in ("other_features", "other_version", "corrupt_manifest", "missing_files"):
    dirs[name] = root / name
    shutil.copytree(shard_dir, dirs[name])
  other = dict(manifest, features=dict(manifest["features"], hop_length=256))
  (dirs["other_features"] / shards.MANIFEST).write_text(json.dumps(other))
  (dirs["other_version"] / shards.MANIFEST).write_text(
      json.dumps(dict(manifest, format_version=shards.FORMAT_VERSION + 1)))
  (dirs["corrupt_manifest"] / shards.MANIFEST).write_text(json.dumps(manifest)[:100])
  for name in manifest["shards"]["test"]:
    os.remove(dirs["missing_files"] / name)
  return dirs


FOREIGN_SHARDS = {"other_features": "prepared with other features",
                  "other_version": "format version",
                  "corrupt_manifest": "not a valid manifest",
                  "missing_files": "is incomplete"}


@pytest.fixture()
def workdir_copy(trained_workdir, tmp_path):
  """The trained workdir, copied so that a test can see anything an evaluation writes."""
  shutil.copytree(trained_workdir, tmp_path / "workdir",
                  ignore=shutil.ignore_patterns("eval"))
  return tmp_path / "workdir"


def test_evaluate_of_a_missing_workdir(tmp_path):
  _assert_fails(_run("evaluate", f"--workdir={tmp_path / 'nope'}"), "no config.json",
                str(tmp_path / "nope"))
  assert os.listdir(tmp_path) == []


def test_evaluate_of_a_workdir_without_checkpoint(trained_workdir, tmp_path):
  shutil.copy(os.path.join(trained_workdir, "config.json"), tmp_path)
  _assert_fails(_run("evaluate", f"--workdir={tmp_path}"), "no checkpoint", str(tmp_path))
  assert os.listdir(tmp_path) == ["config.json"]


def test_evaluate_of_missing_shards(workdir_copy, tmp_path):
  _assert_fails(_run("evaluate", f"--workdir={workdir_copy}", f"--shards={tmp_path / 'nope'}"),
                "no manifest.json", str(tmp_path / "nope"))
  assert not (workdir_copy / "eval").exists()


def test_evaluate_with_missing_trials_from(workdir_copy, tmp_path):
  result = _run("evaluate", f"--workdir={workdir_copy}", f"--trials_from={tmp_path / 'nope'}")
  _assert_fails(result, "trials_seen.json", str(tmp_path / "nope"))
  assert not (workdir_copy / "eval").exists()


@pytest.mark.parametrize("kind", sorted(FOREIGN_SHARDS))
def test_evaluate_refuses_foreign_shards(workdir_copy, foreign_shards, kind):
  result = _run("evaluate", f"--workdir={workdir_copy}", f"--shards={foreign_shards[kind]}")
  _assert_fails(result, FOREIGN_SHARDS[kind], str(foreign_shards[kind]))
  assert not (workdir_copy / "eval").exists()


@pytest.mark.parametrize("kind", ["other_features", "corrupt_manifest"])
def test_main_refuses_foreign_shards(foreign_shards, tmp_path, kind):
  result = _run("main", "--config=configs/tiny.py", f"--workdir={tmp_path / 'w'}",
                f"--config.data.shards={foreign_shards[kind]}")
  _assert_fails(result, FOREIGN_SHARDS[kind], str(foreign_shards[kind]))
  assert not (tmp_path / "w" / "checkpoints").exists()
