"""Helpers of the fault suite: the CLI as a process, its JSON, the demo data, full disks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from package_data import DATA, DEMO

__all__ = [
    "CLI",
    "DATA",
    "DEMO",
    "PERIOD",
    "cli",
    "fill",
    "last_json",
    "no_traceback",
    "prepare",
    "remount_read_only",
]

PERIOD = "2026-10"
CLI = [sys.executable, "-c", "from bss.cli.main import main; main()"]


def cli(workspace: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``rating-engine -w WORKSPACE ARGS`` as a process, output captured."""
    return subprocess.run(
        [*CLI, "-w", str(workspace), *args], capture_output=True, text=True, timeout=timeout
    )


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON object on the last line of standard output (``--json``)."""
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {proc.stderr[-3000:]}"
    value = json.loads(lines[-1])
    assert isinstance(value, dict)
    return value


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout, proc.stdout[-3000:]


def prepare(workspace: Path) -> None:
    """The demo's business data, tariffs, CDRs and packets: ready for ``bill``."""
    steps = [
        ("load", str(DEMO / "bss.toml")),
        ("ingest", "cdr", str(DEMO / "cdrs.csv"), "--mapping", "generic"),
        ("ingest", "pcap", str(DEMO / "traffic.pcap.gz")),
    ]
    for step in steps:
        done = cli(workspace, "-q", *step)
        assert done.returncode == 0, (step, done.stderr[-3000:])
        if step[0] == "load":
            (workspace / "tariffs").mkdir(exist_ok=True)
            for tariff in sorted((DEMO / "tariffs").glob("*.toml")):
                shutil.copyfile(tariff, workspace / "tariffs" / tariff.name)


def fill(disk: Path, leave_kib: int) -> Path:
    """Fill ``disk`` up to ``leave_kib`` KiB of free space; returns the filler file."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        fh.truncate(0)
        chunk = b"\0" * (1 << 20)
        remaining = max(0, free - leave_kib * 1024)
        while remaining > 0:
            fh.write(chunk[: min(len(chunk), remaining)])
            remaining -= min(len(chunk), remaining)
    return filler


def remount_read_only(disk: Path) -> None:
    done = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
