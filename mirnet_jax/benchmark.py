r"""Benchmark: train step, input pipeline and embedding extraction on this machine.

  python -m mirnet_jax.benchmark [--config=configs/default.py] [--batch_size=8]
      [--dtype=float32|bfloat16] [--shards=DIR] [--steps=3] [--profile_dir=DIR]

Prints a human-readable table, then one JSON object with at least `device`,
`train_examples_per_s`, `train_flops_fraction_of_matmul_peak`,
`pipeline_mixtures_per_s_per_core` and `extract_mixtures_per_s`.

* Train step: the config's model (default: the paper's size) on random 3 s mixtures,
  compiled ahead of time; FLOPs per step from `step_flops` (the model's count on every
  backend: on GPUs and TPUs from a CPU lowering); the achieved FLOP/s as a fraction of the
  peak measured in this process by a large matrix multiply in the same dtype (the
  practical limit of the backend).
* Pipeline: the real grain pipeline over `--shards` (default: a small synthetic corpus
  prepared in a temporary directory), in-process reading threads, one per core.
* Extraction: the jitted forward pass of the extractor on batches of mixtures.
* `--profile_dir`: two more train steps under `jax.profiler`, a trace for TensorBoard's
  profile plugin, XProf or Perfetto; the table then lists the ops that took the most
  wall time (each moment shared among the ops running then), the first thing to look at
  before optimising.
"""

import collections
import functools
import glob
import gzip
import json
import os
import tempfile
import time

from absl import flags
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np

from mirnet_jax import cli
from mirnet_jax import configs
from mirnet_jax import errors
from mirnet_jax import tasks
from mirnet_jax import train
from mirnet_jax import train_state
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards

FLAGS = flags.FLAGS


def define_flags():
  # Located through the package, so that the default works from any directory and from a
  # non-editable install.
  cli.define_config_flag(default=os.path.join(configs.DIRECTORY, "default.py"),
                         help_string="Model config (configs/NAME.py[:ARG] names a packaged "
                         "one; default: the paper's model, configs/default.py).")
  flags.DEFINE_integer("batch_size", 8, "Global batch of the train step.")
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
  flags.DEFINE_string("shards", None, "Shards for the pipeline benchmark.")
  flags.DEFINE_integer("steps", 3, "Timed train steps (after one warm-up step).")
  flags.DEFINE_integer("num_classes", 251, "Classifier size (train-clean-100: 251).")
  flags.DEFINE_float("pipeline_seconds", 10.0, "Pipeline timing window.")
  flags.DEFINE_string("profile_dir", None, "Write a jax.profiler trace of two train steps "
                      "here and list the costliest ops.")


def _timed(fn, repeats: int) -> float:
  """Seconds of the fastest of `repeats` blocking calls of `fn`, after a warm-up call.

  The fastest, not the mean: on a shared machine every other process only ever adds time,
  so the minimum is the stable estimate of what the hardware does (as `timeit` advises).
  The matmul peak is timed the same way, so their ratio compares like with like."""
  jax.block_until_ready(fn())
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return best


def matmul_peak(dtype, size: int | None = None) -> float:
  """FLOP/s of a large square matmul in `dtype`: the practical peak of this backend."""
  size = size or (2048 if jax.default_backend() == "cpu" else 8192)
  a = jnp.ones((size, size), dtype)
  mm = jax.jit(lambda x, y: x @ y)
  seconds = _timed(lambda: mm(a, a), 5)
  return 2 * size ** 3 / seconds


def _flops(cost) -> float | None:
  """The FLOP count of an XLA cost analysis (a dict, or a list of one per computation)."""
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"]) if cost and "flops" in cost else None


def step_flops(task, tx, schedule, batch_size: int, compiled=None) -> float | None:
  """FLOPs of one train step on `batch_size` examples: the model's count on every backend.

  XLA:CPU's compiled count is the model's, so a `compiled` CPU step is asked directly.
  Otherwise the step is lowered (traced once more) for the CPU backend and counted before
  compilation: XLA:GPU's compiled cost analysis leaves out the convolutions it hands to
  cuDNN (an H200 reported 1.05 of the paper model's 40 GFLOP per example), and the PJRT
  plugins of GPUs and TPUs do not analyse uncompiled HLO. None where no CPU backend is
  available.
  """
  if compiled is not None and jax.default_backend() == "cpu":
    return _flops(compiled.cost_analysis())
  try:
    mesh = train_state.make_mesh(jax.devices("cpu")[:1])
  except RuntimeError:  # JAX_PLATFORMS without cpu
    return None
  batch = task.abstract_batch(batch_size, jax.sharding.NamedSharding(mesh, P("data")))
  step = functools.partial(train.train_step, task=task, tx=tx, schedule=schedule)
  return _flops(jax.jit(step).lower(train_state.abstract_state(task, tx, mesh), batch)
                .cost_analysis())


def _random_batch(task, batch_size: int, num_classes: int, sharding, seed: int = 0) -> dict:
  """A batch of the task's layout (task.abstract_batch): normal noise as spectrograms and
  distinct classes per example as labels, so the benchmark needs no knowledge of the
  task's inputs."""
  rng = np.random.default_rng(seed)

  def fill(x):
    if jnp.issubdtype(x.dtype, jnp.integer):
      values = np.stack([rng.choice(num_classes, x.shape[1:], replace=False)
                         for _ in range(x.shape[0])])
    else:
      values = rng.standard_normal(x.shape)
    return jax.device_put(values.astype(x.dtype), sharding)

  return jax.tree.map(fill, task.abstract_batch(batch_size))


def bench_train(config, task, batch_size: int, num_classes: int, steps: int,
                profile_dir: str | None = None) -> dict:
  mesh = train_state.make_mesh()
  tx, schedule = train_state.make_optimizer(config)
  state, state_sharding = train_state.create_state(task, tx, mesh, jax.random.key(0))
  batch_sharding = jax.sharding.NamedSharding(mesh, P("data"))
  batch = _random_batch(task, batch_size, num_classes, batch_sharding)
  start = time.perf_counter()
  step = jax.jit(functools.partial(train.train_step, task=task, tx=tx, schedule=schedule),
                 in_shardings=(state_sharding, batch_sharding), donate_argnums=0)
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  flops = step_flops(task, tx, schedule, batch_size, compiled=compiled) or 0.0
  holder = [state]

  def one_step():
    holder[0], metrics = compiled(holder[0], batch)
    return metrics["train/loss"]

  seconds = _timed(one_step, steps)
  stats = jax.devices()[0].memory_stats() or {}
  result = dict(train_batch_size=batch_size, train_compile_s=compile_s,
                train_step_s=seconds, train_examples_per_s=batch_size / seconds,
                train_flops_per_example=flops / batch_size,
                train_flops_per_s=flops / seconds,
                peak_device_memory_bytes=stats.get("peak_bytes_in_use"))
  if profile_dir:
    with jax.profiler.trace(profile_dir):
      for _ in range(2):
        jax.block_until_ready(one_step())
    result["profile_dir"] = profile_dir
    result["profile_top_ops"] = top_ops(profile_dir, steps=2)
  return result


def top_ops(profile_dir: str, steps: int, count: int = 10) -> list[dict]:
  """The `count` ops of the newest trace under `profile_dir` with the most wall time per
  step. Ops run concurrently, so each moment is shared equally among the ops running then:
  the shares add up to the busy time of the step, not to the summed op durations."""
  traces = sorted(glob.glob(os.path.join(profile_dir, "plugins", "profile", "*",
                                         "*.trace.json.gz")))
  if not traces:
    return []
  with gzip.open(traces[-1]) as f:
    events = json.load(f)["traceEvents"]
  # Host-side frames (Python, dispatch, thread pools) are not device work.
  host = ("$", "ThunkExecutor", "PjitFunction", "SlinkyThreadPool", "ExecuteReplicated",
          "shard_args", "DevicePut", "CommonPjRt", "ParseArguments", "PjRt")
  edges = []
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(host):
      edges += [(e["ts"], 1, e["name"]), (e["ts"] + e["dur"], -1, e["name"])]
  edges.sort()
  running, wall, last = collections.Counter(), collections.Counter(), None
  for time_us, change, name in edges:
    if running:
      total = sum(running.values())
      for op, n in running.items():
        wall[op] += (time_us - last) * n / total
    running[name] += change
    if not running[name]:
      del running[name]
    last = time_us
  busy = sum(wall.values())
  return [dict(op=op, ms_per_step=t / 1000 / steps, share=t / busy)
          for op, t in wall.most_common(count)]


def bench_extract(task, batch_size: int = 16) -> dict:
  model = task.model
  abstract = task.abstract_batch(batch_size)["mixture"]
  x = jnp.zeros(abstract.shape, abstract.dtype)
  variables = jax.jit(lambda: model.init(jax.random.key(0), x, train=False))()
  forward = jax.jit(lambda v, m: model.apply(v, m, train=False)["embeddings"])
  seconds = _timed(lambda: forward(variables, x), 3)
  return dict(extract_batch_size=batch_size, extract_mixtures_per_s=batch_size / seconds)


def bench_pipeline(shard_dir: str | None, crop_frames: int, seconds: float) -> dict:
  threads = os.cpu_count() or 1
  with tempfile.TemporaryDirectory() as tmp:
    if shard_dir is None:
      shard_dir = _synthetic_shards(tmp)
    spec = pipeline.MixtureSpec(crop_frames=crop_frames)
    ds = pipeline.make_dataset(shard_dir, "train", spec, seed=0, epoch_length=10 ** 6,
                               local_batch=32, read_threads=threads)
    it = iter(ds)
    next(it)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      count += len(next(it)["labels"])
    rate = count / (time.perf_counter() - start)
  return dict(pipeline_threads=threads, pipeline_mixtures_per_s=rate,
              pipeline_mixtures_per_s_per_core=rate / threads)


def _synthetic_shards(tmp: str) -> str:
  """Shards of a small synthetic corpus (harmonic tones, 8 speakers x 6 utterances of
  4-12 s), so the pipeline can be timed without a prepared corpus."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for subset, speakers in (("train", range(8)), ("test", range(8, 12))):
    for s in speakers:
      d = os.path.join(tmp, "corpus", subset, str(100 + s), "1")
      os.makedirs(d)
      for u in range(6):
        t = np.arange(int(rng.uniform(4, 12) * 16000)) / 16000
        wave = sum(np.sin(2 * np.pi * (90 + 9 * s) * h * t) / h for h in range(1, 5))
        sf.write(os.path.join(d, f"{100 + s}-1-{u:04d}.flac"), 0.1 * wave, 16000)
  out = os.path.join(tmp, "shards")
  shards.prepare(os.path.join(tmp, "corpus"), out, workers=1)
  return out


def run(config, batch_size: int, dtype: str, shard_dir: str | None, steps: int,
        num_classes: int, pipeline_seconds: float, profile_dir: str | None = None) -> dict:
  config = config.copy_and_resolve_references()
  config.model.dtype = dtype
  device = jax.devices()[0]
  result = dict(device=f"{device.platform}:{device.device_kind}",
                device_count=jax.device_count(), cpu_cores=os.cpu_count(), dtype=dtype,
                crop_frames=int(config.data.crop_frames))
  task = tasks.create(config, num_classes)
  result.update(bench_train(config, task, batch_size, num_classes, steps, profile_dir))
  result["matmul_peak_flops_per_s"] = matmul_peak(jnp.dtype(dtype))
  result["train_flops_fraction_of_matmul_peak"] = (
      result["train_flops_per_s"] / result["matmul_peak_flops_per_s"])
  result.update(bench_extract(task))
  result.update(bench_pipeline(shard_dir, int(config.data.crop_frames), pipeline_seconds))
  result["pipeline_keeps_up"] = (result["pipeline_mixtures_per_s"]
                                 >= result["train_examples_per_s"])
  return result


def table(result: dict) -> str:
  rows = [("device", result["device"]),
          ("train step", f"{result['train_examples_per_s']:.2f} examples/s "
                         f"(batch {result['train_batch_size']}, {result['dtype']}, "
                         f"compile {result['train_compile_s']:.1f} s)"),
          ("model FLOPs", f"{result['train_flops_per_example'] / 1e9:.2f} GFLOP/example, "
                          f"{result['train_flops_per_s'] / 1e9:.1f} GFLOP/s achieved"),
          ("matmul peak", f"{result['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s -> "
                          f"{100 * result['train_flops_fraction_of_matmul_peak']:.0f}% of it"),
          ("pipeline", f"{result['pipeline_mixtures_per_s']:.0f} mixtures/s on "
                       f"{result['pipeline_threads']} threads = "
                       f"{result['pipeline_mixtures_per_s_per_core']:.0f}/core "
                       f"(keeps up: {result['pipeline_keeps_up']})"),
          ("extraction", f"{result['extract_mixtures_per_s']:.1f} mixtures/s")]
  if result.get("profile_dir"):
    rows.append(("profile", f"trace in {result['profile_dir']}; costliest ops per step:"))
    rows += [("", f"{op['ms_per_step']:8.1f} ms {100 * op['share']:5.1f}%  {op['op']}")
             for op in result["profile_top_ops"]]
  return "\n".join(f"{k:12s} {v}" for k, v in rows)


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  result = run(FLAGS.config, FLAGS.batch_size, FLAGS.dtype, FLAGS.shards, FLAGS.steps,
               FLAGS.num_classes, FLAGS.pipeline_seconds, FLAGS.profile_dir)
  print(table(result))
  print(json.dumps(result))


if __name__ == "__main__":
  cli.run(main, define_flags)
