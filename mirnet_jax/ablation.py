r"""The generalisation ablation on the demo corpus: each piece of the recipe on and off.

  python -m mirnet_jax.ablation --root=runs/ablation   # all, none, each piece alone
  python -m mirnet_jax.ablation --root=runs/ablation --arms=all,none --trials=2000
  python -m mirnet_jax.ablation --root=runs/ablation --arms=wide_corpus+masks  # a combination
  python -m mirnet_jax.ablation --root=runs/ablation --dry_run       # the commands only
  python -m mirnet_jax.ablation --root=runs/ablation --report_only   # the table only

The pieces (ALL_PIECES): the wide demo corpus (`demo_corpus --voice_transforms`), speed
perturbation (`prepare --speed_perturb`), spectral shaping with a wider level range, time
and frequency masks, and the rotated attention reading. `all` runs configs/demo.py with
every piece on, `none` with none (the paper's recipe on the plain espeak-ng voices), each
`only_<piece>` with that one on (`only_wide_corpus` is the main job's recipe), each
`no_<piece>` with all but it, and `<piece>+<piece>...` with those on. The cross-domain
voices are the same in both corpora (demo_corpus), so `crossdomain` scores every arm on the
same trials of the same speakers.

Stages, each skipped when its output is complete (training resumes where it stopped):
ROOT/corpus_{wide,plain} (the demo corpus), ROOT/shards_{wide,plain}[_speed] (prepare,
with --speed_perturb), ROOT/<arm> (training), ROOT/<arm>/eval/trials<N> (evaluate
--trials=N), then the table of every arm evaluated so far.
"""

import dataclasses
import json
import os
import subprocess
import sys

from absl import flags
from etils import epath

from mirnet_jax import cli
from mirnet_jax import errors
from mirnet_jax import trial_sets

SPEED_FACTORS = "0.9,1.0,1.1"
# Each piece's config fields when on and when off; the ablation's own values, set on every
# arm, so that its arms stay what they say whatever configs/demo.py turns on.
PIECES = {
    "shaping": ({"data.augment.spectral_shaping_db": 12.0,
                 "data.augment.extra_gain_db_range": 5.0},
                {"data.augment.spectral_shaping_db": 0.0,
                 "data.augment.extra_gain_db_range": 0.0}),
    "masks": ({"data.augment.time_masks": 2, "data.augment.time_mask_frames": 20,
               "data.augment.freq_masks": 2, "data.augment.freq_mask_bins": 20},
              {"data.augment.time_masks": 0, "data.augment.freq_masks": 0}),
    "rotated": ({"model.attention.value": "rotated"}, {"model.attention.value": "v1"}),
}


CORPUS_PIECES = ("wide_corpus", "speed")  # pieces of the data: corpus and shards
ALL_PIECES = CORPUS_PIECES + tuple(PIECES)


@dataclasses.dataclass(frozen=True)
class Arm:
  """One run of configs/demo.py with the pieces `on` (of ALL_PIECES) and no other: the
  wide or plain corpus, shards with or without speed perturbation, PIECES' fields."""
  description: str
  on: tuple = ()

  @property
  def wide_corpus(self) -> bool:
    return "wide_corpus" in self.on

  @property
  def speed_perturb(self) -> bool:
    return "speed" in self.on

  @property
  def corpus(self) -> str:
    return "corpus_wide" if self.wide_corpus else "corpus_plain"

  @property
  def shards(self) -> str:
    return (f"shards_{'wide' if self.wide_corpus else 'plain'}"
            f"{'_speed' if self.speed_perturb else ''}")

  @property
  def overrides(self) -> dict:
    out = {}
    for piece, (on, off) in PIECES.items():
      out.update(on if piece in self.on else off)
    return out


# Every piece on, none, and each piece alone on top of none (measured first: every piece
# together left the demo-size model far behind, docs/results.md), then each left out.
ARMS = {
    "all": Arm("every piece on", ALL_PIECES),
    "none": Arm("every piece off: the paper's recipe"),
    **{f"only_{p}": Arm(f"{p} alone", (p,)) for p in ALL_PIECES},
    **{f"no_{p}": Arm(f"all but {p}", tuple(q for q in ALL_PIECES if q != p))
       for p in ALL_PIECES},
}


def arm(name: str) -> Arm:
  """ARMS[name], or for `<piece>+<piece>...` (pieces of ALL_PIECES) the arm with those on."""
  if name in ARMS:
    return ARMS[name]
  pieces = name.split("+")
  if len(pieces) < 2 or not set(pieces) <= set(ALL_PIECES) or len(set(pieces)) < len(pieces):
    raise errors.UsageError(
        f"unknown arm {name!r}: use one of {', '.join(ARMS)}, or pieces joined by '+' "
        f"({', '.join(ALL_PIECES)})")
  return Arm(" and ".join(pieces), tuple(p for p in ALL_PIECES if p in pieces))


# The rows of the table: mixture conditions and their clean controls.
CONDITIONS = ("unseen", "crossdomain", "clean", "crossdomain_clean")


def eval_name(trials: int) -> str:
  return f"trials{trials}"


def commands(root: str, arm_names, trials: int) -> list[tuple[str, list[str]]]:
  """(the path whose existence means the stage is done, or "" for stages that decide
  themselves, command) of every stage the arms need, in order, each once."""
  python, out, seen = sys.executable, [], set()

  def add(done, command):
    if tuple(command) not in seen:
      seen.add(tuple(command))
      out.append((done, command))

  for name in arm_names:
    this = arm(name)
    corpus, shard_dir = os.path.join(root, this.corpus), os.path.join(root, this.shards)
    add(os.path.join(corpus, "SPEAKERS.TXT"),
        [python, "-m", "mirnet_jax.demo_corpus", f"--out={corpus}",
         f"--voice_transforms={str(this.wide_corpus).lower()}"])
    add(os.path.join(shard_dir, "manifest.json"),
        [python, "-m", "mirnet_jax.prepare", f"--source={corpus}", f"--out={shard_dir}",
         f"--speed_perturb={SPEED_FACTORS if this.speed_perturb else '1.0'}"])
    workdir = os.path.join(root, name)
    add("", [python, "-m", "mirnet_jax.main", "--config=configs/demo.py",
             f"--workdir={workdir}", f"--config.data.shards={shard_dir}"] +
        [f"--config.{key}={value}" for key, value in this.overrides.items()])
    add(_results_path(root, name, trials),
        [python, "-m", "mirnet_jax.evaluate", f"--workdir={workdir}", f"--trials={trials}",
         f"--eval_name={eval_name(trials)}", "--plots=false"])
  return out


def _results_path(root: str, arm_name: str, trials: int) -> str:
  return os.path.join(root, arm_name, "eval", eval_name(trials), trial_sets.RESULTS)


def table(root: str, arm_names, trials: int) -> str:
  """Markdown: per arm, the EER (%) and 95% interval of each of CONDITIONS, and the
  cross-domain / in-domain EER ratio; arms not evaluated yet are left out."""
  lines = ["| arm | " + " | ".join(f"{c} EER (%) [95% CI]" for c in CONDITIONS) +
           " | crossdomain / unseen |",
           "|---|" + "---:|" * (len(CONDITIONS) + 1)]
  for name in arm_names:
    path = epath.Path(_results_path(root, name, trials))
    if not path.exists():
      continue
    results = json.loads(path.read_text())
    cells = []
    for condition in CONDITIONS:
      r = results.get(condition)
      ci = (r or {}).get("eer_ci95") or (float("nan"), float("nan"))
      cells.append("-" if r is None else f"{r['eer']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]")
    ratio = ("-" if not {"unseen", "crossdomain"} <= set(results) else
             f"{results['crossdomain']['eer'] / max(results['unseen']['eer'], 1e-9):.2f}")
    trials_of = results["unseen"]["trials"] if "unseen" in results else "?"
    lines.append(f"| {name} ({arm(name).description}; step {results['meta']['step']}, "
                 f"{trials_of} trials) | " + " | ".join(cells) + f" | {ratio} |")
  return "\n".join(lines)


def define_flags():
  flags.DEFINE_string("root", None, "Directory of the ablation's corpora, shards and runs.")
  flags.DEFINE_list("arms", ["all", "none"] + [f"only_{p}" for p in ALL_PIECES],
                    f"Arms to run, of: {', '.join(ARMS)}; or pieces joined by '+'.")
  flags.DEFINE_integer("trials", 2000, "Trials per condition.")
  flags.DEFINE_boolean("dry_run", False, "Print the commands of the stages left to run.")
  flags.DEFINE_boolean("report_only", False, "Print the table of the arms evaluated so far.")


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f.root:
    raise errors.UsageError("--root is required")
  for name in f.arms:
    arm(name)  # a usage error for a name that is no arm
  root = os.path.abspath(f.root)
  if not f.report_only:
    for done, command in commands(root, f.arms, f.trials):
      if done and _complete(done):
        continue
      shown = "python " + " ".join(command[1:])
      print(f"$ {shown}", flush=True)
      if not f.dry_run and subprocess.run(command, check=False).returncode:
        raise errors.UserError(f"stage failed: {shown}")
  print(table(root, f.arms, f.trials))


def _complete(done: str) -> bool:
  """Whether a stage's output exists; an evaluation's must be newer than the run's
  checkpoints (a run trained further since is evaluated again)."""
  if not os.path.exists(done):
    return False
  if os.path.basename(done) != trial_sets.RESULTS:
    return True
  checkpoints = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(done))),
                             "checkpoints")
  return (not os.path.exists(checkpoints)
          or os.path.getmtime(done) > os.path.getmtime(checkpoints))


if __name__ == "__main__":
  cli.run(main, define_flags)
