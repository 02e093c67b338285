"""What every command-line entry point shares."""

import os

from absl import logging


def _ours_or_warning(record) -> bool:
  return record.levelno >= logging.converter.ABSL_TO_STANDARD[logging.WARNING] or \
      f"{os.sep}mirnet_jax{os.sep}" in record.pathname


def quiet_libraries():
  """Keeps this project's INFO lines and every library's warnings: orbax alone logs ~30
  INFO lines per checkpoint it reads or writes."""
  logging.get_absl_handler().addFilter(_ours_or_warning)
