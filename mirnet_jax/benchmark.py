r"""Benchmark: train step, input pipeline and embedding extraction on this machine.

  python -m mirnet_jax.benchmark [--config=configs/default.py] [--batch_size=8]
      [--dtype=float32|bfloat16] [--shards=DIR] [--steps=3] [--profile_dir=DIR]

Prints a human-readable table, then one JSON object with at least `device`,
`train_examples_per_s`, `train_flops_fraction_of_matmul_peak`,
`pipeline_mixtures_per_s_per_core` and `extract_mixtures_per_s`.

* Train step: the config's model (default: the paper's size) on random 3 s mixtures,
  compiled ahead of time; FLOPs per step from `train.step_flops` (the model's count on every
  backend: on GPUs and TPUs from a CPU lowering); the achieved FLOP/s as a
  fraction of the peak measured in this process by a large matrix multiply in the same
  dtype (the practical limit of the backend).
* Pipeline: the real grain pipeline over `--shards` (default: a small synthetic corpus
  prepared in a temporary directory), in-process reading threads, one per core.
* Extraction: the jitted forward pass of the extractor on batches of mixtures.
* `--profile_dir`: two more train steps under `jax.profiler`, a trace for TensorBoard's
  profile plugin, XProf or Perfetto; the table then lists the ops that took the most
  wall time (each moment shared among the ops running then), the first thing to look at
  before optimising.
"""

import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from mirnet_jax import features
from mirnet_jax import tasks
from mirnet_jax import train
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards

for _arg in sys.argv:  # as in main.py: configs import their siblings
  if _arg.startswith("--config="):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(_arg[9:]))))

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "configs", "default.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Model config.",
                                          lock_config=True)
_BATCH = flags.DEFINE_integer("batch_size", 8, "Global batch of the train step.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_SHARDS = flags.DEFINE_string("shards", None, "Shards for the pipeline benchmark.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed train steps (after one warm-up step).")
_CLASSES = flags.DEFINE_integer("num_classes", 251, "Classifier size (train-clean-100: 251).")
_PIPELINE_SECONDS = flags.DEFINE_float("pipeline_seconds", 10.0, "Pipeline timing window.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", None, "Write a jax.profiler trace of two "
                                   "train steps here and list the costliest ops.")


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


def bench_train(config, batch_size: int, num_classes: int, steps: int,
                profile_dir: str | None = None) -> dict:
  mesh = train.make_mesh()
  task = tasks.Task(config, num_classes)
  tx, schedule = train.make_optimizer(config)
  state, state_sharding = train.create_state(task, tx, mesh, jax.random.key(0))
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(0)
  batch = {
      "mixture": jax.device_put(rng.standard_normal(
          (batch_size, config.data.crop_frames, features.NUM_BINS, 2)).astype(np.float16),
                                batch_sharding),
      "labels": jax.device_put(np.stack([rng.choice(num_classes, config.data.num_speakers,
                                                    replace=False)
                                         for _ in range(batch_size)]).astype(np.int32),
                               batch_sharding)}
  start = time.perf_counter()
  step = jax.jit(lambda s, b: train.train_step(s, b, {}, task=task, tx=tx, schedule=schedule),
                 in_shardings=(state_sharding, batch_sharding), donate_argnums=0)
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  flops = train.step_flops(task, tx, schedule, batch_size, compiled=compiled) or 0.0
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


def bench_extract(config, num_classes: int, batch_size: int = 16) -> dict:
  model = tasks.build_model(config, num_classes)
  x = jnp.zeros((batch_size, config.data.crop_frames, features.NUM_BINS, 2), jnp.float16)
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
  result.update(bench_train(config, batch_size, num_classes, steps, profile_dir))
  result["matmul_peak_flops_per_s"] = matmul_peak(jnp.dtype(dtype))
  result["train_flops_fraction_of_matmul_peak"] = (
      result["train_flops_per_s"] / result["matmul_peak_flops_per_s"])
  result.update(bench_extract(config, num_classes))
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
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = run(_CONFIG.value, _BATCH.value, _DTYPE.value, _SHARDS.value, _STEPS.value,
               _CLASSES.value, _PIPELINE_SECONDS.value, _PROFILE_DIR.value)
  print(table(result))
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
