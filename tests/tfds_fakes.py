"""What TFDS librispeech tests need around the real builder: a tiny extracted LibriSpeech
tree, its download replaced by that tree, and pydub/ffmpeg present or absent."""

import os
import shutil
import sys
import types

import numpy as np
import soundfile as sf

from tests import conftest

# TFDS split -> (LibriSpeech subset, {speaker: chapters}, utterances per chapter).
TINY = {
    "train_clean100": ("train-clean-100", {19: (198,), 26: (495, 496), 39: (121,)}, 4),
    "dev_clean": ("dev-clean", {84: (121,), 174: (50561,)}, 2),
}


def write_librispeech(root: str, tiny: dict = TINY) -> str:
  """Writes `root`/LibriSpeech as the tarballs extract: FLAC files, a `.trans.txt` per
  chapter, SPEAKERS.TXT and CHAPTERS.TXT (what the TFDS builder reads); returns that
  folder, a LibriSpeech-layout directory of every subset in `tiny`."""
  base = os.path.join(root, "LibriSpeech")
  speakers, chapters = [], []
  for subset, by_speaker, count in tiny.values():
    for speaker, speaker_chapters in by_speaker.items():
      speakers.append(f"{speaker:<5}| F | {subset:<16}| 25.03 | Reader {speaker}")
      for n, chapter in enumerate(speaker_chapters):
        chapters.append(f"{chapter:<8}| {speaker:<5}| 12.5 | {subset:<16}| 1 | 2 | "
                        "A Chapter | A Book")
        folder = os.path.join(base, subset, str(speaker), str(chapter))
        os.makedirs(folder)
        lines = []
        for u in range(count):
          key = f"{speaker}-{chapter}-{u:04d}"
          seconds = 1.2 + 0.35 * (u + n)
          sf.write(os.path.join(folder, f"{key}.flac"),
                   conftest.synth_voice(speaker, u + 10 * n, seconds), 16000)
          lines.append(f"{key} SOME WORDS OF UTTERANCE {u}\n")
        with open(os.path.join(folder, f"{speaker}-{chapter}.trans.txt"), "w") as f:
          f.writelines(lines)
  with open(os.path.join(base, "SPEAKERS.TXT"), "w") as f:
    f.write(";ID  |SEX| SUBSET           |MINUTES| NAME\n" + "\n".join(speakers) + "\n")
  with open(os.path.join(base, "CHAPTERS.TXT"), "w") as f:
    f.write(";ID      |READER|MINUTES| SUBSET | PROJ.|BOOK ID| CH. TITLE | "
            "PROJECT TITLE\n" + "\n".join(chapters) + "\n")
  return base


def extracted_tarballs(librispeech: str, root: str, tiny: dict = TINY) -> dict:
  """{TFDS split: folder} as TFDS's download manager extracts each subset's tarball into
  its own folder (`LibriSpeech/<subset>/...` and the metadata files), made of links
  into `librispeech` (write_librispeech)."""
  dirs = {}
  for split, (subset, _, _) in tiny.items():
    base = os.path.join(root, split, "LibriSpeech")
    os.makedirs(base)
    for name in (subset, "SPEAKERS.TXT", "CHAPTERS.TXT"):
      os.symlink(os.path.join(librispeech, name), os.path.join(base, name))
    dirs[split] = os.path.join(root, split)
  return dirs


def replace_download(monkeypatch, dirs: dict) -> list:
  """Makes TFDS's DownloadManager.download_and_extract return `dirs` (as TFDS's own
  DatasetBuilderTestCase does) for the splits it has; returns the list that each call's
  requested keys are appended to."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  requests = []

  def download_and_extract(self, url_or_urls):
    del self
    requests.append(sorted(url_or_urls))
    return {k: epath.Path(dirs[k]) for k in url_or_urls if k in dirs}

  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                      download_and_extract)
  return requests


class _Segment:
  """The part of pydub.AudioSegment that TFDS's Audio feature uses, decoded by
  soundfile: ffmpeg gives the same int16 samples of a 16-bit FLAC file."""

  def __init__(self, samples: np.ndarray):
    self.samples = samples
    self.channels = 1 if samples.ndim == 1 else samples.shape[1]

  @classmethod
  def from_file(cls, fobj, format=None):  # pylint: disable=redefined-builtin
    del format
    return cls(sf.read(fobj, dtype="int16")[0])

  def get_array_of_samples(self):
    return self.samples.reshape(-1)


def with_build_decoders(monkeypatch, tmp_path):
  """pydub importable (decoding with soundfile) and an `ffmpeg` program on PATH."""
  pydub = types.ModuleType("pydub")
  pydub.AudioSegment = _Segment
  monkeypatch.setitem(sys.modules, "pydub", pydub)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / "ffmpeg").write_text("#!/bin/sh\nexit 1\n")
  (bin_dir / "ffmpeg").chmod(0o755)
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def without_build_decoders(monkeypatch, pydub: bool = True, ffmpeg: bool = True):
  """pydub not importable (if `pydub`), and no ffmpeg or avconv on PATH (if `ffmpeg`)."""
  if pydub:
    monkeypatch.setitem(sys.modules, "pydub", None)  # `import pydub` raises ImportError
  if ffmpeg:
    monkeypatch.setenv("PATH", os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep)
        if not (shutil.which("ffmpeg", path=d) or shutil.which("avconv", path=d))))
