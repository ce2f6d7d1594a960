"""2,220 hostile datagrams mixed into 2,000 valid NetFlow v5 ones, sent to ``rating-engine
collect`` over UDP: every valid flow is stored exactly once, each hostile datagram is
rejected, counted by reason and kept aside; and 200 spoofed sources (127.0.0.x) cannot make
the collector hold unbounded state (the bounds themselves: test_exporter_table)."""

from __future__ import annotations

import json
import random
import signal
import socket
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
from fault_cli import CLI
from processes import LineReader, running, stop

from collectors.dataset import read_dataset
from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import (
    data_set,
    encode_ipfix,
    encode_v9,
    synth_v5_datagrams,
    v9_template_set,
)
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA

KEY = ["src_addr", "dst_addr", "src_port", "dst_port", "protocol", "bytes", "packets",
       "flow_start"]  # fmt: skip


def _hostile(rng: random.Random, v5: list[bytes]) -> list[bytes]:
    """2,220 datagrams of many malformed kinds (seeded: the same every run)."""
    out: list[bytes] = []
    for _ in range(400):  # noise
        out.append(rng.randbytes(rng.randrange(2, 1400)))
    for _ in range(300):  # v5 cut short
        good = rng.choice(v5)
        out.append(good[: rng.randrange(2, len(good) - 1)])
    for _ in range(300):  # v5 claiming more records than it has
        good = bytearray(rng.choice(v5))
        good[2:4] = struct.pack(">H", rng.randrange(31, 400))
        out.append(bytes(good))
    for _ in range(200):  # versions nobody speaks
        out.append(struct.pack(">H", rng.choice([0, 2, 3, 4, 6, 8, 11, 0xFFFF])) + bytes(22))
    for _ in range(100):  # almost nothing
        out.append(rng.randbytes(1))
    for _ in range(300):  # v9 with a set longer than the packet
        body = v9_template_set([(256, [(8, 4), (12, 4)])])
        broken = bytearray(encode_v9([body], source_id=7, sequence=1, uptime_ms=1,
                                     unix_secs=1_700_000_000))  # fmt: skip
        broken[22:24] = struct.pack(">H", rng.randrange(600, 9000))
        out.append(bytes(broken))
    for _ in range(300):  # IPFIX whose length field lies
        msg = bytearray(encode_ipfix([data_set(300, bytes(16))], domain=3, sequence=0,
                                     export_time=1_700_000_000))  # fmt: skip
        msg[2:4] = struct.pack(">H", rng.choice([0, 3, 15, 9999]))
        out.append(bytes(msg))
    for _ in range(320):  # sFlow v5 header, then garbage
        head = struct.pack(">II", 5, rng.choice([1, 2, 7]))
        out.append(head + rng.randbytes(rng.randrange(0, 80)))
    assert len(out) == 2220
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send(port: int, datagrams: list[tuple[str, bytes]]) -> None:
    """Send from the given 127.0.0.x sources, paced so loopback drops nothing."""
    senders: dict[str, socket.socket] = {}
    try:
        for n, (source, payload) in enumerate(datagrams):
            if source not in senders:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((source, 0))
                senders[source] = s
            senders[source].sendto(payload, ("127.0.0.1", port))
            if n % 25 == 24:
                time.sleep(0.002)
    finally:
        for s in senders.values():
            s.close()


def _collect(ws: Path, datagrams: list[tuple[str, bytes]]) -> dict[str, object]:
    port = _free_port()
    cmd = [*CLI, "-w", str(ws), "--json", "collect", "--listen", f"127.0.0.1:{port}",
           "--stats-interval", "1"]  # fmt: skip
    with running(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        assert proc.stdout is not None
        LineReader(proc.stderr).wait_for("listening on", timeout=180)
        out = LineReader(proc.stdout)
        _send(port, datagrams)
        time.sleep(1.5)  # let the worker drain the socket before stopping
        assert stop(proc, sig=signal.SIGTERM, timeout=120) == 0
        lines = []
        while line := out.read_line(timeout=60):
            lines.append(line)
    summary = json.loads(lines[-1])
    assert isinstance(summary, dict)
    return summary


def test_hostile_datagrams_beside_valid_ones(tmp_path: Path) -> None:
    rng = random.Random(21)
    valid = synth_v5_datagrams(2000, 6, seed=21)
    hostile = _hostile(rng, valid)
    # what a decoder makes of them alone: no flows, rejects by reason
    alone = FlowDecoder().decode_many(hostile, [bytes(16)] * len(hostile), [0] * len(hostile))
    assert alone.flows.num_rows == 0
    expected_reasons = Counter(reason for _, reason, _ in alone.rejected)
    assert sum(expected_reasons.values()) == 2220
    expected = FlowDecoder().decode_many(valid, [bytes(16)] * 2000, [0] * 2000).flows
    mixed = [("127.0.0.1", d) for d in valid] + [("127.0.0.1", d) for d in hostile]
    rng.shuffle(mixed)
    summary = _collect(tmp_path / "ws", mixed)
    assert summary["socket_drops"] == 0  # loopback delivered everything (else: inconclusive)
    flows = read_dataset(tmp_path / "ws" / "flows", FLOW_SCHEMA, columns=KEY)
    assert flows.num_rows == expected.num_rows == 12_000
    stored = Counter(zip(*(flows.column(k).to_pylist() for k in KEY), strict=True))
    wanted = Counter(zip(*(expected.column(k).to_pylist() for k in KEY), strict=True))
    assert stored == wanted  # every valid flow, exactly once
    kept = read_dataset(tmp_path / "ws" / "quarantine", REJECT_SCHEMA)
    got = Counter(kept.column("reason").to_pylist())
    assert got == expected_reasons  # each reject counted by its reason and kept aside
    assert summary["rejected"] == 2220
    raws = set(kept.column("raw").to_pylist())
    assert raws == set(hostile)  # the bytes themselves, for a later look
    assert pc.sum(pc.binary_length(kept.column("raw"))).as_py() > 0


def test_spoofed_sources_are_collected_and_bounded(tmp_path: Path) -> None:
    valid = synth_v5_datagrams(400, 5, seed=7)
    sources = [f"127.0.0.{2 + i % 200}" for i in range(len(valid))]
    summary = _collect(tmp_path / "ws", list(zip(sources, valid, strict=True)))
    assert summary["socket_drops"] == 0
    flows = read_dataset(tmp_path / "ws" / "flows", FLOW_SCHEMA, columns=["exporter"])
    assert flows.num_rows == 2000  # 200 exporters, all under the default bound
    assert len(set(flows.column("exporter").to_pylist())) == 200
