"""`rating-engine collect --listen` as a process: receives, flushes on SIGTERM, exits 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from processes import LineReader, running, stop
from shared_data import CAPTURES

from collectors.dataset import dataset_files

V5 = CAPTURES / "goflow2" / "netflowlegacy_data.bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_collect_flushes_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-c", "from bss.cli.main import main; main()", "--workspace", str(ws),
           "--json", "collect", "--listen", f"127.0.0.1:{port}",
           "--stats-interval", "1", "--buffer-mib", "16"]  # fmt: skip
    payload = V5.read_bytes()
    # running() stops the collector however the test ends (SIGTERM, then SIGKILL).
    with running(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        assert proc.stdout is not None
        listening, _ = LineReader(proc.stderr).wait_for("listening on", timeout=120)
        assert listening.startswith(f"listening on 127.0.0.1:{port}")
        out_lines = LineReader(proc.stdout)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(10):
                sender.sendto(payload, ("127.0.0.1", port))
        time.sleep(1.0)
        code = stop(proc, sig=signal.SIGTERM, timeout=60)
        out = []
        while line := out_lines.read_line(timeout=30):
            out.append(line)
    assert code == 0
    summary = json.loads(out[-1])
    files = dataset_files(ws / "flows")
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert rows == 60  # 10 datagrams of 6 flows each, none lost on loopback
    assert summary["flows"] == rows
    assert 0 < summary["buffer_peak_bytes"] <= 16 << 20  # what waited fits the 16 MiB ring


def test_collect_refuses_a_buffer_of_nothing(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "from bss.cli.main import main; main()", "--workspace",
           str(tmp_path / "ws"), "collect", "--listen", "127.0.0.1:0",
           "--buffer-mib", "0"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert "--buffer-mib 0" in proc.stderr
