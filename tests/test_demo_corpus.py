"""Tests of the espeak-ng demo corpus (mirnet_jax.data.demo_corpus and its entry point)."""

import dataclasses
import functools
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

TRAIN, TEST, CROSS, UTTS, SEED = 3, 2, 2, 2, 7
_FLAC_RE = re.compile(r"^(\d+)-(\d+)-(\d{4})\.flac$")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _generate(root, workers=1, seed=SEED, **recipe):
  """The tiny corpus of these tests (voice transforms on, not the default, unless `recipe`
  says)."""
  recipe = dict(dict(crossdomain_speakers=CROSS, voice_transforms=True), **recipe)
  return demo_corpus.generate(root, TRAIN, TEST, UTTS, seed=seed, workers=workers, **recipe)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  """The same tiny corpus made twice: with 2 worker processes and in-process."""
  root = tmp_path_factory.mktemp("demo")
  a, b = str(root / "a"), str(root / "b")
  summary = _generate(a, workers=2)
  _generate(b)
  return a, b, summary


@pytest.fixture(scope="module")
def demo_without_transforms(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("plain") / "corpus")
  return root, _generate(root, voice_transforms=False)


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
  assert summary["speakers"] == {"train": TRAIN, "test": TEST, "crossdomain": CROSS}
  assert summary["utterances"] == {"train": TRAIN * UTTS, "test": TEST * UTTS,
                                   "crossdomain": CROSS * UTTS}
  assert summary["synthesised"] == (TRAIN + TEST + CROSS) * UTTS and summary["skipped"] == 0
  assert 0 < summary["hours"]["train"] < TRAIN * UTTS * 15 / 3600
  assert 0 < summary["hours"]["crossdomain"] < CROSS * UTTS * 15 / 3600
  line = demo_corpus.format_summary(summary)
  assert f"crossdomain {CROSS} speakers {CROSS * UTTS} utterances" in line
  assert "voice transforms on" in line


def test_layout_and_names(demo):
  root = demo[0]
  assert sorted(os.listdir(root)) == ["SPEAKERS.TXT", "crossdomain", "manifest.json", "test",
                                      "train"]
  flacs = _flacs(root)
  assert len(flacs) == (TRAIN + TEST + CROSS) * UTTS
  for rel in flacs:
    subset, spk, chapter, name = rel.split(os.sep)
    m = _FLAC_RE.match(name)
    assert m, name
    assert subset in demo_corpus.SUBSETS and m.group(1) == spk and m.group(2) == chapter
  # Speaker ids count up from 100 over train, test, then crossdomain.
  ids = {s: sorted(int(spk) for spk in os.listdir(os.path.join(root, s)))
         for s in demo_corpus.SUBSETS}
  assert ids["train"] + ids["test"] + ids["crossdomain"] == list(
      range(demo_corpus.FIRST_SPEAKER_ID, demo_corpus.FIRST_SPEAKER_ID + TRAIN + TEST + CROSS))
  # No temp files left behind by the atomic writes.
  assert not [rel for rel in _files(root) if ".tmp" in rel]
  # Utterance ids of a chapter count up from 0000, 1 or 2 chapters per speaker.
  for subset in demo_corpus.SUBSETS:
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
  on_disk = {s: set(os.listdir(os.path.join(root, s))) for s in demo_corpus.SUBSETS}
  assert [len(on_disk[s]) for s in demo_corpus.SUBSETS] == [TRAIN, TEST, CROSS]
  assert sum(len(ids) for ids in on_disk.values()) == len(set().union(*on_disk.values()))
  assert set(rows) == set().union(*on_disk.values())
  for spk, (sex, subset, minutes, name) in rows.items():
    assert spk in on_disk[subset]
    assert sex in ("F", "M") and minutes > 0 and name.startswith("espeak en")
    assert re.search(r" formant \d\.\d{3} tilt [+-]\d\.\d{3}", name), name
    # Klatt variants and a channel EQ are crossdomain's alone.
    assert ("+klatt" in name) == (" eq " in name) == (subset == "crossdomain"), name
  # Neighbouring train/test speaker ids differ in sex (hence in variant).
  ids = sorted((spk for spk, row in rows.items() if row[1] != "crossdomain"), key=int)
  assert all(rows[a][0] != rows[b][0] for a, b in zip(ids, ids[1:]))


def test_same_seed_is_byte_identical_across_worker_counts(demo):
  a, b, _ = demo
  fa, fb = _files(a), _files(b)
  assert fa.keys() == fb.keys()
  for rel in fa:
    with open(fa[rel], "rb") as x, open(fb[rel], "rb") as y:
      assert x.read() == y.read(), rel


@pytest.mark.parametrize("draw", [
    demo_corpus.draw_voices, functools.partial(demo_corpus.draw_voices, voice_transforms=False),
    demo_corpus.draw_crossdomain_voices])
def test_different_seed_gives_different_voices(draw):
  a, b = draw(5, 0), draw(5, 1)
  assert [dataclasses.astuple(v) for v in a] != [dataclasses.astuple(v) for v in b]
  assert draw(5, 0) == a  # and the same seed the same voices


@pytest.mark.parametrize("transforms", [True, False])
def test_draw_voices_300_distinct_and_prefix_stable(transforms):
  assert demo_corpus.max_speakers(transforms) >= 300
  voices = demo_corpus.draw_voices(300, 3, transforms)
  assert len({dataclasses.astuple(v) for v in voices}) == 300
  assert len({v.identity() for v in voices}) == 300
  assert demo_corpus.draw_voices(20, 3, transforms) == voices[:20]
  assert all(a.sex != b.sex for a, b in zip(voices, voices[1:]))
  accents, variants = demo_corpus.list_accents(), demo_corpus.list_variants()
  assert "en-us" in accents and not any(a.startswith("mb") for a in accents)
  for v in voices:
    assert v.accent in accents and v.variant in variants[v.sex]
    assert not v.variant.lower().startswith("klatt") and not v.channel_eq
  with pytest.raises(ValueError):
    demo_corpus.draw_voices(demo_corpus.max_speakers(transforms) + 1, 0, transforms)


def test_voice_transforms_spread_formants_tilts_pitches_and_speeds():
  voices = demo_corpus.draw_voices(300, 3, voice_transforms=True)
  formants, tilts = [v.formant_scale for v in voices], [v.tilt for v in voices]
  low, high = demo_corpus.FORMANT_RANGE
  assert low <= min(formants) < 0.9 and 1.12 < max(formants) <= high
  low, high = demo_corpus.TILT_RANGE
  assert low <= min(tilts) < -0.5 and 0.5 < max(tilts) <= high
  # Pitches and speeds beyond the grids of the voices without transforms.
  for field, grid in (("pitch", demo_corpus.PITCH_GRID), ("speed", demo_corpus.SPEED_GRID)):
    drawn = {getattr(v, field) for v in voices}
    assert min(drawn) < min(grid) and max(drawn) > max(grid), field


def _voices_before_transforms(num_speakers, seed):
  """The draw of the corpora before voice transforms (on today's variant lists)."""
  accents, variants, voices, seen = (demo_corpus.list_accents(),
                                     demo_corpus.list_variants(), [], set())
  for i in range(num_speakers):
    rng, sex, voice = np.random.default_rng([seed, 0, i]), "FM"[i % 2], None
    while voice is None or voice.identity() in seen:
      voice = demo_corpus.Voice(str(rng.choice(accents)), str(rng.choice(variants[sex])), sex,
                                *(int(rng.choice(g)) for g in (
                                    range(20, 81, 5), range(50, 151, 10),
                                    range(130, 201, 10), (0, 1, 2, 3), (40, 50, 60, 70, 80))))
    seen.add(voice.identity())
    voices.append(voice)
  return voices


def test_without_transforms_the_voices_are_those_before_them():
  assert demo_corpus.draw_voices(200, 5, voice_transforms=False) == (
      _voices_before_transforms(200, 5))


def test_no_variant_of_the_klatt_synthesiser_trains():
  klatt, variants = demo_corpus.list_klatt_variants(), demo_corpus.list_variants()
  assert sum(len(names) for names in klatt.values()) >= 1
  assert all(n.lower().startswith("klatt") for names in klatt.values() for n in names)
  for sex, names in variants.items():
    assert not set(names) & set(klatt[sex])
    assert not [n for n in names if demo_corpus._selects_klatt(n)]


def test_a_variant_file_that_selects_klatt_is_told_apart(tmp_path, monkeypatch):
  variants = tmp_path / "voices" / "!v"
  variants.mkdir(parents=True)
  (variants / "deep").write_text("name deep\nklatt 6\npitch 60 100\n")
  (variants / "plain").write_text("name plain\n// klatt 6 in a comment\npitch 60 100\n")
  monkeypatch.setattr(demo_corpus, "_version_output",
                      lambda: f"eSpeak NG text-to-speech: 1.51  Data at: {tmp_path}\n")
  assert demo_corpus._selects_klatt("deep")
  assert not demo_corpus._selects_klatt("plain") and not demo_corpus._selects_klatt("gone")


def test_crossdomain_voices_use_what_training_never_does():
  voices = demo_corpus.draw_crossdomain_voices(60, 3)
  assert len({v.identity() for v in voices}) == 60
  assert demo_corpus.draw_crossdomain_voices(20, 3) == voices[:20]
  klatt, (low, high) = demo_corpus.list_klatt_variants(), demo_corpus.FORMANT_RANGE
  for v in voices:
    assert v.variant in klatt[v.sex] and v.accent in demo_corpus.list_accents()
    assert not low <= v.formant_scale <= high
    assert any(a <= v.formant_scale <= b for a, b in demo_corpus.CROSSDOMAIN_FORMANT_RANGES)
    assert 2 <= len(v.channel_eq) <= 3 and v.tilt == 0
    for centre, gain, q in v.channel_eq:
      assert 300 <= centre <= 5000 and 6 <= abs(gain) <= 12 and 1.5 <= q <= 3
  # Both sides of the training range, and boosts and cuts.
  assert min(v.formant_scale for v in voices) < low < high < max(v.formant_scale for v in voices)
  gains = [g for v in voices for _, g, _ in v.channel_eq]
  assert min(gains) < 0 < max(gains)
  with pytest.raises(ValueError, match="crossdomain speakers"):
    demo_corpus.draw_crossdomain_voices(demo_corpus.max_crossdomain_speakers() + 1, 0)


def test_every_accent_honours_the_variant():
  # espeak-ng 1.51 drops the variant of "en-gb+f1" without a word.
  for accent in demo_corpus.list_accents():
    takes = {demo_corpus.synthesise(demo_corpus.Voice(accent, variant, sex, 50, 100, 170, 0,
                                                      60), "hello there").tobytes()
             for sex, variant in (("F", "f1"), ("M", "m3"), ("M", "klatt"))}
    assert len(takes) == 3, accent


_TEXT = "The quick brown fox jumps over the lazy dog beside the old river bank."
_PLAIN = demo_corpus.Voice("en-us", "f1", "F", 50, 100, 170, 0, 60)


def _spectrum(audio):
  power = np.abs(np.fft.rfft(audio)) ** 2
  return np.fft.rfftfreq(len(audio), 1 / demo_corpus.SAMPLE_RATE), power


def test_a_larger_formant_scale_raises_the_spectral_centroid_and_keeps_the_tempo():
  centroids, durations = [], []
  for alpha in (0.88, 1.0, 1.14):
    audio = demo_corpus.synthesise(dataclasses.replace(_PLAIN, formant_scale=alpha), _TEXT)
    freqs, power = _spectrum(audio)
    centroids.append(float((freqs * power).sum() / power.sum()))
    durations.append(len(audio) / demo_corpus.SAMPLE_RATE)
  assert centroids[0] < centroids[1] < centroids[2]
  # Spoken slower by alpha, then shortened by it: about the same length.
  assert max(durations) / min(durations) < 1.1, durations


def test_tilt_moves_energy_between_the_low_and_high_bands():
  ratios = []
  for tilt in (-0.5, 0.0, 0.5):
    freqs, power = _spectrum(demo_corpus.synthesise(dataclasses.replace(_PLAIN, tilt=tilt),
                                                    _TEXT))
    ratios.append(power[freqs > 3000].sum() / power[freqs < 1000].sum())
  assert ratios[0] < ratios[1] < ratios[2]


def test_peaking_filter_has_its_gain_at_the_centre_and_none_far_from_it():
  from scipy import signal
  for centre, gain, q in ((500.0, 9.0, 2.0), (3000.0, -7.5, 1.5)):
    b, a = demo_corpus.peaking_filter(centre, gain, q)
    _, response = signal.freqz(b, a, worN=[centre, 20.0, 7900.0],
                               fs=demo_corpus.SAMPLE_RATE)
    db = 20 * np.log10(np.abs(response))
    assert db[0] == pytest.approx(gain, abs=0.01)
    assert np.all(np.abs(db[1:]) < 1.0)


def test_without_transforms_only_the_grids_of_before_are_used(demo_without_transforms):
  root, summary = demo_without_transforms
  assert summary["recipe"]["voice_transforms"] is False
  assert "voice transforms off" in demo_corpus.format_summary(summary)
  for spk, (_, subset, _, name) in _speakers_txt(root).items():
    if subset != "crossdomain":
      assert "formant 1.000 tilt +0.000" in name and " eq " not in name, name
      pitch, speed = (int(re.search(rf"{k} (\d+)", name).group(1)) for k in ("pitch", "speed"))
      assert pitch in demo_corpus.PITCH_GRID and speed in demo_corpus.SPEED_GRID


def test_crossdomain_is_the_same_whatever_the_voice_transforms(demo,
                                                              demo_without_transforms):
  on, off = demo[0], demo_without_transforms[0]
  crossdomain = {rel: p for rel, p in _files(on).items() if rel.startswith("crossdomain")}
  assert len(crossdomain) >= CROSS * (UTTS + 1)  # the FLACs and a trans.txt per chapter
  assert crossdomain.keys() == {rel for rel in _files(off) if rel.startswith("crossdomain")}
  for rel, path in crossdomain.items():
    with open(path, "rb") as x, open(os.path.join(off, rel), "rb") as y:
      assert x.read() == y.read(), rel
  # While the train/test voices differ.
  rows_on, rows_off = _speakers_txt(on), _speakers_txt(off)
  assert [rows_on[s] for s in rows_on if rows_on[s][1] != "crossdomain"] != [
      rows_off[s] for s in rows_off if rows_off[s][1] != "crossdomain"]


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
  summary = _generate(root)
  assert summary["synthesised"] == 1 and summary["skipped"] == (TRAIN + TEST + CROSS) * UTTS - 1
  for rel, p in _flacs(root).items():
    if rel != missing:
      assert os.stat(p).st_mtime_ns == before[rel], rel
  # Every file, the remade one and the recovered transcript included, equals the original.
  for rel, p in _files(src).items():
    with open(p, "rb") as x, open(os.path.join(root, rel), "rb") as y:
      assert x.read() == y.read(), rel
  with pytest.raises(ValueError, match="seed"):
    _generate(root, seed=SEED + 1)


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
  assert espeak["klatt_variants"] == {k: list(v) for k, v in
                                      demo_corpus.list_klatt_variants().items()}
  assert manifest["recipe"] == dict(version=demo_corpus.RECIPE_VERSION, voice_transforms=True,
                                    train_speakers=TRAIN, test_speakers=TEST,
                                    crossdomain_speakers=CROSS) == summary["recipe"]
  # The voices of SPEAKERS.TXT come from those lists.
  for _, _, subset, _, name in ((k, *row) for k, row in _speakers_txt(root).items()):
    accent, variant = name.split()[1].split("+", 1)
    assert accent in espeak["accents"]
    lists = espeak["klatt_variants"] if subset == "crossdomain" else espeak["variants"]
    assert variant in lists["F"] + lists["M"]
  assert demo_corpus.read_manifest(os.path.dirname(root)) is None  # not a corpus


def _copy_without_one_flac(src, root):
  shutil.copytree(src, root)
  os.remove(sorted(_flacs(root).values())[0])


def _espeak_warnings(caplog):
  return [r.getMessage() for r in caplog.records
          if r.levelno == logging.WARNING and "espeak-ng" in r.getMessage()]


def _edit_manifest(root, edit):
  path = os.path.join(root, demo_corpus.MANIFEST)
  manifest = demo_corpus.read_manifest(root)
  edit(manifest)
  with open(path, "w") as f:
    json.dump(manifest, f)


# A corpus made before manifests (SPEAKERS.TXT alone) is made before recipes too: refused
# (test_a_corpus_of_another_recipe_is_refused), no longer completed as of version unknown.
def test_completing_a_corpus_of_another_espeak_ng_warns_and_records_both(demo, tmp_path,
                                                                         caplog):
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  installed, recorded = demo_corpus.espeak_version(), "9.99"
  _edit_manifest(root, lambda m: m["espeak_ng"].update(version=recorded))
  with caplog.at_level(logging.WARNING):
    summary = _generate(root)
  assert summary["synthesised"] == 1
  warning, = _espeak_warnings(caplog)
  assert (f"synthesised 1 files with espeak-ng {installed} into {root}, a corpus made "
          f"with espeak-ng {recorded}") in warning
  assert demo_corpus.read_manifest(root)["espeak_ng"]["version"] == f"{recorded}+{installed}"
  # Nothing left to make: no warning, and the recorded versions stay.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    _generate(root)
  assert not _espeak_warnings(caplog)
  assert demo_corpus.read_manifest(root)["espeak_ng"]["version"] == f"{recorded}+{installed}"


def test_completing_with_the_same_espeak_ng_does_not_warn(demo, tmp_path, caplog):
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  with caplog.at_level(logging.WARNING):
    assert _generate(root)["synthesised"] == 1
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
    assert _generate(root)["synthesised"] == 0
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
    _generate(root)
  assert len(_flacs(root)) == (TRAIN + TEST + CROSS) * UTTS - 1  # nothing made


def _drop_recipe(root):
  _edit_manifest(root, lambda m: m.pop("recipe"))


def _drop_manifest(root):
  os.remove(os.path.join(root, demo_corpus.MANIFEST))


@pytest.mark.parametrize("change, asked, message", [
    (None, dict(voice_transforms=False),
     "made with voice_transforms=true, not voice_transforms=false: generate the corpus "
     "into a new directory"),
    (None, dict(crossdomain_speakers=CROSS + 1),
     f"made with crossdomain_speakers={CROSS}, not crossdomain_speakers={CROSS + 1}:"),
    (lambda root: _edit_manifest(root, lambda m: m["recipe"].update(version=1)), {},
     f"made with version=1, not version={demo_corpus.RECIPE_VERSION}:"),
    (_drop_recipe, {}, "made before recipes were recorded"),
    (_drop_manifest, {}, "made before recipes were recorded"),  # before manifests, too
])
def test_a_corpus_of_another_recipe_is_refused(demo, tmp_path, change, asked, message):
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  if change:
    change(root)
  with pytest.raises(ValueError, match=re.escape(message)) as e:
    _generate(root, **asked)
  assert "\n" not in str(e.value) and "new directory" in str(e.value)
  assert len(_flacs(root)) == (TRAIN + TEST + CROSS) * UTTS - 1  # nothing made


def test_other_speaker_counts_are_refused(demo, tmp_path):
  # They move the ids: a test speaker's id would become a crossdomain speaker's.
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  with pytest.raises(ValueError, match=f"made with test_speakers={TEST}, not "
                     f"test_speakers={TEST + 1}"):
    demo_corpus.generate(root, TRAIN, TEST + 1, UTTS, seed=SEED, workers=1,
                         crossdomain_speakers=CROSS, voice_transforms=True)


def test_an_interrupted_corpus_refuses_another_seed(demo, tmp_path):
  root = str(tmp_path / "copy")
  _copy_without_one_flac(demo[0], root)
  os.remove(os.path.join(root, "SPEAKERS.TXT"))  # written last: the run was interrupted
  with pytest.raises(ValueError, match="seed=7"):
    _generate(root, seed=SEED + 1)


def test_transcript_normalisation():
  assert demo_corpus.transcript("Did Anna see it, today? Yes.") == "DID ANNA SEE IT TODAY YES"


@pytest.mark.parametrize("args, message", [
    ([], "--out is required"),
    (["--out=/tmp/x", "--train_speakers=0"], "--train_speakers must be >= 1"),
    (["--out=/tmp/x", "--train_speakers=100000"], "speakers are possible"),
    (["--out=/tmp/x", "--crossdomain_speakers=-1"], "--crossdomain_speakers must be >= 0"),
    (["--out=/tmp/x", "--crossdomain_speakers=100000"], "crossdomain speakers are possible"),
])
def test_cli_usage_errors(args, message):
  proc = subprocess.run([sys.executable, "-m", "mirnet_jax.demo_corpus", *args], cwd=REPO,
                        capture_output=True, text=True)
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr


def test_cli_refuses_a_corpus_of_another_recipe(demo, tmp_path):
  root = str(tmp_path / "copy")
  shutil.copytree(demo[0], root)
  proc = subprocess.run(
      [sys.executable, "-m", "mirnet_jax.demo_corpus", f"--out={root}",
       f"--train_speakers={TRAIN}", f"--test_speakers={TEST}", f"--seed={SEED}",
       f"--utterances_per_speaker={UTTS}", f"--crossdomain_speakers={CROSS}",
       "--voice_transforms=false"], cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1
  assert "made with voice_transforms=true, not voice_transforms=false" in proc.stderr
