"""Tests of the espeak-ng demo corpus (mirnet_jax.data.demo_corpus and its entry point)."""

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mirnet_jax.data import demo_corpus

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed (apt-get install espeak-ng)")

TRAIN, TEST, UTTS, SEED = 3, 2, 2, 7
_FLAC_RE = re.compile(r"^(\d+)-(\d+)-(\d{4})\.flac$")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  """The same tiny corpus made twice: with 2 worker processes and in-process."""
  root = tmp_path_factory.mktemp("demo")
  a, b = str(root / "a"), str(root / "b")
  summary = demo_corpus.generate(a, TRAIN, TEST, UTTS, seed=SEED, workers=2)
  demo_corpus.generate(b, TRAIN, TEST, UTTS, seed=SEED, workers=1)
  return a, b, summary


def _files(root):
  out = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      path = os.path.join(dirpath, name)
      out[os.path.relpath(path, root)] = path
  return out


def _flacs(root):
  return {rel: p for rel, p in _files(root).items() if rel.endswith(".flac")}


def _speakers_txt(root):
  rows = {}
  with open(os.path.join(root, "SPEAKERS.TXT")) as f:
    for line in f:
      if line.startswith(";"):
        continue
      spk, sex, subset, minutes, name = [c.strip() for c in line.split("|")]
      rows[spk] = (sex, subset, float(minutes), name)
  return rows


def test_summary(demo):
  _, _, summary = demo
  assert summary["speakers"] == {"train": TRAIN, "test": TEST}
  assert summary["utterances"] == {"train": TRAIN * UTTS, "test": TEST * UTTS}
  assert summary["synthesised"] == (TRAIN + TEST) * UTTS and summary["skipped"] == 0
  assert 0 < summary["hours"]["train"] < TRAIN * UTTS * 15 / 3600


def test_layout_and_names(demo):
  root = demo[0]
  assert sorted(os.listdir(root)) == ["SPEAKERS.TXT", "manifest.json", "test", "train"]
  flacs = _flacs(root)
  assert len(flacs) == (TRAIN + TEST) * UTTS
  for rel in flacs:
    subset, spk, chapter, name = rel.split(os.sep)
    m = _FLAC_RE.match(name)
    assert m, name
    assert subset in ("train", "test") and m.group(1) == spk and m.group(2) == chapter
  # No temp files left behind by the atomic writes.
  assert not [rel for rel in _files(root) if ".tmp" in rel]
  # Utterance ids of a chapter count up from 0000, 1 or 2 chapters per speaker.
  for subset in ("train", "test"):
    for spk in os.listdir(os.path.join(root, subset)):
      chapters = os.listdir(os.path.join(root, subset, spk))
      assert 1 <= len(chapters) <= 2
      for chapter in chapters:
        names = sorted(n for n in os.listdir(os.path.join(root, subset, spk, chapter))
                       if n.endswith(".flac"))
        assert names == [f"{spk}-{chapter}-{u:04d}.flac" for u in range(len(names))]


def test_audio_format_and_durations(demo):
  for path in _flacs(demo[0]).values():
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "FLAC", "PCM_16", 16000, 1)
    assert demo_corpus.MIN_SECONDS <= info.frames / info.samplerate <= demo_corpus.MAX_SECONDS
    data, _ = sf.read(path)
    assert np.abs(data).max() > 0.01  # speech, not silence


def test_transcripts_match_files(demo):
  root = demo[0]
  flacs = _flacs(root)
  trans = [p for rel, p in _files(root).items() if rel.endswith(".trans.txt")]
  listed = set()
  for path in trans:
    chapter_dir = os.path.dirname(path)
    spk, chapter = os.path.basename(path)[:-len(".trans.txt")].split("-")
    assert chapter_dir.endswith(os.path.join(spk, chapter))
    with open(path) as f:
      lines = f.read().splitlines()
    ids = [line.split(" ", 1)[0] for line in lines]
    assert ids == sorted(n[:-5] for n in os.listdir(chapter_dir) if n.endswith(".flac"))
    for line in lines:
      utt_id, text = line.split(" ", 1)
      assert re.fullmatch(r"[A-Z' ]+", text) and len(text.split()) >= 3
      listed.add(utt_id)
  assert listed == {os.path.basename(rel)[:-5] for rel in flacs}


def test_utterances_of_a_speaker_differ_in_text(demo):
  root = demo[0]
  for path in (p for rel, p in _files(root).items() if rel.endswith(".trans.txt")):
    with open(path) as f:
      texts = [line.split(" ", 1)[1] for line in f.read().splitlines()]
    assert len(set(texts)) == len(texts)


def test_speakers_txt_and_disjoint_subsets(demo):
  root = demo[0]
  rows = _speakers_txt(root)
  on_disk = {s: set(os.listdir(os.path.join(root, s))) for s in ("train", "test")}
  assert len(on_disk["train"]) == TRAIN and len(on_disk["test"]) == TEST
  assert not on_disk["train"] & on_disk["test"]
  assert set(rows) == on_disk["train"] | on_disk["test"]
  for spk, (sex, subset, minutes, name) in rows.items():
    assert spk in on_disk[subset]
    assert sex in ("F", "M") and minutes > 0 and name.startswith("espeak en")
  # Neighbouring speaker ids differ in sex (hence in variant).
  ids = sorted(rows, key=int)
  assert all(rows[a][0] != rows[b][0] for a, b in zip(ids, ids[1:]))


def test_same_seed_is_byte_identical_across_worker_counts(demo):
  a, b, _ = demo
  fa, fb = _files(a), _files(b)
  assert fa.keys() == fb.keys()
  for rel in fa:
    with open(fa[rel], "rb") as x, open(fb[rel], "rb") as y:
      assert x.read() == y.read(), rel


def test_different_seed_gives_different_voices():
  a, b = demo_corpus.draw_voices(5, 0), demo_corpus.draw_voices(5, 1)
  assert [dataclasses.astuple(v) for v in a] != [dataclasses.astuple(v) for v in b]
  assert demo_corpus.draw_voices(5, 0) == a  # and the same seed the same voices


def test_draw_voices_300_distinct_and_prefix_stable():
  assert demo_corpus.max_speakers() >= 300
  voices = demo_corpus.draw_voices(300, 3)
  assert len({dataclasses.astuple(v) for v in voices}) == 300
  assert len({v.identity() for v in voices}) == 300
  assert demo_corpus.draw_voices(20, 3) == voices[:20]
  assert all(a.sex != b.sex for a, b in zip(voices, voices[1:]))
  accents, variants = demo_corpus.list_accents(), demo_corpus.list_variants()
  assert "en-us" in accents and not any(a.startswith("mb") for a in accents)
  for v in voices:
    assert v.accent in accents and v.variant in variants[v.sex]
  with pytest.raises(ValueError):
    demo_corpus.draw_voices(demo_corpus.max_speakers() + 1, 0)


def test_rerun_skips_existing_files(demo, tmp_path):
  src = demo[0]
  root = str(tmp_path / "copy")
  shutil.copytree(src, root)  # copy2 keeps the mtimes
  flacs = _flacs(root)
  before = {rel: os.stat(p).st_mtime_ns for rel, p in flacs.items()}
  # Simulate an interrupted run: one utterance and one transcript missing.
  missing = sorted(flacs)[0]
  os.remove(flacs[missing])
  trans = sorted(p for rel, p in _files(root).items() if rel.endswith(".trans.txt"))[-1]
  os.remove(trans)
  summary = demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=SEED, workers=1)
  assert summary["synthesised"] == 1 and summary["skipped"] == (TRAIN + TEST) * UTTS - 1
  for rel, p in _flacs(root).items():
    if rel != missing:
      assert os.stat(p).st_mtime_ns == before[rel], rel
  # Every file, the remade one and the recovered transcript included, equals the original.
  for rel, p in _files(src).items():
    with open(p, "rb") as x, open(os.path.join(root, rel), "rb") as y:
      assert x.read() == y.read(), rel
  with pytest.raises(ValueError, match="seed"):
    demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=SEED + 1, workers=1)


def test_manifest_records_the_espeak_ng_version_and_voice_lists(demo):
  root, _, summary = demo
  installed = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                             check=True).stdout
  manifest = demo_corpus.read_manifest(root)
  assert manifest["generator"] == "mirnet_jax.data.demo_corpus" and manifest["seed"] == SEED
  espeak = manifest["espeak_ng"]
  assert f": {espeak['version']} " in installed  # "text-to-speech: 1.51  Data at: ..."
  assert summary["espeak_ng"] == espeak["version"]
  assert f"(espeak-ng {espeak['version']})" in demo_corpus.format_summary(summary)
  assert espeak["accents"] == list(demo_corpus.list_accents())
  assert espeak["variants"] == {k: list(v) for k, v in demo_corpus.list_variants().items()}
  # The voices of SPEAKERS.TXT come from those lists.
  for _, _, _, name in _speakers_txt(root).values():
    accent, variant = name.split()[1].split("+", 1)
    assert accent in espeak["accents"]
    assert variant in espeak["variants"]["F"] + espeak["variants"]["M"]
  assert demo_corpus.read_manifest(os.path.dirname(root)) is None  # not a corpus


def _copy_without_one_flac(src, root):
  shutil.copytree(src, root)
  os.remove(sorted(_flacs(root).values())[0])


def _espeak_warnings(caplog):
  return [r.getMessage() for r in caplog.records
          if r.levelno == logging.WARNING and "espeak-ng" in r.getMessage()]


@pytest.mark.parametrize("made_by", ["9.99", None])  # None: made before manifests
def test_completing_a_corpus_of_another_espeak_ng_warns_and_records_both(
    demo, tmp_path, caplog, made_by):
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  installed = demo_corpus.espeak_version()
  path = os.path.join(root, demo_corpus.MANIFEST)
  if made_by is None:
    os.remove(path)
  else:
    manifest = demo_corpus.read_manifest(root)
    manifest["espeak_ng"]["version"] = made_by
    with open(path, "w") as f:
      json.dump(manifest, f)
  recorded = made_by or demo_corpus.UNKNOWN_VERSION
  with caplog.at_level(logging.WARNING):
    summary = demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=SEED, workers=1)
  assert summary["synthesised"] == 1
  warning, = _espeak_warnings(caplog)
  assert (f"synthesised 1 files with espeak-ng {installed} into {root}, a corpus made "
          f"with espeak-ng {recorded}") in warning
  assert demo_corpus.read_manifest(root)["espeak_ng"]["version"] == f"{recorded}+{installed}"
  # Nothing left to make: no warning, and the recorded versions stay.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=SEED, workers=1)
  assert not _espeak_warnings(caplog)
  assert demo_corpus.read_manifest(root)["espeak_ng"]["version"] == f"{recorded}+{installed}"


def test_completing_with_the_same_espeak_ng_does_not_warn(demo, tmp_path, caplog):
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  with caplog.at_level(logging.WARNING):
    assert demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=SEED, workers=1)[
        "synthesised"] == 1
  assert not _espeak_warnings(caplog)
  assert (demo_corpus.read_manifest(root)["espeak_ng"]["version"] ==
          demo_corpus.espeak_version())


def test_a_corpus_kept_whole_keeps_its_version_under_another_espeak_ng(demo, tmp_path,
                                                                       monkeypatch, caplog):
  root = str(tmp_path / "copy")
  shutil.copytree(demo[0], root)
  made_by = demo_corpus.espeak_version()
  monkeypatch.setattr(demo_corpus, "espeak_version", lambda: "9.99")
  with caplog.at_level(logging.WARNING):
    assert demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=SEED, workers=1)[
        "synthesised"] == 0
  assert not _espeak_warnings(caplog)
  assert demo_corpus.read_manifest(root)["espeak_ng"]["version"] == made_by


def test_completing_a_corpus_of_other_voice_lists_is_refused(demo, tmp_path, monkeypatch):
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  accents = demo_corpus.list_accents()
  monkeypatch.setattr(demo_corpus, "espeak_version", lambda: "9.99")
  monkeypatch.setattr(demo_corpus, "list_accents", lambda: accents[:-1])
  with pytest.raises(ValueError, match=r"made with espeak-ng \S+, whose voice lists differ "
                     r"from those of the installed espeak-ng 9.99"):
    demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=SEED, workers=1)
  assert len(_flacs(root)) == (TRAIN + TEST) * UTTS - 1  # nothing made


def test_an_interrupted_corpus_refuses_another_seed(demo, tmp_path):
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  os.remove(os.path.join(root, "SPEAKERS.TXT"))  # written last: the run was interrupted
  with pytest.raises(ValueError, match="seed=7"):
    demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=SEED + 1, workers=1)


def test_transcript_normalisation():
  assert demo_corpus.transcript("Did Anna see it, today? Yes.") == "DID ANNA SEE IT TODAY YES"


@pytest.mark.parametrize("args, message", [
    ([], "--out is required"),
    (["--out=/tmp/x", "--train_speakers=0"], "--train_speakers must be >= 1"),
    (["--out=/tmp/x", "--train_speakers=100000"], "speakers are possible"),
])
def test_cli_usage_errors(args, message):
  proc = subprocess.run([sys.executable, "-m", "mirnet_jax.demo_corpus", *args], cwd=REPO,
                        capture_output=True, text=True)
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
