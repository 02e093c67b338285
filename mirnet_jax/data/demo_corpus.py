"""A synthetic multi-speaker speech corpus in the LibriSpeech layout, made with espeak-ng.

It lets the whole pipeline (preparation, training, evaluation) run end to end without
downloading LibriSpeech. Layout, as LibriSpeech:

  OUT/SPEAKERS.TXT
  OUT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
  OUT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac   (16 kHz mono, 16 bit)

with subsets `train` and `test` (disjoint speakers). A speaker is one fixed espeak-ng voice:
English accent + voice variant + base pitch + pitch range + speed + word gap + amplitude
(see `Voice`). Utterances of a speaker differ in text (a small built-in sentence generator)
and slightly in delivery (per-utterance jitter of speed and pitch), so a speaker model has
to learn the voice, not the sentence.

Every random choice comes from `np.random.default_rng([seed, stream, speaker, ...])`, so one
seed gives byte-identical files whatever the number of worker processes, and a speaker's
voice does not depend on how many speakers are drawn after it. The voice and variant lists
are read from the installed espeak-ng, so determinism holds for one espeak-ng installation.
"""

import dataclasses
import functools
import io
import multiprocessing
import os
import re
import shutil
import subprocess
import time
from typing import Sequence
from xml.sax import saxutils

from absl import logging
import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
MIN_SECONDS = 2.0
MAX_SECONDS = 15.0
FIRST_SPEAKER_ID = 100
TRAIN, TEST = "train", "test"
SPEAKERS_FILE = "SPEAKERS.TXT"

# Default size. Many voices with few utterances each: a MIRNet trained on the 100 voices of
# an earlier default separated unseen voices as badly after 3,600 steps as after 1,800
# (README, "Results on the demo corpus"); 400 voices x 8 utterances is twice that audio and
# takes under a minute to synthesise.
DEFAULT_TRAIN_SPEAKERS = 400
DEFAULT_TEST_SPEAKERS = 40
DEFAULT_UTTERANCES_PER_SPEAKER = 8

# Grids of the speaker parameters. Coarse steps keep two speakers audibly apart even when
# they share accent and variant; the ranges stay inside what espeak renders cleanly.
PITCH_GRID = tuple(range(20, 81, 5))  # espeak -p (0..99, 50 = the variant's default)
RANGE_GRID = tuple(range(50, 151, 10))  # SSML <prosody range="NN%">, 100 = default
SPEED_GRID = tuple(range(130, 201, 10))  # espeak -s, words per minute
GAP_GRID = (0, 1, 2, 3)  # espeak -g, extra pause between words in units of 10 ms
# espeak -a (100 = default). Kept lowish: loud variants saturate espeak's int16 output,
# which `synthesise` then has to work around.
AMPLITUDE_GRID = (40, 50, 60, 70, 80)

# Per-utterance delivery jitter around the speaker's values.
SPEED_JITTER = 0.05  # relative, +-5 %
PITCH_JITTER = 3  # absolute -p units, +-3

# Variants that are jokes or effects rather than voices: unintelligible, whispered (no
# pitch, so the pitch parameters would be void) or heavy robotic echo. Matched on the
# lowercased variant file name; prefixes cover numbered families (robosoft2, ...).
_EXCLUDED_VARIANTS = frozenset({
    "demonic", "announcer", "fast", "whisper", "whisperf", "caleb", "unirobot",
    "anikarobot", "tweaky", "kaukovalta", "mr serious"})
_EXCLUDED_VARIANT_PREFIXES = ("robosoft", "ricishaymax")

# Random streams: the first key element after the seed, so the streams never overlap.
_STREAM_VOICE, _STREAM_CHAPTERS, _STREAM_UTTERANCE = 0, 1, 2
_MAX_ATTEMPTS = 40  # texts tried per utterance before giving up on the duration bounds
_PEAK = 0.95  # highest sample magnitude written (a little headroom below full scale)


class EspeakNotFoundError(RuntimeError):
  """espeak-ng is not installed (or not on PATH)."""


@dataclasses.dataclass(frozen=True)
class Voice:
  """One synthetic speaker: the espeak-ng parameters that stay fixed over its utterances."""
  accent: str  # espeak English voice, e.g. "en-gb-scotland"
  variant: str  # variant file name (what espeak accepts after "+"), e.g. "f3"
  sex: str  # "F" or "M", from the variant's gender
  pitch: int  # -p
  pitch_range: int  # percent, SSML prosody range
  speed: int  # -s, words per minute
  word_gap: int  # -g
  amplitude: int  # -a

  @property
  def espeak_voice(self) -> str:
    return f"{self.accent}+{self.variant}"

  def params(self) -> tuple:
    """All parameters as a tuple (what 'distinct speakers' is checked on)."""
    return dataclasses.astuple(self)

  def identity(self) -> tuple:
    """The parts that shape the timbre most; distinct speakers differ here already."""
    return (self.accent, self.variant, self.pitch)

  def describe(self) -> str:
    """Readable one-line description, used as NAME in SPEAKERS.TXT (no '|')."""
    return (f"espeak {self.espeak_voice} pitch {self.pitch} range {self.pitch_range}% "
            f"speed {self.speed} gap {self.word_gap} amp {self.amplitude}")


# ------------------------------------------------------------------------------- espeak


def _espeak() -> str:
  path = shutil.which("espeak-ng")
  if path is None:
    raise EspeakNotFoundError(
        "espeak-ng not found; install it with: apt-get install espeak-ng")
  return path


_VOICE_ROW = re.compile(
    r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*?)((?:\s+\([^()]*\))*)\s*$")


def _voice_table(kind: str) -> list[tuple[str, str, str, str]]:
  """Rows (language, age/gender, voice name, file) of `espeak-ng --voices=<kind>`.

  Parsed by pattern, not by column position: long voice names push the later columns
  right, and a file name may hold a space ("!v/Mr serious"). Voice names never do (espeak
  prints them with '_'), and the trailing "other languages" are parenthesised.
  """
  out = subprocess.run([_espeak(), f"--voices={kind}"], capture_output=True, text=True,
                       check=True).stdout.splitlines()
  rows = []
  for line in out[1:]:  # out[0] is the header
    m = _VOICE_ROW.match(line)
    if m:
      rows.append((m.group(2), m.group(3), m.group(4), m.group(5).strip()))
  return rows


@functools.lru_cache(maxsize=None)
def list_accents() -> tuple[str, ...]:
  """English espeak-ng voices (accents) installed, mbrola voices excluded, sorted."""
  accents = set()
  for language, _, _, file_col in _voice_table("en"):
    # mbrola voices (mb/...) need separately installed databases; variants are not accents.
    if file_col.startswith("mb/") or language == "variant" or not language.startswith("en"):
      continue
    if language == "en-uk":  # an mbrola alias of en-gb in some installs
      continue
    accents.add(language)
  return tuple(sorted(accents))


@functools.lru_cache(maxsize=None)
def list_variants() -> dict[str, tuple[str, ...]]:
  """Usable voice variants by sex {"F": (...), "M": (...)}, as variant file names, sorted.

  Read from `espeak-ng --voices=variant` so the set is whatever is installed; joke and
  whisper variants (`_EXCLUDED_VARIANTS`) and names with spaces are skipped. espeak accepts
  the variant's file name after '+', not its display name: an unknown name silently falls
  back to the plain voice, which would make distinct "speakers" identical.
  """
  by_sex = {"F": set(), "M": set()}
  for _, gender, _, file_col in _voice_table("variant"):
    if not file_col.startswith("!v/"):
      continue
    name = file_col[len("!v/"):]
    low = name.lower()
    if (" " in name or low in _EXCLUDED_VARIANTS
        or low.startswith(_EXCLUDED_VARIANT_PREFIXES)):
      continue
    sex = "F" if gender.upper().endswith("F") else "M"
    by_sex[sex].add(name)
  return {sex: tuple(sorted(names)) for sex, names in by_sex.items()}


def _sex_of(index: int) -> str:
  # Alternating sexes: neighbouring speaker ids always differ in sex, hence in variant.
  return "F" if index % 2 == 0 else "M"


def max_speakers() -> int:
  """How many distinct speakers `draw_voices` can make with the installed espeak-ng.

  Speakers alternate F, M, F, ... and must differ in (accent, variant, pitch), so the
  limit is set by the smaller of the two per-sex pools.
  """
  variants = list_variants()
  per_sex = {sex: len(list_accents()) * len(names) * len(PITCH_GRID)
             for sex, names in variants.items()}
  # n speakers need ceil(n/2) female and floor(n/2) male identities.
  return min(2 * per_sex["F"], 2 * per_sex["M"] + 1)


def draw_voices(num_speakers: int, seed: int) -> list[Voice]:
  """Draws `num_speakers` distinct voices, deterministically from `seed`.

  Speaker i's parameters come from `default_rng([seed, 0, i])`; a draw that repeats an
  earlier speaker's (accent, variant, pitch) is redrawn from the same generator. So
  `draw_voices(n, s)[:k] == draw_voices(k, s)`: adding speakers never changes earlier ones.

  Raises:
    ValueError: `num_speakers` is negative or more than `max_speakers()`.
  """
  if num_speakers < 0:
    raise ValueError(f"num_speakers must be >= 0, got {num_speakers}")
  limit = max_speakers()
  if num_speakers > limit:
    raise ValueError(f"at most {limit} distinct speakers are possible with the installed "
                     f"espeak-ng voices, asked for {num_speakers}")
  accents, variants = list_accents(), list_variants()
  voices, seen = [], set()
  for i in range(num_speakers):
    rng = np.random.default_rng([seed, _STREAM_VOICE, i])
    sex = _sex_of(i)
    while True:  # terminates: fewer identities are taken than exist (checked above)
      voice = Voice(
          accent=str(rng.choice(accents)),
          variant=str(rng.choice(variants[sex])),
          sex=sex,
          pitch=int(rng.choice(PITCH_GRID)),
          pitch_range=int(rng.choice(RANGE_GRID)),
          speed=int(rng.choice(SPEED_GRID)),
          word_gap=int(rng.choice(GAP_GRID)),
          amplitude=int(rng.choice(AMPLITUDE_GRID)))
      if voice.identity() not in seen:
        break
    seen.add(voice.identity())
    voices.append(voice)
  return voices


def _run_espeak(voice: Voice, text: str, speed: int, pitch: int,
                amplitude: int) -> tuple[np.ndarray, int]:
  """One espeak-ng call: int16 samples and their rate (22050 Hz for the espeak voices)."""
  # The pitch range has no command-line flag; SSML prosody carries it (-m enables SSML).
  ssml = (f'<speak><prosody range="{voice.pitch_range}%">{saxutils.escape(text)}'
          "</prosody></speak>")
  cmd = [_espeak(), "-v", voice.espeak_voice, "-s", str(speed), "-p", str(pitch),
         "-g", str(voice.word_gap), "-a", str(amplitude), "-m", "--stdout", ssml]
  proc = subprocess.run(cmd, capture_output=True, check=False)
  if proc.returncode != 0 or not proc.stdout:
    raise RuntimeError(f"espeak-ng failed ({proc.returncode}): "
                       f"{proc.stderr.decode(errors='replace').strip()}")
  # Written to a pipe, the WAV header has no real length; libsndfile reads to EOF anyway.
  data, rate = sf.read(io.BytesIO(proc.stdout), dtype="int16")
  return (data.mean(axis=1).astype(np.int16) if data.ndim == 2 else data), rate


def synthesise(voice: Voice, text: str, speed: int | None = None,
               pitch: int | None = None) -> np.ndarray:
  """Speaks `text` with `voice` (optionally another speed/pitch): float32, 16 kHz mono."""
  speed = voice.speed if speed is None else speed
  pitch = voice.pitch if pitch is None else pitch
  # Variants differ in loudness by 3x and more (e.g. "iven"), and espeak saturates its
  # int16 output, so some voices clip even at moderate -a. When the output saturates,
  # synthesise again at half the amplitude and make up the level digitally; where the
  # nominal level exceeds full scale, the whole utterance is scaled down (no clipping).
  amplitude = voice.amplitude
  while True:
    data, rate = _run_espeak(voice, text, speed, pitch, amplitude)
    if np.abs(data.astype(np.int32)).max() < 32767 or amplitude <= 5:
      break
    amplitude //= 2
  audio = data.astype(np.float32) * (voice.amplitude / amplitude / 32768)
  if rate != SAMPLE_RATE:
    import librosa  # lazily: only processes that synthesise pay for the import
    audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE)
  # Limit after resampling, which can overshoot the input's peak on espeak's sharp edges.
  peak = float(np.abs(audio).max()) if audio.size else 0.0
  if peak > _PEAK:
    audio *= _PEAK / peak
  return audio.astype(np.float32)


# ---------------------------------------------------------------------------- sentences

_NAMES = """Anna Ben Clara David Emma Frank Grace Henry Iris Jack Kate Leo Maria Nick Olivia
Peter Rose Sam Tom Lucy Martin Helen Oscar Paul Sarah Daniel Laura Simon Alice George""".split()
_DETS = "the the the a a this that my your our their his her every one".split()
_ADJS = """old young small large little big red blue green yellow white black brown quiet loud
happy sad bright dark warm cold cheap heavy light long short new clean dirty strange simple
busy calm careful clever famous friendly gentle honest kind lazy lucky modern narrow polite
proud rich rough round sharp soft strong sweet tall thin tired wild wooden empty early
late fresh""".split()
_NOUNS = """man woman child boy girl teacher doctor farmer driver baker student friend
neighbour captain sailor soldier painter writer singer dog cat horse bird fish cow sheep
book letter table chair window door bottle glass cup plate knife spoon basket box bag coat
hat shoe ring key lamp clock picture map ticket boat car train bicycle apple bread cake
cheese egg orange potato flower tree stone shell candle blanket pencil paper radio
camera wheel rope bell drum""".split()
_PLACES = """garden kitchen station market river forest village city school church
library office hospital bridge harbour island mountain valley field farm road street
corner park beach hill lake castle shop hotel theatre museum tower cottage yard
hall gate""".split()
_VT = [("see", "saw"), ("find", "found"), ("take", "took"), ("bring", "brought"),
       ("carry", "carried"), ("open", "opened"), ("close", "closed"), ("paint", "painted"),
       ("clean", "cleaned"), ("buy", "bought"), ("sell", "sold"), ("give", "gave"),
       ("lose", "lost"), ("keep", "kept"), ("hold", "held"), ("want", "wanted"),
       ("like", "liked"), ("move", "moved"), ("watch", "watched"), ("follow", "followed"),
       ("push", "pushed"), ("pull", "pulled"), ("fix", "fixed"), ("build", "built"),
       ("draw", "drew"), ("read", "read"), ("write", "wrote"), ("hide", "hid"),
       ("show", "showed"), ("send", "sent"), ("wash", "washed"), ("fill", "filled"),
       ("drop", "dropped"), ("catch", "caught"), ("throw", "threw"), ("break", "broke"),
       ("check", "checked"), ("count", "counted"), ("cover", "covered"), ("visit", "visited"),
       ("remember", "remembered"), ("forget", "forgot"), ("borrow", "borrowed"),
       ("return", "returned"), ("order", "ordered"), ("cook", "cooked"), ("notice", "noticed")]
_VI = [("sleep", "slept"), ("walk", "walked"), ("run", "ran"), ("sing", "sang"),
       ("laugh", "laughed"), ("smile", "smiled"), ("wait", "waited"), ("work", "worked"),
       ("play", "played"), ("swim", "swam"), ("dance", "danced"), ("rest", "rested"),
       ("travel", "travelled"), ("arrive", "arrived"), ("leave", "left"), ("stay", "stayed"),
       ("listen", "listened"), ("talk", "talked"), ("sit", "sat"), ("stand", "stood"),
       ("shout", "shouted"), ("whisper", "whispered"), ("return", "returned"),
       ("hurry", "hurried"), ("fall", "fell"), ("climb", "climbed")]
_ADVS = """slowly quickly quietly loudly happily sadly carefully gently suddenly
softly proudly calmly politely eagerly patiently bravely easily nearly""".split()
_DEGREE = "very quite rather really so too".split()
_PREPS = "in near behind under beside inside outside across through past".split()
_TIMES = ["today", "yesterday", "last night", "this morning", "in the evening",
          "after lunch", "before dinner", "on monday", "on friday", "at noon",
          "every day", "last week", "next year", "in the spring", "in the winter",
          "after the storm", "before sunrise", "at midnight", "on sunday morning",
          "a long time ago", "once again", "later that day", "early in the morning"]


def _pick(rng: np.random.Generator, words: Sequence):
  return words[int(rng.integers(len(words)))]


def _np(rng: np.random.Generator, adj: bool | None = None) -> str:
  """A noun phrase: determiner, optional adjective, noun."""
  if adj is None:
    adj = rng.random() < 0.5
  words = [_pick(rng, _DETS)] + ([_pick(rng, _ADJS)] if adj else []) + [_pick(rng, _NOUNS)]
  return " ".join(words)


def _place(rng: np.random.Generator) -> str:
  adj = [_pick(rng, _ADJS)] if rng.random() < 0.4 else []
  return " ".join([_pick(rng, _PREPS), "the"] + adj + [_pick(rng, _PLACES)])


def _sentence(rng: np.random.Generator) -> str:
  """One grammatical sentence from a random template, with final punctuation."""
  name, name2 = _pick(rng, _NAMES), _pick(rng, _NAMES)
  vt, vi, vi2 = _pick(rng, _VT), _pick(rng, _VI), _pick(rng, _VI)
  t = int(rng.integers(12))
  if t == 0:
    s = f"{_np(rng)} {vt[1]} {_np(rng)} {_place(rng)}."
  elif t == 1:
    s = f"{name} {_pick(rng, _ADVS)} {vi[1]} {_place(rng)} {_pick(rng, _TIMES)}."
  elif t == 2:
    s = f"{_pick(rng, _TIMES)}, {name} {vt[1]} {_np(rng, adj=True)}."
  elif t == 3:
    s = f"{_np(rng)} {_place(rng)} was {_pick(rng, _DEGREE)} {_pick(rng, _ADJS)}."
  elif t == 4:
    s = f"did {name} {vt[0]} {_np(rng)} {_pick(rng, _TIMES)}?"
  elif t == 5:
    s = f"{name} and {name2} {vi[1]}, but {_np(rng)} {vi2[1]} {_pick(rng, _ADVS)}."
  elif t == 6:
    s = f"we will {vt[0]} {_np(rng, adj=True)} {_place(rng)}."
  elif t == 7:
    s = f"there was a {_pick(rng, _ADJS)} {_pick(rng, _NOUNS)} {_place(rng)}."
  elif t == 8:
    s = f"{name} said that {_np(rng)} {vt[1]} {_np(rng, adj=True)}."
  elif t == 9:
    s = f"when {name} {vi[1]}, {_np(rng)} {vi2[1]} {_place(rng)}."
  elif t == 10:
    s = f"I think {_np(rng)} can {vt[0]} {_np(rng)} {_pick(rng, _TIMES)}."
  else:
    s = f"please {vt[0]} {_np(rng, adj=True)} {_pick(rng, _TIMES)}."
  # "a" before a vowel becomes "an" (the vocabulary has no "a university"-type words).
  s = re.sub(r"\ba ([aeiou])", r"an \1", s)
  s = re.sub(r"\b(monday|friday|sunday)\b", lambda m: m.group(1).capitalize(), s)
  return s[0].upper() + s[1:]


def make_text(rng: np.random.Generator, target_words: int) -> str:
  """Chains random sentences until they hold at least `target_words` words."""
  sentences, count = [], 0
  while count < target_words:
    sentences.append(_sentence(rng))
    count += len(sentences[-1].split())
  return " ".join(sentences)


def transcript(text: str) -> str:
  """LibriSpeech-style transcript: upper case words, no punctuation but apostrophes."""
  return " ".join(re.sub(r"[^A-Z' ]+", " ", text.upper()).split())


# ---------------------------------------------------------------------------- utterances


def _utterance(voice: Voice, seed: int, speaker: int, utt: int) -> tuple[np.ndarray, str]:
  """Audio and text of utterance `utt` of speaker index `speaker`, within [2, 15] s.

  Attempt k draws from `default_rng([seed, 2, speaker, utt, k])`; the first attempt whose
  actual audio falls inside the bounds wins, so the result is deterministic.
  """
  for attempt in range(_MAX_ATTEMPTS):
    rng = np.random.default_rng([seed, _STREAM_UTTERANCE, speaker, utt, attempt])
    speed = int(round(voice.speed * rng.uniform(1 - SPEED_JITTER, 1 + SPEED_JITTER)))
    pitch = voice.pitch + int(rng.integers(-PITCH_JITTER, PITCH_JITTER + 1))
    # Measured: espeak speaks about `speed` of these words per minute. Chaining whole
    # sentences overshoots the target by half a sentence (~2 s) on average, so targets of
    # 2..10 s give ~4..12 s, mean ~8 s; the audio check below catches the tails.
    seconds = rng.uniform(2.0, 10.0)
    target_words = max(3, int(seconds * speed / 60))
    text = make_text(rng, target_words)
    audio = synthesise(voice, text, speed=speed, pitch=pitch)
    if MIN_SECONDS <= len(audio) / SAMPLE_RATE <= MAX_SECONDS:
      return audio, text
  raise RuntimeError(f"no utterance within [{MIN_SECONDS}, {MAX_SECONDS}] s after "
                     f"{_MAX_ATTEMPTS} attempts for voice {voice.describe()}")


def _chapters(seed: int, speaker: int, num_utterances: int) -> list[int]:
  """How many of the speaker's utterances go to each of its 1 or 2 chapters."""
  rng = np.random.default_rng([seed, _STREAM_CHAPTERS, speaker])
  if num_utterances < 2 or rng.random() < 0.5:
    return [num_utterances]
  first = int(rng.integers(1, num_utterances))
  return [first, num_utterances - first]


def _atomic_write_text(path: str, text: str):
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def _atomic_write_flac(path: str, audio: np.ndarray):
  # A temp name in the same directory, then a rename: readers (and a rerun) never see a
  # half-written FLAC, and a crash leaves at most a stray temp file.
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
  sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
  os.replace(tmp, path)


def _existing_seconds(path: str) -> float | None:
  """The duration of the utterance file an earlier run wrote, or None if there is none, or
  if it does not decode to its end (damaged since; it is then synthesised again)."""
  if not os.path.exists(path):
    return None
  try:
    data, rate = sf.read(path, dtype="int16")
  except (sf.LibsndfileError, RuntimeError, EOFError) as e:
    logging.warning("%s is unreadable (%s): synthesising it again", path,
                    str(e).replace("\n", " "))
    return None
  if len(data) == 0:
    logging.warning("%s holds no samples: synthesising it again", path)
    return None
  return len(data) / rate


def _read_trans(path: str) -> dict[str, str]:
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    pairs = (line.rstrip("\n").split(" ", 1) for line in f if line.strip())
    return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}


@dataclasses.dataclass(frozen=True)
class _SpeakerJob:
  out_dir: str
  subset: str
  index: int  # speaker index over train then test; keys its random streams
  voice: Voice
  seed: int
  utterances: int


def _speaker_id(index: int) -> int:
  return FIRST_SPEAKER_ID + index


def _build_speaker(job: _SpeakerJob) -> dict:
  """Writes one speaker's FLACs and trans.txt files; returns its counts and minutes."""
  spk = _speaker_id(job.index)
  seconds, made, skipped, remade, utt = 0.0, 0, 0, 0, 0
  for c, count in enumerate(_chapters(job.seed, job.index, job.utterances)):
    chapter = spk * 10 + c + 1  # globally unique, and readable: 1001, 1002 for speaker 100
    chapter_dir = os.path.join(job.out_dir, job.subset, str(spk), str(chapter))
    os.makedirs(chapter_dir, exist_ok=True)
    trans_path = os.path.join(chapter_dir, f"{spk}-{chapter}.trans.txt")
    known = _read_trans(trans_path)  # texts of files made by an earlier run
    lines = []
    for u in range(count):
      utt_id = f"{spk}-{chapter}-{u:04d}"
      path = os.path.join(chapter_dir, f"{utt_id}.flac")
      existing = _existing_seconds(path)
      if existing is not None:
        skipped += 1
        seconds += existing
        text = known.get(utt_id)
        if text is None:
          # Interrupted before trans.txt was written: redo the (deterministic) synthesis
          # in memory to recover the text, but leave the file alone.
          text = transcript(_utterance(job.voice, job.seed, job.index, utt)[1])
      else:
        remade += os.path.exists(path)
        audio, raw_text = _utterance(job.voice, job.seed, job.index, utt)
        _atomic_write_flac(path, audio)
        made += 1
        seconds += len(audio) / SAMPLE_RATE
        text = transcript(raw_text)
      lines.append(f"{utt_id} {text}\n")
      utt += 1
    _atomic_write_text(trans_path, "".join(lines))
  return dict(index=job.index, subset=job.subset, voice=job.voice, utterances=utt,
              seconds=seconds, made=made, skipped=skipped, remade=remade)


def _speakers_txt(records: list[dict], seed: int) -> str:
  lines = [
      "; Synthetic speakers (espeak-ng), LibriSpeech SPEAKERS.TXT format.\n",
      f"; generator: mirnet_jax.data.demo_corpus seed={seed}\n",
      "; MINUTES: total audio of the speaker in this corpus; NAME: the voice parameters.\n",
      ";\n",
      ";ID  |SEX| SUBSET           |MINUTES| NAME\n"]
  for r in sorted(records, key=lambda r: r["index"]):
    lines.append(f"{_speaker_id(r['index']):<5}| {r['voice'].sex} | {r['subset']:<17}| "
                 f"{r['seconds'] / 60:5.2f} | {r['voice'].describe()}\n")
  return "".join(lines)


def _check_seed(out_dir: str, seed: int):
  """Refuses to mix two seeds in one directory (a rerun keeps the existing files)."""
  path = os.path.join(out_dir, SPEAKERS_FILE)
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    m = re.search(r"seed=(-?\d+)", f.read())
  if m and int(m.group(1)) != seed:
    raise ValueError(f"{out_dir} holds a corpus made with seed={m.group(1)}; use that seed "
                     f"to complete it, or another directory for seed={seed}")


def generate(out_dir: str, train_speakers: int = DEFAULT_TRAIN_SPEAKERS,
             test_speakers: int = DEFAULT_TEST_SPEAKERS,
             utterances_per_speaker: int = DEFAULT_UTTERANCES_PER_SPEAKER, seed: int = 0,
             workers: int | None = None) -> dict:
  """Synthesises the corpus into `out_dir` (see module docstring); returns a summary.

  Speakers 0..train_speakers-1 of `draw_voices(train_speakers + test_speakers, seed)` form
  `train`, the rest `test`, so the two subsets never share a speaker. Speaker ids start at
  `FIRST_SPEAKER_ID`. Utterances whose FLAC already exists are kept (a rerun completes an
  interrupted run); SPEAKERS.TXT is rewritten at the end.

  Args:
    out_dir: corpus root; created if missing.
    train_speakers, test_speakers: speakers per subset (test may be 0).
    utterances_per_speaker: utterances of every speaker, spread over 1 or 2 chapters.
    seed: the one source of randomness; same seed, same bytes.
    workers: processes synthesising speakers in parallel (default: os.cpu_count()).

  Returns:
    {"out_dir", "seed", "speakers": {subset: n}, "utterances": {subset: n},
     "hours": {subset: h}, "synthesised": n, "skipped": n (kept), "remade": n (existing
     files that no longer decoded, synthesised again), "seconds": wall time}.

  Raises:
    ValueError: nonpositive counts, too many speakers, or `out_dir` made with another seed.
    EspeakNotFoundError: espeak-ng is not installed.
  """
  if train_speakers < 1 or test_speakers < 0:
    raise ValueError(f"need train_speakers >= 1 and test_speakers >= 0, got "
                     f"{train_speakers} and {test_speakers}")
  if utterances_per_speaker < 1:
    raise ValueError(f"utterances_per_speaker must be >= 1, got {utterances_per_speaker}")
  if workers is None:
    workers = os.cpu_count() or 1
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  _espeak()  # fail early with the install hint
  voices = draw_voices(train_speakers + test_speakers, seed)
  _check_seed(out_dir, seed)
  os.makedirs(out_dir, exist_ok=True)

  jobs = [_SpeakerJob(out_dir, TRAIN if i < train_speakers else TEST, i, v, seed,
                      utterances_per_speaker) for i, v in enumerate(voices)]
  start = time.time()
  records = []
  if workers == 1:
    records = [_build_speaker(job) for job in jobs]
  else:
    # spawn, not fork: the caller may have JAX (multithreaded) loaded, and fork would copy
    # its locks mid-use. Results do not depend on which worker makes which speaker.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, len(jobs))) as pool:
      for r in pool.imap_unordered(_build_speaker, jobs):
        records.append(r)
        if len(records) % 10 == 0 or len(records) == len(jobs):
          logging.info("demo corpus: %d/%d speakers", len(records), len(jobs))
  _atomic_write_text(os.path.join(out_dir, SPEAKERS_FILE), _speakers_txt(records, seed))

  summary = dict(out_dir=out_dir, seed=seed, speakers={}, utterances={}, hours={},
                 synthesised=sum(r["made"] for r in records),
                 skipped=sum(r["skipped"] for r in records),
                 remade=sum(r["remade"] for r in records),
                 seconds=time.time() - start)
  for subset in (TRAIN, TEST):
    rs = [r for r in records if r["subset"] == subset]
    summary["speakers"][subset] = len(rs)
    summary["utterances"][subset] = sum(r["utterances"] for r in rs)
    summary["hours"][subset] = sum(r["seconds"] for r in rs) / 3600
  return summary


def format_summary(summary: dict) -> str:
  """One line: speakers, utterances and hours per subset."""
  parts = [f"{s} {summary['speakers'][s]} speakers {summary['utterances'][s]} utterances "
           f"{summary['hours'][s]:.2f} h" for s in (TRAIN, TEST)]
  return (f"demo corpus in {summary['out_dir']}: " + "; ".join(parts) +
          f" ({summary['synthesised']} synthesised, {summary['skipped']} kept, "
          + (f"{summary['remade']} unreadable files remade, " if summary["remade"] else "")
          + f"{summary['seconds']:.0f} s)")
