"""An evaluation's trials and folder: which conditions, which trial lists, which mixtures.

Both the evaluation (evaluate.py) and the trial export (trial_export.py) start here, so
they agree on the folder of a corpus's results (`eval_dir_for`), on the trials of each
condition (`make_trial_lists`: read back with `--trials_from`, else made from a seed) and
on the mixtures a trial stands for (`trial_mixtures`, cut to their overlapped span). No
model is restored here: all of it follows from the run's config.json and the shards.
"""

import json
import os
import re

from etils import epath

from mirnet_jax import checkpointing
from mirnet_jax import errors
from mirnet_jax import features
from mirnet_jax import storage
from mirnet_jax import verification
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards

RESULTS = "results.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class EvalDirError(errors.UserError):
  """An eval folder that holds the results of other shards (or is a file)."""


def corpus_name(shard_dir: str) -> str:
  """The folder name of another corpus's results: the shard directory's basename, with
  anything but letters, digits, `.`, `_` and `-` made `_` (and no leading dot)."""
  name = _UNSAFE.sub("_", os.path.basename(os.fspath(shard_dir).rstrip("/"))).lstrip(".")
  return name or "corpus"


def _recorded_shards(eval_dir: str) -> str | None:
  """The shard directory an earlier evaluation in `eval_dir` recorded: in its results, else
  in a trial list (an evaluation that stopped before its results); None if neither."""
  for name in (RESULTS, "trials_seen.json", "trials_unseen.json"):
    path = epath.Path(eval_dir) / name
    if path.exists():
      recorded = json.loads(path.read_text()).get("meta", {}).get("shards")
      if recorded:
        return recorded
  return None


def eval_dir_for(workdir: str, shard_dir: str | None = None,
                 eval_name: str | None = None) -> tuple[str, str, bool]:
  """Where the evaluation of `shard_dir` goes, read from the run's config.json alone.

  Returns:
    (folder, shard directory, whether it is the run's own): `workdir/eval` for the run's
    own shards, `workdir/eval/<name>` for another corpus (`eval_name`, by default
    `corpus_name`; `eval_name` names a folder for the own shards too).

  Raises:
    EvalDirError: when the folder holds the results of other shards, which an evaluation
      of these must never replace.
  """
  config = checkpointing.load_run(workdir).config
  own = shard_dir is None or storage.absolute(shard_dir) == storage.absolute(
      config.data.shards)
  shard_dir = shard_dir or config.data.shards
  eval_dir = os.path.join(workdir, "eval")
  if eval_name is not None or not own:
    name = corpus_name(shard_dir) if eval_name is None else eval_name
    if not name or _UNSAFE.search(name) or name.startswith("."):
      raise errors.UsageError(f"--eval_name={name!r}: use letters, digits, '.', '_', '-'")
    eval_dir = os.path.join(eval_dir, name)
  if epath.Path(eval_dir).is_file():
    raise EvalDirError(f"{eval_dir} is a file; pass --eval_name=NAME to pick a folder")
  recorded = _recorded_shards(eval_dir)
  if recorded is not None and recorded != storage.absolute(shard_dir):
    raise EvalDirError(f"{eval_dir} holds the evaluation of {recorded}, not of "
                       f"{storage.absolute(shard_dir)}; pass --eval_name=NAME to put it in "
                       f"{os.path.join(workdir, 'eval', 'NAME')}")
  return eval_dir, shard_dir, own


def segment_frames_of(segment_seconds: float) -> int:
  """STFT frames of `segment_seconds` (`--segment_seconds`, the longest trial mixture)."""
  return int(round(segment_seconds * features.SAMPLE_RATE / features.HOP_LENGTH))


class TrialsError(errors.UserError):
  """Trial lists that cannot be made or reused for this evaluation."""


# The single-speaker controls: each the trials of a mixture condition with every mixture
# replaced by its first source alone over the same span.
CLEAN_OF = {"clean": "unseen", "crossdomain_clean": "crossdomain"}


def open_conditions(shard_dir: str, own_shards: bool):
  """(manifest, {condition: split name}, {condition: Split}) of the conditions that have
  trial lists (the CLEAN_OF controls reuse them): `seen` only on the run's own shards,
  `unseen`, and `crossdomain` where the shards have that split (shards.py)."""
  manifest = shards.load_manifest(shard_dir)
  conditions = {"seen": "seen", "unseen": "unseen"} if own_shards else {"unseen": "unseen"}
  if "crossdomain" in manifest.get("splits", {}):
    conditions["crossdomain"] = "crossdomain"
  splits = {condition: shards.open_split(shard_dir, split_name, manifest)
            for condition, split_name in conditions.items()}
  return manifest, conditions, splits


def clean_controls(conditions) -> dict:
  """{control: its mixture condition} of the CLEAN_OF controls of `conditions`."""
  return {clean: of for clean, of in CLEAN_OF.items() if of in conditions}


def _trials_for(condition, split, split_name, config, num_trials, seed, segment_frames,
                trials_from):
  """(trials, meta): read from `trials_from` if given, else made from `seed`."""
  utterances = [str(u) for u in split.utterance]
  if trials_from:
    path = os.path.join(trials_from, f"trials_{condition}.json")
    try:
      trials, meta = verification.load_trials(path)
    except OSError as e:
      raise TrialsError(f"--trials_from: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
      raise TrialsError(str(e)) from None
    if meta.get("segment_frames") != segment_frames:
      raise TrialsError(
          f"{trials_from}: its trials are {meta.get('segment_frames')}-frame segments, not "
          f"{segment_frames}; pass the same --segment_seconds")
    if meta.get("utterances") != utterances:
      raise TrialsError(
          f"{trials_from}: its {condition} trials index another split; evaluate on the "
          "shards they were made from")
  else:
    try:
      trials = verification.make_trials(
          split.label, split.frames, num_trials, seed, segment_frames,
          float(config.data.gain_db_range), int(config.data.num_speakers))
    except ValueError as e:  # a split too small for the protocol
      raise TrialsError(f"{split_name} split: {e}") from None
    meta = dict(split=split_name, seed=seed, segment_frames=segment_frames,
                utterances=utterances)
  return trials, meta


def make_trial_lists(config, conditions, splits, num_trials, seed, segment_frames,
                     trials_from) -> dict:
  """{condition: (trials, meta)} of `open_conditions`' conditions, read from `trials_from`
  if given, else made from `seed`."""
  return {condition: _trials_for(condition, splits[condition], split_name, config,
                                 num_trials, seed, segment_frames, trials_from)
          for condition, split_name in conditions.items()}


# Trials turned into mixtures at a time (to embed or to export): bounds memory in the
# 10,000-trial mode.
CHUNK = 64


def overlapped_frames(split, sources, segment_frames: int) -> int:
  """Frames of a mixture of `sources` under the "min" convention: up to the end of its
  shortest crop, at most `segment_frames`."""
  return max(1, min(min(int(split.frames[s.utterance]) - s.offset for s in sources),
                    segment_frames))


def trial_mixtures(split, trials, segment_frames,
                   parts=("anchor", "positive", "negative"), first_source_only=False):
  """Stored-STFT mixtures `[T_m, 257, 2]`, trial-major, each as long as its overlapped
  span; `first_source_only` keeps the first source alone over that same span."""
  out = []
  for trial in trials:
    for part in parts:
      sources = getattr(trial, part)
      frames = overlapped_frames(split, sources, segment_frames)
      kept = sources[:1] if first_source_only else sources
      mixed = pipeline.crop_sources(split, [s.utterance for s in kept],
                                    [s.offset for s in kept], [s.gain for s in kept],
                                    frames).sum(axis=0)
      out.append(pipeline.to_float16(mixed))
  return out
