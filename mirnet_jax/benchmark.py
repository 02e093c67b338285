r"""Benchmark: train step, input pipeline and embedding extraction on this machine.

  python -m mirnet_jax.benchmark [--config=configs/default.py] [--batch_size=8]
      [--dtype=float32|bfloat16] [--shards=DIR] [--steps=3] [--profile_dir=DIR]
      [--train_only | --compare_cpu_conv_paths [--rounds=3]]

Prints a human-readable table, then one JSON object with at least `device`,
`cpu` (model and vector extensions), `jax_version`, `train_examples_per_s`,
`train_flops_fraction_of_matmul_peak`, `pipeline_bytes_per_mixture`,
`pipeline_mixtures_per_s_per_core`, `pipeline_mixtures_per_s_per_core_workers`,
`end_to_end_fraction_of_step` and `extract_mixtures_per_s`.

* Train step: the config's model (default: the paper's size) on random 3 s mixtures,
  compiled ahead of time; FLOPs per step from `step_flops` (the model's count on every
  backend: on GPUs and TPUs from a CPU lowering); the achieved FLOP/s as a fraction of the
  peak measured in this process by a large matrix multiply in the same dtype (the
  practical limit of the backend).
* Pipeline: the real grain pipeline over `--shards` (default: LibriSpeech-shaped
  synthetic shards, data/synthetic.py, written to a temporary directory): bytes read per
  mixture; mixtures/s with in-process reading threads (one per core) and with grain
  worker processes (1, 2, ... up to the cores).
* End to end: the pipeline (the config's workers and threads) feeding the jitted train
  step, as a fraction of the same step on an in-memory batch
  (`end_to_end_fraction_of_step`).
* Extraction: the jitted forward pass of the extractor on batches of mixtures.
* `--compare_cpu_conv_paths [--rounds=3]`: only the train step, under each XLA:CPU
  convolution path of mirnet_jax/xla_cpu.py (YNNPACK's, XLA's own), each in its own
  process, in turns; wall and CPU seconds per step, and which path was fastest. Every
  other run records the XLA_FLAGS it ran with (`xla_flags`); `--train_only` times the
  step and the matmul peak alone.
* `--profile_dir`: two more train steps under `jax.profiler`, a trace for TensorBoard's
  profile plugin, XProf or Perfetto; the table then lists the ops that took the most
  wall time (each moment shared among the ops running then), the first thing to look at
  before optimising.
"""

import collections
import dataclasses
import functools
import glob
import gzip
import json
import os
import platform
import subprocess
import sys
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
from mirnet_jax import features
from mirnet_jax import tasks
from mirnet_jax import train
from mirnet_jax import train_state
from mirnet_jax import xla_cpu
from mirnet_jax.data import pipeline
from mirnet_jax.data import shards
from mirnet_jax.data import synthetic

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
  flags.DEFINE_float("pipeline_seconds", 10.0, "Pipeline timing window (per setting).")
  flags.DEFINE_integer("pipeline_speakers", 2000, "Speakers of the LibriSpeech-shaped "
                       "synthetic corpus timed when no --shards are given (one "
                       "utterance each, 12.3 s on average: ~1.2 MB each on disk).")
  flags.DEFINE_integer("end_to_end_steps", 5, "Train steps fed by the real pipeline "
                       "(0: skip the end-to-end measure).")
  flags.DEFINE_string("profile_dir", None, "Write a jax.profiler trace of two train steps "
                      "here and list the costliest ops.")
  flags.DEFINE_bool("train_only", False, "Time only the train step (and the matmul peak).")
  flags.DEFINE_bool("compare_cpu_conv_paths", False, "Time only the train step, under each "
                    "XLA:CPU convolution path (mirnet_jax/xla_cpu.py), one process per path "
                    "run in turns --rounds times; report each path's best.")
  flags.DEFINE_integer("rounds", 3, "Turns of --compare_cpu_conv_paths.", 1)


class Timing(collections.namedtuple("Timing", "wall cpu")):
  """Seconds of wall-clock time and of this process's CPU time (all its threads)."""


def _timed(fn, repeats: int) -> Timing:
  """The fastest of `repeats` blocking calls of `fn`, after a warm-up call.

  The fastest, not the mean: on a shared machine every other process only ever adds time,
  so the minimum is the stable estimate of what the hardware does (as `timeit` advises).
  The matmul peak is timed the same way, so their ratio compares like with like. The CPU
  time (the least of the calls too) is the work done, which other processes change less
  than the wall time: what compares two settings on a busy machine."""
  jax.block_until_ready(fn())
  wall = cpu = float("inf")
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    wall = min(wall, time.perf_counter() - start)
    cpu = min(cpu, time.process_time() - start_cpu)
  return Timing(wall, cpu)


def matmul_peak(dtype, size: int | None = None) -> float:
  """FLOP/s of a large square matmul in `dtype`: the practical peak of this backend."""
  size = size or (2048 if jax.default_backend() == "cpu" else 8192)
  a = jnp.ones((size, size), dtype)
  mm = jax.jit(lambda x, y: x @ y)
  seconds = _timed(lambda: mm(a, a), 5).wall
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


def _train_step(config, task):
  """(jitted train step, its initial state, batch sharding, optimizer, schedule): what
  train.py runs, on this process's mesh."""
  mesh = train_state.make_mesh()
  tx, schedule = train_state.make_optimizer(config)
  state, state_sharding = train_state.create_state(task, tx, mesh, jax.random.key(0))
  batch_sharding = jax.sharding.NamedSharding(mesh, P("data"))
  step = jax.jit(functools.partial(train.train_step, task=task, tx=tx, schedule=schedule),
                 in_shardings=(state_sharding, batch_sharding), donate_argnums=0)
  return step, state, batch_sharding, tx, schedule


def bench_train(config, task, batch_size: int, num_classes: int, steps: int,
                profile_dir: str | None = None) -> dict:
  step, state, batch_sharding, tx, schedule = _train_step(config, task)
  batch = _random_batch(task, batch_size, num_classes, batch_sharding)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  flops = step_flops(task, tx, schedule, batch_size, compiled=compiled) or 0.0
  holder = [state]

  def one_step():
    holder[0], metrics = compiled(holder[0], batch)
    return metrics["train/loss"]

  seconds, cpu_seconds = _timed(one_step, steps)
  stats = jax.devices()[0].memory_stats() or {}
  result = dict(train_batch_size=batch_size, train_compile_s=compile_s,
                train_step_s=seconds, train_step_cpu_s=cpu_seconds,
                train_examples_per_s=batch_size / seconds,
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
  seconds = _timed(lambda: forward(variables, x), 3).wall
  return dict(extract_batch_size=batch_size, extract_mixtures_per_s=batch_size / seconds)


class _CountingRecords:
  """A Split's chunk records, counting the bytes read through them."""

  def __init__(self, records):
    self.records, self.bytes = records, 0

  def __len__(self):
    return len(self.records)

  def read(self, begin, end):
    out = self.records.read(begin, end)
    self.bytes += sum(len(r) for r in out)
    return out


def pipeline_bytes(shard_dir: str, spec, mixtures: int = 500) -> dict:
  """Bytes read per mixture (and what reading each source's whole utterance, the format
  before chunks, would have read), over `mixtures` of the training stream."""
  split = shards.open_split(shard_dir, "train")
  counting = dataclasses.replace(split, source=_CountingRecords(split.source))
  maker = pipeline.MixtureMaker(counting, spec, seed=0, epoch_length=10 ** 6)
  frame_bytes = features.NUM_BINS * 2 * np.dtype(features.STORAGE_DTYPE).itemsize
  whole = 0
  for i in range(mixtures):
    example = maker(i)
    whole += int(split.frames[example["utterances"]].sum()) * frame_bytes
  return dict(pipeline_bytes_per_mixture=counting.source.bytes / mixtures,
              pipeline_whole_utterance_bytes_per_mixture=whole / mixtures,
              pipeline_crop_bytes_per_mixture=spec.num_speakers * spec.crop_frames
              * frame_bytes)


def _pipeline_rate(shard_dir, spec, seconds, workers, threads, batch=32) -> float:
  ds = pipeline.make_dataset(shard_dir, "train", spec, seed=0, epoch_length=10 ** 6,
                             local_batch=batch, workers=workers, read_threads=threads)
  it = iter(ds)
  next(it)  # started (worker processes spawned) before the clock starts
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    count += len(next(it)["labels"])
  rate = count / (time.perf_counter() - start)
  if hasattr(it, "close"):
    it.close()
  return rate


def bench_pipeline(shard_dir: str, crop_frames: int, seconds: float) -> dict:
  """Mixtures/s of the real grain pipeline: in-process reading threads (one per core),
  then grain worker processes 1, 2, ... up to the cores (one reading thread each)."""
  cores = os.cpu_count() or 1
  spec = pipeline.MixtureSpec(crop_frames=crop_frames)
  result = pipeline_bytes(shard_dir, spec)
  rate = _pipeline_rate(shard_dir, spec, seconds, workers=0, threads=cores)
  result.update(pipeline_threads=cores, pipeline_mixtures_per_s=rate,
                pipeline_mixtures_per_s_per_core=rate / cores)
  # Each worker count timed twice, in turns, and its better run kept: on a shared
  # machine the speed drifts between runs, and the ratios are what the figures are for.
  counts = sorted({*range(1, min(cores, 4) + 1), cores})
  by_workers = {workers: 0.0 for workers in counts}
  for _ in range(2):
    for workers in counts:
      by_workers[workers] = max(by_workers[workers], _pipeline_rate(
          shard_dir, spec, seconds, workers, threads=1))
  result["pipeline_mixtures_per_s_by_workers"] = by_workers
  result["pipeline_mixtures_per_s_per_core_workers"] = by_workers[cores] / cores
  if 1 in by_workers and 2 in by_workers:
    result["pipeline_two_workers_over_one"] = by_workers[2] / by_workers[1]
  return result


def bench_end_to_end(config, shard_dir: str, batch_size: int, steps: int,
                     workers: int) -> dict:
  """The real pipeline feeding the real jitted train step, as a fraction of the same
  compiled step on one batch held in memory (timed alternately in one process). On a
  CPU backend the pipeline and the step share the cores: the fraction is what this
  machine would train at, not what the pipeline alone gives."""
  manifest = shards.load_manifest(shard_dir)
  task = tasks.create(config, manifest["num_classes"])
  step, state, sharding, _, _ = _train_step(config, task)
  ds = pipeline.make_dataset(shard_dir, "train", task.train_spec, seed=0,
                             epoch_length=10 ** 6, local_batch=batch_size, workers=workers,
                             read_threads=int(config.data.read_threads))
  it = iter(ds)
  keys = task.train_input_keys
  fixed = train.to_global(next(it), sharding, keys)
  holder = [state]

  def run_steps(next_batch) -> float:
    start = time.perf_counter()
    for _ in range(steps):
      holder[0], metrics = step(holder[0], next_batch())
    jax.block_until_ready(metrics)
    return time.perf_counter() - start

  run_steps(lambda: fixed)  # compiles
  synthetic, fed = float("inf"), float("inf")
  for _ in range(2):
    synthetic = min(synthetic, run_steps(lambda: fixed))
    fed = min(fed, run_steps(lambda: train.to_global(next(it), sharding, keys)))
  if hasattr(it, "close"):
    it.close()
  return dict(end_to_end_workers=workers, end_to_end_batch_size=batch_size,
              end_to_end_examples_per_s=steps * batch_size / fed,
              end_to_end_step_examples_per_s=steps * batch_size / synthetic,
              end_to_end_fraction_of_step=synthetic / fed)


def run(config, batch_size: int, dtype: str, shard_dir: str | None, steps: int,
        num_classes: int, pipeline_seconds: float, profile_dir: str | None = None,
        pipeline_speakers: int = 2000, end_to_end_steps: int = 5,
        train_only: bool = False) -> dict:
  config = config.copy_and_resolve_references()
  config.model.dtype = dtype
  device = jax.devices()[0]
  result = dict(device=f"{device.platform}:{device.device_kind}",
                device_count=jax.device_count(), cpu_cores=os.cpu_count(),
                cpu=cpu_description(), jax_version=jax.__version__,
                xla_flags=os.environ.get("XLA_FLAGS", ""), dtype=dtype,
                crop_frames=int(config.data.crop_frames))
  task = tasks.create(config, num_classes)
  result.update(bench_train(config, task, batch_size, num_classes, steps, profile_dir))
  result["matmul_peak_flops_per_s"] = matmul_peak(jnp.dtype(dtype))
  result["train_flops_fraction_of_matmul_peak"] = (
      result["train_flops_per_s"] / result["matmul_peak_flops_per_s"])
  if train_only:
    return result
  result.update(bench_extract(task))
  with tempfile.TemporaryDirectory() as tmp:
    if shard_dir is None:
      shard_dir = os.path.join(tmp, "shards")
      synthetic.write(shard_dir, speakers=pipeline_speakers)
      result["pipeline_corpus"] = (f"synthetic, LibriSpeech-shaped: {pipeline_speakers} "
                                   f"speakers, {synthetic.MEAN_SECONDS} s mean")
    else:
      result["pipeline_corpus"] = shard_dir
    result.update(bench_pipeline(shard_dir, int(config.data.crop_frames), pipeline_seconds))
    if end_to_end_steps:
      workers = min(int(config.data.workers), os.cpu_count() or 1)
      result.update(bench_end_to_end(config, shard_dir, batch_size, end_to_end_steps,
                                     workers))
  result["pipeline_keeps_up"] = (result["pipeline_mixtures_per_s"]
                                 >= result["train_examples_per_s"])
  return result


def compare_cpu_conv_paths(args: list[str], rounds: int) -> dict:
  """The train step timed under each of xla_cpu.PATHS: this command with `args` and
  --train_only, one process per path (XLA reads its flags once per process), the paths
  run in turns `rounds` times so that a machine's drift reaches each alike; each path's
  fastest round is kept, and its FLOP/s is set against its best matmul peak."""
  if xla_cpu.FUSION_FLAG in xla_cpu.users_xla_flags:
    raise errors.UsageError(f"XLA_FLAGS set {xla_cpu.FUSION_FLAG}, which would override "
                            "every path compared")
  runs, peaks = {}, collections.defaultdict(float)
  for _ in range(rounds):
    for path in xla_cpu.PATHS:
      proc = subprocess.run(
          [sys.executable, "-m", "mirnet_jax.benchmark", "--train_only", *args],
          env=dict(os.environ, XLA_FLAGS=xla_cpu.users_xla_flags, **{xla_cpu.ENV_VAR: path}),
          capture_output=True, text=True)
      if proc.returncode:
        raise RuntimeError(f"the {path} run failed:\n{proc.stderr[-3000:]}")
      report = json.loads(proc.stdout.strip().splitlines()[-1])
      # The peak too is the best of the rounds: one busy moment lowers it, not the chip.
      peaks[path] = max(peaks[path], report["matmul_peak_flops_per_s"])
      if path not in runs or report["train_step_s"] < runs[path]["train_step_s"]:
        runs[path] = report
  for path, report in runs.items():
    report["train_flops_fraction_of_matmul_peak"] = (report["train_flops_per_s"]
                                                     / peaks[path])
  first = next(iter(runs.values()))
  result = {k: first[k] for k in ("device", "cpu_cores", "cpu", "jax_version", "dtype",
                                  "train_batch_size", "train_flops_per_example")}
  result.update(rounds=rounds, cpu_conv_path_default=xla_cpu.DEFAULT_PATH, cpu_conv_paths={
      path: {k: r[k] for k in ("xla_flags", "train_examples_per_s", "train_step_s",
                               "train_step_cpu_s", "train_flops_fraction_of_matmul_peak")}
      for path, r in runs.items()})
  result["cpu_conv_path_fastest"] = max(
      runs, key=lambda path: runs[path]["train_examples_per_s"])
  return result


def conv_paths_table(result: dict) -> str:
  rows = [f"{result['device']}, {result['cpu']}, jax {result['jax_version']}: train step, "
          f"batch {result['train_batch_size']}, {result['dtype']}, best of "
          f"{result['rounds']} rounds"]
  for path, r in result["cpu_conv_paths"].items():
    rows.append(f"  {path:8s} {r['train_examples_per_s']:6.2f} examples/s, "
                f"{r['train_step_cpu_s']:6.2f} CPU-s/step, "
                f"{100 * r['train_flops_fraction_of_matmul_peak']:3.0f}% of the matmul peak"
                f"  (XLA_FLAGS={r['xla_flags']!r})")
  rows.append(f"fastest: {result['cpu_conv_path_fastest']}; default: "
              f"{result['cpu_conv_path_default']}")
  return "\n".join(rows)


def cpu_description() -> str:
  """The CPU model and its widest vector extensions (from /proc/cpuinfo, Linux only)."""
  try:
    with open("/proc/cpuinfo") as f:
      info = f.read()
  except OSError:
    return platform.processor() or platform.machine()
  model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                if line.startswith("model name")), platform.machine())
  flags_line = next((line for line in info.splitlines() if line.startswith("flags")), "")
  present = set(flags_line.split())
  vector = [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if x in present]
  return f"{model} ({', '.join(vector) or 'no AVX2'})"


def table(result: dict) -> str:
  read = result["pipeline_bytes_per_mixture"]
  rows = [("device", result["device"]),
          ("cpu", f"{result['cpu']}, jax {result['jax_version']}"),
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
                       f"(keeps up: {result['pipeline_keeps_up']}); "
                       f"{result['pipeline_corpus']}"),
          ("workers", ", ".join(f"{w}: {r:.0f}/s" for w, r in
                                result["pipeline_mixtures_per_s_by_workers"].items())
           + f" = {result['pipeline_mixtures_per_s_per_core_workers']:.0f}/core at "
             f"{max(result['pipeline_mixtures_per_s_by_workers'])} workers"),
          ("bytes read", f"{read / 1e6:.3f} MB/mixture = "
                         f"{read / result['pipeline_crop_bytes_per_mixture']:.2f}x its crops "
                         "(whole utterances: "
                         f"{result['pipeline_whole_utterance_bytes_per_mixture'] / 1e6:.3f} MB)"),
          ("extraction", f"{result['extract_mixtures_per_s']:.1f} mixtures/s")]
  if "end_to_end_fraction_of_step" in result:
    rows.append(("end to end", f"{result['end_to_end_examples_per_s']:.2f} examples/s fed "
                 f"by the pipeline ({result['end_to_end_workers']} workers) = "
                 f"{100 * result['end_to_end_fraction_of_step']:.0f}% of the same step on "
                 f"an in-memory batch ({result['end_to_end_step_examples_per_s']:.2f}/s)"))
  if result.get("profile_dir"):
    rows.append(("profile", f"trace in {result['profile_dir']}; costliest ops per step:"))
    rows += [("", f"{op['ms_per_step']:8.1f} ms {100 * op['share']:5.1f}%  {op['op']}")
             for op in result["profile_top_ops"]]
  return "\n".join(f"{k:12s} {v}" for k, v in rows)


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.compare_cpu_conv_paths:
    own = ("--compare_cpu_conv_paths", "--nocompare_cpu_conv_paths", "--rounds")
    args = [a for a in sys.argv[1:] if a.split("=", 1)[0] not in own]
    result = compare_cpu_conv_paths(args, FLAGS.rounds)
    print(conv_paths_table(result))
    print(json.dumps(result))
    return
  result = run(FLAGS.config, FLAGS.batch_size, FLAGS.dtype, FLAGS.shards, FLAGS.steps,
               FLAGS.num_classes, FLAGS.pipeline_seconds, FLAGS.profile_dir,
               FLAGS.pipeline_speakers, FLAGS.end_to_end_steps, FLAGS.train_only)
  print(table(result) if not FLAGS.train_only else
        f"train step: {result['train_examples_per_s']:.2f} examples/s")
  print(json.dumps(result))


if __name__ == "__main__":
  cli.run(main, define_flags)
