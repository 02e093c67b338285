r"""Trials for other toolkits: exported as WAVs and VoxCeleb lists, their scores read back.

  python -m mirnet_jax.evaluate --workdir=... --export_trials=DIR     # WAVs + VoxCeleb lists
  python -m mirnet_jax.evaluate --scores_from=DIR/scores.txt          # another system's scores

`--export_trials=DIR` writes every trial mixture of every condition as a
16 kHz PCM-16 WAV (`DIR/<condition>/<trial>_<anchor|positive|negative>.wav`, rebuilt from
the stored STFT), a VoxCeleb-format list per condition (`DIR/trials_<condition>.txt`: `1
anchor positive` and `0 anchor negative` for each trial, paths relative to DIR), the
project's trial lists (`--trials_from=DIR` scores a model on them) and `export.json`. It
restores no model (config.json names the shards) and exports the trials of the last
evaluation of those shards when there is one, else makes them as the evaluation would; it
refuses a non-empty DIR that is not an export of the same trials. `--scores_from=FILE`
reads another system's scores of those pairs, each line a list line with its score
appended (`<label> <a> <b> <score>`, higher = same speaker), and prints this project's
EER / minDCF / 95% interval table for each list the file scores (the export is FILE's
directory, or `--export_trials`).
"""

import dataclasses
import hashlib
import json
import os

from etils import epath
import numpy as np

from mirnet_jax import checkpointing
from mirnet_jax import errors
from mirnet_jax import features
from mirnet_jax import separator as separator_lib
from mirnet_jax import storage
from mirnet_jax import trial_sets
from mirnet_jax import verification

def voxceleb_trials(names) -> str:
  """A trial list in the VoxCeleb format, for toolkits that score file pairs.

  Args:
    names: per trial, its (anchor, positive, negative) file names (no whitespace).

  Returns:
    Two lines per trial, in trial order: `1 anchor positive` (target) and `0 anchor
    negative` (non-target), so lines 2i and 2i+1 are the two pairs of trial i.
  """
  return "".join(f"1 {a} {p}\n0 {a} {n}\n" for a, p, n in names)


def read_voxceleb_trials(path) -> list[tuple[int, str, str]]:
  """The (label, a, b) lines of a `voxceleb_trials` list.

  Raises:
    ValueError: naming the line that is not `<0|1> <a> <b>`, or that breaks the pairing
      (a target and a non-target line of the same anchor per trial).
  """
  rows = []
  for number, line in enumerate(epath.Path(path).read_text().splitlines(), 1):
    fields = line.split()
    if len(fields) != 3 or fields[0] not in ("0", "1"):
      raise ValueError(f"{path} line {number}: expected '<0|1> <a> <b>', got {line!r}")
    rows.append((int(fields[0]), fields[1], fields[2]))
  for i in range(0, len(rows), 2):
    pair = rows[i:i + 2]
    if [r[0] for r in pair] != [1, 0] or pair[0][1] != pair[1][1]:
      raise ValueError(f"{path} line {i + 1}: not a target line followed by a non-target "
                       "line of the same anchor (a list written by voxceleb_trials)")
  return rows


SCORE_LINE = "<label> <a> <b> <score>"


def paired_scores(path, lists: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads a score file for the trials of `voxceleb_trials` lists.

  Each line of the file is a line of one of the lists with its score appended,
  `<label> <a> <b> <score>` (higher = same speaker), in any order; blank lines are
  skipped. A list the file scores must be scored whole, each pair once.

  Args:
    path: the score file.
    lists: {name: `read_voxceleb_trials` rows}.

  Returns:
    {name: (target `[T]`, nontarget `[T]`)} for each list the file scores, entry i of
    both from trial i (as bootstrap_eer_ci needs).

  Raises:
    ValueError: one line naming the file's line that cannot be read, matches no pair of
      the lists, repeats one, or contradicts its label; or the list line left unscored.
  """
  where = {(a, b): (name, j) for name, rows in lists.items()
           for j, (_, a, b) in enumerate(rows)}
  scores = {name: np.full(len(rows), np.nan) for name, rows in lists.items()}
  scored_on = {}
  for number, line in enumerate(epath.Path(path).read_text().splitlines(), 1):
    fields = line.split()
    if not fields:
      continue
    at = f"{path} line {number}"
    if len(fields) != 4:
      raise ValueError(f"{at}: expected '{SCORE_LINE}', got {line!r}")
    label, a, b, value = fields
    if (a, b) not in where:
      raise ValueError(f"{at}: {a} {b} is not a trial pair of the exported lists")
    if (a, b) in scored_on:
      raise ValueError(f"{at}: {a} {b} is scored twice (first on line {scored_on[a, b]})")
    name, j = where[a, b]
    if label != str(lists[name][j][0]):
      raise ValueError(f"{at}: label {label}, but the trial list has {lists[name][j][0]}")
    try:
      score = float(value)
    except ValueError:
      score = np.nan
    if not np.isfinite(score):
      raise ValueError(f"{at}: score {value!r} is not a finite number")
    scored_on[a, b] = number
    scores[name][j] = score
  out = {}
  for name, values in scores.items():
    missing = np.flatnonzero(np.isnan(values))
    if len(missing) == len(values):
      continue  # a list the file does not score
    if len(missing):
      j = int(missing[0])
      raise ValueError(f"{path}: no score for {len(missing)} of the {len(values)} lines "
                       f"of the {name} list, the first its line {j + 1}: "
                       + " ".join(map(str, lists[name][j])))
    out[name] = (values[0::2], values[1::2])
  if not out:
    raise ValueError(f"{path} holds no scores: expected lines '{SCORE_LINE}'")
  return out


# Named when evaluate.py wrote exports; kept, so the exports made then are of this format.
EXPORT_FORMAT = "mirnet_jax.evaluate.trials_export/1"
EXPORT_MANIFEST = "export.json"


class ExportError(errors.UserError):
  """A trial export that cannot be written or read."""


def _fingerprint(shard_dir, segment_frames, trial_lists) -> str:
  """What makes two exports the same: the shards, the mixtures' length cap and every
  source of every trial (with the utterances the trials index)."""
  doc = dict(shards=storage.absolute(shard_dir), segment_frames=segment_frames,
             trials={c: [meta["utterances"], [dataclasses.astuple(t) for t in trials]]
                     for c, (trials, meta) in trial_lists.items()})
  return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


def _claim(out_dir: str, fingerprint: str):
  """Refuses a non-empty `out_dir` unless it is an export of the same trials (which the
  export may write again: same bytes, and it completes an export that was cut short)."""
  path = epath.Path(out_dir)
  if path.exists() and not path.is_dir():
    raise ExportError(f"--export_trials={out_dir} is a file, not a directory")
  if not path.exists() or not any(path.iterdir()):
    return
  manifest = path / EXPORT_MANIFEST
  previous = json.loads(manifest.read_text()) if manifest.exists() else {}
  if previous.get("fingerprint") != fingerprint:
    what = "an export of other trials" if previous else "not a trial export"
    raise ExportError(f"--export_trials={out_dir} is not empty and {what}: name an empty "
                      "or new directory")


def _write_wavs(out_dir, condition, split, trials, segment_frames, first_source_only):
  """Each trial's mixtures as WAVs; returns their (anchor, positive, negative) names,
  relative to `out_dir`."""
  storage.makedirs(os.path.join(out_dir, condition))
  names = []
  # CHUNK trials at a time: bounded memory, as in evaluate.score_trials.
  for start in range(0, len(trials), trial_sets.CHUNK):
    chunk = trials[start:start + trial_sets.CHUNK]
    mixtures = trial_sets.trial_mixtures(split, chunk, segment_frames,
                                         first_source_only=first_source_only)
    for k in range(len(chunk)):
      names.append(tuple(f"{condition}/{start + k:05d}_{part}.wav"
                         for part in verification.ROLES))
      for name, mixture in zip(names[-1], mixtures[3 * k:3 * k + 3]):
        wave = features.istft(features.from_storage(mixture),
                              length=(len(mixture) - 1) * features.HOP_LENGTH)
        separator_lib.write_wav(os.path.join(out_dir, name), wave)
  return names


def export_trials(workdir: str, out_dir: str, shard_dir: str | None = None,
                  num_trials: int = 200, seed: int = 0, trials_from: str | None = None,
                  segment_seconds: float = 6.0, eval_name: str | None = None) -> dict:
  """Writes every trial mixture of every condition as a WAV and a VoxCeleb-format trial
  list per condition under `out_dir` (see the module docstring); restores no model.

  The trials: those of `trials_from`, else those of the evaluation of these shards in
  `trial_sets.eval_dir_for`'s folder when it has run, else made as `evaluate` makes them.

  Returns:
    The export's manifest (also `out_dir/export.json`).
  """
  eval_dir, shard_dir, own_shards = trial_sets.eval_dir_for(workdir, shard_dir, eval_name)
  config = checkpointing.load_run(workdir).config
  segment_frames = trial_sets.segment_frames_of(segment_seconds)
  _, conditions, splits = trial_sets.open_conditions(shard_dir, own_shards)
  if trials_from is None and (epath.Path(eval_dir) / "trials_unseen.json").exists():
    trials_from = eval_dir
  trial_lists = trial_sets.make_trial_lists(config, conditions, splits, num_trials, seed,
                                            segment_frames, trials_from)
  jobs = {c: (splits[c], trials, False) for c, (trials, _) in trial_lists.items()}
  for control, of in trial_sets.clean_controls(conditions).items():
    jobs[control] = (splits[of], trial_lists[of][0], True)
  manifest = dict(format=EXPORT_FORMAT, shards=storage.absolute(shard_dir),
                  trials_from=trials_from and storage.absolute(trials_from),
                  seed=None if trials_from else seed, segment_seconds=segment_seconds,
                  fingerprint=_fingerprint(shard_dir, segment_frames, trial_lists),
                  # A list: write_json sorts keys, and the conditions keep their order.
                  conditions=[dict(name=c, trials=len(trials), list=f"trials_{c}.txt")
                              for c, (_, trials, _) in jobs.items()])
  _claim(out_dir, manifest["fingerprint"])
  storage.makedirs(out_dir)
  # The manifest first: it claims the directory, so an export cut short can be completed.
  storage.write_json(os.path.join(out_dir, EXPORT_MANIFEST), manifest)
  for condition, (trials, meta) in trial_lists.items():
    verification.save_trials(os.path.join(out_dir, f"trials_{condition}.json"), trials,
                             dict(meta, shards=storage.absolute(shard_dir)))
  for info in manifest["conditions"]:
    split, trials, first_source_only = jobs[info["name"]]
    names = _write_wavs(out_dir, info["name"], split, trials, segment_frames,
                        first_source_only)
    # Each list after its WAVs: a list names only files that exist.
    storage.write_text(os.path.join(out_dir, info["list"]), voxceleb_trials(names))
  return manifest


def score_file(scores_path: str, export_dir: str | None = None) -> dict:
  """{condition: verification.summarise dict} of another system's scores in
  `scores_path` (lines `<label> <a> <b> <score>`) of the trials exported to `export_dir`
  (default: the directory that holds `scores_path`), for each list the file scores."""
  export_dir = export_dir or os.path.dirname(storage.absolute(scores_path))
  manifest_path = epath.Path(export_dir) / EXPORT_MANIFEST
  if not manifest_path.exists():
    raise ExportError(f"no {EXPORT_MANIFEST} in {export_dir}: not a trial export "
                      "(name the export with --export_trials=DIR)")
  lists = {}
  try:
    for info in json.loads(manifest_path.read_text())["conditions"]:
      lists[info["name"]] = read_voxceleb_trials(os.path.join(export_dir, info["list"]))
    scores = paired_scores(scores_path, lists)
  except OSError as e:
    raise ExportError(f"cannot read {e.filename or scores_path}: {e.strerror or e}") from None
  except ValueError as e:
    raise ExportError(str(e)) from None
  return {c: verification.summarise(target, nontarget)
          for c, (target, nontarget) in scores.items()}


def export_report(manifest: dict, out_dir: str, seed: int) -> str:
  """What `export_trials` wrote to `out_dir`, and how to score it."""
  source = manifest["trials_from"] or f"made from --seed={seed}"
  lines = [f"{info['name']}: {info['trials']} trials, {3 * info['trials']} WAVs, "
           f"{os.path.join(out_dir, info['list'])}"
           for info in manifest["conditions"]]
  return "\n".join(lines + [f"(trials: {source}; score the pairs of a list, then "
                            f"--scores_from=FILE --export_trials={out_dir})"])


def scores_report(results: dict, scores_path: str) -> str:
  """The Markdown table of `score_file`'s results of `scores_path`."""
  return "\n".join([verification.markdown_table(results),
                    f"(scores of {scores_path}, higher = same speaker; EER = FAR = FRR "
                    "point; 95% CI: bootstrap over whole trials)"])
