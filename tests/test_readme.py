"""Every README command runs as written, in order, on a packaged install from an empty folder.

The wheel is built from this checkout and installed into a virtual environment of its own
with the runtime dependencies only (no test extras), so a test-only import or a file that
lives only in the repository fails here. The README's ``sh`` blocks then run one logical
line at a time in a scratch folder, with that environment's ``bin`` first on ``PATH``.
Lines starting with ``make`` (the Makefile is what runs this very suite) and ``pip
install`` (the fixture below does that install) are the only ones not run; ``export`` and
``unset`` set the environment of the following lines; the collector, which runs until
SIGTERM, gets a SIGTERM after a few seconds and must exit 0. The ``python`` blocks run
last, in the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = ROOT / ".venv-wheel"  # reused while the wheel's content is the same
NOT_RUN = ("make ", "pip install ")


def _blocks(language: str) -> list[str]:
    return [
        body for lang, body in re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.S)
        if lang == language
    ]  # fmt: skip


def _lines(block: str) -> list[str]:
    out = []
    for raw in block.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def test_readme_has_runnable_blocks() -> None:
    lines = [line for block in _blocks("sh") for line in _lines(block)]
    assert sum(line.startswith("rating-engine ") for line in lines) >= 30
    assert any(line.startswith("make demo") for line in lines)
    assert any(line.startswith("make test") for line in lines)
    skipped = [line for line in lines if line.startswith(NOT_RUN)]
    assert all(line.split()[:2] in (["make", "demo"], ["make", "test"], ["pip", "install"])
               for line in skipped), skipped  # fmt: skip


def _wheel(tmp: Path) -> Path:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp.glob("rating_engine-*.whl")
    return wheel


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A virtual environment with the built wheel and its runtime dependencies only."""
    wheel = _wheel(tmp_path_factory.mktemp("wheel"))
    # nothing of the development environment may leak in (PYTHONPATH would make pip
    # think the package is installed already)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    stamp = VENV / "wheel.sha256"
    if not (stamp.exists() and stamp.read_text() == digest):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300, env=clean
        )
        done = subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"),
             str(wheel)],
            capture_output=True, text=True, timeout=900, env=clean,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        stamp.write_text(digest)
    env = {k: v for k, v in clean.items() if not k.startswith(("RATING_ENGINE_", "NUMBA_"))}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(VENV)
    return env


def test_runtime_install_imports_every_module(runtime_env: dict[str, str], tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil\n"
        "for top in ('collectors', 'rating_engine', 'bss'):\n"
        "    pkg = importlib.import_module(top)\n"
        "    assert 'site-packages' in pkg.__file__, pkg.__file__\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, top + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        ["python", "-c", code], cwd=tmp_path, env=runtime_env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"


def _run(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if " collect " in line:  # runs until SIGTERM: give it one after a few seconds
        line = f"timeout --preserve-status -s TERM 5 {line}"
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def _demo_sha(stdout: str) -> str:
    return str(json.loads(stdout.strip().splitlines()[-1])["bills_sha256"])


def test_readme_commands_run_as_written(runtime_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(runtime_env)
    ran = 0
    installed_sha = None
    for block in _blocks("sh"):
        for line in _lines(block):
            if line.startswith(NOT_RUN):
                continue
            if line.startswith("export "):
                name, value = line.removeprefix("export ").split("=", 1)
                env[name] = value.replace("$PWD", str(tmp_path))
                continue
            if line.startswith("unset "):
                env.pop(line.removeprefix("unset ").strip(), None)
                continue
            out = _run(line, tmp_path, env)
            assert out.returncode == 0, (
                f"README line failed (exit {out.returncode}): {line}\n"
                f"stdout: {out.stdout[-2000:]}\nstderr: {out.stderr[-2000:]}"
            )
            if line.startswith("rating-engine demo --json"):
                installed_sha = _demo_sha(out.stdout)
            ran += 1
    assert ran >= 30
    # `rating-engine demo --json` from an empty folder gives the bills of `make demo`
    # (the demo of this checkout, run by the development environment)
    dev = tmp_path / "dev"
    dev.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", "from bss.cli.main import main; main()", "-w", str(dev / "ws"),
         "--json", "demo"],
        cwd=dev, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert installed_sha is not None
    assert installed_sha == _demo_sha(out.stdout)
    for block in _blocks("python"):
        out = subprocess.run(
            ["python", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, f"README python block failed:\n{block}\n{out.stderr[-2000:]}"
