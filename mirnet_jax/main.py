r"""Entry point: python -m mirnet_jax.main --config=configs/demo.py --workdir=DIR.

Config fields can be overridden as `--config.optim.learning_rate=3e-4`; an unknown key or
a value of the wrong type is an error before anything runs.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
from ml_collections.config_flags import config_path

from mirnet_jax import cli

# Config files import their siblings (`from configs import default`): make the directory
# that holds `configs/` importable wherever the command is run from.
for _arg in sys.argv:
  if _arg.startswith("--config="):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(_arg[9:]))))

_CONFIG = config_flags.DEFINE_config_file("config", None, "Configuration file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])
# Multi-host (see mirnet_jax/distributed.py): a single-host run needs none of these.
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "jax.distributed.initialize(): auto = when the flags below are given or a cluster "
    "(Cloud TPU VM, Slurm, Open MPI) launched several processes; on = always; off = never.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-host without a cluster "
                                   "environment; with --num_processes and --process_id).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.", 1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process, 0 .. num_processes-1.",
                                   0)
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "Seconds to wait for the coordinator and the other "
    "processes before failing.", 1)


def _tuple_override_errors(config_flag) -> list[str]:
  """ml_collections checks the type of an overridden scalar but not the elements of a
  tuple (`--config.model.resnet_widths=abc` gives `('abc',)`, which would fail deep in the
  model): an overridden tuple must hold the element types of the config file's own tuple
  (ints if that one is empty, as every tuple in configs/ holds ints; an int may be a
  float)."""
  defaults = config_flag.parser.parse(config_flag.config_filename)
  errors = []
  for key, value in config_flags.get_override_values(config_flag).items():
    if not isinstance(value, tuple):
      continue
    types = {type(x) for x in config_path.get_value(key, defaults)} or {int}
    types |= {int} if float in types else set()
    if not all(type(x) in types for x in value):
      errors.append(f"--config.{key}={value!r}: expected a tuple of "
                    f"{' or '.join(sorted(t.__name__ for t in types))}")
  return errors


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if errors := _tuple_override_errors(flags.FLAGS["config"]):
    sys.exit("error: " + "; ".join(errors))
  cli.quiet_libraries()
  import jax  # after flag parsing, so that --help stays fast
  from mirnet_jax import distributed
  try:  # before anything starts a JAX backend
    distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value, _DISTRIBUTED_TIMEOUT.value)
  except distributed.DistributedError as e:
    sys.exit(f"error: {e}")
  from mirnet_jax import checkpointing
  from mirnet_jax import train
  from mirnet_jax.data import shards

  logging.info("process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].platform)
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (shards.ShardError, checkpointing.CheckpointError, train.ConfigError,
          train.NonFiniteError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
