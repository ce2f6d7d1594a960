"""examples/analyst_tour.ipynb runs end to end on a fresh demo workspace."""

from __future__ import annotations

import os
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


def test_analyst_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # jupyter_core warns about its platformdirs migration unless this is set
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    import nbformat
    from nbclient import NotebookClient

    ws = tmp_path / "ws"
    proc = subprocess.run(
        [*CLI, "--workspace", str(ws), "--quiet", "demo"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    kernel, env = _kernel_name(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RATING_ENGINE_WORKSPACE", str(ws))

    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    client = NotebookClient(
        nb, timeout=120, kernel_name=kernel, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # one figure per plotting helper (and top-N twice)
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert tables, "DataFrames render as HTML tables"
    bills = next(c for c in nb.cells if c.cell_type == "code" and 'ws.bills("2026-10")' in c.source)
    assert "B202610-000001" in str(bills.outputs)
    assert os.environ["RATING_ENGINE_WORKSPACE"] == str(ws)
