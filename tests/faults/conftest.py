"""Shared set-up of the fault suite: the CLI as a process, the demo workspace, small disks.

Every attack of issue #21 runs through the real command line (``rating-engine``) as a
separate process, the way an operator or an attacker meets it. The demo's data (``data/``)
is loaded once per session into a workspace that is ready to bill; each test copies it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fault_cli import PERIOD, cli, last_json, prepare


@pytest.fixture(scope="session")
def prebill(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding the demo's data, not billed yet (copy it before changing it)."""
    root = tmp_path_factory.mktemp("prebill") / "ws"
    prepare(root)
    return root


@pytest.fixture(scope="session")
def billed(prebill: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo workspace billed for the period, and its bills' SHA-256 (a clean run)."""
    root = tmp_path_factory.mktemp("billed") / "ws"
    shutil.copytree(prebill, root)
    done = cli(root, "--json", "bill", "--period", PERIOD)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, str(last_json(done)["bills_sha256"])


@pytest.fixture
def copy_of(tmp_path: Path) -> Callable[[Path], Path]:
    """A private copy of a session workspace."""

    def copy(source: Path) -> Path:
        target = tmp_path / f"ws-{uuid.uuid4().hex[:8]}"
        shutil.copytree(source, target)
        return target

    return copy


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems (``size`` as for ``mount -o size=``); unmounted at the
    end, pass or fail. Needs root (as in CI): skips with the reason otherwise."""
    if os.geteuid() != 0:
        pytest.skip("disk-full and read-only tests mount a tmpfs: they need root (CI runs as root)")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root in CI")
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
