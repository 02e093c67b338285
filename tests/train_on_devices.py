"""Trains the tiny config on N simulated CPU devices (a subprocess: XLA_FLAGS must be set
before JAX starts). Usage: python -m tests.train_on_devices N SHARDS WORKDIR STEPS"""

import os
import sys

if __name__ == "__main__":
  devices, shard_dir, workdir, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  from mirnet_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.configure()  # as every command does (cli.run)
  import jax  # pylint: disable=g-import-not-at-top
  from mirnet_jax.configs import tiny
  from mirnet_jax import train
  assert jax.device_count() == int(devices), jax.devices()
  config = tiny.get_config()
  config.data.shards = shard_dir
  config.num_train_steps = steps
  config.log_every = 1
  config.eval_every = steps
  train.train_and_evaluate(config, workdir)
