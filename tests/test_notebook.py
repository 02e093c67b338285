"""The Colab quickstart notebook runs top to bottom in its test mode (tiny corpus, tiny
configs, a few steps) in a real Jupyter kernel; outside a clone (Colab) it stops on the
placeholder repository, and clones and installs from an empty folder."""

import glob
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
kernelspec = pytest.importorskip("ipykernel.kernelspec")
from jupyter_client.kernelspec import KernelSpecManager  # pylint: disable=g-import-not-at-top
from jupyter_client.manager import AsyncKernelManager  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")


def _kernel_manager(prefix: str) -> AsyncKernelManager:
  """A kernel running this interpreter (the venv's), whatever other kernelspecs exist."""
  kernelspec.install(kernel_name="mirnet-test", prefix=prefix)
  specs = KernelSpecManager(kernel_dirs=[os.path.join(prefix, "share", "jupyter", "kernels")])
  assert specs.get_kernel_spec("mirnet-test").argv[0] == sys.executable
  return AsyncKernelManager(kernel_name="mirnet-test", kernel_spec_manager=specs)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_quickstart_runs_in_test_mode(tmp_path, monkeypatch):
  root = tmp_path / "root"
  monkeypatch.setenv("MIRNET_NOTEBOOK_MODE", "test")
  monkeypatch.setenv("MIRNET_NOTEBOOK_ROOT", str(root))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
      "commit the notebook with its outputs cleared"
  client = nbclient.NotebookClient(
      nb, km=_kernel_manager(str(tmp_path / "kernel")), timeout=600,
      resources={"metadata": {"path": os.path.join(REPO, "notebooks")}})
  client.execute()  # raises CellExecutionError, naming the cell, if one fails

  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  for plot in ("tsne.png", "attention.png"):
    assert (root / "mirnet" / "eval" / plot).stat().st_size > 0
  for wav in ("mixture.wav", "mixture_s1.wav", "mixture_s2.wav"):
    assert (root / "separated" / wav).stat().st_size > 0
  data = [o.get("data", {}) for o in outputs if o.output_type == "display_data"]
  assert sum("image/png" in d for d in data) == 2
  assert any("<audio" in d.get("text/html", "") for d in data)


# ------------------------------------------------------- outside a clone (Colab's branch)

def _tagged(nb, *tags):
  """A notebook of the cells of `nb` with these tags, in the order of `tags`."""
  cells = [nbformat.from_dict(dict(next(c for c in nb.cells
                                        if tag in c.metadata.get("tags", [])), id=f"c{i}"))
           for i, tag in enumerate(tags)]  # ids of their own: a cell may appear twice
  return nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)


def _parameter(nb, name):
  """The value a parameters-cell line `NAME = "..."` assigns."""
  source = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source
  (value,) = re.findall(rf'^{name} = "([^"]*)"', source, re.M)
  return value


def test_readme_colab_link_names_the_notebook_repository():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  with open(os.path.join(REPO, "README.md")) as f:
    links = re.findall(r"https://colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)"
                       r"/blob/main/(\S+?\.ipynb)", f.read())
  assert links, "the README has no Open in Colab link"
  for repo, path in links:
    assert repo == _parameter(nb, "GITHUB_REPO")  # one name to change, in both places
    assert os.path.join(REPO, path) == NOTEBOOK


def test_placeholder_repository_stops_with_what_to_set(tmp_path, monkeypatch):
  monkeypatch.delenv("MIRNET_NOTEBOOK_REPO_URL", raising=False)
  empty = tmp_path / "empty"
  empty.mkdir()
  nb = _tagged(nbformat.read(NOTEBOOK, as_version=4), "parameters", "install")
  nb.cells[0].source = nb.cells[0].source.replace("USE_DRIVE = False", "USE_DRIVE = True")
  client = nbclient.NotebookClient(nb, km=_kernel_manager(str(tmp_path / "kernel")),
                                   timeout=120, allow_errors=True,
                                   resources={"metadata": {"path": str(empty)}})
  client.execute()
  outputs = nb.cells[1].outputs
  (error,) = [o for o in outputs if o.output_type == "error"]
  # One line saying what to set, no traceback.
  assert error.traceback == [
      "Stopped: there is no repository to clone yet: in the parameters cell, set "
      "GITHUB_REPO to its owner/name on GitHub, or REPO_URL to a git URL or the path of a "
      "clone (e.g. on Drive: /content/drive/MyDrive/mirnet_jax), then run all cells again"]
  printed = "".join(o.text for o in outputs if o.output_type == "stream")
  assert "USE_DRIVE is for Colab" in printed  # no mount outside Colab
  assert not os.listdir(empty)


def _bare_venv(path, site_packages: str) -> str:
  """A venv without pip whose .pth file puts `site_packages` on its path: every package
  of this test environment is importable and installed in pip's eyes, while pip installs
  into the new venv. The editable mirnet_jax there stays inert (the .pth files of a
  directory added that way are not run). Returns its python."""
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                 timeout=120)
  python = str(path / "bin" / "python")
  own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                        "['purelib'])"], check=True, capture_output=True, text=True).stdout
  with open(os.path.join(own.strip(), "test-env.pth"), "w") as f:
    f.write(site_packages + "\n")
  return python


def _kernel_of(python: str, prefix: str) -> AsyncKernelManager:
  """A kernel running `python` (ipykernel reached through its .pth)."""
  kernel_dir = os.path.join(prefix, "kernels", "bare-venv")
  os.makedirs(kernel_dir)
  with open(os.path.join(kernel_dir, "kernel.json"), "w") as f:
    json.dump({"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
               "display_name": "bare venv", "language": "python"}, f)
  specs = KernelSpecManager(kernel_dirs=[os.path.join(prefix, "kernels")])
  return AsyncKernelManager(kernel_name="bare-venv", kernel_spec_manager=specs)


def _editable_install_state():
  """Names, sizes, mtimes and bytes of this environment's mirnet_jax install files."""
  dist = importlib.metadata.distribution("mirnet_jax")
  state = {}
  for file in dist.files:
    path = str(file.locate())
    if os.path.isfile(path) and "site-packages" in path:
      st = os.stat(path)
      with open(path, "rb") as f:
        state[path] = (st.st_size, st.st_mtime_ns, f.read())
  return state


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng not installed: the notebook would apt-get it")
def test_outside_a_clone_it_clones_and_installs_then_reuses_the_install(tmp_path,
                                                                          monkeypatch):
  upstream = tmp_path / "upstream"  # a local clone of this checkout stands for GitHub
  subprocess.run(["git", "clone", "--quiet", REPO, str(upstream)], check=True, timeout=120)
  head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], check=True,
                        capture_output=True, text=True).stdout
  site_packages = sysconfig.get_paths()["purelib"]
  python = _bare_venv(tmp_path / "venv", site_packages)
  before = _editable_install_state()
  monkeypatch.setenv("MIRNET_NOTEBOOK_MODE", "test")
  monkeypatch.setenv("MIRNET_NOTEBOOK_REPO_URL", str(upstream))
  # Offline: with no index a dependency pip did not see as installed fails the cell, and
  # the build uses this environment's setuptools.
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # (pip reads 0 as "no isolation")
  empty = tmp_path / "colab"
  empty.mkdir()
  nb = _tagged(nbformat.read(NOTEBOOK, as_version=4),
               "parameters", "install", "install", "accelerator")
  client = nbclient.NotebookClient(nb, km=_kernel_of(python, str(tmp_path / "jupyter")),
                                   timeout=300, resources={"metadata": {"path": str(empty)}})
  client.execute()

  clone = empty / "mirnet_jax"
  assert subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True,
                        capture_output=True, text=True).stdout == head
  first, second = ("".join(o.get("text", "") for o in c.outputs) for c in nb.cells[1:3])
  assert f"-c {clone}/constraints.txt -e '{clone}[separation]'" in first
  assert "pip" not in second and f"mirnet_jax is installed from {clone}" in second
  assert f"repository {clone}\n" in second
  assert "backend: cpu" in "".join(o.get("text", "") for o in nb.cells[3].outputs)
  # pip installed the clone and nothing else, and left this environment's install alone.
  own = os.path.dirname(subprocess.run(
      [python, "-c", "import mirnet_jax; print(mirnet_jax.__file__)"], cwd="/", check=True,
      capture_output=True, text=True).stdout.strip())
  assert own == str(clone / "mirnet_jax")
  venv_site = glob.glob(str(tmp_path / "venv" / "lib" / "python*" / "site-packages"))[0]
  assert {n for n in os.listdir(venv_site) if n != "__pycache__"} == {
      "test-env.pth", "mirnet_jax-0.1.0.dist-info", "__editable__.mirnet_jax-0.1.0.pth",
      "__editable___mirnet_jax_0_1_0_finder.py"}
  assert _editable_install_state() == before
