"""examples/analyst_tour.ipynb runs end to end on a fresh demo workspace, from examples/ and
from the folder above it, finding the workspace by itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "analyst_tour.ipynb"
CLI = [sys.executable, "-c", "from bss.cli.main import main; main()"]


def _kernel_name(tmp: Path) -> tuple[str, dict[str, str]]:
    """A kernel spec that runs this interpreter (the venv), installed into ``tmp`` if needed.

    ``python3`` from the venv is used when it exists; otherwise a private spec is written
    with ``ipykernel install --prefix`` so a fresh machine needs no manual step.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    env = {"JUPYTER_PLATFORM_DIRS": "1"}
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        if spec.argv and spec.argv[0] in ("python", "python3", sys.executable):
            return "python3", env
    except NoSuchKernel:
        pass
    prefix = tmp / "jupyter"
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix),
         "--name", "rating-engine-test"],
        check=True, capture_output=True,
    )  # fmt: skip
    env["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    return "rating-engine-test", env


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the repository: ``workspace/`` (the demo) and ``examples/``."""
    root = tmp_path_factory.mktemp("repo")
    proc = subprocess.run(
        [*CLI, "--workspace", str(root / "workspace"), "--quiet", "demo"],
        capture_output=True, text=True, timeout=600, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (root / "examples").mkdir()
    shutil.copyfile(NOTEBOOK, root / "examples" / NOTEBOOK.name)
    return root


@pytest.mark.parametrize("folder", ["examples", "."])
def test_analyst_tour_runs(
    repository: Path, folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from examples/ (Jupyter's default) and from the root, with no workspace variable."""
    # jupyter_core warns about its platformdirs migration unless this is set
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.delenv("RATING_ENGINE_WORKSPACE", raising=False)
    import nbformat
    from nbclient import NotebookClient

    kernel, env = _kernel_name(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    cwd = (repository / folder).resolve()
    client = NotebookClient(
        nb, timeout=120, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    first = next(c for c in nb.cells if c.cell_type == "code" and "Workspace.open()" in c.source)
    assert str(repository.resolve() / "workspace") in str(first.outputs)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # one figure per plotting helper (and top-N twice)
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert tables, "DataFrames render as HTML tables"
    bills = next(c for c in nb.cells if c.cell_type == "code" and 'ws.bills("2026-10")' in c.source)
    assert "B202610-000001" in str(bills.outputs)
    assert "A001" in str(bills.outputs)  # the account id the business data gave, not a number
