r"""Trains a model: python -m mirnet_jax.main --config=configs/demo.py --workdir=DIR.

Config fields can be overridden as `--config.optim.learning_rate=3e-4`; an unknown key or
a value of the wrong type is an error before anything runs. `configs/NAME.py` names a
packaged config (mirnet_jax/configs/) unless a file of that path exists.
"""

from absl import flags
from absl import logging

from mirnet_jax import cli
from mirnet_jax import errors


def define_flags():
  cli.define_config_flag()
  flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
  flags.mark_flags_as_required(["config", "workdir"])
  # Multi-host (see mirnet_jax/distributed.py): a single-host run needs none of these.
  flags.DEFINE_enum(
      "distributed", "auto", ["auto", "on", "off"],
      "jax.distributed.initialize(): auto = when the flags below are given or JAX's "
      "cluster detection finds a cluster (Cloud TPU VM, Slurm, Open MPI, Kubernetes); "
      "on = always; off = never.")
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 (multi-host without a cluster environment; "
                      "with --num_processes and --process_id).")
  flags.DEFINE_integer("num_processes", None, "Processes in the run.", 1)
  flags.DEFINE_integer("process_id", None, "This process, 0 .. num_processes-1.", 0)
  flags.DEFINE_integer("distributed_timeout", 300, "Seconds to wait for the coordinator "
                       "and the other processes before failing.", 1)


def main(argv):
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  import jax  # after flag parsing, so that --help stays fast
  from mirnet_jax import distributed
  # Before anything starts a JAX backend.
  distributed.initialize(f.distributed, f.coordinator_address, f.num_processes,
                         f.process_id, f.distributed_timeout)
  from mirnet_jax import train
  from mirnet_jax import workdir_lock
  logging.info("process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].platform)
  # One run per workdir, else two write the same metrics and delete each other's
  # checkpoints. Process 0 holds the lock for all the processes of a multi-host run, where
  # JAX's preemption service owns SIGTERM (see train.py).
  with workdir_lock.hold(f.workdir, "training", enabled=jax.process_index() == 0,
                         exit_on_sigterm=jax.process_count() == 1):
    train.train_and_evaluate(f.config, f.workdir)


if __name__ == "__main__":
  cli.run(main, define_flags)
