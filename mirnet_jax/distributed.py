"""Multi-host start-up: `jax.distributed.initialize()` when this run is one of several
processes (a TPU slice, several GPU nodes), and a one-line error when that fails.

What `initialize(mode="auto")` does (the default of `python -m mirnet_jax.main`):

  - `coordinator_address`, `num_processes`, `process_id` given (all three): initialize
    with them. A process other than 0 first waits (up to `timeout_s`) until the
    coordinator's port accepts connections, so that a wrong address or a coordinator that
    never starts is an error naming the address, not an abort inside JAX.
  - none given: `jax.distributed.initialize()` without arguments, so that JAX's own
    cluster detection reads the environment (jax 0.10: Open MPI's
    `OMPI_MCA_orte_hnp_uri`; an `srun` step's `SLURM_*`; on a Cloud TPU VM, its worker
    list from the metadata server or GKE's `TPU_WORKER_HOSTNAMES`; Kubernetes, with the
    `kubernetes` package). Finding none, JAX raises ValueError before it starts
    anything: this run is then a single process (logged at INFO). On a machine without
    TPU chips that detection only reads environment variables (the metadata server is
    asked where `import jax` found TPU chips), so a plain run starts without delay. On a
    Cloud TPU VM JAX makes a one-process system even for a single host (it costs
    nothing). A Kubernetes pod without the `kubernetes` package gets JAX's warning that
    it cannot bootstrap there.
    Not handed to JAX: a Slurm or Open MPI launch of one process (`SLURM_NTASKS` or
    `OMPI_COMM_WORLD_SIZE` = 1), which JAX would pin to one GPU, its local rank's.

`mode="on"` always initializes (the flags if given, else JAX's detection, where finding
no cluster is an error); `mode="off"` never does (e.g. a TPU VM whose metadata JAX
cannot read, or a Kubernetes pod that is not a multi-process job).
"""

import os
import socket
import time

from absl import logging
import jax

from mirnet_jax import errors

MODES = ("auto", "on", "off")
DETECTED = "JAX cluster detection"
# Launchers that say how many processes they started: JAX would pin a single one to the
# GPU of its local rank (its Slurm and Open MPI detection sets local_device_ids).
_PROCESS_COUNT_VARIABLES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
_NO_CLUSTER = "coordinator_address should be defined"  # jax/_src/distributed.py's words


class DistributedError(errors.UserError):
  """The multi-host flags are inconsistent, or initialization failed (an address, a peer
  or a cluster environment for the user to fix): printed as one line by cli.run."""


def _one_process_launch() -> bool:
  """True when Slurm or Open MPI says it started this process alone."""
  return any(os.environ.get(name, "").strip() == "1"
             for name in _PROCESS_COUNT_VARIABLES)


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


def _check_flags(mode: str, flags: dict) -> dict:
  """The flags given, checked for consistency; DistributedError if they are not."""
  if mode not in MODES:
    raise DistributedError(f"--distributed={mode}: expected one of {', '.join(MODES)}")
  given = {k: v for k, v in flags.items() if v is not None}
  if given and len(given) < len(flags):
    missing = ", ".join(f"--{k}" for k in flags if k not in given)
    raise DistributedError(f"{', '.join(f'--{k}' for k in given)} also needs {missing}")
  if given and mode == "off":
    raise DistributedError("--distributed=off contradicts --coordinator_address, "
                           "--num_processes and --process_id")
  if given:
    if ":" not in given["coordinator_address"]:
      raise DistributedError(f"--coordinator_address={given['coordinator_address']}: "
                             "expected host:port")
    if not 0 <= given["process_id"] < given["num_processes"]:
      raise DistributedError(f"--process_id={given['process_id']} is not in [0, "
                             f"--num_processes={given['num_processes']})")
  return given


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
    How the processes were found: "flags" or DETECTED (JAX's cluster detection); None
    if this run is a single process (nothing initialized).

  Raises:
    DistributedError: inconsistent flags, or initialization failed. (A process 0 whose
      peers never connect is aborted by JAX itself after `timeout_s`, with a fatal log
      line naming DEADLINE_EXCEEDED: that failure cannot be caught from Python.)
  """
  given = _check_flags(mode, dict(coordinator_address=coordinator_address,
                                  num_processes=num_processes, process_id=process_id))
  if mode == "off" or (mode == "auto" and not given and _one_process_launch()):
    return None
  if given and process_id != 0:
    _wait_for_port(coordinator_address, timeout_s)
  found_by = "flags" if given else DETECTED
  try:
    jax.distributed.initialize(**given, initialization_timeout=timeout_s)
  except Exception as e:  # ValueError, RuntimeError, the metadata server's HTTP errors...
    detail = " ".join(str(e).split()) or type(e).__name__
    # JAX raises this ValueError, having started nothing, when it finds no cluster; any
    # other failure of a cluster it found stays an error.
    if (mode == "auto" and not given and isinstance(e, ValueError)
        and _NO_CLUSTER in str(e) and not jax.distributed.is_initialized()):
      logging.info("a single process: jax.distributed.initialize() found no cluster "
                   "(%s)", detail)
      return None
    hint = "" if given else "; a single-host run can skip it with --distributed=off"
    raise DistributedError(f"jax.distributed.initialize() failed (multi-process run "
                           f"from {found_by}): {detail}{hint}") from e
  if jax.config.jax_cpu_collectives_implementation is None:
    # Without an implementation, CPU computations cannot span processes (read when the
    # CPU backend starts, after this).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  return found_by
