"""The package as a library: every module imports into one process, configs are packaged,
and no module but the task registry compares task names."""

import os
import pkgutil
import re
import subprocess
import sys

import mirnet_jax
from mirnet_jax import configs
from mirnet_jax import tasks

PACKAGE = os.path.dirname(os.path.abspath(mirnet_jax.__file__))


def _modules():
  return sorted(m.name for m in pkgutil.walk_packages([PACKAGE], "mirnet_jax."))


def test_every_module_imports_into_one_process():
  # In a fresh interpreter: an entry point that defined absl flags at import time would
  # raise DuplicateFlagError here (embed and evaluate both have --workdir).
  names = _modules()
  assert {"mirnet_jax.main", "mirnet_jax.embed", "mirnet_jax.evaluate", "mirnet_jax.prepare",
          "mirnet_jax.separate", "mirnet_jax.benchmark", "mirnet_jax.configs.tpu"} <= set(names)
  code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)\n"
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
