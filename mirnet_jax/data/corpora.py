"""Corpus readers: a LibriSpeech-layout directory or TFDS `librispeech`.

Both give the same interface (so does wsj0_2mix.Wsj0Mix2Dir; sources.open_corpus picks
the reader of a `--source`): `subsets()`, `refs(subset)` (cheap references to the
utterances, so preparation can hand them to worker processes) and `load(ref)` (the
waveform, 16 kHz mono float32); a reader of files also has `stream(ref)` (the same
waveform in blocks, see `open_blocks`). `iter_utterances` walks refs and loads them,
skipping unusable audio with a counted warning.

A directory's subset, speaker and chapter folders and its audio files may be symbolic
links (a common way to assemble subsets): they are followed, each real folder read once,
so a link cycle ends.
"""

import contextlib
import dataclasses
import fnmatch
import os
import re
from typing import Callable, Iterable, Iterator, Sequence

from absl import logging
import numpy as np

from mirnet_jax import errors
from mirnet_jax.data import audio

TFDS_PREFIX = "tfds:"
LIBRISPEECH_TFDS_SPLITS = ("train_clean100", "train_clean360", "train_other500",
                           "dev_clean", "dev_other", "test_clean", "test_other")
_UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d+)\.(flac|wav)$")


class CorpusError(errors.UserError):
  """A corpus that cannot be read at all (missing path, no subsets, no TensorFlow)."""


@dataclasses.dataclass(frozen=True)
class Ref:
  """Where one utterance lives. `speaker`/`chapter`/`utterance` may be unknown (None)
  until it is loaded (TFDS records carry them inside the record)."""
  subset: str
  locator: str  # a file path, or "<split>:<index>" for TFDS
  speaker: str | None = None
  chapter: str | None = None
  utterance: str | None = None


@dataclasses.dataclass
class Utterance:
  speaker: str
  chapter: str
  utterance: str
  waveform: np.ndarray  # float32, 16 kHz mono


@dataclasses.dataclass
class Skipped:
  """Utterances that could not be used, with why; listed in the preparation summary."""
  items: list = dataclasses.field(default_factory=list)

  def add(self, locator: str, reason: str):
    logging.warning("skipping %s: %s", locator, reason)
    self.items.append(dict(locator=locator, reason=reason))

  def __len__(self):
    return len(self.items)


def select_subsets(available: Sequence[str], patterns: Sequence[str]) -> list[str]:
  """Subsets matching any of the glob `patterns` (e.g. 'train*'), sorted."""
  return sorted({s for s in available for p in patterns if fnmatch.fnmatchcase(s, p)})


class LibriSpeechDir:
  """A directory laid out as LibriSpeech: <subset>/<speaker>/<chapter>/<s>-<c>-<u>.flac."""

  def __init__(self, root: str):
    if not os.path.exists(root):
      raise CorpusError(f"corpus directory not found: {root}")
    if not os.path.isdir(root):
      raise CorpusError(f"not a directory: {root}")
    self.root = root

  def subsets(self) -> list[str]:
    return sorted(d for d in os.listdir(self.root)
                  if os.path.isdir(os.path.join(self.root, d)))

  def refs(self, subset: str) -> list[Ref]:
    refs = []
    for dirpath, filenames in _walk(os.path.join(self.root, subset)):
      for name in sorted(filenames):
        m = _UTT_RE.match(name)
        if m:
          refs.append(Ref(subset, os.path.join(dirpath, name), m.group(1), m.group(2),
                          name.rsplit(".", 1)[0]))
    return refs

  def load(self, ref: Ref) -> Utterance:
    return Utterance(ref.speaker, ref.chapter, ref.utterance, audio.load(ref.locator))

  def stream(self, ref: Ref) -> Iterator[np.ndarray]:
    return audio.stream(ref.locator)


def _walk(top: str) -> Iterator[tuple[str, list[str]]]:
  """(folder, file names) under `top`, folders in sorted order, following symbolic links
  to folders; a real folder reached again (a link cycle, or two links to one folder) is
  not read again: its files would be the same utterances twice."""
  seen = set()
  for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
    st = os.stat(dirpath)
    if (st.st_dev, st.st_ino) in seen:
      dirnames.clear()
      continue
    seen.add((st.st_dev, st.st_ino))
    dirnames.sort()
    yield dirpath, filenames


class TfdsLibriSpeech:
  """TFDS `librispeech` through `tfds.data_source` (random access, no tf.data).

  The TFDS builder imports TensorFlow, so this needs the `[tfds]` extra.
  """

  def __init__(self, name: str = "librispeech", data_dir: str | None = None):
    try:
      import tensorflow  # noqa: F401  (the librispeech builder needs it)
      import tensorflow_datasets as tfds
    except ImportError:
      raise CorpusError("TFDS librispeech needs TensorFlow: pip install -e '.[tfds]'") from None
    self._tfds = tfds
    self.name = name
    self.data_dir = data_dir
    self._sources = {}

  def _source(self, split: str):
    if split not in self._sources:
      self._sources[split] = self._tfds.data_source(self.name, split=split,
                                                    data_dir=self.data_dir)
    return self._sources[split]

  def _sample_rate(self) -> int:
    if not hasattr(self, "_rate"):
      builder = self._tfds.builder(self.name, data_dir=self.data_dir)
      self._rate = builder.info.features["speech"].sample_rate
    return self._rate

  def subsets(self) -> list[str]:
    # The split list is known only once the dataset is prepared (or its metadata is on
    # disk); before that (and under tfds.testing.mock_data) use librispeech's splits.
    splits = self._tfds.builder(self.name, data_dir=self.data_dir).info.splits
    return sorted(splits.keys() or LIBRISPEECH_TFDS_SPLITS)

  def refs(self, subset: str) -> list[Ref]:
    return [Ref(subset, f"{subset}:{i}") for i in range(len(self._source(subset)))]

  def load(self, ref: Ref) -> Utterance:
    split, index = ref.locator.rsplit(":", 1)
    source = self._source(split)
    record = source[int(index)]
    speech = np.asarray(record["speech"])
    if np.issubdtype(speech.dtype, np.integer):
      speech = speech.astype(np.float32) / 32768.0
    rate = self._sample_rate()
    utt_id = record["id"]
    utt_id = utt_id.decode() if isinstance(utt_id, bytes) else str(utt_id)
    return Utterance(str(int(record["speaker_id"])), str(int(record["chapter_id"])),
                     utt_id, audio.to_mono_16k(speech, rate))


@contextlib.contextmanager
def skipping(ref: Ref, skipped: Skipped):
  """Records an unusable-audio error raised in the block in `skipped`, and ends the block
  there (the error does not propagate)."""
  try:
    yield
  except audio.AudioError as e:
    skipped.add(ref.locator, str(e))
  except (OSError, KeyError, ValueError) as e:
    skipped.add(ref.locator, f"{type(e).__name__}: {e}")


def load_or_skip(corpus, ref: Ref, skipped: Skipped) -> Utterance | None:
  """Loads `ref`, or records it in `skipped` and returns None."""
  with skipping(ref, skipped):
    return corpus.load(ref)
  return None


def open_blocks(corpus, ref: Ref) -> tuple[tuple[str, str, str],
                                           Callable[[], Iterable[np.ndarray]]]:
  """(speaker, chapter, utterance) of `ref`, and a function that returns its waveform as
  16 kHz mono float32 blocks, from the start at each call.

  A reader with `stream` reads the file anew at each call, at most audio.BLOCK_SECONDS
  at a time (errors come while the blocks are read); another is loaded whole once, here
  (TFDS records come whole, and their ids are in the record).
  """
  if hasattr(corpus, "stream") and ref.speaker is not None:
    return (ref.speaker, ref.chapter, ref.utterance), lambda: corpus.stream(ref)
  utt = corpus.load(ref)
  return (utt.speaker, utt.chapter, utt.utterance), lambda: [utt.waveform]


def iter_utterances(corpus, subsets: Sequence[str], skipped: Skipped) -> Iterator[Utterance]:
  """Yields every usable utterance of `subsets`; unusable ones go to `skipped`."""
  for subset in subsets:
    for ref in corpus.refs(subset):
      utt = load_or_skip(corpus, ref, skipped)
      if utt is not None:
        yield utt
