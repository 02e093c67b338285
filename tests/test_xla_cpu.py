"""XLA:CPU's convolution path: the flag every command sets, and what XLA compiles under it."""

import os
import subprocess
import sys

import pytest

from mirnet_jax import errors
from mirnet_jax import xla_cpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_default_path_adds_the_flag_and_keeps_the_users_flags():
  env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
  assert xla_cpu.configure(env) == "xla"
  assert env["XLA_FLAGS"] == ("--xla_cpu_enable_fast_math=false "
                              "--xla_cpu_experimental_ynn_fusion_type=dot")
  assert xla_cpu.configure(env) == "XLA_FLAGS"  # a second call adds nothing
  assert env["XLA_FLAGS"].count(xla_cpu.FUSION_FLAG) == 1


@pytest.mark.parametrize("env", [
    {xla_cpu.ENV_VAR: "ynnpack"},
    {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"},
])
def test_the_user_can_keep_xlas_default_or_choose_the_flag(env):
  before = dict(env)
  assert xla_cpu.configure(env) in ("ynnpack", "XLA_FLAGS")
  assert env == before


def test_a_jaxlib_that_may_not_know_the_flag_is_left_alone(monkeypatch):
  monkeypatch.setattr(xla_cpu.importlib.metadata, "version", lambda _: "0.11.0")
  env = {}
  assert xla_cpu.configure(env) == "ynnpack" and env == {}


def test_an_unknown_path_is_a_usage_error():
  with pytest.raises(errors.UsageError, match="MIRNET_CPU_CONV_PATH=fast: expected one of"):
    xla_cpu.configure({xla_cpu.ENV_VAR: "fast"})


_COMPILE_A_CONVOLUTION = """
from mirnet_jax import xla_cpu
xla_cpu.configure()
import jax, jax.numpy as jnp
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
hlo = conv.lower(jnp.ones((4, 64, 100, 16)), jnp.ones((3, 3, 16, 32))).compile().as_text()
fused = [line for line in hlo.splitlines() if "__ynn_fusion" in line]
print("YNNPACK" if any("conv_general_dilated" in line for line in fused) else "XLA")
"""


@pytest.mark.parametrize("path, runs_on", [("xla", "XLA"), ("ynnpack", "YNNPACK")])
def test_the_path_decides_who_runs_a_convolution(path, runs_on):
  # A process each: XLA reads its flags once, when its backend starts. A jaxlib that
  # renamed the flag fails here (XLA stops at an unknown flag), not in every command.
  env = dict(os.environ, JAX_PLATFORMS="cpu", **{xla_cpu.ENV_VAR: path})
  env.pop("XLA_FLAGS", None)
  result = subprocess.run([sys.executable, "-c", _COMPILE_A_CONVOLUTION], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == [runs_on]


def test_a_command_with_an_unknown_path_stops_with_one_line():
  env = dict(os.environ, **{xla_cpu.ENV_VAR: "fast"})
  result = subprocess.run([sys.executable, "-m", "mirnet_jax.benchmark"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: MIRNET_CPU_CONV_PATH=fast: expected one of ynnpack, xla"]
