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
import shutil
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
  """A directory laid out as LibriSpeech:
  <subset>/<speaker>/<chapter>/<s>-<c>-<u>.flac."""

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
  """TFDS `librispeech` (or `librispeech/lazy_decode`) through `tfds.data_source`: random
  access, no tf.data.

  The first use builds the dataset in the TFDS data dir (`data_dir`, else
  $TFDS_DATA_DIR, else ~/tensorflow_datasets) as ArrayRecord files, the only format
  `data_source` reads; TFDS downloads all seven LibriSpeech subsets for that. The
  `lazy_decode` config keeps each utterance's FLAC bytes, decoded here by soundfile as a
  LibriSpeech directory's files are. The default config stores decoded int16 samples and
  decodes at build time through pydub and ffmpeg: with either missing, building it is
  refused before anything is downloaded. The TFDS builder imports TensorFlow, so this
  needs the `[tfds]` extra.
  """

  def __init__(self, name: str = "librispeech", data_dir: str | None = None):
    try:
      import tensorflow  # noqa: F401  (the librispeech builder needs it)
      import tensorflow_datasets as tfds
    except ImportError:
      raise CorpusError(
          "TFDS librispeech needs TensorFlow: pip install -e '.[tfds]'") from None
    self._tfds = tfds
    self.name = name
    # TFDS reads $TFDS_DATA_DIR once, when it is imported; read here, it also counts when
    # it was set later in the process.
    self.data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    self._builder = None
    self._sources = {}

  def _prepared(self):
    """The dataset's builder, the dataset built first if it is not on disk yet."""
    if self._builder is None:
      builder = self._tfds.builder(self.name, data_dir=self.data_dir)
      if builder.is_prepared():
        _check_random_access(builder, self.name)
      else:
        builder = self._tfds.builder(self.name, data_dir=self.data_dir,
                                     file_format=self._tfds.core.FileFormat.ARRAY_RECORD)
        _check_can_build(builder, self.name)
        # An ArrayRecord build is never fetched from TFDS's bucket: skip the query.
        config = self._tfds.download.DownloadConfig(try_download_gcs=False)
        builder.download_and_prepare(download_config=config)
      self._builder = builder
    return self._builder

  def _source(self, split: str):
    if split not in self._sources:
      builder = self._prepared()
      # A lazy_decode record holds the FLAC file's bytes, which `load` decodes. TFDS
      # 4.9's data_source already leaves them so (its tf.data path decodes them through
      # tensorflow-io); SkipDecoding keeps them so should a release decode them too.
      decoders = ({"speech": self._tfds.decode.SkipDecoding()} if _lazy(builder)
                  else None)
      self._sources[split] = builder.as_data_source(split=split, decoders=decoders)
    return self._sources[split]

  def subsets(self) -> list[str]:
    # Under tfds.testing.mock_data nothing is built and the split list stays empty: use
    # librispeech's splits then.
    splits = self._prepared().info.splits
    return sorted(splits.keys() or LIBRISPEECH_TFDS_SPLITS)

  def refs(self, subset: str) -> list[Ref]:
    return [Ref(subset, f"{subset}:{i}") for i in range(len(self._source(subset)))]

  def load(self, ref: Ref) -> Utterance:
    split, index = ref.locator.rsplit(":", 1)
    record = self._source(split)[int(index)]
    speech = record["speech"]
    if isinstance(speech, bytes):  # lazy_decode: the FLAC file
      waveform = audio.load(speech)
    else:
      speech = np.asarray(speech)
      if np.issubdtype(speech.dtype, np.integer):
        speech = speech.astype(np.float32) / 32768.0
      rate = self._prepared().info.features["speech"].sample_rate
      waveform = audio.to_mono_16k(speech, rate)
    utt_id = record["id"]
    utt_id = utt_id.decode() if isinstance(utt_id, bytes) else str(utt_id)
    return Utterance(str(int(record["speaker_id"])), str(int(record["chapter_id"])),
                     utt_id, waveform)


def _lazy(builder) -> bool:
  return getattr(builder.builder_config, "lazy_decode", False)


def _check_random_access(builder, name: str):
  """Raises CorpusError if `builder`'s prepared files are in a format that
  tfds.data_source cannot read (TFRecord, what `tfds build` writes by default)."""
  file_format = builder.info.file_format
  if file_format not in file_format.with_random_access():
    raise CorpusError(
        f"{builder.data_dir} holds tfds:{name} as {file_format.value} files, which "
        "tfds.data_source cannot read; move or delete that folder and run again to "
        "build it as array_record (TFDS reuses the archives in its downloads folder)")


def _check_can_build(builder, name: str):
  """Raises CorpusError if building `builder` would fail for a missing package or
  program: before the download, where TFDS itself fails only after it."""
  if not _lazy(builder):
    missing = [] if shutil.which("ffmpeg") or shutil.which("avconv") else ["ffmpeg"]
    try:
      import pydub  # noqa: F401
    except ImportError:
      missing.insert(0, "pydub")
    if missing:
      raise CorpusError(
          f"tfds:{name} decodes every FLAC file while it builds, through pydub and "
          f"ffmpeg, and {' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} "
          "missing; nothing was downloaded. Use --source=tfds:librispeech/lazy_decode "
          "(it keeps the FLAC files, which soundfile decodes), or install ffmpeg and "
          "`pip install pydub`")
  try:
    # tensorflow-datasets uses it to find the builder's files but does not declare it
    # (tensorflow/datasets#11212).
    import importlib_resources  # noqa: F401
  except ImportError:
    raise CorpusError("building a TFDS dataset needs importlib_resources, which "
                      "tensorflow-datasets does not install: pip install "
                      "importlib_resources") from None


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


def iter_utterances(corpus, subsets: Sequence[str],
                    skipped: Skipped) -> Iterator[Utterance]:
  """Yields every usable utterance of `subsets`; unusable ones go to `skipped`."""
  for subset in subsets:
    for ref in corpus.refs(subset):
      utt = load_or_skip(corpus, ref, skipped)
      if utt is not None:
        yield utt
