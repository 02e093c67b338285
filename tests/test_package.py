"""The package as a library and as an install: every module imports into one process
without the optional extras, configs are packaged, no module but the task registry
compares task names; the extras hold what their routes need, python_requires and
launch/setup_env.sh's check match the pins, and a missing extra is a one-line error."""

import configparser
import importlib.metadata
import os
import pkgutil
import re
import shutil
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
import numpy as np
import pytest

import mirnet_jax
from mirnet_jax import configs
from mirnet_jax import errors
from mirnet_jax import separation_metrics
from mirnet_jax import storage
from mirnet_jax import tasks

PACKAGE = os.path.dirname(os.path.abspath(mirnet_jax.__file__))
REPO = os.path.dirname(PACKAGE)
# The packages of the optional extras (import names); the core set never needs them.
OPTIONAL = ("tensorflow", "tensorflow_datasets", "mir_eval", "pesq", "gcsfs",
            "google.cloud.storage", "libtpu", "jax_cuda12_plugin")


def _modules():
  return sorted(m.name for m in pkgutil.walk_packages([PACKAGE], "mirnet_jax."))


def test_every_module_imports_into_one_process_without_the_extras():
  # In a fresh interpreter: an entry point that defined absl flags at import time would
  # raise DuplicateFlagError here (embed and evaluate both have --workdir). The optional
  # packages are made unimportable (a None in sys.modules), as where they are not
  # installed: a module importing one at its top fails.
  names = _modules()
  assert {"mirnet_jax.main", "mirnet_jax.embed", "mirnet_jax.evaluate", "mirnet_jax.prepare",
          "mirnet_jax.separate", "mirnet_jax.benchmark", "mirnet_jax.configs.tpu",
          "mirnet_jax.separation_metrics", "mirnet_jax.evaluate_separation"} <= set(names)
  code = (f"import importlib, sys\nsys.modules.update(dict.fromkeys({OPTIONAL!r}))\n"
          "for n in sys.argv[1:]: importlib.import_module(n)\n")
  result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]


def test_no_module_outside_the_registry_compares_task_names():
  names = "|".join(re.escape(n) for n in tasks.REGISTRY)
  comparison = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
  offenders = []
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      path = os.path.join(root, name)
      if name.endswith(".py") and path != os.path.join(PACKAGE, "tasks.py"):
        for i, line in enumerate(open(path), 1):
          if comparison.search(line):
            offenders.append(f"{os.path.relpath(path, PACKAGE)}:{i}: {line.strip()}")
  assert not offenders, "\n".join(offenders)


def test_packaged_configs_are_found_from_anywhere(tmp_path):
  assert configs.resolve("configs/tpu.py") == os.path.join(configs.DIRECTORY, "tpu.py")
  assert configs.resolve("tiny.py") == os.path.join(configs.DIRECTORY, "tiny.py")
  mine = tmp_path / "configs" / "tpu.py"  # a file of that path wins
  mine.parent.mkdir()
  mine.write_text("")
  assert configs.resolve(str(mine)) == str(mine)
  assert configs.resolve("configs/nope.py") == "configs/nope.py"


def test_every_registered_task_builds_from_its_config():
  from mirnet_jax.configs import default, separation, speaker  # pylint: disable=g-import-not-at-top
  built = {}
  for config in (default.get_config(), speaker.get_config("tiny"),
                 *(separation.get_config(f"{s},tiny") for s in separation.SYSTEMS)):
    cls = tasks.get(config)
    conditioner = None
    if cls.conditioner_task:
      conditioner = built[cls.conditioner_task]
    built[cls.name] = tasks.create(config, 7, conditioner)
  assert set(built) == set(tasks.REGISTRY)


# ---------------------------------------------------------------------------- installs

def _setup_cfg():
  parser = configparser.ConfigParser()
  parser.read(os.path.join(REPO, "setup.cfg"))
  return parser


def _requirements(text: str) -> dict[str, Requirement]:
  """{normalised name: requirement} of a setup.cfg list (comments and blanks skipped)."""
  reqs = [Requirement(line.split("#")[0]) for line in text.splitlines()
          if line.split("#")[0].strip()]
  return {re.sub(r"[-_.]+", "-", r.name).lower(): r for r in reqs}


def _pins() -> dict[str, str]:
  """constraints.txt as {normalised name: version}."""
  with open(os.path.join(REPO, "constraints.txt")) as f:
    lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  return {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in (l.split("==") for l in lines)}


def test_extras_hold_their_routes_packages_and_the_core_set_does_not():
  cfg = _setup_cfg()
  core = _requirements(cfg["options"]["install_requires"])
  extras = {k: _requirements(v) for k, v in cfg["options.extras_require"].items()}
  assert extras["cuda"]["jax"].extras == {"cuda12"}
  assert extras["tpu"]["jax"].extras == {"tpu"}
  assert {"mir-eval", "pesq"} <= set(extras["separation"])
  assert not extras["separation"]["mir-eval"].specifier.contains("0.9")  # drops separation
  assert {"tensorflow-datasets", "tensorflow-cpu"} <= set(extras["tfds"])
  assert "google-cloud-storage" in extras["gcs"]
  # gcsfs comes through etils' own extra, at the version etils asks for.
  assert "epath-gcs" in extras["gcs"]["etils"].extras
  assert any(r.startswith("gcsfs") and "epath-gcs" in r
             for r in importlib.metadata.requires("etils"))
  moved = {"tensorflow-datasets", "tensorflow-cpu", "tensorflow", "mir-eval", "pesq",
           "google-cloud-storage", "gcsfs"}
  assert not moved & set(core)
  assert not core["jax"].extras and not core["etils"].extras - {"epath"}


def test_constraints_pin_what_the_extras_install():
  pins = _pins()
  assert pins["jax"] == importlib.metadata.version("jax")  # the metadata read below
  jax_requires = [Requirement(r) for r in importlib.metadata.requires("jax")]
  for extra, package in (("tpu", "libtpu"), ("cuda12", "jax-cuda12-plugin")):
    (req,) = [r for r in jax_requires if r.name == package
              and r.marker.evaluate({"extra": extra})]
    assert req.specifier.contains(pins[package]), (package, req, pins[package])
  assert pins["jax-cuda12-pjrt"] == pins["jax"]
  for name in ("gcsfs", "google-cloud-storage", "mir-eval", "pesq", "tensorflow-datasets",
               "tensorflow-cpu"):
    assert name in pins, name


def _python_floor(spec: str) -> tuple[int, ...]:
  (floor,) = [s.version for s in SpecifierSet(spec) if s.operator == ">="]
  return tuple(int(p) for p in floor.split("."))


def test_python_requires_is_what_the_pinned_packages_require():
  pins = _pins()
  floors = {}
  for name in ("jax", "jaxlib", "numpy", "flax", "grain", "scikit-learn", "matplotlib"):
    meta = importlib.metadata.metadata(name)
    assert meta["Version"] == pins[name], f"{name}: the installed version is not the pin"
    floors[name] = _python_floor(meta["Requires-Python"])
  assert _python_floor(_setup_cfg()["options"]["python_requires"]) == max(floors.values())
  with open(os.path.join(REPO, "launch", "setup_env.sh")) as f:
    script = f.read()
  assert f'"$_minor" -lt {max(floors.values())[1]}' in script
  assert f"needs Python >= {'.'.join(map(str, max(floors.values())))}" in script


# ------------------------------------------------------------- a missing extra, simulated

def test_separation_metrics_without_the_extra_name_it(monkeypatch):
  mixture = np.random.default_rng(0).normal(size=(2, 16000))
  monkeypatch.setitem(sys.modules, "mir_eval", None)
  monkeypatch.setitem(sys.modules, "mir_eval.separation", None)
  with pytest.raises(errors.UserError, match=r"need mir_eval: pip install -e '\.\[separation\]'"):
    separation_metrics.sdr(mixture, mixture)
  monkeypatch.setitem(sys.modules, "pesq", None)
  with pytest.raises(errors.UserError, match=r"need pesq: pip install -e '\.\[separation\]'"):
    separation_metrics.pesq_wb(mixture[0], mixture[1])
  assert np.isfinite(separation_metrics.si_sdr(mixture[0], mixture[1]))  # numpy only
  monkeypatch.undo()
  assert np.all(separation_metrics.sdr(mixture, mixture) > 100)  # installed: it runs


@pytest.fixture
def fresh_gcs_check():
  """storage's check of the gs:// packages, run again (it is cached once it passes)."""
  storage._check_gcs_packages.cache_clear()  # pylint: disable=protected-access
  yield
  storage._check_gcs_packages.cache_clear()  # pylint: disable=protected-access


@pytest.mark.parametrize("absent, named", [
    (("gcsfs", "tensorflow"), "gcsfs"),
    (("google.cloud.storage",), "google-cloud-storage"),
])
def test_gs_paths_without_the_extra_name_it(fresh_gcs_check, monkeypatch, absent, named):
  del fresh_gcs_check
  assert storage.is_remote("gs://bucket/run")  # every package found here
  storage._check_gcs_packages.cache_clear()  # pylint: disable=protected-access
  for name in absent:
    monkeypatch.setitem(sys.modules, name, None)
  with pytest.raises(errors.UserError, match=rf"gs:// paths need {named}: pip install -e"
                     r" '\.\[gcs\]'"):
    storage.is_remote("gs://bucket/run")
  assert not storage.is_remote("/local/run")  # local paths need none of them


# evaluate reads its workdir through epath before any storage call: cli.run checks every
# flag value first.
@pytest.mark.parametrize("command, args", [
    ("prepare", ["--source={tmp}", "--out=gs://bucket/shards"]),
    ("evaluate", ["--workdir=gs://bucket/run"]),
])
def test_gs_path_without_the_extra_is_a_one_line_command_error(tmp_path, command, args):
  block = f"import runpy, sys; sys.modules.update(dict.fromkeys({OPTIONAL!r}));"
  result = subprocess.run(
      [sys.executable, "-c", block + f" sys.argv[0] = {command!r};"
       f" runpy.run_module('mirnet_jax.{command}', run_name='__main__')",
       *(a.format(tmp=tmp_path) for a in args)],
      capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert result.returncode == 1, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == (
      "error: gs:// paths need gcsfs and google-cloud-storage: pip install -e '.[gcs]'")
  assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------- setup_env.sh

def _fake_bin(tmp_path, python_version: str, uname: str = "Linux"):
  """A PATH of the tools setup_env.sh calls, a python3 that reports `python_version`
  and a uname that reports `uname`; no apt-get, no espeak-ng."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for tool in ("bash", "cat", "cksum", "cut", "dirname", "id"):
    os.symlink(shutil.which(tool), bin_dir / tool)
  for name, out in (("python3", python_version), ("uname", uname)):
    (bin_dir / name).write_text(f"#!/bin/sh\necho {out}\n")
    (bin_dir / name).chmod(0o755)
  return bin_dir


def _setup_env(tmp_path, bin_dir):
  """Sources a copy of launch/setup_env.sh in a copy of the repository without .venv."""
  repo = tmp_path / "repo"
  (repo / "launch").mkdir(parents=True)
  shutil.copy(os.path.join(REPO, "launch", "setup_env.sh"), repo / "launch")
  return subprocess.run([str(bin_dir / "bash"), "-c", "source launch/setup_env.sh x"],
                        capture_output=True, text=True, cwd=repo, timeout=60,
                        env={"PATH": str(bin_dir), "HOME": str(tmp_path)})


def test_setup_env_refuses_python_3_10_naming_it_and_the_fix(tmp_path):
  result = _setup_env(tmp_path, _fake_bin(tmp_path, "3.10.12"))
  assert result.returncode == 1
  (line,) = result.stderr.splitlines()
  assert line.startswith("error: mirnet_jax needs Python >= 3.11, and python3 is 3.10.12.")
  assert "deadsnakes" in line and "uv venv --seed --python 3.11" in line


def test_setup_env_on_macos_says_to_brew_install_espeak_ng(tmp_path):
  result = _setup_env(tmp_path, _fake_bin(tmp_path, "3.12.4", uname="Darwin"))
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      "error: espeak-ng is missing: install it with Homebrew (brew install espeak-ng),"
      " then rerun this script"]


def test_launch_scripts_install_extras_that_exist():
  # pip only warns about an extra a package does not have, and installs without it.
  extras = set(_setup_cfg()["options.extras_require"])
  # setup_env.sh's argument (demo.sh, test.sh) or the workers' `-e ".[...]"`.
  install = re.compile(r'setup_env\.sh" "([^"]*)"|-e \\"\.\[([^\]]*)\]')
  wanted = {}
  for script in ("demo.sh", "test.sh", "tpu_install.sh"):
    with open(os.path.join(REPO, "launch", script)) as f:
      (groups,) = install.findall(f.read())
    wanted[script] = set("".join(groups).split(","))
  assert wanted["demo.sh"] >= {"separation"}  # its last stage: evaluate_separation
  assert wanted["test.sh"] >= {"tfds", "separation", "test"}
  assert wanted["tpu_install.sh"] >= {"tpu", "gcs"}
  for script, names in wanted.items():
    assert names <= extras, (script, names - extras)
