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
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bss.cli.main import main; main()", "--workspace", str(ws),
         "--json", "collect", "--listen", f"127.0.0.1:{port}", "--stats-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    payload = V5.read_bytes()
    try:
        assert proc.stderr is not None
        seen = [proc.stderr.readline() for _ in range(1)]  # the CLI says when it listens
        while not seen[-1].startswith("listening on") and seen[-1] and len(seen) < 100:
            seen.append(proc.stderr.readline())
        assert seen[-1].startswith(f"listening on 127.0.0.1:{port}"), seen
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(10):
                sender.sendto(payload, ("127.0.0.1", port))
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    files = dataset_files(ws / "flows")
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert rows == 60  # 10 datagrams of 6 flows each, none lost on loopback
    assert summary["flows"] == rows
