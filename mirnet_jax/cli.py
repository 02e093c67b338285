"""How every command runs: flags defined only when it runs, one way of reporting errors.

Each `python -m mirnet_jax.<command>` module ends with

  if __name__ == "__main__":
    cli.run(main, define_flags)

and defines its flags in `define_flags()`, never at import time, so that every module of
the package imports into one process (a notebook, a test, another program) without
absl's DuplicateFlagError. `run` parses the command line, keeps library INFO logs quiet,
chooses XLA:CPU's convolution path (xla_cpu.py), and turns an errors.UserError (or a bad
flag) into one line `error: ...` on stderr: exit status 2 for a command line that cannot
run (errors.UsageError, absl flag errors), 1 for everything else.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
from ml_collections.config_flags import config_flags as config_flags_impl
from ml_collections.config_flags import config_path

from mirnet_jax import configs
from mirnet_jax import errors
from mirnet_jax import storage
from mirnet_jax import xla_cpu


def _ours_or_warning(record) -> bool:
  return record.levelno >= logging.converter.ABSL_TO_STANDARD[logging.WARNING] or \
      f"{os.sep}mirnet_jax{os.sep}" in record.pathname


def quiet_libraries():
  """Keeps this project's INFO lines and every library's warnings: orbax alone logs ~30
  INFO lines per checkpoint it reads or writes."""
  logging.get_absl_handler().addFilter(_ours_or_warning)


def _check_remote_flags():
  """A gs:// flag value without the [gcs] packages is one line here (storage.is_remote),
  not a traceback from the first epath call that reaches it."""
  for name in flags.FLAGS:
    value = flags.FLAGS[name].value
    for item in value if isinstance(value, (list, tuple)) else [value]:
      if isinstance(item, str):
        storage.is_remote(item)


def _fail(message: str, status: int):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def run(main, define_flags=None):
  """Runs a command: `define_flags()`, then `main(argv)` on the parsed command line."""
  if define_flags is not None:
    define_flags()

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:  # e.g. --trials=abc, a missing required flag
      _fail(str(e).splitlines()[0], 2)

  def guarded(argv):
    quiet_libraries()
    try:
      xla_cpu.configure()  # before main starts a JAX backend
      _check_remote_flags()
      if "config" in flags.FLAGS:
        _check_config_overrides(flags.FLAGS["config"])
      main(argv)
    except errors.UsageError as e:
      _fail(str(e), 2)
    except errors.UserError as e:
      _fail(str(e), 1)

  app.run(guarded, flags_parser=parse)


# ---------------------------------------------------------------------------- configs

class _PackagedConfigParser(config_flags_impl.ConfigFileFlagParser):
  """ml_collections' config file parser, reading `configs/NAME.py` from the package when
  no such file exists (mirnet_jax/configs/__init__.py)."""

  def parse(self, path):
    file, colon, arg = path.partition(":")
    return super().parse(configs.resolve(file) + colon + arg)


def define_config_flag(default: str | None = None, help_string: str = "Config file "
                       "(configs/NAME.py[:ARG] names a packaged one)."):
  """`--config`, overridable as `--config.optim.learning_rate=3e-4`, locked: an unknown key
  or a value of the wrong type is an error before anything runs."""
  holder = config_flags.DEFINE_config_file("config", None, help_string, lock_config=True)
  flags.FLAGS["config"].parser = _PackagedConfigParser("config", lock_config=True)
  if default is not None:
    flags.FLAGS.set_default("config", default)
  return holder


def config_filename(config_flag) -> str:
  file, colon, arg = config_flag.config_filename.partition(":")
  return configs.resolve(file) + colon + arg


def _check_config_overrides(config_flag):
  """ml_collections checks the type of an overridden scalar but not the elements of a
  tuple (`--config.model.resnet.widths=abc` gives `('abc',)`, which would fail deep in
  the model): an overridden tuple must hold the element types of the config file's own
  tuple (ints if that one is empty, as every tuple in configs/ holds ints; an int may be
  a float)."""
  if config_flag.value is None:
    raise errors.UsageError("--config is required")
  defaults = config_flag.parser.parse(config_filename(config_flag))
  problems = []
  for key, value in config_flags.get_override_values(config_flag).items():
    if not isinstance(value, tuple):
      continue
    types = {type(x) for x in config_path.get_value(key, defaults)} or {int}
    types |= {int} if float in types else set()
    if not all(type(x) in types for x in value):
      problems.append(f"--config.{key}={value!r}: expected a tuple of "
                      f"{' or '.join(sorted(t.__name__ for t in types))}")
  if problems:
    raise errors.UsageError("; ".join(problems))
