"""Which library runs the model's convolutions on XLA:CPU, chosen before JAX starts.

XLA:CPU (jaxlib 0.10) hands matmuls, convolutions and the element-wise and reduction ops
around them to YNNPACK by default. For this model's convolutions (few channels, long
spectrograms) YNNPACK's kernels are the slow part of the CPU step: a profile on an
AVX2-only EPYC found them taking nearly all of it, and on AVX-512 the paper-size step is
faster with XLA's own convolutions too (`python -m mirnet_jax.benchmark
--compare_cpu_conv_paths`; figures in docs/results.md). So every command (cli.run) keeps
YNNPACK for the matmuls only.

`MIRNET_CPU_CONV_PATH=ynnpack` restores XLA's default. XLA_FLAGS that set the fusion flag
themselves are left as they are, and so is a jaxlib outside the 0.10 series this was
measured on: the flag is experimental, and an XLA that does not know it stops every
command ("Unknown flag in XLA_FLAGS"). XLA reads XLA_FLAGS when its first backend starts,
so `configure` must run before any JAX computation (importing jax is fine). GPUs and
TPUs are unaffected: the flag is XLA:CPU's.
"""

import importlib.metadata
import os

from mirnet_jax import errors

ENV_VAR = "MIRNET_CPU_CONV_PATH"
FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# Path name -> the flag's value: None leaves XLA's default (YNNPACK convolutions); "dot"
# gives YNNPACK the matmuls only.
PATHS = {"ynnpack": None, "xla": "dot"}
DEFAULT_PATH = "xla"
JAXLIB_SERIES = ("0.10.",)  # jaxlib versions known to have FUSION_FLAG
# XLA_FLAGS as this process found them, before `configure`: what a child process that
# chooses its own path must start from.
users_xla_flags = os.environ.get("XLA_FLAGS", "")


def configure(environ=os.environ) -> str:
  """Sets XLA_FLAGS for the path named by $MIRNET_CPU_CONV_PATH (default: "xla"), unless
  XLA_FLAGS already hold the fusion flag; returns the path in effect ("XLA_FLAGS" when
  they chose)."""
  path = environ.get(ENV_VAR) or DEFAULT_PATH
  if path not in PATHS:
    raise errors.UsageError(f"{ENV_VAR}={path}: expected one of {', '.join(PATHS)}")
  flags = environ.get("XLA_FLAGS", "")
  if FUSION_FLAG in flags:
    return "XLA_FLAGS"
  if not jaxlib_has_the_flag():
    return "ynnpack"
  if PATHS[path] is not None:
    environ["XLA_FLAGS"] = f"{flags} {FUSION_FLAG}={PATHS[path]}".strip()
  return path


def jaxlib_has_the_flag() -> bool:
  return importlib.metadata.version("jaxlib").startswith(JAXLIB_SERIES)
