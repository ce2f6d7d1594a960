"""The demo through the real CLI: twice on one workspace, and killed at several points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectors.dataset import dataset_files

CLI = [sys.executable, "-c", "from bss.cli.main import main; main()"]


def _demo(workspace: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--workspace", str(workspace), "--json", *extra, "demo"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _rows(workspace: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {
        name: sum(pq.read_metadata(f).num_rows for f in dataset_files(workspace / name))
        for name in ("flows", "usage", "rated", "rejected")
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    ws = tmp_path_factory.mktemp("demo") / "ws"
    proc = _demo(ws)
    assert proc.returncode == 0, proc.stderr
    return ws, json.loads(proc.stdout.strip().splitlines()[-1])


def test_demo_outputs(reference: tuple[Path, dict[str, object]]) -> None:
    ws, summary = reference
    assert summary["period"] == "2026-10"
    assert summary["accounts"] == 3
    assert float(str(summary["total"])) > 0
    assert len(str(summary["bills_sha256"])) == 64
    assert Path(str(summary["workspace"])) == ws.absolute()
    chart = ws / "reports" / "traffic_2026-10.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((ws / "reports" / "bills" / "2026-10").glob("*.html"))) == 3
    rows = _rows(ws)
    assert rows["flows"] > 100
    assert rows["usage"] > 300
    assert rows["rejected"] >= 3


def test_demo_twice_same_bills_no_duplicates(
    reference: tuple[Path, dict[str, object]],
) -> None:
    ws, first = reference
    before = _rows(ws)
    proc = _demo(ws)
    assert proc.returncode == 0, proc.stderr
    second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert second["bills_sha256"] == first["bills_sha256"]
    assert second["changed"] is False
    assert _rows(ws) == before


@pytest.mark.parametrize("delay", [0.8, 1.6, 2.4, 3.2])
def test_demo_killed_then_rerun_gives_same_bills(
    tmp_path: Path, reference: tuple[Path, dict[str, object]], delay: float
) -> None:
    _, expected = reference
    ws = tmp_path / "ws"
    proc = subprocess.Popen(
        [*CLI, "--workspace", str(ws), "--json", "demo"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    time.sleep(delay)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    again = _demo(ws)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["bills_sha256"] == expected["bills_sha256"]
    assert _rows(ws) == _rows(Path(str(expected["workspace"])))


def test_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    bad = subprocess.run([*CLI, "--workspace", ws, "bill", "--period", "2026-13"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 3
    assert bad.stderr.strip() == "error: period '2026-13': month 13 out of range"
    future = subprocess.run([*CLI, "--workspace", ws, "bill", "--period", "2099-01"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert future.returncode == 5
    assert "has not ended" in future.stderr
    assert "Traceback" not in future.stderr
    debug = subprocess.run([*CLI, "--workspace", ws, "--debug", "bill", "--period", "2099-01"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Traceback" in debug.stderr
