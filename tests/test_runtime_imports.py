"""Runtime code imports only runtime dependencies: every module under src/ imports, and
``ingest flows`` runs, in a child Python where the test-only packages cannot be imported.

The child gets a ``sitecustomize`` (first on ``PYTHONPATH``) that puts a finder in front of
``sys.meta_path`` refusing the packages of pyproject's ``[test]`` extra that a module could
reach for by mistake (dpkt and netflow are peers, hypothesis/pytest/nbclient test tools).
The child first checks that the blocker works, so this test cannot pass vacuously.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared_data import CAPTURES

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
BLOCKED = ("dpkt", "netflow", "hypothesis", "pytest", "_pytest", "nbclient", "nbformat")

SITECUSTOMIZE = f"""
import importlib.abc
import sys

BLOCKED = {BLOCKED!r}


class _TestOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (test-only, blocked)", name=name)
        return None


sys.meta_path.insert(0, _TestOnly())
"""

CHILD = """
import importlib
import sys
from pathlib import Path

for name in BLOCKED:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"blocker does not work: {name} imported")
src = Path(sys.argv[1])
names = sorted(
    ".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
    for p in src.rglob("*.py")
)
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def _child_env(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(SRC)])
    return env


def test_every_module_imports_without_test_dependencies(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"BLOCKED = {BLOCKED!r}\n" + CHILD, str(SRC)],
        env=_child_env(tmp_path), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = sum(1 for _ in SRC.rglob("*.py"))
    assert int(proc.stdout.split()[-1]) == modules > 100


def test_ingest_flows_of_a_capture_without_test_dependencies(tmp_path: Path) -> None:
    """The issue's symptom: ``ingest flows exports.pcap`` needed dpkt."""
    capture = CAPTURES / "generated" / "netflowv9.pcap"
    code = f"BLOCKED = {BLOCKED!r}\nimport sys\n" + (
        "for n in BLOCKED:\n"
        "    try:\n        __import__(n)\n    except ModuleNotFoundError:\n        continue\n"
        "    raise SystemExit('blocker does not work')\n"
        "from bss.cli.main import main\nmain()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "--workspace", str(tmp_path / "w"), "--json",
         "ingest", "flows", str(capture)],
        env=_child_env(tmp_path), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert (report["flows"], report["rejected"]) == (24, {})
