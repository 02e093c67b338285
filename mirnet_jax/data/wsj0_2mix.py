"""WSJ0-2mix (Hershey et al. 2016) in its usual directory layout, for the paper's Table 2.

  <root>/{tr,cv,tt}/{mix,s1,s2}/<utt1>_<snr1>_<utt2>_<snr2>.wav

(`<root>` is e.g. `.../wsj0-2mix/wav16k/max`; 8 kHz versions are resampled to 16 kHz.)
The mixture's name gives both source utterances; a WSJ0 utterance id's first three
characters are its speaker. Two uses:
  * `mixtures(set_dir)`: the official test mixtures with their references, for
    `evaluate_separation --wsj0_2mix=<root>/tt`;
  * `Wsj0Mix2Dir`: the corpus reader interface of corpora.py, so that
    `prepare --source=wsj0-2mix:<root> --train_subsets=tr --test_subsets=tt` turns the
    source utterances into shards (each WSJ0 utterance once, from the first mixture that
    holds it) and the separators train on them with the project's mixing pipeline.
"""

import dataclasses
import os
import re

from mirnet_jax.data import audio
from mirnet_jax.data import corpora

PREFIX = "wsj0-2mix:"
SETS = ("tr", "cv", "tt")
_NAME = re.compile(r"^([0-9a-z]{8})_(-?[0-9.]+)_([0-9a-z]{8})_(-?[0-9.]+)\.wav$")


@dataclasses.dataclass(frozen=True)
class Mixture:
  name: str
  mixture: str  # path of mix/<name>.wav
  sources: tuple[str, ...]  # paths of s1/<name>.wav, s2/<name>.wav
  utterances: tuple[str, ...]  # WSJ0 utterance ids of the sources
  speakers: tuple[str, ...]


def speaker_of(utterance: str) -> str:
  return utterance[:3]


def mixtures(set_dir: str) -> list[Mixture]:
  """Every mixture of one set (`<root>/tt`), sorted by name; CorpusError when the layout
  is not WSJ0-2mix's."""
  mix_dir = os.path.join(set_dir, "mix")
  if not os.path.isdir(mix_dir):
    raise corpora.CorpusError(f"{set_dir} is not a WSJ0-2mix set: no mix/ directory")
  found = []
  for name in sorted(os.listdir(mix_dir)):
    m = _NAME.match(name)
    if not m:
      continue
    sources = tuple(os.path.join(set_dir, s, name) for s in ("s1", "s2"))
    missing = [p for p in sources if not os.path.exists(p)]
    if missing:
      raise corpora.CorpusError(f"{name}: missing reference {missing[0]}")
    utterances = (m.group(1), m.group(3))
    found.append(Mixture(name[:-4], os.path.join(mix_dir, name), sources, utterances,
                         tuple(speaker_of(u) for u in utterances)))
  if not found:
    raise corpora.CorpusError(f"no WSJ0-2mix mixtures (<utt>_<snr>_<utt>_<snr>.wav) in "
                              f"{mix_dir}")
  return found


class Wsj0Mix2Dir:
  """The source utterances of WSJ0-2mix as a corpus: subsets tr / cv / tt, speakers from
  the utterance ids, one Ref per distinct utterance."""

  def __init__(self, root: str):
    if not os.path.isdir(root):
      raise corpora.CorpusError(f"WSJ0-2mix directory not found: {root}")
    self.root = root

  def subsets(self) -> list[str]:
    return [s for s in SETS if os.path.isdir(os.path.join(self.root, s, "mix"))]

  def refs(self, subset: str) -> list[corpora.Ref]:
    seen, refs = set(), []
    for mixture in mixtures(os.path.join(self.root, subset)):
      for path, utterance, speaker in zip(mixture.sources, mixture.utterances,
                                          mixture.speakers):
        if utterance not in seen:
          seen.add(utterance)
          refs.append(corpora.Ref(subset, path, speaker, subset, utterance))
    return refs

  def load(self, ref: corpora.Ref) -> corpora.Utterance:
    return corpora.Utterance(ref.speaker, ref.chapter, ref.utterance,
                             audio.load(ref.locator))
