"""The packaged configs: `--config=configs/NAME.py[:ARG]` names one.

A `--config` path that exists is read as given (a config of your own); otherwise a path
ending in `configs/NAME.py` (or just `NAME.py`) names `mirnet_jax/configs/NAME.py`, so the
same command works from a clone, from any directory and from a non-editable install.
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def resolve(path: str) -> str:
  """The file a `--config` path (without its `:ARG`) names (see the module docstring)."""
  if os.path.exists(path):
    return path
  packaged = os.path.join(DIRECTORY, os.path.basename(path))
  return packaged if os.path.exists(packaged) else path
