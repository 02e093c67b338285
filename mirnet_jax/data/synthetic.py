"""LibriSpeech-shaped synthetic shards: the input pipeline timed at the scale it meets.

The demo corpus has 400 training speakers of short synthesised sentences; LibriSpeech's
training set has 2,338 speakers and utterances of 12.3 s on average (961 h in 281,241
utterances), up to about 35 s. Bytes read per crop, page-cache use and the cost of
drawing a speaker all depend on that shape, so `benchmark` times the pipeline on shards
of this shape (no audio: the stored STFT is noise, which costs what speech costs to read,
mix and batch).

Utterance lengths are drawn from a normal distribution with LibriSpeech's mean (12.3 s)
and a spread of 3.5 s, clipped to [1, 35] s: an approximation of its length histogram
(most utterances 10-17 s, a tail of short ones), not the real list of lengths.
"""

import os

import numpy as np
from array_record.python import array_record_module

from mirnet_jax import features
from mirnet_jax import storage
from mirnet_jax.data import shards

MEAN_SECONDS = 12.3
SD_SECONDS = 3.5
MIN_SECONDS, MAX_SECONDS = 1.0, 35.0


def utterance_frames(count: int, rng: np.random.Generator) -> np.ndarray:
  seconds = rng.normal(MEAN_SECONDS, SD_SECONDS, count).clip(MIN_SECONDS, MAX_SECONDS)
  return np.array([features.num_frames(int(t * features.SAMPLE_RATE)) for t in seconds])


def write(out_dir: str, speakers: int = 2000, utterances_per_speaker: int = 1,
          seed: int = 0, chunk_frames: int = shards.CHUNK_FRAMES,
          utterances_per_shard: int = 256) -> dict:
  """Writes a `train` split of `speakers` x `utterances_per_speaker` utterances into
  `out_dir` in the shard layout (`shards.open_split(out_dir, "train")` reads it);
  returns its manifest."""
  rng = np.random.default_rng(seed)
  frames = utterance_frames(speakers * utterances_per_speaker, rng)
  # Every utterance is a slice of one block of noise: writing costs a copy, not a draw.
  block = (0.05 * rng.standard_normal((int(frames.max()) + chunk_frames,
                                       features.NUM_BINS, 2))).astype(features.STORAGE_DTYPE)
  os.makedirs(out_dir, exist_ok=True)
  num_shards = -(-len(frames) // utterances_per_shard)
  names, rows, first, shard_chunks = [], [], 0, []
  for k in range(num_shards):
    name = f"train-{k:05d}-of-{num_shards:05d}.array_record"
    with storage.atomic_path(os.path.join(out_dir, name)) as tmp:
      writer = array_record_module.ArrayRecordWriter(tmp, shards.WRITER_OPTIONS)
      for u in range(k * utterances_per_shard,
                     min((k + 1) * utterances_per_shard, len(frames))):
        start = int(rng.integers(chunk_frames))
        pieces = shards.chunks(block[start:start + int(frames[u])], chunk_frames)
        for piece in pieces:
          writer.write(shards.encode(piece))
        speaker = str(u % speakers)
        rows.append(dict(speaker=speaker, utterance=f"{speaker}-0-{u // speakers:04d}",
                         frames=int(frames[u]), first_chunk=first,
                         samples=(int(frames[u]) - 1) * features.HOP_LENGTH))
        first += len(pieces)
      writer.close()
    names.append(name)
    shard_chunks.append(first - sum(shard_chunks))
  classes = [str(s) for s in range(speakers)]
  counts = shards.write_index(out_dir, {"train": rows},
                              {"train": {s: i for i, s in enumerate(classes)}})
  manifest = dict(format_version=shards.FORMAT_VERSION, features=features.feature_params(),
                  chunk_frames=chunk_frames, source="synthetic:librispeech-shaped",
                  subsets={"train": ["synthetic"]}, shards={"train": names},
                  num_classes=speakers, classes=classes, unseen_speakers=[],
                  splits=counts, shard_chunks={"train": shard_chunks}, skipped=[],
                  num_skipped=0)
  storage.write_json(os.path.join(out_dir, shards.MANIFEST), manifest)
  return manifest
