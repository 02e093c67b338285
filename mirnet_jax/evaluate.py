r"""The paper's verification protocol on mixtures (Section 4.1.2), with plots.

  python -m mirnet_jax.evaluate --workdir=runs/demo/workdir [--trials=200]
  python -m mirnet_jax.evaluate --workdir=... --trials=10000          # large mode, with CI
  python -m mirnet_jax.evaluate --workdir=... --shards=OTHER_SHARDS   # another corpus
  python -m mirnet_jax.evaluate --workdir=B --trials_from=A/eval      # A's trials, B's model
  python -m mirnet_jax.evaluate --workdir=... --export_trials=DIR     # WAVs + VoxCeleb lists
  python -m mirnet_jax.evaluate --scores_from=DIR/scores.txt          # another system's scores

Conditions: `seen` (training speakers, their `seen` test utterances: held out of
training and of the validation that selects the checkpoint), `unseen` (speakers never
trained on), and `clean` (the unseen trials with each mixture replaced by its first source
alone over the same span: the same model on non-overlapped speech, for context). With
`--shards` every speaker of that corpus is unseen, so only `unseen` and `clean` are reported.

A trial is an anchor S_A+B, a positive S_A'+C and a negative S_C'+D: crops of up to
`--segment_seconds` at random offsets and gains, as in training. Each mixture is as long as
its shortest source (WSJ0-2mix's "min" convention): the paper evaluates overlapped speech,
and a zero-padded tail would put silent or one-speaker windows into the averaged embedding
(on the demo corpus that alone doubled the clean EER). d_p and d_n are the smallest
Euclidean distances between any output of the anchor and any output of the other mixture
(Eq. 6, 7); the EER is computed from the scores -d_p (targets) and -d_n (non-targets), and
again from the largest cosine similarities (`eer_cosine`).

Writes `WORKDIR/eval/results.json`, the trial lists `trials_<condition>.json`, and PNGs
(t-SNE, attention, DET) under `WORKDIR/eval/`, and prints a Markdown table. Another corpus's
results go to a folder of their own, `WORKDIR/eval/<name>/` (`--eval_name`, by default the
shard directory's name), so they never replace the run's own: a folder that holds the
results of other shards is refused (evaluating the same shards again replaces them).

Other toolkits. `--export_trials=DIR` writes every trial mixture of every condition as a
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
import re

from absl import flags
from absl import logging
from etils import epath
import numpy as np

from mirnet_jax import checkpointing
from mirnet_jax import cli
from mirnet_jax import errors
from mirnet_jax import extraction
from mirnet_jax import features
from mirnet_jax import inference
from mirnet_jax import losses
from mirnet_jax import plots
from mirnet_jax import separator as separator_lib
from mirnet_jax import storage
from mirnet_jax import verification
from mirnet_jax import workdir_lock
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards

CHUNK = 64  # trials embedded at a time: bounds memory in the 10,000-trial mode


class TrialsError(errors.UserError):
  """Trial lists that cannot be made or reused for this evaluation."""


def overlapped_frames(split, sources, segment_frames: int) -> int:
  """Frames of a mixture of `sources` under the "min" convention: up to the end of its
  shortest crop, at most `segment_frames`."""
  return max(1, min(min(int(split.frames[s.utterance]) - s.offset for s in sources),
                    segment_frames))


def _trial_mixtures(split, trials, segment_frames,
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
      out.append(mixed.astype(features.STORAGE_DTYPE))
  return out


def embed_mixtures(extractor, mixtures) -> np.ndarray:
  """Mixtures `[T_m, 257, 2]` of any lengths -> `[M, N, E]` (windowed as in extraction.py);
  the windows of all mixtures are embedded together in the extractor's fixed batches."""
  windows = [extractor.windows_of(m) for m in mixtures]
  emb = extractor.embed_windows(np.concatenate(windows))["embeddings"]
  ends = np.cumsum([len(w) for w in windows])
  return np.stack([extraction.align_and_average(e) for e in np.split(emb, ends[:-1])])


def score_trials(extractor, split, trials, segment_frames, first_source_only=False):
  """Target and non-target scores (Euclidean and cosine) of `trials`."""
  scores = {m: ([], []) for m in ("euclidean", "cosine")}
  for start in range(0, len(trials), CHUNK):
    chunk = trials[start:start + CHUNK]
    mixtures = _trial_mixtures(split, chunk, segment_frames,
                               first_source_only=first_source_only)
    emb = embed_mixtures(extractor, mixtures).reshape(
        len(chunk), 3, extractor.num_speakers, -1)
    for metric, (target, nontarget) in scores.items():
      target.append(verification.pair_scores(emb[:, 0], emb[:, 1], metric))
      nontarget.append(verification.pair_scores(emb[:, 0], emb[:, 2], metric))
  return {m: (np.concatenate(t), np.concatenate(n)) for m, (t, n) in scores.items()}


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


def _seen_speaker_plots(extractor, split, eval_dir, seed, num_speakers_tsne=20,
                        mixtures_tsne=120):
  """t-SNE (Figure 3) and attention (Figure 2) plots from training speakers' held-out
  utterances, whose classes let the permutation decision assign slots to speakers."""
  spec = pipeline.MixtureSpec(extractor.num_speakers, extractor.window,
                              float(extractor.config.data.gain_db_range), True)
  rng = np.random.default_rng(seed)
  speakers = rng.choice(np.unique(split.label), min(num_speakers_tsne,
                                                    len(np.unique(split.label))),
                        replace=False)
  keep = np.isin(split.label, speakers)
  subset = shards.Split(split.source, split.record[keep], split.label[keep],
                        split.frames[keep], split.utterance[keep])
  maker = pipeline.MixtureMaker(subset, spec, seed, epoch_length=mixtures_tsne)
  examples = [maker(i) for i in range(mixtures_tsne)]
  out = extractor.embed_windows(np.stack([e["mixture"] for e in examples]))
  labels = np.stack([e["labels"] for e in examples])
  perm = np.asarray(losses.permutation_min_ce(out["logits"], labels)["permutation"])
  assigned = np.take_along_axis(labels, perm, axis=1)  # speaker of each output slot
  n = extractor.num_speakers
  paths = [plots.tsne(out["embeddings"].reshape(-1, out["embeddings"].shape[-1]),
                      assigned.reshape(-1), np.tile(np.arange(n), len(examples)),
                      os.path.join(eval_dir, "tsne.png"), seed=seed)]
  # Figure 2: slot i's attention drawn over the source the permutation decision gave it.
  example = examples[0]
  source_of_slot = perm[0]
  logmag = lambda x: features.log_magnitude(x.astype(np.float32))
  paths.append(plots.attention(
      logmag(example["mixture"]), np.stack([logmag(s) for s in example["sources"]]),
      out["attention"][0][np.argsort(source_of_slot)],
      os.path.join(eval_dir, "attention.png")))
  return paths


RESULTS = "results.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class EvalDirError(errors.UserError):
  """An eval folder that holds the results of other shards (or is a file)."""


def segment_frames_of(segment_seconds: float) -> int:
  return int(round(segment_seconds * features.SAMPLE_RATE / features.HOP_LENGTH))


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


def _open_conditions(shard_dir: str, own_shards: bool):
  """(manifest, {condition: split name}, {condition: Split}) of the conditions that have
  trial lists (`clean` reuses the unseen ones); `seen` only on the run's own shards."""
  manifest = shards.load_manifest(shard_dir)
  conditions = {"seen": "seen", "unseen": "unseen"} if own_shards else {"unseen": "unseen"}
  splits = {condition: shards.open_split(shard_dir, split_name, manifest)
            for condition, split_name in conditions.items()}
  return manifest, conditions, splits


def _make_trial_lists(config, conditions, splits, num_trials, seed, segment_frames,
                      trials_from) -> dict:
  return {condition: _trials_for(condition, splits[condition], split_name, config,
                                 num_trials, seed, segment_frames, trials_from)
          for condition, split_name in conditions.items()}


def evaluate(workdir: str, shard_dir: str | None = None, num_trials: int = 200,
             seed: int = 0, trials_from: str | None = None, step: int | None = None,
             make_plots: bool = True, segment_seconds: float = 6.0,
             eval_name: str | None = None) -> dict:
  """Runs the protocol; writes results, trial lists and plots under `eval_dir_for`'s
  folder (`workdir/eval`, or `workdir/eval/<name>` for another corpus)."""
  eval_dir, shard_dir, own_shards = eval_dir_for(workdir, shard_dir, eval_name)
  extractor = extraction.Extractor(inference.restore(workdir, step))
  segment_frames = segment_frames_of(segment_seconds)
  config = extractor.config
  manifest, conditions, splits = _open_conditions(shard_dir, own_shards)
  # Every trial list first: a bad --trials_from leaves no eval/ behind.
  trial_lists = _make_trial_lists(config, conditions, splits, num_trials, seed,
                                  segment_frames, trials_from)
  storage.makedirs(eval_dir)

  results, curves, unseen_trials = {}, {}, None
  for condition in conditions:
    split = splits[condition]
    trials, meta = trial_lists[condition]
    # The shards recorded at once: an evaluation that stops here still claims its folder.
    verification.save_trials(os.path.join(eval_dir, f"trials_{condition}.json"), trials,
                             dict(meta, shards=storage.absolute(shard_dir)))
    scores = score_trials(extractor, split, trials, segment_frames)
    results[condition] = verification.summarise(*scores["euclidean"], *scores["cosine"])
    curves[condition] = scores["euclidean"]
    if condition == "unseen":
      unseen_trials = trials
    logging.info("%s: %s", condition, results[condition])
  clean = score_trials(extractor, splits["unseen"], unseen_trials, segment_frames,
                       first_source_only=True)
  results["clean"] = verification.summarise(*clean["euclidean"], *clean["cosine"])
  results["meta"] = dict(step=extractor.step, shards=storage.absolute(shard_dir),
                         seed=seed, segment_seconds=segment_seconds,
                         protocol="paper Section 4.1.2, Euclidean min-distance",
                         mixture_length="min (overlapped span, at most segment_seconds)",
                         corpus=manifest.get("source"))

  plot_paths = []
  if make_plots:
    plot_paths.append(plots.det(curves, os.path.join(eval_dir, "det.png")))
    if own_shards:
      plot_paths += _seen_speaker_plots(extractor, splits["seen"], eval_dir, seed)
  results["plots"] = plot_paths
  storage.write_text(os.path.join(eval_dir, RESULTS), json.dumps(results, indent=1))
  return results


# ---------------------------------------------------------------------------- other toolkits

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
  for start in range(0, len(trials), CHUNK):  # bounded memory, as in score_trials
    chunk = trials[start:start + CHUNK]
    mixtures = _trial_mixtures(split, chunk, segment_frames,
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
  `eval_dir_for`'s folder when it has run, else made as `evaluate` makes them.

  Returns:
    The export's manifest (also `out_dir/export.json`).
  """
  eval_dir, shard_dir, own_shards = eval_dir_for(workdir, shard_dir, eval_name)
  config = checkpointing.load_run(workdir).config
  segment_frames = segment_frames_of(segment_seconds)
  _, conditions, splits = _open_conditions(shard_dir, own_shards)
  if trials_from is None and (epath.Path(eval_dir) / "trials_unseen.json").exists():
    trials_from = eval_dir
  trial_lists = _make_trial_lists(config, conditions, splits, num_trials, seed,
                                  segment_frames, trials_from)
  jobs = {c: (splits[c], trials, False) for c, (trials, _) in trial_lists.items()}
  jobs["clean"] = (splits["unseen"], trial_lists["unseen"][0], True)
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
    storage.write_text(os.path.join(out_dir, info["list"]),
                       verification.voxceleb_trials(names))
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
      lists[info["name"]] = verification.read_voxceleb_trials(
          os.path.join(export_dir, info["list"]))
    scores = verification.paired_scores(scores_path, lists)
  except OSError as e:
    raise ExportError(f"cannot read {e.filename or scores_path}: {e.strerror or e}") from None
  except ValueError as e:
    raise ExportError(str(e)) from None
  return {c: verification.summarise(target, nontarget)
          for c, (target, nontarget) in scores.items()}


def define_flags():
  flags.DEFINE_string("workdir", None, "Training workdir or exported directory (needed "
                      "for everything but --scores_from).")
  flags.DEFINE_string("shards", None, "Shards to evaluate on (default: the training "
                      "run's; another corpus makes every speaker unseen, and its results "
                      "go to WORKDIR/eval/<name>/, see --eval_name).")
  flags.DEFINE_string("eval_name", None, "Folder under WORKDIR/eval for these results "
                      "(default: the shard directory's name for another corpus, eval/ "
                      "itself for the run's own shards); a folder that holds the results "
                      "of other shards is refused.")
  flags.DEFINE_integer("trials", 200, "Trials per condition (the paper: 200).")
  flags.DEFINE_integer("seed", 0, "Seed of the trial lists.")
  flags.DEFINE_string("trials_from", None, "An eval (or --export_trials) directory whose "
                      "trial lists to reuse (compare checkpoints on the same trials).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: best by validation).")
  flags.DEFINE_boolean("plots", True, "Write the PNG plots.")
  flags.DEFINE_float("segment_seconds", 6.0, "Longest trial mixture (sources cropped at "
                     "random offsets; each mixture is cut to its overlapped span).")
  flags.DEFINE_boolean("report_only", False, "Print the stored results of the last "
                       "evaluation (of --shards, in its folder) instead of evaluating.")
  flags.DEFINE_string("export_trials", None, "Instead of evaluating, write every trial "
                      "mixture as a 16 kHz WAV and a VoxCeleb-format list per condition to "
                      "this new (or empty) directory, for other toolkits; the trials of "
                      "the last evaluation of --shards if there is one. With --scores_from: "
                      "the export the scores are of.")
  flags.DEFINE_string("scores_from", None, "Instead of evaluating, print the EER table of "
                      "another system's scores of exported trials: lines '<label> <a> <b> "
                      "<score>' (a trial list line with its score appended, higher = same "
                      "speaker); the export is this file's directory or --export_trials.")


def report(results: dict, results_path: str) -> str:
  """The Markdown table, its provenance and the output paths."""
  lines = [verification.markdown_table({k: v for k, v in results.items()
                                        if k not in ("meta", "plots")}),
           f"(checkpoint step {results['meta']['step']}; corpus {results['meta']['corpus']}; "
           f"mixtures of up to {results['meta']['segment_seconds']:g} s, cut to their "
           "overlapped span; EER = FAR = FRR point, "
           "scores = -min Euclidean distance over slot pairs)"]
  lines += [f"plot: {path}" for path in results["plots"]]
  lines.append(f"results: {results_path}")
  return "\n".join(lines)


def _export(f):
  manifest = export_trials(f.workdir, f.export_trials, f.shards, f.trials, f.seed,
                           f.trials_from, f.segment_seconds, f.eval_name)
  source = manifest["trials_from"] or f"made from --seed={f.seed}"
  lines = [f"{info['name']}: {info['trials']} trials, {3 * info['trials']} WAVs, "
           f"{os.path.join(f.export_trials, info['list'])}"
           for info in manifest["conditions"]]
  return "\n".join(lines + [f"(trials: {source}; score the pairs of a list, then "
                            f"--scores_from=FILE --export_trials={f.export_trials})"])


def _scores(f):
  results = score_file(f.scores_from, f.export_trials)
  return "\n".join([verification.markdown_table(results),
                    f"(scores of {f.scores_from}, higher = same speaker; EER = FAR = FRR "
                    "point; 95% CI: bootstrap over whole trials)"])


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if f.scores_from:
    print(_scores(f))
    return
  if not f.workdir:
    raise errors.UsageError("--workdir is required")
  if f.export_trials:
    if f.report_only:
      raise errors.UsageError("--export_trials and --report_only: pick one")
    with workdir_lock.hold(f.export_trials, "trial export"):
      print(_export(f))
    return
  eval_dir, _, _ = eval_dir_for(f.workdir, f.shards, f.eval_name)
  results_path = os.path.join(eval_dir, RESULTS)
  if f.report_only:
    if not epath.Path(results_path).exists():
      raise errors.UserError(f"no {results_path}: evaluate first")
    results = json.loads(epath.Path(results_path).read_text())
  else:
    # One evaluation per folder: two would interleave their trial lists and results.
    with workdir_lock.hold(eval_dir, "evaluation"):
      results = evaluate(f.workdir, f.shards, f.trials, f.seed, f.trials_from, f.step,
                         f.plots, f.segment_seconds, f.eval_name)
  print(report(results, results_path))


if __name__ == "__main__":
  cli.run(main, define_flags)
