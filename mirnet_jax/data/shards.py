"""Precomputed spectrogram shards: writing (parallel, resumable) and reading.

A shard directory holds
  `<group>-NNNNN-of-MMMMM.array_record`  each utterance as consecutive chunk records: the
                                         float16 complex STFT of `chunk_frames` frames
                                         (1 s), the last one shorter, `[frames, 257, 2]`
                                         as raw bytes (see features.py);
  `<same>.json`                          its sidecar: per-utterance ids, frame and chunk
                                         counts, and the files of that shard that were
                                         skipped;
  `index.npz`                            per split: first chunk record, label, frames, id;
  `manifest.json`                        features, chunk size, speaker-to-class map,
                                         counts, skipped, speed factors; for the demo
                                         corpus, the espeak-ng that made it
                                         (`espeak_version`).
Groups: `train` (the training subsets), `test` (the unseen subsets) and, where the corpus
has one, `crossdomain` (the demo corpus's voices made by transformations its training
voices never use; LibriSpeech has none). Splits: `train`, `validation` (checkpoint
selection) and `seen` (the seen-speaker test trials): disjoint utterances of the training
speakers, chosen per speaker at prepare time, all in group `train`; `unseen` (speakers of
the test subsets only, group `test`) and `crossdomain` (group `crossdomain`), each labelled
by its speakers' order. A corpus prepared for evaluation only (no training subsets) has
`unseen` (and `crossdomain`) alone.

Speed perturbation (Kaldi's, off by default): each factor f != 1 adds a copy of every
`train`-split utterance played f times faster (sox `speed f`: duration / f, pitch x f) as
utterance `sp{f}-{utterance}` of a new class `sp{f}-{speaker}`, in the files
`train_sp{f}-NNNNN-of-MMMMM.array_record` of group `train`. The held-out utterances are
chosen among the originals as without it, and no copy of one is written: nothing held out
is trained on at any speed.

Why chunks: a training mixture takes a 3 s crop of each source, and a LibriSpeech
utterance averages 12 s (up to 35 s). ArrayRecord reads whole records, so an utterance
stored as one record costs about 4x the bytes its crop needs, on every read (from
Cloud Storage: tens of TB over a TPU run). With 1 s chunks a crop of C frames at any
offset touches at most ceil(C / 100) + 1 chunks: for 3 s, at most 4 (1.33x its bytes),
3.99 on average. Smaller chunks would cut that further but multiply the records read
per crop (each a request on Cloud Storage, where a crop's chunks are read in parallel);
100 KB records are where ranged reads are efficient. `Split.crop` reads only the
chunks a crop covers, for every reader (training and validation mixtures, trials,
separation references and targets).

Every file is written under a temporary name and renamed, and a shard whose sidecar
exists is not written again, so an interrupted preparation resumes where it stopped.

Preparing writes to a local directory only; reading also takes a `gs://` URL (copy a
prepared directory there with `gcloud storage rsync --recursive`): the manifest and index
are read through etils.epath, and ArrayRecord reads the shards from Cloud Storage itself.
"""

import dataclasses
import io
import itertools
import json
import multiprocessing
import os
import threading
from typing import Iterable, Iterator
import zlib

from absl import logging
from array_record.python import array_record_module
from etils import epath
import numpy as np

from mirnet_jax import errors
from mirnet_jax import features
from mirnet_jax import storage
from mirnet_jax.data import audio
from mirnet_jax.data import corpora
from mirnet_jax.data import demo_corpus
from mirnet_jax.data import sources

# 2: `validation` and `seen` replaced the one `heldout` split, which served both.
# 3: utterances stored as chunk records (crop-sized reads), not one record each.
# Not bumped for the `crossdomain` split, speed copies and `speed_perturb`: shards without
# them read as they did (no such split; factors [1.0]), and older code reads these (its
# `train` split's files and labels come from the manifest and index as they are).
FORMAT_VERSION = 3
CHUNK_FRAMES = 100  # 1 s: see the module docstring
MANIFEST = "manifest.json"
INDEX = "index.npz"
PLAN = "plan.json"
# The splits of speakers never trained on, each labelled by its speakers' order: their group.
EVALUATION_SPLITS = {"unseen": "test", "crossdomain": "crossdomain"}
SPLIT_GROUP = {"train": "train", "validation": "train", "seen": "train", **EVALUATION_SPLITS}
# The training speakers' utterances kept out of training, per split: (share, minimum).
# `seen` needs two utterances of a speaker (a trial's anchor and positive are different
# utterances); one is enough for validation mixtures.
HELDOUT_DEFAULTS = {"seen": (0.1, 2), "validation": (0.05, 1)}
# Utterances are scaled to this RMS (-25 dBFS) before the STFT, so that the pipeline's
# random gains set the relative level of the sources whatever the recording level.
TARGET_RMS = 10 ** (-25 / 20)
WRITER_OPTIONS = "group_size:1,uncompressed"  # random access to single records
SPEED_RANGE = (0.5, 2.0)  # speed factors allowed: beyond, speech is hardly speech
# Fields that plans written before them lack, with the value those plans meant.
PLAN_DEFAULTS = {"speed_perturb": [1.0]}


class ShardError(errors.UserError):
  """A shard directory that is missing, incomplete or of another configuration."""


def encode(stored: np.ndarray) -> bytes:
  return np.ascontiguousarray(stored, features.STORAGE_DTYPE).tobytes()


def decode(record: bytes) -> np.ndarray:
  """Record bytes -> read-only float16 `[frames, 257, 2]` view (no copy)."""
  return np.frombuffer(record, features.STORAGE_DTYPE).reshape(-1, features.NUM_BINS, 2)


def chunks(stored: np.ndarray, chunk_frames: int) -> list[np.ndarray]:
  """The chunk records' contents of one stored utterance, in order."""
  return [stored[start:start + chunk_frames]
          for start in range(0, len(stored), chunk_frames)]


def utterance_to_stored(open_blocks, whole_seconds: float = 60.0,
                        block_frames: int = 6000) -> tuple[np.ndarray, float, int]:
  """Level-normalises and transforms one waveform; returns (stored STFT, scale, samples).

  `open_blocks()` returns the 16 kHz mono waveform as blocks, from its start at each call
  (corpora.open_blocks; `lambda: [waveform]` for an array). A waveform of at most
  `whole_seconds` is held and transformed whole. A longer one (an hour-long recording) is
  read twice more, for its level and then for its STFT `block_frames` frames at a time,
  so that memory beyond the stored result is bounded by the blocks, not by its length;
  the scale and the stored bits are the same as the whole waveform's
  (audio.sum_of_squares, features.stored_stft).
  """
  waveform, samples = audio.gather(open_blocks(), int(whole_seconds * features.SAMPLE_RATE))
  if samples == 0:
    raise audio.AudioError("no samples")
  if waveform is not None:
    mean_square = np.mean(np.square(waveform, dtype=np.float64))
  else:
    mean_square = audio.sum_of_squares(open_blocks(), samples) / samples
  rms = float(np.sqrt(mean_square))
  if rms < 1e-6:
    raise audio.AudioError("silent (RMS below -120 dBFS)")
  scale = TARGET_RMS / rms
  if waveform is not None:
    return features.to_storage(features.stft(waveform * scale)), scale, samples
  take = audio.SampleReader(open_blocks()).take
  return features.stored_stft(take, samples, scale, block_frames), scale, samples


# ------------------------------------------------------------------ speed perturbation

def check_speed_factors(factors) -> tuple[float, ...]:
  """`factors` (numbers, or their strings as a flag gives them) checked, ascending.

  Raises:
    errors.UserError (a ValueError): a factor that is not a number or lies outside
      SPEED_RANGE, no 1.0 among them (the recordings themselves), or two factors alike.
  """
  try:
    values = [float(f) for f in factors]
  except (TypeError, ValueError):
    raise errors.UserError(f"speed factors are numbers, e.g. 0.9,1.0,1.1; got "
                           f"{factors!r}") from None
  low, high = SPEED_RANGE
  outside = [f for f in values if not low <= f <= high]  # NaN is outside too
  if outside:
    raise errors.UserError(f"speed factors must lie in [{low}, {high}], got {outside}")
  if 1.0 not in values:
    raise errors.UserError(f"speed factors must include 1.0 (the recordings themselves), "
                           f"got {values}")
  names = [speed_prefix(f) for f in values]
  if len(set(names)) < len(names):  # 1.0 and 1.0000001 would name the same copies
    raise errors.UserError(f"speed factors must be distinct, got {values}")
  return tuple(sorted(values))


def speed_prefix(factor: float) -> str:
  """Kaldi's prefix of a speed copy's utterance and speaker ids, e.g. "sp0.9"."""
  return f"sp{factor:g}"


def speed_blocks(blocks: Iterable[np.ndarray], factor: float) -> Iterator[np.ndarray]:
  """16 kHz `blocks` played `factor` times faster, like sox `speed`: duration / factor,
  pitch and formants x factor. Bit for bit librosa.resample(x, orig_sr=16000 * factor,
  target_sr=16000) of their concatenation x, one block at a time (audio.resample_stream):
  a recording of any length is perturbed in bounded memory, through
  utterance_to_stored's block path as well.
  """
  return audio.resample_stream(blocks, features.SAMPLE_RATE * factor)


def _at_speed(open_blocks, factor: float):
  """`open_blocks` (see corpora.open_blocks) of the waveform played `factor` times faster."""
  return lambda: speed_blocks(open_blocks(), factor)


# ---------------------------------------------------------------------------- writing

@dataclasses.dataclass(frozen=True)
class ShardJob:
  source: str
  path: str
  refs: tuple
  chunk_frames: int = CHUNK_FRAMES
  speed: float = 1.0  # != 1: the utterances' speed copies (see the module docstring)


# A worker process's corpus, opened by its first job. Only in workers: the parent passes
# its own reader, which sees the corpus as it is now (a cache there would outlive it).
_CORPUS_CACHE = {}


def _write_shard(job: ShardJob, corpus=None) -> str:
  """Loads, transforms and writes one shard plus its sidecar, atomically; `corpus`
  reads job.source (None in a worker process: opened once per process)."""
  if corpus is None:
    corpus = _CORPUS_CACHE.get(job.source)
  if corpus is None:
    corpus = _CORPUS_CACHE[job.source] = sources.open_corpus(job.source)
  skipped = corpora.Skipped()
  records = []
  with storage.atomic_path(job.path) as tmp:
    writer = array_record_module.ArrayRecordWriter(tmp, WRITER_OPTIONS)
    try:
      for ref in job.refs:
        row = None
        # Only reading and transforming the audio may skip it: a failing write is an error.
        with corpora.skipping(ref, skipped):
          (speaker, chapter, utterance), open_blocks = corpora.open_blocks(corpus, ref)
          copy = {}
          if job.speed != 1:
            prefix = speed_prefix(job.speed)
            copy = dict(copy_of=utterance)
            speaker, utterance = f"{prefix}-{speaker}", f"{prefix}-{utterance}"
            open_blocks = _at_speed(open_blocks, job.speed)
          stored, scale, samples = utterance_to_stored(open_blocks)
          # `locator`: which utterances the speed copies are made of (_plan_copies).
          row = dict(speaker=speaker, chapter=chapter, utterance=utterance,
                     locator=ref.locator, frames=int(stored.shape[0]), samples=samples,
                     scale=scale, **copy)
        if row is None:
          continue
        pieces = chunks(stored, job.chunk_frames)
        for piece in pieces:
          writer.write(encode(piece))
        row["chunks"] = len(pieces)
        records.append(row)
    finally:
      writer.close()
  if job.speed != 1:  # the original itself was usable: say that a copy failed
    for item in skipped.items:
      item["reason"] = f"its speed {job.speed:g} copy: {item['reason']}"
  # The sidecar is renamed last: its presence marks the shard complete.
  storage.write_json(_sidecar(job.path), dict(records=records, skipped=skipped.items))
  return job.path


def _sidecar(path: str) -> str:
  return path[:-len(".array_record")] + ".json"


def plan_shards(out_dir: str, source: str, group: str, refs: list,
                utterances_per_shard: int, chunk_frames: int = CHUNK_FRAMES,
                speed: float = 1.0) -> list[ShardJob]:
  """The jobs writing `refs` as shards of `group`; for speed != 1, their speed copies, in
  files named `<group>_sp<speed>-...`."""
  name = group if speed == 1 else f"{group}_{speed_prefix(speed)}"
  n = max(1, -(-len(refs) // utterances_per_shard))
  return [ShardJob(source, os.path.join(out_dir, f"{name}-{k:05d}-of-{n:05d}.array_record"),
                   tuple(refs[k * utterances_per_shard:(k + 1) * utterances_per_shard]),
                   chunk_frames, speed)
          for k in range(n)]


def _write_missing(jobs: list[ShardJob], corpus, workers: int | None):
  """Runs the jobs whose shard is not complete yet (no sidecar)."""
  todo = [j for j in jobs if not os.path.exists(_sidecar(j.path))]
  logging.info("%d of %d shards to write", len(todo), len(jobs))
  if not todo:
    return
  workers = min(workers or os.cpu_count() or 1, len(todo))
  if workers == 1:
    for job in todo:
      _write_shard(job, corpus)
  else:
    # spawn, not fork: TensorFlow (TFDS) and threads in the parent don't survive fork.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      for done in pool.imap_unordered(_write_shard, todo):
        logging.info("wrote %s", os.path.basename(done))


def choose_heldout(utterances: list[str], shares: dict, seed: int,
                   speaker: str) -> dict[str, set]:
  """The held-out utterances of one training speaker, per split of `shares` ({split:
  (fraction, minimum)}, e.g. HELDOUT_DEFAULTS): disjoint, deterministic from (seed,
  speaker).

  Never more than half of the speaker's utterances in all, so that it keeps training
  data; when the minimums do not fit, the splits listed first keep theirs.
  """
  room = len(utterances) // 2
  order = np.random.default_rng([seed, zlib.crc32(speaker.encode())]).permutation(
      len(utterances))
  ordered = sorted(utterances)
  chosen, start = {}, 0
  for split, (fraction, minimum) in shares.items():
    count = min(max(minimum, int(round(fraction * len(utterances)))), room)
    chosen[split] = {ordered[i] for i in order[start:start + count]}
    start, room = start + count, room - count
  return chosen


def prepare(source: str, out_dir: str, train_subsets=("train*",),
            test_subsets=("dev*", "test*"), heldout: dict | None = None, seed: int = 0,
            utterances_per_shard: int = 256, chunk_frames: int = CHUNK_FRAMES,
            workers: int | None = None, crossdomain_subsets=("crossdomain*",),
            speed_factors=(1.0,)) -> dict:
  """Writes the shards, index and manifest of `source` into `out_dir`; returns the manifest.

  Args:
    source: a LibriSpeech-layout directory or `tfds:librispeech/lazy_decode`.
    out_dir: the shard directory (created).
    train_subsets / test_subsets: glob patterns over subset (split) names. No training
      patterns at all (an empty list) prepares an evaluation-only corpus: its speakers
      are all unseen, and `evaluate --shards` takes it.
    heldout: {split: (fraction, minimum)} of each training speaker's utterances kept out
      of training for `seen` and `validation` (default HELDOUT_DEFAULTS).
    seed: seeds the held-out choice.
    utterances_per_shard: shard size.
    chunk_frames: frames per chunk record (see the module docstring).
    workers: processes (default: all cores).
    crossdomain_subsets: glob patterns of the subsets of group and split `crossdomain`;
      none given, or none matching (LibriSpeech), is no such split.
    speed_factors: speeds of the training utterances' copies (see the module
      docstring), 1.0 among them; (1.0,) is no perturbation. See check_speed_factors.
  """
  heldout = dict(HELDOUT_DEFAULTS if heldout is None else heldout)
  if sorted(heldout) != sorted(HELDOUT_DEFAULTS):
    raise ValueError(f"heldout needs the splits {sorted(HELDOUT_DEFAULTS)}, got {sorted(heldout)}")
  speed_factors = check_speed_factors(speed_factors)
  if chunk_frames < 1:
    raise ShardError(f"chunk_frames must be at least 1, got {chunk_frames}")
  if storage.is_remote(out_dir):
    raise ShardError(f"prepare writes to local disk only, not {out_dir}: prepare into a "
                     "local directory, then copy it with `gcloud storage rsync --recursive "
                     f"DIR {out_dir}` (launch/tpu_prepare.sh does both)")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ShardError(f"the output is not a directory: {out_dir}")
  corpus = sources.open_corpus(source)
  available = corpus.subsets()
  patterns = {"train": list(train_subsets), "test": list(test_subsets),
              "crossdomain": list(crossdomain_subsets)}
  if not patterns["test"]:
    raise corpora.CorpusError("no test subsets given: the unseen speakers come from them")
  groups = {g: corpora.select_subsets(available, p) for g, p in patterns.items() if p}
  if not groups.get("crossdomain"):  # optional: most corpora have none
    groups.pop("crossdomain", None)
  for group, chosen in groups.items():
    if not chosen:
      raise corpora.CorpusError(
          f"no {group} subsets match {patterns[group]} in {source} (it has: "
          f"{', '.join(available) or 'none'})")
  for a, b in itertools.combinations(groups, 2):
    overlap = set(groups[a]) & set(groups[b])
    if overlap:
      raise corpora.CorpusError(f"subsets both {a} and {b}: {sorted(overlap)}")
  refs = {g: [r for s in subsets for r in corpus.refs(s)] for g, subsets in groups.items()}
  for group, group_refs in refs.items():
    if not group_refs:
      raise corpora.CorpusError(f"no audio files in the {group} subsets {groups[group]} of "
                                f"{source} (expected <subset>/<speaker>/<chapter>/"
                                "<speaker>-<chapter>-<utterance>.flac or .wav)")
  os.makedirs(out_dir, exist_ok=True)

  # Optional (no format bump): only a demo corpus records the espeak-ng that made it.
  made_by = demo_corpus.read_manifest(source) if os.path.isdir(source) else None
  espeak = dict(espeak_ng=made_by["espeak_ng"]) if made_by else {}
  # In the plan too: shards of the corpus that another espeak-ng made in the same place
  # must not be completed with these.
  plan = dict(format_version=FORMAT_VERSION, features=features.feature_params(),
              source=source, subsets=groups, utterances_per_shard=utterances_per_shard,
              chunk_frames=chunk_frames, speed_perturb=list(speed_factors),
              refs={g: [r.locator for r in rs] for g, rs in refs.items()}, **espeak)
  plan_path = os.path.join(out_dir, PLAN)
  if os.path.exists(plan_path):
    with open(plan_path) as f:
      recorded = {**PLAN_DEFAULTS, **json.load(f)}
    # A plan written before corpora recorded their espeak-ng is compared without it.
    if recorded != {k: v for k, v in plan.items() if k in recorded or k != "espeak_ng"}:
      raise ShardError(f"{out_dir} holds shards of another preparation (source, subsets, "
                       "files, features, speed factors or the espeak-ng that made the "
                       "corpus differ); choose a new --out")
  else:
    storage.write_json(plan_path, plan)

  jobs = {g: plan_shards(out_dir, source, g, rs, utterances_per_shard, chunk_frames)
          for g, rs in refs.items()}
  _write_missing([j for js in jobs.values() for j in js], corpus, workers)
  _check_usable(jobs, source)
  # Checked before the speed copies are written: they take longer than the originals.
  records = {g: _read_sidecars(js)[0] for g, js in jobs.items()}
  speakers = _speakers_by_group(records)
  split_of = _heldout_split_of(records.get("train", []), heldout, seed)
  if "train" in jobs:
    jobs["train"] += _plan_copies(out_dir, source, refs["train"], records["train"],
                                  split_of, speed_factors, utterances_per_shard,
                                  chunk_frames)
    _write_missing(jobs["train"], corpus, workers)  # the copies: the originals are done
  manifest = _build_index(out_dir, jobs, speakers, split_of, heldout, speed_factors)
  manifest.update(format_version=FORMAT_VERSION, features=features.feature_params(),
                  chunk_frames=chunk_frames, source=source, subsets=groups,
                  shards={g: [os.path.basename(j.path) for j in js] for g, js in jobs.items()},
                  heldout=dict(seed=seed, **{
                      split: dict(fraction=fraction, min_per_speaker=minimum)
                      for split, (fraction, minimum) in heldout.items()}),
                  speed_perturb=list(speed_factors), **espeak)
  storage.write_json(os.path.join(out_dir, MANIFEST), manifest)
  return manifest


def _read_sidecars(group_jobs: list[ShardJob]) -> tuple[list, list, list]:
  """(rows, skipped files, chunk records per shard) of one group's shards; each row gets
  the record position of its first chunk (`first_chunk`)."""
  rows, skipped, shard_chunks = [], [], []
  for job in group_jobs:
    with open(_sidecar(job.path)) as f:
      side = json.load(f)
    rows.extend(side["records"])
    skipped.extend(side["skipped"])
    shard_chunks.append(sum(r["chunks"] for r in side["records"]))
  # Chunk records are numbered across the group's shards in order (as ChunkRecords, and
  # grain's ArrayRecordDataSource, number them); an utterance's chunks are consecutive.
  first = 0
  for row in rows:
    row["first_chunk"] = first
    first += row["chunks"]
  return rows, skipped, shard_chunks


def _check_usable(jobs: dict, source: str):
  """Raises ShardError if a group has no usable utterance, after deleting that group's
  (empty) shards, so that a rerun once the files are fixed reads them again; no index or
  manifest is written then, so nothing reads the directory as shards."""
  unusable = {}
  for group, group_jobs in jobs.items():
    rows, skipped, _ = _read_sidecars(group_jobs)
    if not rows:
      unusable[group] = skipped
  for group in unusable:
    for job in jobs[group]:
      os.remove(_sidecar(job.path))  # first: a shard without its sidecar is incomplete
      os.remove(job.path)
  if unusable:
    raise ShardError("; ".join(
        f"none of the {len(skipped)} audio files of the {group} subsets of {source} is "
        f"usable (e.g. {skipped[0]['locator']}: {skipped[0]['reason']})"
        for group, skipped in unusable.items()) + "; no shards written for them")


def _speakers_by_group(records: dict) -> dict[str, list]:
  """{group: its speakers, sorted} of {group: sidecar rows}; raises CorpusError if two
  groups share a speaker (a test or cross-domain speaker must be unseen in training)."""
  speakers = {g: sorted({r["speaker"] for r in rows}, key=_speaker_sort_key)
              for g, rows in records.items()}
  for a, b in itertools.combinations(speakers, 2):
    shared = set(speakers[a]) & set(speakers[b])
    if shared:
      raise corpora.CorpusError(f"some speakers are in both the {a} and the {b} subsets: "
                                f"{sorted(shared)[:5]}")
  return speakers


def _heldout_split_of(rows: list, heldout: dict, seed: int) -> dict[str, str]:
  """{held-out utterance: its split} among the training group's original `rows`, chosen
  per speaker (choose_heldout); the others train.

  Raises:
    corpora.CorpusError: a held-out split would hold fewer than 2 speakers.
  """
  by_speaker = {}
  for row in rows:
    by_speaker.setdefault(row["speaker"], []).append(row["utterance"])
  split_of = {}
  for speaker, utts in by_speaker.items():
    for split, chosen in choose_heldout(utts, heldout, seed, speaker).items():
      split_of.update(dict.fromkeys(chosen, split))
  for split in heldout if rows else ():
    if len({r["speaker"] for r in rows if split_of.get(r["utterance"]) == split}) < 2:
      # Its mixtures (validation, seen-speaker trials) need two speakers.
      raise corpora.CorpusError(
          f"the {split} split would hold fewer than 2 speakers: the training speakers "
          f"have too few utterances (at most half of a speaker's are held out, "
          f"{dict(heldout)} asked); use speakers with more utterances or lower the "
          "minimums (--min_seen, --min_validation)")
  return split_of


def _plan_copies(out_dir: str, source: str, refs: list, rows: list, split_of: dict,
                 speed_factors: tuple, utterances_per_shard: int,
                 chunk_frames: int) -> list[ShardJob]:
  """The jobs writing the speed copies of the `train`-split utterances among the training
  group's original `rows` (of `refs`), in their order: none of a held-out one."""
  by_locator = {r.locator: r for r in refs}
  trained = [by_locator[row["locator"]] for row in rows if row["utterance"] not in split_of]
  return [job for factor in speed_factors if factor != 1
          for job in plan_shards(out_dir, source, "train", trained, utterances_per_shard,
                                 chunk_frames, factor)]


def _split_of_row(row: dict, split_of: dict) -> str | None:
  """The split of a training-group row: an original's own; `train` for a speed copy of a
  `train` utterance; None (not indexed) for a copy of a held-out one, which _plan_copies
  never writes: this keeps it out of training whatever wrote it."""
  if "copy_of" in row:
    return None if row["copy_of"] in split_of else "train"
  return split_of.get(row["utterance"], "train")


def _build_index(out_dir, jobs, speakers, split_of, heldout, speed_factors) -> dict:
  """Reads the sidecars and writes `index.npz`; returns the manifest's counts.

  The classes are the training speakers, then their copies' speakers (speed_prefix) per
  factor: an original speaker's class is the same with or without speed perturbation.
  """
  records, shard_chunks, skipped = {}, {}, []
  for group, group_jobs in jobs.items():
    records[group], group_skipped, shard_chunks[group] = _read_sidecars(group_jobs)
    skipped += group_skipped
  trained = speakers.get("train", [])
  classes = trained + [f"{speed_prefix(f)}-{s}" for f in speed_factors if f != 1
                       for s in trained]
  class_of = {s: i for i, s in enumerate(classes)}
  split_rows, labels = {}, {}
  if "train" in records:
    for split in ("train", *heldout):
      split_rows[split] = [r for r in records["train"] if _split_of_row(r, split_of) == split]
      labels[split] = class_of
  for split, group in EVALUATION_SPLITS.items():
    if group in records:
      split_rows[split] = records[group]
      labels[split] = {s: i for i, s in enumerate(speakers[group])}
  counts = write_index(out_dir, split_rows, labels)
  return dict(num_classes=len(classes), classes=classes, unseen_speakers=speakers["test"],
              crossdomain_speakers=speakers.get("crossdomain", []), splits=counts,
              shard_chunks=shard_chunks, skipped=skipped, num_skipped=len(skipped))


def write_index(out_dir: str, split_rows: dict, labels: dict) -> dict:
  """Writes `index.npz` from {split: sidecar rows (with `first_chunk`)} and {split:
  {speaker: label}}; returns the manifest's per-split counts."""
  arrays, counts = {}, {}
  for split, rows in split_rows.items():
    arrays[f"{split}.first_chunk"] = np.array([r["first_chunk"] for r in rows], np.int64)
    arrays[f"{split}.label"] = np.array([labels[split][r["speaker"]] for r in rows],
                                        np.int32)
    arrays[f"{split}.frames"] = np.array([r["frames"] for r in rows], np.int32)
    arrays[f"{split}.utterance"] = np.array([r["utterance"] for r in rows], dtype=str)
    samples = sum(r["samples"] for r in rows)
    counts[split] = dict(utterances=len(rows), speakers=len({r["speaker"] for r in rows}),
                         hours=round(samples / features.SAMPLE_RATE / 3600, 4))
  with storage.atomic_path(os.path.join(out_dir, INDEX), suffix=".npz") as tmp:
    np.savez(tmp, **arrays)  # with a name ending in .npz, savez adds no second one
  return counts


def _speaker_sort_key(speaker: str):
  return (0, int(speaker), "") if speaker.isdigit() else (1, 0, speaker)


# ---------------------------------------------------------------------------- reading

class ChunkRecords:
  """The chunk records of one group's shard files, numbered across them in order.

  `read(begin, end)` returns records [begin, end) of one file (an utterance's chunks are
  consecutive in the file that holds it). A reader per file is opened on first use, and
  again in each process the object is pickled to (grain's workers). From a local file
  the records are read in the calling thread (seek, then one record after another);
  ArrayRecord's range read hands each record to a thread of its pool, which measured as
  much CPU again as the copies themselves (and grain's ArrayRecordDataSource.__getitems__
  starts a thread pool per call on top). From Cloud Storage, where each request waits
  for a round trip, a crop's chunks are read in parallel by that range read; gs:// paths
  go to ArrayRecord as they are: it opens them with a Cloud Storage client of its own
  (ranged reads, Application Default Credentials: on a TPU VM, its service account).
  """

  def __init__(self, paths: list[str], counts: list[int]):
    self.paths = list(paths)
    self.starts = np.cumsum([0, *counts])
    self._open()

  def _open(self):
    self._remote = [storage.is_remote(path) for path in self.paths]
    self._readers = [None] * len(self.paths)
    # One lock per file: a seek and the reads after it must not interleave with another
    # thread's.
    self._locks = [threading.Lock() for _ in self.paths]
    self._opening = threading.Lock()

  def __len__(self) -> int:
    return int(self.starts[-1])

  def read(self, begin: int, end: int) -> list[bytes]:
    file = int(np.searchsorted(self.starts, begin, side="right")) - 1
    begin, end = begin - int(self.starts[file]), end - int(self.starts[file])
    if end > int(self.starts[file + 1] - self.starts[file]):
      raise IndexError(f"records [{begin}, {end}) of file {file} span two shard files")
    if self._remote[file]:
      return self._reader(file).read(begin, end)  # thread-safe
    with self._locks[file]:
      reader = self._reader(file)
      reader.seek(begin)
      return [reader.read() for _ in range(end - begin)]

  def _reader(self, file: int):
    if self._readers[file] is None:
      with self._opening:
        if self._readers[file] is None:
          # No read-ahead: the records read are never the next ones; and for a local
          # file, no thread pool: the sequential reads would hand records to it too.
          local = "" if self._remote[file] else ",max_parallelism:0"
          self._readers[file] = array_record_module.ArrayRecordReader(
              self.paths[file], f"readahead_buffer_size:0{local}")
    return self._readers[file]

  def __getstate__(self):
    return dict(paths=self.paths, starts=self.starts)

  def __setstate__(self, state):
    self.paths, self.starts = state["paths"], state["starts"]
    self._open()


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a shard directory: a random-access source of chunk records and its
  index (one entry per utterance)."""
  source: ChunkRecords
  first_chunk: np.ndarray  # the record position of each utterance's first chunk
  label: np.ndarray   # class (train/validation/seen) or unseen-speaker index, per utterance
  frames: np.ndarray
  utterance: np.ndarray
  chunk_frames: int = CHUNK_FRAMES

  def __len__(self):
    return len(self.first_chunk)

  def subset(self, keep: np.ndarray) -> "Split":
    """The utterances selected by `keep` (a mask or indices), reading the same records."""
    return dataclasses.replace(self, first_chunk=self.first_chunk[keep],
                               label=self.label[keep], frames=self.frames[keep],
                               utterance=self.utterance[keep])

  def crop_pieces(self, i: int, start: int, count: int) -> list[tuple[int, np.ndarray]]:
    """Frames [start, start + count) of utterance `i` as (position in the crop, float16
    `[n, 257, 2]` read-only view) pieces, reading only the chunk records they cover.
    Frames past the utterance's end are not in any piece (the caller's padding)."""
    stop = min(int(start) + int(count), int(self.frames[i]))
    start = max(int(start), 0)
    if stop <= start:
      return []
    size = self.chunk_frames
    first, last = start // size, (stop - 1) // size
    base = int(self.first_chunk[i])
    records = self.source.read(base + first, base + last + 1)
    pieces, position = [], 0
    for k, record in zip(range(first, last + 1), records):
      chunk = decode(record)
      piece = chunk[max(start - k * size, 0):stop - k * size]
      pieces.append((position, piece))
      position += len(piece)
    return pieces

  def crop(self, i: int, start: int, count: int) -> np.ndarray:
    """Frames [start, start + count) of utterance `i`, float16 `[count, 257, 2]`, zero
    past its end (silence: what a shorter waveform gives)."""
    out = np.zeros((int(count), features.NUM_BINS, 2), features.STORAGE_DTYPE)
    for position, piece in self.crop_pieces(i, start, count):
      out[position:position + len(piece)] = piece
    return out

  def read(self, i: int) -> np.ndarray:
    """The whole stored STFT of utterance `i`, float16 `[frames, 257, 2]`."""
    return self.crop(i, 0, int(self.frames[i]))


def utterances_by_speaker(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
  """Groups utterance indices by speaker label (e.g. `Split.label`).

  Returns (`speakers`: the distinct labels, ascending; `utterances_of`: per speaker, the
  indices of its utterances, ascending). Random draws index into both (the mixing
  pipeline, the verification trials), so this order is part of their determinism.
  """
  order = np.argsort(labels, kind="stable")
  speakers, starts = np.unique(labels[order], return_index=True)
  return speakers, np.split(order, starts[1:])


def espeak_version(manifest: dict) -> str | None:
  """The espeak-ng version ("1.51"; "1.51+1.52" for a mixed corpus) that made the demo
  corpus behind a shard manifest (or an export's `trained_on`); None when unknown: another
  corpus, or shards prepared before the version was recorded."""
  return (manifest.get("espeak_ng") or {}).get("version")


def load_manifest(shard_dir: str) -> dict:
  """The manifest of `shard_dir` (a local directory or a gs:// URL), checked."""
  path = epath.Path(shard_dir) / MANIFEST
  if not path.exists():
    how = (f"run `python -m mirnet_jax.prepare --out={shard_dir}` first"
           if not storage.is_remote(shard_dir) else "prepare them into a local DIR, then "
           f"copy them there with `gcloud storage rsync --recursive DIR {shard_dir}`")
    raise ShardError(f"no {MANIFEST} in {shard_dir}: {how}")
  try:
    manifest = json.loads(path.read_bytes())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ShardError(f"{path} is not a valid manifest ({e}); prepare {shard_dir} "
                     "again") from None
  if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    source = manifest.get("source", "CORPUS") if isinstance(manifest, dict) else "CORPUS"
    raise ShardError(f"{shard_dir} holds shards of format version {version}, this code "
                     f"reads version {FORMAT_VERSION}; prepare them again into a new "
                     f"directory: `python -m mirnet_jax.prepare --source={source} "
                     "--out=NEW_DIR`")
  if manifest.get("features") != features.feature_params():
    raise ShardError(f"{shard_dir} was prepared with other features "
                     f"({manifest.get('features')}); prepare it again")
  return manifest


def open_split(shard_dir: str, split: str, manifest: dict | None = None) -> Split:
  if split not in SPLIT_GROUP:
    raise ValueError(f"unknown split {split!r}; one of {sorted(SPLIT_GROUP)}")
  manifest = manifest or load_manifest(shard_dir)
  if split == "crossdomain" and split not in manifest["splits"]:
    raise ShardError(f"{shard_dir} has no crossdomain split: its corpus had no subset "
                     "matching --crossdomain_subsets (default crossdomain*) when it was "
                     "prepared; prepare a corpus that has one into a new directory")
  if split not in manifest["splits"]:
    raise ShardError(f"{shard_dir} has no {split} split: it was prepared for evaluation "
                     "only (no training subsets); evaluate a trained model on it with "
                     f"`python -m mirnet_jax.evaluate --workdir=WORKDIR --shards={shard_dir}`")
  names = manifest["shards"][SPLIT_GROUP[split]]
  # One listing, not an existence check per file (each is a request on Cloud Storage).
  present = {p.name for p in epath.Path(shard_dir).iterdir()}
  missing = [n for n in names + [INDEX] if n not in present]
  if missing:
    raise ShardError(f"{shard_dir} is incomplete: {len(missing)} files missing (e.g. "
                     f"{missing[0]}); prepare it again")
  index_bytes = (epath.Path(shard_dir) / INDEX).read_bytes()
  with np.load(io.BytesIO(index_bytes)) as index:
    fields = {k: index[f"{split}.{k}"]
              for k in ("first_chunk", "label", "frames", "utterance")}
  paths = [os.path.join(shard_dir, name) for name in names]
  counts = manifest["shard_chunks"][SPLIT_GROUP[split]]
  return Split(ChunkRecords(paths, counts), **fields,
               chunk_frames=int(manifest["chunk_frames"]))
