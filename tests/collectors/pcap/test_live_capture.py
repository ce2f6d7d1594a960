"""Live capture on the loopback interface: UDP to 127.0.0.1 becomes flows (needs root)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from collectors.dataset import read_dataset
from collectors.errors import CollectorError
from collectors.pcap.live_capture import run_live_capture
from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import WorkspacePaths

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
]

LOOPBACK = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send(port: int, count: int, size: int = 100, big: int = 0) -> int:
    """Send ``count`` datagrams (and one of ``big`` bytes) from one socket; returns its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for _ in range(count):
            s.sendto(b"x" * size, ("127.0.0.1", port))
            time.sleep(0.01)
        if big:
            s.sendto(b"y" * big, ("127.0.0.1", port))
        return int(s.getsockname()[1])


def _our_flow(ws: WorkspacePaths, sport: int, dport: int) -> list[dict[str, object]]:
    flows = read_dataset(ws.flows, FLOW_SCHEMA)
    mask = pc.and_(pc.equal(flows["src_port"], sport), pc.equal(flows["dst_port"], dport))
    return flows.filter(mask).to_pylist()  # type: ignore[no-any-return]


def test_loopback_udp_becomes_a_flow(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    stop = threading.Event()
    result: dict[str, object] = {}

    ready = threading.Event()

    def run() -> None:
        result["summary"] = run_live_capture(
            "lo", ws, rotate_seconds=0.3, stop_event=stop, ready=ready
        )

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert ready.wait(timeout=60)
    dport = _free_port()
    sport = _send(dport, 5, big=60_000)  # loopback MTU is 64 KiB: one frame, no fragments
    time.sleep(0.5)  # at least one rotation while running
    stop.set()
    worker.join(timeout=20)
    assert not worker.is_alive()
    summary = result["summary"]
    rows = _our_flow(ws, sport, dport)
    assert len(rows) == 1, (sport, dport, summary)
    row = rows[0]
    assert (row["packets"], row["bytes"], row["protocol"]) == (6, 5 * 128 + 60_028, 17)
    assert row["src_addr"] == LOOPBACK
    assert row["source_format"] == "pcap"
    assert summary.flows >= 1  # type: ignore[attr-defined]
    assert summary.files  # type: ignore[attr-defined]


def test_sigterm_flushes(tmp_path: Path) -> None:
    ws = tmp_path / "w"
    ready = tmp_path / "ready"
    code = textwrap.dedent(
        f"""
        import pathlib
        from collectors.pcap.live_capture import run_live_capture
        from collectors.workspace import WorkspacePaths
        import threading
        ev = threading.Event()
        def announce():
            ev.wait()
            pathlib.Path({str(ready)!r}).touch()
        threading.Thread(target=announce, daemon=True).start()
        s = run_live_capture(
            "lo", WorkspacePaths(pathlib.Path({str(ws)!r})), rotate_seconds=3600, ready=ev
        )
        print("flows", s.flows)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline, "capture did not start"
            assert proc.poll() is None, "capture process died"
            time.sleep(0.05)
        dport = _free_port()
        sport = _send(dport, 3, size=10)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert out.startswith("flows")
    rows = _our_flow(WorkspacePaths(ws), sport, dport)
    assert [(r["packets"], r["bytes"]) for r in rows] == [(3, 3 * 38)]


def test_unknown_interface(tmp_path: Path) -> None:
    with pytest.raises(CollectorError, match="cannot capture"):
        run_live_capture("nosuchif0", WorkspacePaths(tmp_path / "w"), stop_event=threading.Event())
