"""MIRNet (Han, Chung, Kang, Interspeech 2020) in JAX/Flax.

`mirnet_jax.load(path)` and `mirnet_jax.export(workdir, out)`: see api.py. They import
JAX when called, so that `import mirnet_jax` (and every command's --help) stays fast.
"""


def load(path: str, step: int | None = None):
  """The trained model in `path` (a workdir or an export): see mirnet_jax.api.load."""
  from mirnet_jax import api  # pylint: disable=g-import-not-at-top
  return api.load(path, step)


def export(workdir: str, out: str, step: int | None = None) -> str:
  """An inference-only copy of `workdir`'s model in `out`: see mirnet_jax.api.export."""
  from mirnet_jax import api  # pylint: disable=g-import-not-at-top
  return api.export(workdir, out, step)
