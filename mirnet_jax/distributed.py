"""Multi-host start-up: `jax.distributed.initialize()` when this run is one of several
processes (a TPU slice, several GPU nodes), and a one-line error when that fails.

What `initialize(mode="auto")` does (the default of `python -m mirnet_jax.main`):

  - `coordinator_address`, `num_processes`, `process_id` given (all three): initialize
    with them. A process other than 0 first waits (up to `timeout_s`) until the
    coordinator's port accepts connections, so that a wrong address or a coordinator that
    never starts is an error naming the address, not an abort inside JAX.
  - none given, and the environment launched this process as one of several: initialize
    with no arguments and let JAX read the cluster (Cloud TPU VM metadata or GKE TPU
    variables; Slurm's `SLURM_*`; Open MPI's `OMPI_*`). On a Cloud TPU VM this happens even
    for a single-host VM (JAX then makes a one-process system, which costs nothing).
  - otherwise: a single process; nothing is initialized and nothing is waited for.

`mode="on"` always initializes (the flags if given, else JAX's own cluster detection);
`mode="off"` never does (e.g. a TPU VM whose metadata JAX cannot read).
"""

import os
import socket
import time

import jax

from mirnet_jax import errors

MODES = ("auto", "on", "off")


class DistributedError(errors.UserError):
  """The multi-host flags are inconsistent, or initialization failed (an address, a peer
  or a cluster environment for the user to fix): printed as one line by cli.run."""


def _launched_by() -> str | None:
  """The cluster environment that started several processes like this one, or None."""
  env = os.environ
  # Set by `import jax` when it finds TPU chips and libtpu (jax/_src/cloud_tpu_init.py);
  # JAX's own TPU cluster detection is keyed on the same flag.
  from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
  if cloud_tpu_init.running_in_cloud_tpu_vm:
    return "Cloud TPU VM"
  if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_NODELIST" in env:
    return "Slurm"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return "Open MPI"
  return None


def _wait_for_port(address: str, timeout_s: float):
  """Returns once `host:port` accepts a TCP connection; DistributedError after timeout_s."""
  host, port = address.rsplit(":", 1)
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise DistributedError(f"cannot reach the coordinator at {address} within "
                               f"{timeout_s:g} s ({e}); is process 0 running there?") from e
      time.sleep(0.5)


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               timeout_s: int = 300) -> str | None:
  """Initializes JAX's distributed system if this run is one of several processes.

  Must run before anything touches a JAX backend (`jax.devices()`, any computation).

  Args:
    mode: "auto", "on" or "off" (see the module docstring).
    coordinator_address: `host:port` of process 0, where it starts the coordinator.
    num_processes: number of processes in the run.
    process_id: this process, in [0, num_processes).
    timeout_s: how long to wait for the coordinator and the other processes.

  Returns:
    What launched the processes ("flags", "Cloud TPU VM", ...), or None if single-process.

  Raises:
    DistributedError: inconsistent flags, or initialization failed. (A process 0 whose
      peers never connect is aborted by JAX itself after `timeout_s`, with a fatal log
      line naming DEADLINE_EXCEEDED: that failure cannot be caught from Python.)
  """
  if mode not in MODES:
    raise DistributedError(f"--distributed={mode}: expected one of {', '.join(MODES)}")
  flags = dict(coordinator_address=coordinator_address, num_processes=num_processes,
               process_id=process_id)
  given = {k: v for k, v in flags.items() if v is not None}
  if given and len(given) < len(flags):
    missing = ", ".join(f"--{k}" for k in flags if k not in given)
    raise DistributedError(f"{', '.join(f'--{k}' for k in given)} also needs {missing}")
  if given and mode == "off":
    raise DistributedError("--distributed=off contradicts --coordinator_address, "
                           "--num_processes and --process_id")
  if given:
    if ":" not in coordinator_address:
      raise DistributedError(f"--coordinator_address={coordinator_address}: expected "
                             "host:port")
    if not 0 <= process_id < num_processes:
      raise DistributedError(f"--process_id={process_id} is not in [0, --num_processes="
                             f"{num_processes})")
  launched_by = "flags" if given else (None if mode == "off" else _launched_by())
  if launched_by is None and mode != "on":
    return None
  if jax.config.jax_cpu_collectives_implementation is None:
    # Without an implementation, CPU computations cannot span processes.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if given and process_id != 0:
    _wait_for_port(coordinator_address, timeout_s)
  launched_by = launched_by or "JAX cluster detection"
  try:
    jax.distributed.initialize(**given, initialization_timeout=timeout_s)
  except Exception as e:  # ValueError, RuntimeError, the metadata server's HTTP errors...
    detail = " ".join(str(e).split()) or type(e).__name__
    hint = "" if given else "; a single-host run can skip it with --distributed=off"
    raise DistributedError(f"jax.distributed.initialize() failed (multi-process run "
                           f"from {launched_by}): {detail}{hint}") from e
  return launched_by
