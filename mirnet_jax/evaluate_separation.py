r"""Speaker-conditioned separation, evaluated as in the paper's Table 2.

  python -m mirnet_jax.evaluate_separation --workdir=runs/demo

evaluates every separator under DIR (each subdirectory holding a `vf_mirnet`,
`vf_enrolled` or `upit` run; or `--systems=a,b`) on the same test mixtures and writes
`DIR/eval/separation.json` (one object per system: `mixtures`, `sdri`, `si_sdri`,
`pesqi`, ...) and a Markdown table.

Test mixtures: by default `--mixtures` two-speaker mixtures of `--seconds` from the
prepared corpus's *unseen* split (speakers no model was trained on), drawn from a seed as
in training (each source at the shards' level, gains within the config's range) and
rebuilt as waveforms from the stored spectrograms; the enrolled baseline is given a crop
of another utterance of each target speaker. With `--wsj0_2mix=<root>/tt` the official
WSJ0-2mix test mixtures are used instead, with an enrolment utterance of the same speaker
from another mixture of the set. Metrics: separation_metrics.py (SDRi: BSS-eval v3 SDR;
SI-SDRi; PESQi: wide-band PESQ), averaged over every source of every mixture.
"""

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
  [N, L] and `enroll` (a list of N waveforms of other utterances of the speakers)."""
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
                      references=references,
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
                      enroll=None if None in enroll else [audio.load(p) for p in enroll]))
  return items


def evaluate(systems: list[str], items: list[dict], with_pesq: bool = True,
             chunk_seconds: float = 8.0) -> dict:
  """{task name: summary} for each separator workdir in `systems` on `items`."""
  started = time.time()
  baselines = [separation_metrics.baseline(it["mixture"], it["references"], with_pesq)
               for it in items]
  logging.info("scored %d unprocessed mixtures in %.0f s", len(items), time.time() - started)
  results = {}
  for workdir in systems:
    started = time.time()
    separator = separator_lib.Separator(inference.restore(workdir),
                                        chunk_seconds=chunk_seconds)
    scores, skipped = [], 0
    for it, base in zip(items, baselines):
      enroll = it["enroll"] if separator.task.enrolled else None
      if separator.task.enrolled and enroll is None:
        skipped += 1  # a speaker with no other utterance to enrol
        continue
      estimates, _ = separator.separate(it["mixture"], enroll)
      scores.append(separation_metrics.score(it["references"], estimates, base))
    summary = dict(workdir=os.path.abspath(workdir), step=int(separator.step),
                   mixtures=len(scores), skipped_no_enrolment=skipped)
    for key in scores[0]:
      values = np.concatenate([s[key] for s in scores])
      summary[key] = float(np.nanmean(values))
    summary["mixture_sdr"] = float(np.mean(np.concatenate([b["sdr"] for b in baselines])))
    results[separator.task.name] = summary
    logging.info("%s: %d mixtures, SDRi %.2f dB (%.0f s)", separator.task.name,
                 len(scores), summary["sdri"], time.time() - started)
  return results


def markdown_table(results: dict, test_set: str) -> str:
  lines = [f"Separation on {test_set}, two-speaker mixtures; improvements over the "
           "unprocessed mixture, averaged over all sources.", "",
           "| system | mixtures | SDRi (dB) | SI-SDRi (dB) | PESQi |",
           "|---|---:|---:|---:|---:|"]
  for name, r in results.items():
    pesqi = f"{r['pesqi']:.3f}" if "pesqi" in r else "n/a"
    lines.append(f"| {tasks.REGISTRY[name].title} | {r['mixtures']} | {r['sdri']:.2f} | "
                 f"{r['si_sdri']:.2f} | {pesqi} |")
  return "\n".join(lines)


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
  flags.DEFINE_integer("mixtures", 100, "Test mixtures (WSJ0-2mix: the first N; 0 for all).")
  flags.DEFINE_float("seconds", 4.0, "Length of shard test mixtures.")
  flags.DEFINE_integer("seed", 0, "Seed of the test mixtures and enrolments.")
  flags.DEFINE_bool("pesq", True, "Compute PESQi (the slowest metric).")
  flags.DEFINE_bool("report_only", False, "Print the stored table.")
  flags.mark_flags_as_required(["workdir"])


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
  results = evaluate(systems, items, f.pesq, chunk)
  for r in results.values():
    r["test_set"] = test_set
  table = markdown_table(results, test_set)
  write_results(root, results, table)
  print(table)
  print(f"results: {os.path.join(root, 'eval', RESULTS)}")


if __name__ == "__main__":
  cli.run(main, define_flags)
