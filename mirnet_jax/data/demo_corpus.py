"""The demo speech corpus: espeak-ng voices in the LibriSpeech layout, so that the whole
pipeline runs without downloading LibriSpeech:

  OUT/SPEAKERS.TXT
  OUT/manifest.json   generator, seed, recipe, and the espeak-ng version and voice lists used
  OUT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
  OUT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac   (16 kHz mono, 16 bit)

Subsets: `train`, `test` (unseen voices of the same recipe) and `crossdomain` (unseen voices
made by means `train` never uses: espeak-ng's Klatt synthesiser, vocal-tract lengths outside
the training range and a resonant channel EQ), to tell a model that learnt voices from one
that learnt espeak-ng's formant synthesiser.

A speaker is one fixed voice (`Voice`): an espeak-ng voice and variant with its delivery,
and, with voice transforms (`--voice_transforms`, on by default), a vocal-tract length
(formant) scale and a spectral tilt applied to espeak-ng's output. Its utterances differ in
text and slightly in speed and pitch, so a speaker model has to learn the voice, not the
sentence. Every random choice comes from `np.random.default_rng([seed, stream, speaker, ...])`: one seed gives the same bytes
whatever the number of workers (for one espeak-ng installation, whose voice lists are read),
and a speaker's voice does not depend on how many speakers follow it. The crossdomain voices
and texts have streams of their own: they are the same whatever the other subsets hold.

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
TRAIN, TEST, CROSSDOMAIN = "train", "test", "crossdomain"
SUBSETS = (TRAIN, TEST, CROSSDOMAIN)
SPEAKERS_FILE = "SPEAKERS.TXT"
MANIFEST = "manifest.json"
GENERATOR = "mirnet_jax.data.demo_corpus"
# What the voices of a corpus are made of, recorded in the manifest: a corpus is completed
# only by the recipe that began it. 2: the first recorded recipe (voice transforms, the
# crossdomain subset, no Klatt voices in train/test); the corpora before it are version 1.
RECIPE_VERSION = 2
# Many voices with few utterances each: the number of voices, more than of utterances,
# decides how well a model separates unseen ones (docs/results.md).
# 9 utterances: 6 to train on, 2 for the seen-speaker trials and 1 for validation
# (shards.HELDOUT_DEFAULTS).
DEFAULT_TRAIN_SPEAKERS, DEFAULT_TEST_SPEAKERS, DEFAULT_UTTERANCES_PER_SPEAKER = 400, 40, 9
DEFAULT_CROSSDOMAIN_SPEAKERS = 40
# On by default: of the generalisation pieces it alone moved the cross-domain check, with
# in-domain unseen mixtures unchanged (docs/results.md, "Generalisation").
DEFAULT_VOICE_TRANSFORMS = True

# Coarse grids keep two speakers audibly apart even with the same accent and variant, and
# stay inside what espeak renders cleanly. PITCH_GRID and SPEED_GRID: without voice
# transforms (the voices of the corpora before them); the WIDE ones: with them, and for
# the crossdomain voices.
PITCH_GRID = tuple(range(20, 81, 5))  # espeak -p (50 = the variant's default)
WIDE_PITCH_GRID = tuple(range(10, 91, 5))
RANGE_GRID = tuple(range(50, 151, 10))  # SSML <prosody range="NN%">
SPEED_GRID = tuple(range(130, 201, 10))  # espeak -s, words per minute: the tempo
WIDE_SPEED_GRID = tuple(range(110, 231, 10))
GAP_GRID = (0, 1, 2, 3)  # espeak -g, extra pause between words in units of 10 ms
AMPLITUDE_GRID = (40, 50, 60, 70, 80)  # espeak -a; lowish, as loud variants saturate
SPEED_JITTER, PITCH_JITTER = 0.05, 3  # per utterance: relative speed, absolute -p units
# Voice transforms (uniform ranges): the formant (vocal-tract length) scale, and the
# spectral tilt beta of y[n] = x[n] - beta x[n-1] (> 0 brightens, < 0 darkens).
FORMANT_RANGE, TILT_RANGE = (0.88, 1.14), (-0.6, 0.6)
# Crossdomain voices: formant scales on either side of FORMANT_RANGE, and a channel EQ of
# 2 or 3 resonant peaks (gain of either sign), which training never has.
CROSSDOMAIN_FORMANT_RANGES = ((0.78, 0.86), (1.16, 1.24))
EQ_PEAKS, EQ_CENTRE_HZ, EQ_GAIN_DB, EQ_Q = (2, 3), (300.0, 5000.0), (6.0, 12.0), (1.5, 3.0)
# Variants that are effects rather than voices (unintelligible, whispered, i.e. without
# pitch, or robotic), by lowercased file name; prefixes cover numbered families.
_EXCLUDED_VARIANTS = frozenset({
    "demonic", "announcer", "fast", "whisper", "whisperf", "caleb", "unirobot",
    "anikarobot", "tweaky", "kaukovalta", "mr serious"})
_EXCLUDED_VARIANT_PREFIXES = ("robosoft", "ricishaymax")
_KLATT_PREFIX = "klatt"  # klatt, klatt2..klatt6: the crossdomain variants
# Keep the streams apart; the crossdomain ones too, so that its voices and texts do not
# depend on the train/test voices (same-length keys: numpy pads a key with zeros).
(_STREAM_VOICE, _STREAM_CHAPTERS, _STREAM_UTTERANCE, _STREAM_CROSSDOMAIN_VOICE,
 _STREAM_CROSSDOMAIN_CHAPTERS, _STREAM_CROSSDOMAIN_UTTERANCE) = range(6)
_MAX_ATTEMPTS = 40  # texts tried per utterance before giving up on the duration bounds
_PEAK = 0.95  # highest sample magnitude written


class EspeakNotFoundError(UserError):
  """espeak-ng is not installed (or not on PATH)."""


@dataclasses.dataclass(frozen=True)
class Voice:
  """One speaker: accent (an English espeak-ng voice by language, e.g. en-gb), variant
  (its file name, what espeak accepts after '+'), sex ("F"/"M"), -p, SSML range %, -s,
  -g and -a; then what is done to espeak's output: formant_scale (vocal-tract length:
  > 1 shorter, all frequencies higher), tilt (beta of the first-order filter
  x[n] - beta x[n-1]) and channel_eq (peaking filters, (centre Hz, gain dB, Q) each)."""
  accent: str
  variant: str
  sex: str
  pitch: int
  pitch_range: int
  speed: int
  word_gap: int
  amplitude: int
  formant_scale: float = 1.0
  tilt: float = 0.0
  channel_eq: tuple[tuple[float, float, float], ...] = ()

  def identity(self) -> tuple:
    """What shapes the timbre most: distinct speakers differ here already."""
    return (self.accent, self.variant, self.pitch)

  def describe(self) -> str:
    eq = "".join(f" eq {f:.0f}Hz {g:+.1f}dB Q{q:.2f}" for f, g, q in self.channel_eq)
    return (f"espeak {self.accent}+{self.variant} pitch {self.pitch} range "
            f"{self.pitch_range}% speed {self.speed} gap {self.word_gap} amp {self.amplitude}"
            f" formant {self.formant_scale:.3f} tilt {self.tilt:+.3f}{eq}")


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
def _accent_files() -> dict[str, str]:
  """{language: voice file} of the English espeak-ng voices; not mbrola ones (separate
  databases), nor en-uk (an mbrola alias of en-gb)."""
  return {lang: file for lang, _, file in _voice_table("en") if lang.startswith("en")
          and lang != "en-uk" and not file.startswith("mb/")}


def list_accents() -> tuple[str, ...]:
  """English espeak-ng voices by language, sorted."""
  return tuple(sorted(_accent_files()))


def espeak_voice(voice: Voice) -> str:
  """The -v argument of `voice`: its accent's voice file, then '+variant'. Not the
  language: espeak-ng 1.51 drops the variant of "en-gb+f1" without a word (no voice file
  is named en-gb), while "gmw/en+f1" has it."""
  return f"{_accent_files()[voice.accent]}+{voice.variant}"


@functools.lru_cache(maxsize=None)
def _version_output() -> str:
  return subprocess.run([_espeak(), "--version"], capture_output=True, text=True,
                        check=True).stdout


def _selects_klatt(variant: str) -> bool:
  """Whether a variant file has a `klatt N` line: espeak-ng then speaks it with its Klatt
  synthesiser, not the formant one (adam, david, edward... do, besides the klatt* ones). An
  unreadable file counts as not (the voice lists in the manifest record the outcome)."""
  m = re.search(r"Data at:\s*(\S.*?)\s*$", _version_output(), re.MULTILINE)
  path = os.path.join(m.group(1) if m else "", "voices", "!v", variant)
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return any(line.split()[:1] == ["klatt"] for line in f)
  except OSError:
    return False


@functools.lru_cache(maxsize=None)
def _usable_variants() -> dict[str, tuple[str, ...]]:
  """Variants that are voices, by sex {"F": (...), "M": (...)}, as file names, sorted: an
  unknown name after '+' silently falls back to the plain voice, making distinct speakers
  identical."""
  by_sex = {"F": set(), "M": set()}
  for _, gender, file in _voice_table("variant"):
    name = file[len("!v/"):]
    if (file.startswith("!v/") and " " not in name and name.lower() not in _EXCLUDED_VARIANTS
        and not name.lower().startswith(_EXCLUDED_VARIANT_PREFIXES)):
      by_sex["F" if gender.upper().endswith("F") else "M"].add(name)
  return {sex: tuple(sorted(names)) for sex, names in by_sex.items()}


@functools.lru_cache(maxsize=None)
def list_variants() -> dict[str, tuple[str, ...]]:
  """The train/test variants by sex: the usable ones that espeak-ng does not speak with its
  Klatt synthesiser (the crossdomain voices' method, which training never uses)."""
  return {sex: tuple(n for n in names if not n.lower().startswith(_KLATT_PREFIX)
                     and not _selects_klatt(n))
          for sex, names in _usable_variants().items()}


@functools.lru_cache(maxsize=None)
def list_klatt_variants() -> dict[str, tuple[str, ...]]:
  """The crossdomain variants by sex: klatt, klatt2... (espeak-ng 1.51 lists all as male)."""
  return {sex: tuple(n for n in names if n.lower().startswith(_KLATT_PREFIX))
          for sex, names in _usable_variants().items()}


@functools.lru_cache(maxsize=None)
def espeak_version() -> str:
  """The installed espeak-ng's version, e.g. "1.51" (from `espeak-ng --version`)."""
  out = _version_output()
  m = re.search(r"\d+\.\d+\S*", out)  # "eSpeak NG text-to-speech: 1.51  Data at: ..."
  return m.group(0) if m else " ".join(out.split())


def espeak_record() -> dict:
  """What the installed espeak-ng gives the corpus: {"version", "accents", "variants",
  "klatt_variants"} (the lists the voices are drawn from)."""
  return dict(version=espeak_version(), accents=list(list_accents()),
              variants={sex: list(names) for sex, names in list_variants().items()},
              klatt_variants={sex: list(n) for sex, n in list_klatt_variants().items()})


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


def max_speakers(voice_transforms: bool = DEFAULT_VOICE_TRANSFORMS) -> int:
  """Distinct train/test speakers possible: they alternate F, M, ... and differ in
  `identity()`, so n of them need ceil(n/2) female and floor(n/2) male identities."""
  pitches = WIDE_PITCH_GRID if voice_transforms else PITCH_GRID
  per_sex = {sex: len(list_accents()) * len(names) * len(pitches)
             for sex, names in list_variants().items()}
  return min(2 * per_sex["F"], 2 * per_sex["M"] + 1)


def max_crossdomain_speakers() -> int:
  """Distinct crossdomain speakers possible (in `identity()`, of any sex)."""
  klatt = sum(len(names) for names in list_klatt_variants().values())
  return len(list_accents()) * klatt * len(WIDE_PITCH_GRID)


def _check_count(num_speakers: int, limit: int, what: str):
  if num_speakers < 0:
    raise ValueError(f"num_speakers must be >= 0, got {num_speakers}")
  if num_speakers > limit:
    raise ValueError(f"at most {limit} distinct {what} are possible with the installed "
                     f"espeak-ng voices, asked for {num_speakers}")


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], digits: int = 3) -> float:
  """Rounded, so that SPEAKERS.TXT shows the value the audio was made with."""
  return round(float(rng.uniform(*bounds)), digits)


def draw_voices(num_speakers: int, seed: int,
                voice_transforms: bool = DEFAULT_VOICE_TRANSFORMS) -> list[Voice]:
  """Distinct train/test voices, speaker i from `default_rng([seed, 0, i])` (redrawn while
  it repeats an earlier identity), so `draw_voices(n, s)[:k] == draw_voices(k, s)`. Sexes
  alternate, so neighbouring ids differ in variant. With `voice_transforms`, wider pitch
  and speed grids and a formant scale and tilt per voice; without, the voices of the
  corpora before them (but for the Klatt variants, gone). ValueError beyond
  `max_speakers()`."""
  _check_count(num_speakers, max_speakers(voice_transforms), "speakers")
  pitches, speeds = ((WIDE_PITCH_GRID, WIDE_SPEED_GRID) if voice_transforms
                     else (PITCH_GRID, SPEED_GRID))
  accents, variants = list_accents(), list_variants()
  voices, seen = [], set()
  for i in range(num_speakers):
    rng, sex, voice = np.random.default_rng([seed, _STREAM_VOICE, i]), "FM"[i % 2], None
    while voice is None or voice.identity() in seen:  # ends: fewer taken than exist
      voice = Voice(str(rng.choice(accents)), str(rng.choice(variants[sex])), sex,
                    *(int(rng.choice(g)) for g in (pitches, RANGE_GRID, speeds, GAP_GRID,
                                                   AMPLITUDE_GRID)))
      if voice_transforms:  # drawn last: the draws above are those of the grids alone
        voice = dataclasses.replace(voice, formant_scale=_uniform(rng, FORMANT_RANGE),
                                    tilt=_uniform(rng, TILT_RANGE))
    seen.add(voice.identity())
    voices.append(voice)
  return voices


def _draw_channel_eq(rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
  peaks = int(rng.integers(EQ_PEAKS[0], EQ_PEAKS[1] + 1))
  return tuple((_uniform(rng, EQ_CENTRE_HZ, 0), float(rng.choice([-1, 1])) *
                _uniform(rng, EQ_GAIN_DB, 1), _uniform(rng, EQ_Q, 2)) for _ in range(peaks))


def draw_crossdomain_voices(num_speakers: int, seed: int) -> list[Voice]:
  """Distinct crossdomain voices, speaker j from `default_rng([seed, 3, j])`, prefix-stable
  like `draw_voices` and independent of it: a Klatt variant (its sex, as espeak-ng lists
  it), the wide pitch grid, a formant scale from CROSSDOMAIN_FORMANT_RANGES and a channel EQ.
  ValueError beyond `max_crossdomain_speakers()`."""
  _check_count(num_speakers, max_crossdomain_speakers(), "crossdomain speakers")
  variants = [(sex, name) for sex, names in sorted(list_klatt_variants().items())
              for name in names]
  accents, voices, seen = list_accents(), [], set()
  for j in range(num_speakers):
    rng, voice = np.random.default_rng([seed, _STREAM_CROSSDOMAIN_VOICE, j]), None
    while voice is None or voice.identity() in seen:
      sex, variant = variants[int(rng.integers(len(variants)))]
      formants = CROSSDOMAIN_FORMANT_RANGES[int(rng.integers(len(CROSSDOMAIN_FORMANT_RANGES)))]
      voice = Voice(str(rng.choice(accents)), variant, sex,
                    *(int(rng.choice(g)) for g in (WIDE_PITCH_GRID, RANGE_GRID,
                                                   WIDE_SPEED_GRID, GAP_GRID, AMPLITUDE_GRID)),
                    formant_scale=_uniform(rng, formants), channel_eq=_draw_channel_eq(rng))
    seen.add(voice.identity())
    voices.append(voice)
  return voices


def peaking_filter(centre_hz: float, gain_db: float, q: float,
                   rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
  """(b, a) of a peaking biquad (the Audio EQ Cookbook's): `gain_db` at `centre_hz`,
  0 dB far from it."""
  amp, w0 = 10 ** (gain_db / 40), 2 * np.pi * centre_hz / rate
  alpha, cos = np.sin(w0) / (2 * q), np.cos(w0)
  b = np.array([1 + alpha * amp, -2 * cos, 1 - alpha * amp])
  a = np.array([1 + alpha / amp, -2 * cos, 1 - alpha / amp])
  return b / a[0], a / a[0]


def _filter(audio: np.ndarray, voice: Voice) -> np.ndarray:
  """The voice's spectral tilt and channel EQ (at SAMPLE_RATE); untouched without them."""
  if not voice.tilt and not voice.channel_eq:
    return audio
  from scipy import signal  # lazily, like librosa (which brings it)
  if voice.tilt:
    audio = signal.lfilter([1.0, -voice.tilt], [1.0], audio)
  for peak in voice.channel_eq:
    audio = signal.lfilter(*peaking_filter(*peak), audio)
  return audio.astype(np.float32)


def synthesise(voice: Voice, text: str, speed: int | None = None,
               pitch: int | None = None) -> np.ndarray:
  """Speaks `text` with `voice` at `speed` (the tempo; default the voice's) and `pitch`
  (default the voice's): float32, 16 kHz mono."""
  speed = voice.speed if speed is None else speed
  pitch = voice.pitch if pitch is None else pitch
  # Read as if sampled at rate * formant_scale (below), the audio is shorter by that
  # factor: espeak speaks slower by it to keep the tempo.
  espeak_speed = int(round(speed / voice.formant_scale))
  # The pitch range has no command-line flag; SSML prosody carries it (-m enables SSML).
  ssml = (f'<speak><prosody range="{voice.pitch_range}%">{saxutils.escape(text)}'
          "</prosody></speak>")
  # Variants differ a lot in loudness and espeak saturates its int16 output, so a take that
  # clips is made again at half the amplitude, and the level made up digitally.
  amplitude = voice.amplitude
  while True:
    proc = subprocess.run(
        [_espeak(), "-v", espeak_voice(voice), "-s", str(espeak_speed), "-p",
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
  # The vocal-tract length: resampled as if espeak's rate were rate * formant_scale, every
  # frequency scales by it, the formants and the pitch too (drawn independently anyway, so
  # the pitch grid still spreads the voices), at no cost beside the resampling to 16 kHz.
  source_rate = rate * voice.formant_scale
  if source_rate != SAMPLE_RATE:
    import librosa  # lazily: only processes that synthesise pay for the import
    audio = librosa.resample(audio, orig_sr=source_rate, target_sr=SAMPLE_RATE)
  audio = _filter(audio, voice)
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


@dataclasses.dataclass(frozen=True)
class _Speaker:
  """One speaker to build: its subset, id and voice, and `key`, its index in the rng
  streams of its kind (train/test, or crossdomain)."""
  subset: str
  speaker_id: int
  key: int
  voice: Voice

  @property
  def streams(self) -> tuple[int, int]:
    """The (chapters, utterance) streams of its kind."""
    return ((_STREAM_CROSSDOMAIN_CHAPTERS, _STREAM_CROSSDOMAIN_UTTERANCE)
            if self.subset == CROSSDOMAIN else (_STREAM_CHAPTERS, _STREAM_UTTERANCE))


def _utterance(speaker: _Speaker, seed: int, utt: int) -> tuple[np.ndarray, str]:
  """Audio and text of utterance `utt` of `speaker`: the first attempt k (drawn from
  `default_rng([seed, stream, speaker.key, utt, k])`) within the duration bounds."""
  voice = speaker.voice
  for attempt in range(_MAX_ATTEMPTS):
    rng = np.random.default_rng([seed, speaker.streams[1], speaker.key, utt, attempt])
    speed = int(round(voice.speed * rng.uniform(1 - SPEED_JITTER, 1 + SPEED_JITTER)))
    pitch = voice.pitch + int(rng.integers(-PITCH_JITTER, PITCH_JITTER + 1))
    # Words for a target duration; whole sentences overshoot it (hence the low targets),
    # and the check on the actual audio catches the tails.
    target_words, sentences = max(3, int(rng.uniform(2.0, 10.0) * speed / 60)), []
    while sum(len(s.split()) for s in sentences) < target_words:
      sentences.append(_sentence(rng))
    audio = synthesise(voice, " ".join(sentences), speed, pitch)
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


def _build_speaker(job: tuple[str, _Speaker, int, int]) -> dict:
  """Writes one speaker's FLACs and trans.txt files; returns its counts and seconds."""
  out_dir, speaker, seed, utterances = job
  subset, spk = speaker.subset, speaker.speaker_id
  rng = np.random.default_rng([seed, speaker.streams[0], speaker.key])
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
        text = known.get(utt_id) or transcript(_utterance(speaker, seed, utt)[1])
      else:
        remade += os.path.exists(path)
        audio, text = _utterance(speaker, seed, utt)
        buf = io.BytesIO()
        sf.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        storage.write_bytes(path, buf.getvalue())
        made, seconds, text = made + 1, seconds + len(audio) / SAMPLE_RATE, transcript(text)
      lines.append(f"{utt_id} {text}\n")
      utt += 1
    storage.write_text(trans_path, "".join(lines))
  return dict(speaker=speaker, utterances=utt, seconds=seconds,
              made=made, skipped=skipped, remade=remade)


def recipe(train_speakers: int, test_speakers: int, voice_transforms: bool,
           crossdomain_speakers: int) -> dict:
  """The manifest's record of what a corpus's voices are made of. The speaker counts are
  in it as they place every id: another count would give an id to two speakers."""
  return dict(version=RECIPE_VERSION, voice_transforms=bool(voice_transforms),
              train_speakers=train_speakers, test_speakers=test_speakers,
              crossdomain_speakers=crossdomain_speakers)


def _recorded_version(out_dir: str, seed: int, asked: dict) -> str | None:
  """The espeak-ng version recorded for the files already in `out_dir` (None for a new
  corpus), which a run of recipe `asked` may complete.

  Raises:
    ValueError: `out_dir` holds a corpus of another seed or recipe (or made before
      recipes were recorded), or made with an espeak-ng whose voice lists differ from the
      installed one's: completing it would mix two kinds of voices.
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
  if manifest is None and not os.path.exists(speakers_path):
    return None
  made_with = (manifest or {}).get("recipe")
  if made_with is None:
    raise ValueError(f"{out_dir} holds a demo corpus made before recipes were recorded "
                     "(Klatt voices in train/test, no crossdomain subset): generate the "
                     "corpus into a new directory")
  differ = [k for k in asked if made_with.get(k) != asked[k]]
  if differ:
    def listed(values):
      return ", ".join(f"{k}={json.dumps(values.get(k))}" for k in differ)
    raise ValueError(f"{out_dir} holds a demo corpus made with {listed(made_with)}, not "
                     f"{listed(asked)}: generate the corpus into a new directory")
  made_by, installed = manifest["espeak_ng"], espeak_record()
  if ({k: v for k, v in made_by.items() if k != "version"} !=
      {k: v for k, v in installed.items() if k != "version"}):
    raise ValueError(f"{out_dir} holds a corpus made with espeak-ng "
                     f"{made_by['version']}, whose voice lists differ from those of the "
                     f"installed espeak-ng {installed['version']}: completing it would "
                     "give its speakers other voices; generate it into another directory")
  return made_by["version"]


def _write_manifest(out_dir: str, seed: int, made_with: dict, record: dict, version: str):
  storage.write_json(os.path.join(out_dir, MANIFEST), dict(
      generator=GENERATOR, seed=seed, recipe=made_with,
      espeak_ng=dict(record, version=version)))


def _speakers_txt(seed: int, made_with: dict, records: list[dict]) -> str:
  flags = " ".join(f"{k}={json.dumps(v)}" for k, v in made_with.items() if k != "version")
  return "".join([
      "; Synthetic speakers (espeak-ng), LibriSpeech SPEAKERS.TXT format.\n",
      f"; generator: mirnet_jax.data.demo_corpus seed={seed}\n",
      f"; recipe {made_with['version']}: {flags}\n",
      "; MINUTES: total audio of the speaker in this corpus; NAME: the voice parameters.\n",
      ";\n", ";ID  |SEX| SUBSET           |MINUTES| NAME\n"] + [
          f"{r['speaker'].speaker_id:<5}| {r['speaker'].voice.sex} | "
          f"{r['speaker'].subset:<17}| {r['seconds'] / 60:5.2f} | "
          f"{r['speaker'].voice.describe()}\n" for r in records])


def generate(out_dir: str, train_speakers: int = DEFAULT_TRAIN_SPEAKERS,
             test_speakers: int = DEFAULT_TEST_SPEAKERS,
             utterances_per_speaker: int = DEFAULT_UTTERANCES_PER_SPEAKER, seed: int = 0,
             workers: int | None = None, voice_transforms: bool = DEFAULT_VOICE_TRANSFORMS,
             crossdomain_speakers: int = DEFAULT_CROSSDOMAIN_SPEAKERS) -> dict:
  """Synthesises the corpus into `out_dir` with `workers` processes (default: all cores).

  The first `train_speakers` of `draw_voices(train_speakers + test_speakers, seed,
  voice_transforms)` form `train`, the rest `test`; `draw_crossdomain_voices(
  crossdomain_speakers, seed)` form `crossdomain`, whose ids follow (the same voices and
  audio whatever `voice_transforms` says). A rerun keeps the FLACs that exist and decode
  (so it completes an interrupted run) and refuses a directory made with another seed or
  `recipe()`, or with an espeak-ng of other voice lists (ValueError, as for bad counts);
  files it adds with another espeak-ng version than the corpus's are counted in a
  warning, and the manifest then records both ("1.51+1.52"). Returns {"out_dir", "seed",
  "recipe", "speakers", "utterances", "hours" (each {subset: value} over SUBSETS),
  "espeak_ng" (the version recorded), "synthesised", "skipped" (kept), "remade" (existing
  files that no longer decoded), "seconds" (wall time)}.
  """
  workers = (os.cpu_count() or 1) if workers is None else workers
  for name, value, low in (("train_speakers", train_speakers, 1),
                           ("test_speakers", test_speakers, 0),
                           ("crossdomain_speakers", crossdomain_speakers, 0),
                           ("utterances_per_speaker", utterances_per_speaker, 1),
                           ("workers", workers, 1)):
    if value < low:
      raise ValueError(f"{name} must be >= {low}, got {value}")
  _espeak()  # fail early with the install hint
  voices = draw_voices(train_speakers + test_speakers, seed, voice_transforms)
  speakers = [_Speaker(TRAIN if i < train_speakers else TEST, FIRST_SPEAKER_ID + i, i, v)
              for i, v in enumerate(voices)]
  speakers += [_Speaker(CROSSDOMAIN, FIRST_SPEAKER_ID + len(voices) + j, j, v)
               for j, v in enumerate(draw_crossdomain_voices(crossdomain_speakers, seed))]
  made_with = recipe(train_speakers, test_speakers, voice_transforms, crossdomain_speakers)
  recorded, installed = _recorded_version(out_dir, seed, made_with), espeak_record()
  os.makedirs(out_dir, exist_ok=True)
  # Recorded before any file is made: a rerun after an interruption knows who made them.
  version = installed["version"]
  _write_manifest(out_dir, seed, made_with, installed, _merged_version(recorded, version))
  jobs = [(out_dir, speaker, seed, utterances_per_speaker) for speaker in speakers]
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
  _write_manifest(out_dir, seed, made_with, installed, made_by)
  storage.write_text(os.path.join(out_dir, SPEAKERS_FILE),
                     _speakers_txt(seed, made_with, records))
  by_subset = {s: [r for r in records if r["speaker"].subset == s] for s in SUBSETS}
  return dict(out_dir=out_dir, seed=seed, recipe=made_with, espeak_ng=made_by,
              speakers={s: len(rs) for s, rs in by_subset.items()},
              utterances={s: sum(r["utterances"] for r in rs) for s, rs in by_subset.items()},
              hours={s: sum(r["seconds"] for r in rs) / 3600 for s, rs in by_subset.items()},
              synthesised=made, skipped=sum(r["skipped"] for r in records),
              remade=sum(r["remade"] for r in records), seconds=time.time() - start)


def format_summary(summary: dict) -> str:
  """One line: the espeak-ng version, the voice transforms, and speakers, utterances and
  hours per subset."""
  parts = [f"{s} {summary['speakers'][s]} speakers {summary['utterances'][s]} utterances "
           f"{summary['hours'][s]:.2f} h" for s in SUBSETS]
  remade = f"{summary['remade']} unreadable files remade, " if summary["remade"] else ""
  transforms = "on" if summary["recipe"]["voice_transforms"] else "off"
  return (f"demo corpus in {summary['out_dir']} (espeak-ng {summary['espeak_ng']}), voice "
          f"transforms {transforms}: " + "; ".join(parts) +
          f" ({summary['synthesised']} synthesised, {summary['skipped']} kept, {remade}"
          f"{summary['seconds']:.0f} s)")
