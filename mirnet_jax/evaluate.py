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
alone over the same span: the same model on non-overlapped speech, for context). Shards
with a `crossdomain` split (the demo corpus's voices made by transformations its training
voices never use) add `crossdomain` and its control `crossdomain_clean`. With `--shards`
every speaker of that corpus is unseen, so `seen` is not reported.
Results record a demo corpus's espeak-ng version (`meta.espeak_ng`); shards of a demo
corpus made by another version than the training corpus are evaluated with a warning.

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

Other toolkits: `--export_trials=DIR` writes the trials as WAVs and VoxCeleb-format lists,
and `--scores_from=FILE` prints the table of another system's scores of them (see
trial_export.py).
"""

import json
import os

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
from mirnet_jax import storage
from mirnet_jax import trial_export
from mirnet_jax import trial_sets
from mirnet_jax import verification
from mirnet_jax import workdir_lock
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards


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
  for start in range(0, len(trials), trial_sets.CHUNK):
    chunk = trials[start:start + trial_sets.CHUNK]
    mixtures = trial_sets.trial_mixtures(split, chunk, segment_frames,
                                         first_source_only=first_source_only)
    emb = embed_mixtures(extractor, mixtures).reshape(
        len(chunk), 3, extractor.num_speakers, -1)
    for metric, (target, nontarget) in scores.items():
      target.append(verification.pair_scores(emb[:, 0], emb[:, 1], metric))
      nontarget.append(verification.pair_scores(emb[:, 0], emb[:, 2], metric))
  return {m: (np.concatenate(t), np.concatenate(n)) for m, (t, n) in scores.items()}


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
  maker = pipeline.MixtureMaker(split.subset(np.isin(split.label, speakers)), spec, seed,
                                epoch_length=mixtures_tsne)
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


def trained_espeak_version(workdir: str) -> str | None:
  """The espeak-ng version of the demo corpus the model in `workdir` was trained on (an
  export's record, else its training shards' manifest); None when unknown."""
  run = checkpointing.load_run(workdir)
  trained_on = (run.exported or {}).get("trained_on") or {}
  if shards.espeak_version(trained_on):
    return shards.espeak_version(trained_on)
  try:
    return shards.espeak_version(shards.load_manifest(run.config.data.shards))
  except shards.ShardError:  # moved or deleted since: nothing to compare with
    return None


def warn_if_other_espeak(workdir: str, manifest: dict):
  """Warns (one line) when the evaluated shards' demo corpus was made by another
  espeak-ng version than the one the model was trained on: its voices may differ, so
  the numbers do not compare with those on the training corpus's speakers."""
  evaluated, trained = shards.espeak_version(manifest), trained_espeak_version(workdir)
  if evaluated and trained and evaluated != trained:
    logging.warning("the evaluated shards come from a demo corpus made by espeak-ng %s, "
                    "the model was trained on one made by espeak-ng %s: voices differ "
                    "across versions, so these numbers do not compare with results on "
                    "corpora of %s", evaluated, trained, trained)


def evaluate(workdir: str, shard_dir: str | None = None, num_trials: int = 200,
             seed: int = 0, trials_from: str | None = None, step: int | None = None,
             make_plots: bool = True, segment_seconds: float = 6.0,
             eval_name: str | None = None) -> dict:
  """Runs the protocol; writes results, trial lists and plots under
  `trial_sets.eval_dir_for`'s folder (`workdir/eval`, or `workdir/eval/<name>` for
  another corpus)."""
  eval_dir, shard_dir, own_shards = trial_sets.eval_dir_for(workdir, shard_dir, eval_name)
  extractor = extraction.Extractor(inference.restore(workdir, step))
  segment_frames = trial_sets.segment_frames_of(segment_seconds)
  config = extractor.config
  manifest, conditions, splits = trial_sets.open_conditions(shard_dir, own_shards)
  if not own_shards:
    warn_if_other_espeak(workdir, manifest)
  # Every trial list first: a bad --trials_from leaves no eval/ behind.
  trial_lists = trial_sets.make_trial_lists(config, conditions, splits, num_trials, seed,
                                            segment_frames, trials_from)
  storage.makedirs(eval_dir)

  results, curves = {}, {}
  for condition in conditions:
    split = splits[condition]
    trials, meta = trial_lists[condition]
    # The shards recorded at once: an evaluation that stops here still claims its folder.
    verification.save_trials(os.path.join(eval_dir, f"trials_{condition}.json"), trials,
                             dict(meta, shards=storage.absolute(shard_dir)))
    scores = score_trials(extractor, split, trials, segment_frames)
    results[condition] = verification.summarise(*scores["euclidean"], *scores["cosine"])
    curves[condition] = scores["euclidean"]
    logging.info("%s: %s", condition, results[condition])
  for control, of in trial_sets.clean_controls(conditions).items():
    clean = score_trials(extractor, splits[of], trial_lists[of][0], segment_frames,
                         first_source_only=True)
    results[control] = verification.summarise(*clean["euclidean"], *clean["cosine"])
  results["meta"] = dict(step=extractor.step, shards=storage.absolute(shard_dir),
                         seed=seed, segment_seconds=segment_seconds,
                         protocol="paper Section 4.1.2, Euclidean min-distance",
                         mixture_length="min (overlapped span, at most segment_seconds)",
                         corpus=manifest.get("source"),
                         espeak_ng=shards.espeak_version(manifest))

  plot_paths = []
  if make_plots:
    plot_paths.append(plots.det(curves, os.path.join(eval_dir, "det.png")))
    if own_shards:
      plot_paths += _seen_speaker_plots(extractor, splits["seen"], eval_dir, seed)
  results["plots"] = plot_paths
  storage.write_text(os.path.join(eval_dir, trial_sets.RESULTS),
                     json.dumps(results, indent=1))
  return results


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


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if f.scores_from:
    results = trial_export.score_file(f.scores_from, f.export_trials)
    print(trial_export.scores_report(results, f.scores_from))
    return
  if not f.workdir:
    raise errors.UsageError("--workdir is required")
  if f.export_trials:
    if f.report_only:
      raise errors.UsageError("--export_trials and --report_only: pick one")
    with workdir_lock.hold(f.export_trials, "trial export"):
      manifest = trial_export.export_trials(f.workdir, f.export_trials, f.shards, f.trials,
                                            f.seed, f.trials_from, f.segment_seconds,
                                            f.eval_name)
      print(trial_export.export_report(manifest, f.export_trials, f.seed))
    return
  eval_dir, _, _ = trial_sets.eval_dir_for(f.workdir, f.shards, f.eval_name)
  results_path = os.path.join(eval_dir, trial_sets.RESULTS)
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
