"""The demo speech corpus: espeak-ng voices in the LibriSpeech layout, so that the whole
pipeline runs without downloading LibriSpeech:

  OUT/SPEAKERS.TXT
  OUT/manifest.json   generator, seed, and the espeak-ng version and voice lists used
  OUT/<train|test>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
  OUT/<train|test>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac   (16 kHz mono, 16 bit)

A speaker is one fixed espeak-ng voice (`Voice`); its utterances differ in text and slightly
in speed and pitch, so a speaker model has to learn the voice, not the sentence. Every random
choice comes from `np.random.default_rng([seed, stream, speaker, ...])`: one seed gives the
same bytes whatever the number of workers (for one espeak-ng installation, whose voice lists
are read), and a speaker's voice does not depend on how many speakers follow it.

Another espeak-ng release may list other voices or render them differently, so numbers
measured on a corpus hold for the espeak-ng that made it: `manifest.json` records its
version (`espeak-ng --version`) and voice lists, `prepare` copies them into the shards'
manifest (shards.espeak_version reads them), and `evaluate` warns when a model is scored
on shards of a corpus made by another version than the one it was trained on.
"""

import dataclasses
import functools
import io
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import time
from xml.sax import saxutils

from absl import logging
import numpy as np
import soundfile as sf

from mirnet_jax import storage
from mirnet_jax.errors import UserError

SAMPLE_RATE = 16000
MIN_SECONDS, MAX_SECONDS = 2.0, 15.0
FIRST_SPEAKER_ID = 100
TRAIN, TEST = "train", "test"
SPEAKERS_FILE = "SPEAKERS.TXT"
MANIFEST = "manifest.json"
GENERATOR = "mirnet_jax.data.demo_corpus"
# The version of a corpus made before manifest.json was written (SPEAKERS.TXT alone).
UNKNOWN_VERSION = "unknown"
# Many voices with few utterances each: the number of voices, more than of utterances,
# decides how well a model separates unseen ones (docs/results.md).
# 9 utterances: 6 to train on, 2 for the seen-speaker trials and 1 for validation
# (shards.HELDOUT_DEFAULTS).
DEFAULT_TRAIN_SPEAKERS, DEFAULT_TEST_SPEAKERS, DEFAULT_UTTERANCES_PER_SPEAKER = 400, 40, 9

# Coarse grids keep two speakers audibly apart even with the same accent and variant, and
# stay inside what espeak renders cleanly.
PITCH_GRID = tuple(range(20, 81, 5))  # espeak -p (50 = the variant's default)
RANGE_GRID = tuple(range(50, 151, 10))  # SSML <prosody range="NN%">
SPEED_GRID = tuple(range(130, 201, 10))  # espeak -s, words per minute
GAP_GRID = (0, 1, 2, 3)  # espeak -g, extra pause between words in units of 10 ms
AMPLITUDE_GRID = (40, 50, 60, 70, 80)  # espeak -a; lowish, as loud variants saturate
SPEED_JITTER, PITCH_JITTER = 0.05, 3  # per utterance: relative speed, absolute -p units
# Variants that are effects rather than voices (unintelligible, whispered, i.e. without
# pitch, or robotic), by lowercased file name; prefixes cover numbered families.
_EXCLUDED_VARIANTS = frozenset({
    "demonic", "announcer", "fast", "whisper", "whisperf", "caleb", "unirobot",
    "anikarobot", "tweaky", "kaukovalta", "mr serious"})
_EXCLUDED_VARIANT_PREFIXES = ("robosoft", "ricishaymax")
_STREAM_VOICE, _STREAM_CHAPTERS, _STREAM_UTTERANCE = 0, 1, 2  # keep the streams apart
_MAX_ATTEMPTS = 40  # texts tried per utterance before giving up on the duration bounds
_PEAK = 0.95  # highest sample magnitude written


class EspeakNotFoundError(UserError):
  """espeak-ng is not installed (or not on PATH)."""


@dataclasses.dataclass(frozen=True)
class Voice:
  """One speaker: accent (an English espeak voice), variant (its file name, what espeak
  accepts after '+'), sex ("F"/"M"), -p, SSML range %, -s, -g and -a."""
  accent: str
  variant: str
  sex: str
  pitch: int
  pitch_range: int
  speed: int
  word_gap: int
  amplitude: int

  def identity(self) -> tuple:
    """What shapes the timbre most: distinct speakers differ here already."""
    return (self.accent, self.variant, self.pitch)

  def describe(self) -> str:
    return (f"espeak {self.accent}+{self.variant} pitch {self.pitch} range "
            f"{self.pitch_range}% speed {self.speed} gap {self.word_gap} amp {self.amplitude}")


def _espeak() -> str:
  path = shutil.which("espeak-ng")
  if path is None:
    raise EspeakNotFoundError("espeak-ng not found; install it with: apt-get install espeak-ng")
  return path


def _voice_table(kind: str) -> list[tuple[str, str, str]]:
  """(language, age/gender, file) rows of `espeak-ng --voices=<kind>`. Voice names hold no
  spaces, file names may ("!v/Mr serious"), and the other languages are parenthesised."""
  lines = subprocess.run([_espeak(), f"--voices={kind}"], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1:]  # [0] is the header
  rows = [line.split(None, 4) for line in lines]
  return [(r[1], r[2], re.sub(r"(\s*\([^()]*\))*\s*$", "", r[4])) for r in rows
          if len(r) == 5 and r[0].isdigit()]


@functools.lru_cache(maxsize=None)
def list_accents() -> tuple[str, ...]:
  """English espeak-ng voices, sorted; not mbrola ones (separate databases), nor en-uk (an
  mbrola alias of en-gb)."""
  return tuple(sorted({lang for lang, _, file in _voice_table("en") if lang.startswith("en")
                       and lang != "en-uk" and not file.startswith("mb/")}))


@functools.lru_cache(maxsize=None)
def list_variants() -> dict[str, tuple[str, ...]]:
  """Usable variants by sex {"F": (...), "M": (...)}, as file names, sorted: an unknown name
  after '+' silently falls back to the plain voice, making distinct speakers identical."""
  by_sex = {"F": set(), "M": set()}
  for _, gender, file in _voice_table("variant"):
    name = file[len("!v/"):]
    if (file.startswith("!v/") and " " not in name and name.lower() not in _EXCLUDED_VARIANTS
        and not name.lower().startswith(_EXCLUDED_VARIANT_PREFIXES)):
      by_sex["F" if gender.upper().endswith("F") else "M"].add(name)
  return {sex: tuple(sorted(names)) for sex, names in by_sex.items()}


@functools.lru_cache(maxsize=None)
def espeak_version() -> str:
  """The installed espeak-ng's version, e.g. "1.51" (from `espeak-ng --version`)."""
  out = subprocess.run([_espeak(), "--version"], capture_output=True, text=True,
                       check=True).stdout
  m = re.search(r"\d+\.\d+\S*", out)  # "eSpeak NG text-to-speech: 1.51  Data at: ..."
  return m.group(0) if m else " ".join(out.split())


def espeak_record() -> dict:
  """What the installed espeak-ng gives the corpus: {"version", "accents", "variants"}
  (the lists `draw_voices` draws from)."""
  return dict(version=espeak_version(), accents=list(list_accents()),
              variants={sex: list(names) for sex, names in list_variants().items()})


def read_manifest(corpus_dir: str) -> dict | None:
  """The demo corpus manifest of `corpus_dir`; None if it has none (another corpus, or
  a demo corpus made before manifests were written)."""
  path = os.path.join(corpus_dir, MANIFEST)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    manifest = json.load(f)
  return manifest if manifest.get("generator") == GENERATOR else None


def _merged_version(recorded: str | None, installed: str) -> str:
  """The version of a corpus recorded as `recorded` once `installed` adds files to it:
  "1.51+1.52" when they differ, so that a mixed corpus never matches a pure one."""
  parts = recorded.split("+") if recorded else []
  return "+".join(parts + [installed] if installed not in parts else parts)


def max_speakers() -> int:
  """Distinct speakers possible: they alternate F, M, ... and differ in `identity()`, so n
  of them need ceil(n/2) female and floor(n/2) male identities."""
  per_sex = {sex: len(list_accents()) * len(names) * len(PITCH_GRID)
             for sex, names in list_variants().items()}
  return min(2 * per_sex["F"], 2 * per_sex["M"] + 1)


def draw_voices(num_speakers: int, seed: int) -> list[Voice]:
  """Distinct voices, speaker i from `default_rng([seed, 0, i])` (redrawn while it repeats an
  earlier identity), so `draw_voices(n, s)[:k] == draw_voices(k, s)`. Sexes alternate, so
  neighbouring ids differ in variant. ValueError beyond `max_speakers()`."""
  if num_speakers < 0:
    raise ValueError(f"num_speakers must be >= 0, got {num_speakers}")
  limit = max_speakers()
  if num_speakers > limit:
    raise ValueError(f"at most {limit} distinct speakers are possible with the installed "
                     f"espeak-ng voices, asked for {num_speakers}")
  accents, variants = list_accents(), list_variants()
  voices, seen = [], set()
  for i in range(num_speakers):
    rng, sex, voice = np.random.default_rng([seed, _STREAM_VOICE, i]), "FM"[i % 2], None
    while voice is None or voice.identity() in seen:  # ends: fewer taken than exist
      voice = Voice(str(rng.choice(accents)), str(rng.choice(variants[sex])), sex,
                    *(int(rng.choice(g)) for g in (PITCH_GRID, RANGE_GRID, SPEED_GRID,
                                                   GAP_GRID, AMPLITUDE_GRID)))
    seen.add(voice.identity())
    voices.append(voice)
  return voices


def _synthesise(voice: Voice, text: str, speed: int, pitch: int) -> np.ndarray:
  """Speaks `text` with `voice` at `speed` and `pitch`: float32, 16 kHz mono."""
  # The pitch range has no command-line flag; SSML prosody carries it (-m enables SSML).
  ssml = (f'<speak><prosody range="{voice.pitch_range}%">{saxutils.escape(text)}'
          "</prosody></speak>")
  # Variants differ a lot in loudness and espeak saturates its int16 output, so a take that
  # clips is made again at half the amplitude, and the level made up digitally.
  amplitude = voice.amplitude
  while True:
    proc = subprocess.run(
        [_espeak(), "-v", f"{voice.accent}+{voice.variant}", "-s", str(speed), "-p",
         str(pitch), "-g", str(voice.word_gap), "-a", str(amplitude), "-m", "--stdout",
         ssml], capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
      raise RuntimeError(f"espeak-ng failed ({proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace').strip()}")
    # Written to a pipe, the WAV header has no real length; libsndfile reads to EOF anyway.
    data, rate = sf.read(io.BytesIO(proc.stdout), dtype="int16")
    data = data.mean(axis=1).astype(np.int16) if data.ndim == 2 else data
    if np.abs(data.astype(np.int32)).max() < 32767 or amplitude <= 5:
      break
    amplitude //= 2
  audio = data.astype(np.float32) * (voice.amplitude / amplitude / 32768)
  if rate != SAMPLE_RATE:
    import librosa  # lazily: only processes that synthesise pay for the import
    audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE)
  # Scaled down, never clipped, after resampling (which can overshoot on sharp edges).
  peak = float(np.abs(audio).max()) if audio.size else 0.0
  return (audio * (_PEAK / peak) if peak > _PEAK else audio).astype(np.float32)


_NAMES = """Anna Ben Clara David Emma Frank Grace Henry Iris Jack Kate Leo Maria Nick Olivia Peter
Rose Sam Tom Lucy Martin Helen Oscar Paul Sarah Daniel Laura Simon Alice George""".split()
_DETS = "the the the a a this that my your our their his her every one".split()
_ADJS = """old young small large little big red blue green yellow white black brown quiet loud
happy sad bright dark warm cold cheap heavy light long short new clean dirty strange simple busy
calm careful clever famous friendly gentle honest kind lazy lucky modern narrow polite proud rich
rough round sharp soft strong sweet tall thin tired wild wooden empty early late fresh""".split()
_NOUNS = """man woman child boy girl teacher doctor farmer driver baker student friend neighbour
captain sailor soldier painter writer singer dog cat horse bird fish cow sheep book letter table
chair window door bottle glass cup plate knife spoon basket box bag coat hat shoe ring key lamp
clock picture map ticket boat car train bicycle apple bread cake cheese egg orange potato flower
tree stone shell candle blanket pencil paper radio camera wheel rope bell drum""".split()
_PLACES = """garden kitchen station market river forest village city school church library office
hospital bridge harbour island mountain valley field farm road street corner park beach hill lake
castle shop hotel theatre museum tower cottage yard hall gate""".split()
_VT = [tuple(p.split("/")) for p in """see/saw find/found take/took bring/brought carry/carried
open/opened close/closed paint/painted clean/cleaned buy/bought sell/sold give/gave lose/lost
keep/kept hold/held want/wanted like/liked move/moved watch/watched follow/followed push/pushed
pull/pulled fix/fixed build/built draw/drew read/read write/wrote hide/hid show/showed send/sent
wash/washed fill/filled drop/dropped catch/caught throw/threw break/broke check/checked
count/counted cover/covered visit/visited remember/remembered forget/forgot borrow/borrowed
return/returned order/ordered cook/cooked notice/noticed""".split()]
_VI = [tuple(p.split("/")) for p in """sleep/slept walk/walked run/ran sing/sang laugh/laughed
smile/smiled wait/waited work/worked play/played swim/swam dance/danced rest/rested
travel/travelled arrive/arrived leave/left stay/stayed listen/listened talk/talked sit/sat
stand/stood shout/shouted whisper/whispered return/returned hurry/hurried fall/fell
climb/climbed""".split()]
_ADVS = """slowly quickly quietly loudly happily sadly carefully gently suddenly softly proudly
calmly politely eagerly patiently bravely easily nearly""".split()
_DEGREE = "very quite rather really so too".split()
_PREPS = "in near behind under beside inside outside across through past".split()
_TIMES = """today|yesterday|last night|this morning|in the evening|after lunch|before dinner|
on monday|on friday|at noon|every day|last week|next year|in the spring|in the winter|
after the storm|before sunrise|at midnight|on sunday morning|a long time ago|once again|
later that day|early in the morning""".replace("\n", "").split("|")
# {fields} are filled left to right, each a fresh draw but the names and verbs (one each).
_TEMPLATES = (
    "{np} {vt1} {np} {place}.", "{name} {adv} {vi1} {place} {time}.",
    "{time}, {name} {vt1} {npa}.", "{np} {place} was {degree} {adj}.",
    "did {name} {vt0} {np} {time}?", "{name} and {name2} {vi1}, but {np} {vi2} {adv}.",
    "we will {vt0} {npa} {place}.", "there was a {adj} {noun} {place}.",
    "{name} said that {np} {vt1} {npa}.", "when {name} {vi1}, {np} {vi2} {place}.",
    "I think {np} can {vt0} {np} {time}.", "please {vt0} {npa} {time}.")


def _pick(rng: np.random.Generator, words):
  return words[int(rng.integers(len(words)))]


def _np(rng: np.random.Generator, adj: bool | None = None) -> str:
  adj = rng.random() < 0.5 if adj is None else adj
  det, adj = _pick(rng, _DETS), [_pick(rng, _ADJS)] if adj else []
  return " ".join([det] + adj + [_pick(rng, _NOUNS)])


def _place(rng: np.random.Generator) -> str:
  adj = [_pick(rng, _ADJS)] if rng.random() < 0.4 else []  # drawn before the preposition
  return " ".join([_pick(rng, _PREPS), "the"] + adj + [_pick(rng, _PLACES)])


def _sentence(rng: np.random.Generator) -> str:
  name, name2 = _pick(rng, _NAMES), _pick(rng, _NAMES)
  vt, vi, vi2 = _pick(rng, _VT), _pick(rng, _VI), _pick(rng, _VI)
  fields = dict(name=lambda: name, name2=lambda: name2, vt0=lambda: vt[0], vt1=lambda: vt[1],
                vi1=lambda: vi[1], vi2=lambda: vi2[1], np=lambda: _np(rng),
                npa=lambda: _np(rng, adj=True), place=lambda: _place(rng),
                **{k: functools.partial(_pick, rng, words) for k, words in (
                    ("adv", _ADVS), ("time", _TIMES), ("degree", _DEGREE), ("adj", _ADJS),
                    ("noun", _NOUNS))})
  s = re.sub(r"\{(\w+)\}", lambda m: fields[m.group(1)](), _pick(rng, _TEMPLATES))
  s = re.sub(r"\ba ([aeiou])", r"an \1", s)  # no "a university"-type words in the lists
  s = re.sub(r"\b(monday|friday|sunday)\b", lambda m: m.group(1).capitalize(), s)
  return s[0].upper() + s[1:]


def transcript(text: str) -> str:
  """LibriSpeech-style transcript: upper case words, no punctuation but apostrophes."""
  return " ".join(re.sub(r"[^A-Z' ]+", " ", text.upper()).split())


def _utterance(voice: Voice, seed: int, speaker: int, utt: int) -> tuple[np.ndarray, str]:
  """Audio and text of utterance `utt` of speaker index `speaker`: the first attempt k
  (drawn from `default_rng([seed, 2, speaker, utt, k])`) within the duration bounds."""
  for attempt in range(_MAX_ATTEMPTS):
    rng = np.random.default_rng([seed, _STREAM_UTTERANCE, speaker, utt, attempt])
    speed = int(round(voice.speed * rng.uniform(1 - SPEED_JITTER, 1 + SPEED_JITTER)))
    pitch = voice.pitch + int(rng.integers(-PITCH_JITTER, PITCH_JITTER + 1))
    # Words for a target duration; whole sentences overshoot it (hence the low targets),
    # and the check on the actual audio catches the tails.
    target_words, sentences = max(3, int(rng.uniform(2.0, 10.0) * speed / 60)), []
    while sum(len(s.split()) for s in sentences) < target_words:
      sentences.append(_sentence(rng))
    audio = _synthesise(voice, " ".join(sentences), speed, pitch)
    if MIN_SECONDS <= len(audio) / SAMPLE_RATE <= MAX_SECONDS:
      return audio, " ".join(sentences)
  raise RuntimeError(f"no utterance within [{MIN_SECONDS}, {MAX_SECONDS}] s after "
                     f"{_MAX_ATTEMPTS} attempts for voice {voice.describe()}")


def _existing_seconds(path: str) -> float | None:
  """Duration of the file an earlier run wrote; None if there is none, or if it no longer
  decodes to its end (it is then synthesised again)."""
  if not os.path.exists(path):
    return None
  try:
    data, rate = sf.read(path, dtype="int16")
    if len(data) == 0:
      raise ValueError("no samples")
  except (RuntimeError, EOFError, ValueError) as e:
    logging.warning("%s is unreadable (%s): synthesising it again", path,
                    str(e).replace("\n", " "))
    return None
  return len(data) / rate


def _build_speaker(job: tuple) -> dict:
  """Writes one speaker's FLACs and trans.txt files; returns its counts and seconds."""
  out_dir, subset, index, voice, seed, utterances = job
  spk, rng = FIRST_SPEAKER_ID + index, np.random.default_rng([seed, _STREAM_CHAPTERS, index])
  chapters = [utterances]  # in 1 or 2 chapters
  if utterances >= 2 and rng.random() >= 0.5:
    first = int(rng.integers(1, utterances))
    chapters = [first, utterances - first]
  seconds, made, skipped, remade, utt = 0.0, 0, 0, 0, 0
  for c, count in enumerate(chapters):
    chapter = spk * 10 + c + 1  # globally unique, and readable: 1001, 1002 for speaker 100
    chapter_dir = os.path.join(out_dir, subset, str(spk), str(chapter))
    os.makedirs(chapter_dir, exist_ok=True)
    trans_path = os.path.join(chapter_dir, f"{spk}-{chapter}.trans.txt")
    known = {}  # texts of the files an earlier run made
    if os.path.exists(trans_path):
      with open(trans_path, encoding="utf-8") as f:
        known = dict(line.split(" ", 1) for line in f.read().splitlines() if " " in line)
    lines = []
    for u in range(count):
      utt_id = f"{spk}-{chapter}-{u:04d}"
      path = os.path.join(chapter_dir, f"{utt_id}.flac")
      existing = _existing_seconds(path)
      if existing is not None:
        skipped, seconds = skipped + 1, seconds + existing
        # Interrupted before trans.txt was written: the (deterministic) synthesis, redone
        # in memory, recovers the text; the file is left alone.
        text = known.get(utt_id) or transcript(_utterance(voice, seed, index, utt)[1])
      else:
        remade += os.path.exists(path)
        audio, text = _utterance(voice, seed, index, utt)
        buf = io.BytesIO()
        sf.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        storage.write_bytes(path, buf.getvalue())
        made, seconds, text = made + 1, seconds + len(audio) / SAMPLE_RATE, transcript(text)
      lines.append(f"{utt_id} {text}\n")
      utt += 1
    storage.write_text(trans_path, "".join(lines))
  return dict(index=index, subset=subset, voice=voice, utterances=utt, seconds=seconds,
              made=made, skipped=skipped, remade=remade)


def _recorded_version(out_dir: str, seed: int) -> str | None:
  """The espeak-ng version recorded for the files already in `out_dir`: None for a new
  corpus, UNKNOWN_VERSION for one made before manifests were written.

  Raises:
    ValueError: `out_dir` holds a corpus of another seed, or made with an espeak-ng whose
      voice lists differ from the installed one's (its speakers would get other voices).
  """
  manifest, speakers_path = read_manifest(out_dir), os.path.join(out_dir, SPEAKERS_FILE)
  recorded_seed = manifest["seed"] if manifest else None
  if manifest is None and os.path.exists(speakers_path):
    with open(speakers_path, encoding="utf-8") as f:
      m = re.search(r"seed=(-?\d+)", f.read())
    recorded_seed = int(m.group(1)) if m else None
  if recorded_seed is not None and recorded_seed != seed:  # never two seeds in one corpus
    raise ValueError(f"{out_dir} holds a corpus made with seed={recorded_seed}; use that "
                     f"seed to complete it, or another directory for seed={seed}")
  if manifest is None:
    return UNKNOWN_VERSION if os.path.exists(speakers_path) else None
  made_by, installed = manifest["espeak_ng"], espeak_record()
  if ([made_by["accents"], made_by["variants"]] !=
      [installed["accents"], installed["variants"]]):
    raise ValueError(f"{out_dir} holds a corpus made with espeak-ng "
                     f"{made_by['version']}, whose voice lists differ from those of the "
                     f"installed espeak-ng {installed['version']}: completing it would "
                     "give its speakers other voices; generate it into another directory")
  return made_by["version"]


def _write_manifest(out_dir: str, seed: int, record: dict, version: str):
  storage.write_json(os.path.join(out_dir, MANIFEST), dict(
      generator=GENERATOR, seed=seed, espeak_ng=dict(record, version=version)))


def generate(out_dir: str, train_speakers: int = DEFAULT_TRAIN_SPEAKERS,
             test_speakers: int = DEFAULT_TEST_SPEAKERS,
             utterances_per_speaker: int = DEFAULT_UTTERANCES_PER_SPEAKER, seed: int = 0,
             workers: int | None = None) -> dict:
  """Synthesises the corpus into `out_dir` with `workers` processes (default: all cores).

  The first `train_speakers` of `draw_voices(train_speakers + test_speakers, seed)` form
  `train`, the rest `test`. A rerun keeps the FLACs that exist and decode (so it completes
  an interrupted run) and refuses a directory made with another seed or with an
  espeak-ng of other voice lists (ValueError, as for bad counts); files it adds with
  another espeak-ng version than the corpus's are counted in a warning, and the manifest
  then records both ("1.51+1.52"). Returns {"out_dir", "seed", "speakers",
  "utterances", "hours" (each {subset: value}), "espeak_ng" (the version recorded),
  "synthesised", "skipped" (kept), "remade" (existing files that no longer decoded),
  "seconds" (wall time)}.
  """
  workers = (os.cpu_count() or 1) if workers is None else workers
  for name, value, low in (("train_speakers", train_speakers, 1),
                           ("test_speakers", test_speakers, 0),
                           ("utterances_per_speaker", utterances_per_speaker, 1),
                           ("workers", workers, 1)):
    if value < low:
      raise ValueError(f"{name} must be >= {low}, got {value}")
  _espeak()  # fail early with the install hint
  voices = draw_voices(train_speakers + test_speakers, seed)
  speakers_path = os.path.join(out_dir, SPEAKERS_FILE)
  recorded, installed = _recorded_version(out_dir, seed), espeak_record()
  os.makedirs(out_dir, exist_ok=True)
  # Recorded before any file is made: a rerun after an interruption knows who made them.
  version = installed["version"]
  _write_manifest(out_dir, seed, installed, _merged_version(recorded, version))
  jobs = [(out_dir, TRAIN if i < train_speakers else TEST, i, v, seed,
           utterances_per_speaker) for i, v in enumerate(voices)]
  start = time.time()
  if workers == 1:
    records = [_build_speaker(job) for job in jobs]
  else:  # spawn, not fork: fork would copy the locks of a loaded JAX mid-use
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
      records = pool.map(_build_speaker, jobs, chunksize=1)
  made = sum(r["made"] for r in records)
  if made and recorded not in (None, version):
    logging.warning("synthesised %d files with espeak-ng %s into %s, a corpus made with "
                    "espeak-ng %s: it now mixes both (recorded as %s); generate it into "
                    "a new directory for numbers of one version", made, version, out_dir,
                    recorded, _merged_version(recorded, version))
  # Kept files only: the corpus is still of the version recorded for them.
  made_by = recorded if recorded and not made else _merged_version(recorded, version)
  _write_manifest(out_dir, seed, installed, made_by)
  storage.write_text(speakers_path, "".join([
      "; Synthetic speakers (espeak-ng), LibriSpeech SPEAKERS.TXT format.\n",
      f"; generator: mirnet_jax.data.demo_corpus seed={seed}\n",
      "; MINUTES: total audio of the speaker in this corpus; NAME: the voice parameters.\n",
      ";\n", ";ID  |SEX| SUBSET           |MINUTES| NAME\n"] + [
          f"{FIRST_SPEAKER_ID + r['index']:<5}| {r['voice'].sex} | {r['subset']:<17}| "
          f"{r['seconds'] / 60:5.2f} | {r['voice'].describe()}\n" for r in records]))
  by_subset = {s: [r for r in records if r["subset"] == s] for s in (TRAIN, TEST)}
  return dict(out_dir=out_dir, seed=seed, espeak_ng=made_by,
              speakers={s: len(rs) for s, rs in by_subset.items()},
              utterances={s: sum(r["utterances"] for r in rs) for s, rs in by_subset.items()},
              hours={s: sum(r["seconds"] for r in rs) / 3600 for s, rs in by_subset.items()},
              synthesised=sum(r["made"] for r in records),
              skipped=sum(r["skipped"] for r in records),
              remade=sum(r["remade"] for r in records), seconds=time.time() - start)


def format_summary(summary: dict) -> str:
  """One line: the espeak-ng version, and speakers, utterances and hours per subset."""
  parts = [f"{s} {summary['speakers'][s]} speakers {summary['utterances'][s]} utterances "
           f"{summary['hours'][s]:.2f} h" for s in (TRAIN, TEST)]
  remade = f"{summary['remade']} unreadable files remade, " if summary["remade"] else ""
  return (f"demo corpus in {summary['out_dir']} (espeak-ng {summary['espeak_ng']}): " +
          "; ".join(parts) +
          f" ({summary['synthesised']} synthesised, {summary['skipped']} kept, {remade}"
          f"{summary['seconds']:.0f} s)")
