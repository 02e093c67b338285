r"""Speaker-conditioned separation, evaluated as in the paper's Table 2.

  python -m mirnet_jax.evaluate_separation --workdir=runs/demo

evaluates every separator under DIR (each subdirectory holding a `vf_mirnet`,
`vf_enrolled` or `upit` run; or `--systems=a,b`) on the same test mixtures and writes
`DIR/eval/separation.json` (one object per row: `mixtures`, `sdri`, `sdri_ci95`,
`si_sdri`, `pesqi`, `scoring`, ...) and a Markdown table.

Scoring: the enrolled baseline's output i is enrolled speaker i's, so it is scored in
that order (extracting the wrong speaker counts as wrong); uPIT and MIRNet's slots have no
such order and are scored under the best permutation (PIT papers' convention). Every
mean comes with a 95% bootstrap interval over mixtures. Each conditioned system also gets
a control row: the same separator conditioned on two random other speakers of the test
set, neither of them in the mixture (the enrolled baseline gets their enrolment
utterances, VoiceFilter + MIRNet the MIRNet embeddings of their sum). Its SDRi difference
to the system (paired over mixtures, with interval) says whether the conditioning is used.

Test mixtures: by default `--mixtures` two-speaker mixtures of `--seconds` from the
prepared corpus's *unseen* split (speakers no model was trained on), drawn from a seed as
in training (each source at the shards' level, gains within the config's range) and
rebuilt as waveforms from the stored spectrograms; the enrolled baseline is given a crop
of another utterance of each target speaker. With `--wsj0_2mix=<root>/tt` the official
WSJ0-2mix test mixtures are used instead, with an enrolment utterance of the same speaker
from another mixture of the set. Metrics: separation_metrics.py (SDRi: BSS-eval v3 SDR;
SI-SDRi; PESQi: wide-band PESQ), averaged over every source of every mixture.
"""

import contextlib
import functools
import itertools
import multiprocessing
import os
import time

from absl import flags
from absl import logging
import numpy as np

from mirnet_jax import checkpointing
from mirnet_jax import cli
from mirnet_jax import errors
from mirnet_jax import features
from mirnet_jax import inference
from mirnet_jax import separation_metrics
from mirnet_jax import separator as separator_lib
from mirnet_jax import storage
from mirnet_jax import tasks
from mirnet_jax import workdir_lock
from mirnet_jax.data import audio
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards
from mirnet_jax.data import wsj0_2mix

RESULTS = "separation.json"


def find_systems(root: str) -> list[str]:
  """Subdirectories of `root` holding a trained separator, in Table 2's order."""
  order = {name: i for i, name in enumerate(tasks.REGISTRY)}
  found = []
  for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    path = os.path.join(root, name)
    if os.path.exists(os.path.join(path, checkpointing.CONFIG_FILE)):
      task = tasks.get(checkpointing.load_run(path).config)
      if task.is_separator:
        found.append((order[task.name], path))
  return [path for _, path in sorted(found)]


def shard_mixtures(shard_dir: str, count: int, seconds: float, seed: int,
                   gain_db_range: float) -> list[dict]:
  """Test mixtures from the unseen split: dicts of 16 kHz `mixture` [L], `references`
  [N, L], `enroll` (a list of N waveforms of other utterances of the speakers) and
  `speakers` (their unseen-speaker labels)."""
  split = shards.open_split(shard_dir, "unseen")
  frames = int(round(seconds * features.SAMPLE_RATE / features.HOP_LENGTH))
  spec = pipeline.MixtureSpec(2, frames, gain_db_range, return_sources=True,
                              return_references=True)
  maker = pipeline.MixtureMaker(split, spec, seed, epoch_length=count)
  length = (frames - 1) * features.HOP_LENGTH
  wave = lambda stored: features.istft(features.from_storage(stored), length=length)
  items = []
  for i in range(count):
    example = maker(i)
    references = np.stack([wave(s) for s in example["sources"]])
    items.append(dict(name=f"mixture{i:04d}", mixture=references.sum(axis=0),
                      references=references, speakers=example["labels"].tolist(),
                      enroll=[wave(r) for r in example["references"]]))
  return items


def wsj0_mixtures(set_dir: str, count: int | None, seed: int) -> list[dict]:
  """The official WSJ0-2mix mixtures of `set_dir` (all, or the first `count`), each with an
  enrolment utterance per speaker taken from another mixture of the set."""
  all_mixtures = wsj0_2mix.mixtures(set_dir)
  by_speaker = {}
  for m in all_mixtures:
    for path, utt, spk in zip(m.sources, m.utterances, m.speakers):
      by_speaker.setdefault(spk, {}).setdefault(utt, path)
  rng = np.random.default_rng(seed)
  items = []
  for m in all_mixtures[:count]:
    enroll = []
    for utt, spk in zip(m.utterances, m.speakers):
      others = sorted(u for u in by_speaker[spk] if u != utt)
      enroll.append(by_speaker[spk][others[rng.integers(len(others))]] if others else None)
    references = np.stack([audio.load(p) for p in m.sources])
    items.append(dict(name=m.name, mixture=audio.load(m.mixture), references=references,
                      speakers=list(m.speakers),
                      enroll=None if None in enroll else [audio.load(p) for p in enroll]))
  return items


def control_conditioning(items: list[dict], seed: int) -> list[dict | None]:
  """For each item, what the control rows condition on: the enrolment utterances of N
  other speakers, none of them in the item (`enroll`: for the enrolled baseline), and
  their sum cut to the shortest (`mixture`: MIRNet's embeddings of it, for VoiceFilter +
  MIRNet); None when the test set has too few other speakers with an enrolment."""
  sources = {}  # speaker -> (item, source) of its enrolment utterances
  for j, item in enumerate(items):
    for k, speaker in enumerate(item["speakers"]):
      if item["enroll"] is not None:
        sources.setdefault(speaker, []).append((j, k))
  speakers = sorted(sources)
  out = []
  for i, item in enumerate(items):
    rng = np.random.default_rng([seed, i])
    others = [s for s in speakers if s not in item["speakers"]]
    n = len(item["speakers"])
    if len(others) < n:
      out.append(None)
      continue
    chosen = [others[c] for c in rng.choice(len(others), size=n, replace=False)]
    enroll = []
    for speaker in chosen:
      j, k = sources[speaker][rng.integers(len(sources[speaker]))]
      enroll.append(items[j]["enroll"][k])
    length = min(len(e) for e in enroll)
    out.append(dict(speakers=chosen, enroll=enroll,
                    mixture=np.sum([e[:length] for e in enroll], axis=0)))
  return out


def _summary(scores: list[dict | None], seed: int) -> dict:
  """Means and 95% bootstrap intervals over mixtures of the per-source scores of the
  scored mixtures (None: not scored). The per-mixture means over sources (NaN where not
  scored) are kept, in item order, for paired comparisons."""
  kept = [s for s in scores if s is not None]
  out = dict(mixtures=len(kept), skipped=len(scores) - len(kept))
  for key in kept[0] if kept else ():
    per_mixture = np.array([np.nan if s is None or not np.isfinite(s[key]).any()
                            else np.nanmean(s[key]) for s in scores])
    out[key] = float(np.nanmean(per_mixture))
    out[f"{key}_ci95"] = list(separation_metrics.bootstrap_ci(per_mixture, seed=seed))
    out[f"{key}_per_mixture"] = per_mixture.tolist()
  return out


def assignment_of(separator) -> tuple[int, ...] | None:
  """The fixed output-to-reference assignment a system is scored under: output i is
  enrolled speaker i's for the enrolled baseline; None (the best permutation) otherwise."""
  return tuple(range(separator.num_speakers)) if separator.task.enrolled else None


def _separate_all(separator, items, controls=None) -> list:
  """The estimates `[N, L]` of `separator` for every item (None where it cannot run):
  conditioned on the item's own speakers, or on its `controls` entry (see
  `control_conditioning`)."""
  enrolled = separator.task.enrolled
  estimates = []
  for i, it in enumerate(items):
    source = it if controls is None else controls[i]
    if source is None or (enrolled and source["enroll"] is None):
      estimates.append(None)  # no other speakers, or no utterance to enrol
      continue
    embeddings = separator.conditioning(source["mixture"],
                                        source["enroll"] if enrolled else None)
    estimates.append(separator.separate(it["mixture"], embeddings=embeddings)[0])
  return estimates


def _score_all(starmap, items, estimates, baselines, assignment) -> list:
  """separation_metrics.score of every estimate (None stays None), through `starmap`
  (itertools.starmap, or a process pool's)."""
  todo = [(it["references"], e, base, assignment)
          for it, e, base in zip(items, estimates, baselines) if e is not None]
  done = iter(starmap(separation_metrics.score, todo))
  return [None if e is None else next(done) for e in estimates]


def evaluate(systems: list[str], items: list[dict], with_pesq: bool = True,
             chunk_seconds: float = 8.0, seed: int = 0, workers: int | None = None) -> dict:
  """{row name: summary} for each separator workdir in `systems` on `items`, and a
  control row `<name>_control` for each conditioned one: the same separator conditioned
  on two other speakers (`control_conditioning`). The metrics (BSS-eval's
  distortion filters and PESQ take most of the time) are computed by `workers` processes
  (default: all cores; 1: in this process)."""
  workers = workers or os.cpu_count() or 1
  # spawn: the parent holds JAX's threads, which a forked child would inherit broken.
  with (multiprocessing.get_context("spawn").Pool(workers) if workers > 1
        else contextlib.nullcontext()) as pool:
    starmap = (functools.partial(pool.starmap, chunksize=4) if pool
               else lambda f, args: list(itertools.starmap(f, args)))
    return _evaluate(systems, items, with_pesq, chunk_seconds, seed, starmap)


def _evaluate(systems, items, with_pesq, chunk_seconds, seed, starmap) -> dict:
  started = time.time()
  baselines = starmap(separation_metrics.baseline,
                      [(it["mixture"], it["references"], with_pesq) for it in items])
  mixture_sdr = float(np.mean(np.concatenate([b["sdr"] for b in baselines])))
  logging.info("scored %d unprocessed mixtures in %.0f s", len(items), time.time() - started)
  controls = control_conditioning(items, seed)
  results = {}
  for workdir in systems:
    separator = separator_lib.Separator(inference.restore(workdir),
                                        chunk_seconds=chunk_seconds)
    task = separator.task
    assignment = assignment_of(separator)
    rows = [(task.name, False)] + ([(f"{task.name}_control", True)]
                                   if task.conditioner_task else [])
    for name, control in rows:
      started = time.time()
      estimates = _separate_all(separator, items, controls if control else None)
      scores = _score_all(starmap, items, estimates, baselines, assignment)
      summary = dict(task=task.name, control=control, workdir=os.path.abspath(workdir),
                     step=int(separator.step),
                     scoring="best permutation" if assignment is None else "enrolled order",
                     mixture_sdr=mixture_sdr, **_summary(scores, seed))
      results[name] = summary
      logging.info("%s: %d mixtures, SDRi %.2f dB (%.0f s)", name, summary["mixtures"],
                   summary.get("sdri", float("nan")), time.time() - started)
  for name, r in results.items():
    if r["control"] and r["mixtures"] and results[r["task"]]["mixtures"]:
      r["vs_system"] = _paired_difference(results[r["task"]], r, seed)
  return results


def _paired_difference(system: dict, control: dict, seed: int) -> dict:
  """The system's SDRi minus its control's on the mixtures both scored: mean and 95%
  bootstrap interval; `conditioning_matters` when the interval lies above zero."""
  diff = np.subtract(system["sdri_per_mixture"], control["sdri_per_mixture"])
  low, high = separation_metrics.bootstrap_ci(diff, seed=seed)
  return dict(sdri_difference=float(np.nanmean(diff)), sdri_difference_ci95=[low, high],
              mixtures=int(np.isfinite(diff).sum()), conditioning_matters=bool(low > 0))


def markdown_table(results: dict, test_set: str) -> str:
  def cell(r, key, fmt):
    if key not in r:
      return "n/a"
    low, high = r[f"{key}_ci95"]
    return f"{r[key]:{fmt}} [{low:{fmt}}, {high:{fmt}}]"
  lines = [f"Separation on {test_set}, two-speaker mixtures; improvements over the "
           "unprocessed mixture, averaged over all sources, with 95% bootstrap intervals "
           "over mixtures. Control rows: the same separator conditioned on other, random "
           "speakers (not in the mixture).", "",
           "| system | scoring | mixtures | SDRi (dB) | SI-SDRi (dB) | PESQi |",
           "|---|---|---:|---:|---:|---:|"]
  for name, r in results.items():
    title = tasks.REGISTRY[r["task"]].title
    if r["control"]:
      title += ", control: conditioned on other speakers"
    lines.append(f"| {title} | {r['scoring']} | {r['mixtures']} | {cell(r, 'sdri', '.2f')} | "
                 f"{cell(r, 'si_sdri', '.2f')} | {cell(r, 'pesqi', '.3f')} |")
  notes = []
  for name, r in results.items():
    if "vs_system" in r:
      d = r["vs_system"]
      low, high = d["sdri_difference_ci95"]
      verdict = ("the conditioning matters" if d["conditioning_matters"] else
                 "no measurable effect of the conditioning")
      notes.append(f"- {tasks.REGISTRY[r['task']].title}: SDRi {d['sdri_difference']:+.2f} dB "
                   f"[{low:+.2f}, {high:+.2f}] over its control on {d['mixtures']} "
                   f"mixtures: {verdict}.")
  return "\n".join(lines + ([""] + notes if notes else []))


def write_results(root: str, results: dict, table: str):
  out_dir = os.path.join(root, "eval")
  storage.makedirs(out_dir)
  storage.write_json(os.path.join(out_dir, RESULTS), results)
  storage.write_text(os.path.join(out_dir, "separation.md"), table + "\n")


def define_flags():
  flags.DEFINE_string("workdir", None, "Directory holding the separator workdirs; results "
                      "go to DIR/eval/.")
  flags.DEFINE_list("systems", None, "Separator workdirs (default: every separator under "
                    "--workdir).")
  flags.DEFINE_string("shards", None, "Prepared corpus for the test mixtures (default: the "
                      "first system's training shards).")
  flags.DEFINE_string("wsj0_2mix", None, "A WSJ0-2mix set directory (e.g. "
                      ".../wav16k/max/tt) to use instead of shard mixtures.")
  flags.DEFINE_integer("mixtures", 300, "Test mixtures (WSJ0-2mix: the first N; 0 for all).")
  flags.DEFINE_float("seconds", 4.0, "Length of shard test mixtures.")
  flags.DEFINE_integer("seed", 0, "Seed of the test mixtures and enrolments.")
  flags.DEFINE_bool("pesq", True, "Compute PESQi (the slowest metric).")
  flags.DEFINE_bool("report_only", False, "Print the stored table.")
  flags.mark_flags_as_required(["workdir"])


def _evaluate_and_write(f, root: str) -> str:
  systems = f.systems or find_systems(root)
  if not systems:
    names = ", ".join(name for name, t in tasks.REGISTRY.items() if t.is_separator)
    raise errors.UserError(f"no trained separator ({names}) under {root}")
  if f.wsj0_2mix:
    items = wsj0_mixtures(f.wsj0_2mix, f.mixtures or None, f.seed)
    test_set = f"WSJ0-2mix {f.wsj0_2mix}"
    chunk = 8.0
  else:
    config = checkpointing.load_run(systems[0]).config
    shard_dir = f.shards or config.data.shards
    items = shard_mixtures(shard_dir, f.mixtures, f.seconds, f.seed,
                           config.data.gain_db_range)
    test_set = (f"{f.mixtures} mixtures of {f.seconds:g} s of unseen speakers "
                f"({shard_dir}, seed {f.seed})")
    chunk = f.seconds
  results = evaluate(systems, items, f.pesq, chunk, f.seed)
  for r in results.values():
    r["test_set"] = test_set
  table = markdown_table(results, test_set)
  write_results(root, results, table)
  return table


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  root = f.workdir
  if f.report_only:
    path = os.path.join(root, "eval", "separation.md")
    if not os.path.exists(path):
      raise errors.UserError(f"no {path}: run without --report_only first")
    print(open(path).read().rstrip())
    return
  # One separation evaluation per ROOT/eval, taken before any work.
  with workdir_lock.hold(os.path.join(root, "eval"), "separation evaluation"):
    table = _evaluate_and_write(f, root)
  print(table)
  print(f"results: {os.path.join(root, 'eval', RESULTS)}")


if __name__ == "__main__":
  cli.run(main, define_flags)
