"""The Colab quickstart notebook runs top to bottom in its test mode (tiny corpus, tiny
configs, a few steps) in a real Jupyter kernel."""

import os
import shutil
import sys

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
