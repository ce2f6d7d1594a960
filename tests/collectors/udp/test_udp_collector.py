"""The UDP collector on 127.0.0.1: flows land as Parquet, restarts keep templates, bad input
is quarantined, the allowlist holds, stats are written, SIGTERM flushes and exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest
from shared_data import CAPTURES

from collectors.dataset import dataset_files, read_dataset
from collectors.errors import CollectorError
from collectors.flows.decoder import FlowDecoder
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA
from collectors.sflow.datagram import COUNTER_SCHEMA
from collectors.udp.service import CollectorSummary, UdpCollector, run_collector
from collectors.udp.sockets import parse_listen
from collectors.udp.stats import STATS_SCHEMA
from collectors.workspace import WorkspacePaths

SOFTFLOWD = CAPTURES / "python-netflow-v9-softflowd"
LOCAL = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])


def cap(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


MIXED = [
    cap("python-netflow-v9-softflowd/packet_v5.bin"),
    cap("python-netflow-v9-softflowd/packet_v9_template.bin"),
    cap("python-netflow-v9-softflowd/packets_v9_0.bin"),
    cap("python-netflow-v9-softflowd/packet_ipfix_template.bin"),
    cap("python-netflow-v9-softflowd/packet_ipfix.bin"),
    cap("goflow2/netflowlegacy_data.bin"),
    cap("goflow2/sflow_data_1.bin"),
    cap("gopacket/gopacket_SFlowTestPacket3.bin"),
]


@contextmanager
def collecting(
    ws: WorkspacePaths, **kw: object
) -> Iterator[tuple[int, dict[str, CollectorSummary]]]:
    """Run the collector in a thread on an ephemeral port; stop and join on exit."""
    stop = threading.Event()
    ready = threading.Event()
    port: list[int] = []
    out: dict[str, CollectorSummary] = {}

    def on_ready(addresses: list[tuple[str, int]]) -> None:
        port.append(addresses[0][1])
        ready.set()

    def target() -> None:
        out["summary"] = run_collector(
            [("127.0.0.1", 0)],
            ws,
            stop_event=stop,
            on_ready=on_ready,
            **kw,  # type: ignore[arg-type]
        )

    thread = threading.Thread(target=target)
    thread.start()
    assert ready.wait(30)
    try:
        yield port[0], out
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive()


def send(port: int, datagrams: list[bytes], *, pause_every: int = 200) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i, d in enumerate(datagrams):
            s.sendto(d, ("127.0.0.1", port))
            if i % pause_every == pause_every - 1:
                time.sleep(0.01)  # stay well inside the socket buffer


def key_rows(table: pa.Table) -> list[tuple]:
    cols = [c for c in FLOW_SCHEMA.names if c not in ("flow_start", "flow_end")]
    rows = table.select(cols).to_pylist()
    return sorted(tuple(r.values()) for r in rows)


def test_collects_every_format_like_the_decoder(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    with collecting(ws) as (port, out):
        send(port, MIXED)
    summary = out["summary"]
    reference = FlowDecoder().decode_many(MIXED, [LOCAL] * len(MIXED), [0] * len(MIXED))
    flows = read_dataset(ws.flows, FLOW_SCHEMA)
    assert summary.datagrams == len(MIXED)
    assert summary.flows == flows.num_rows == reference.flows.num_rows > 40
    # sFlow rows carry the receive time, so compare everything but the times.
    assert key_rows(flows) == key_rows(pa.Table.from_batches([reference.flows]))
    assert set(flows.column("source_format").to_pylist()) == {
        "netflow_v5",
        "netflow_v9",
        "ipfix",
        "sflow",
    }
    for path in dataset_files(ws.flows):
        assert path.parent.name.startswith("hour=")
        assert path.parent.parent.name.startswith("date=")
    counters = read_dataset(ws.counters, COUNTER_SCHEMA)
    assert counters.column("format").to_pylist() == [1001]
    assert (ws.state / "flow_decoder.json").exists()
    stats = read_dataset(ws.collector_stats, STATS_SCHEMA).to_pylist()
    totals = {r["metric"]: r["value"] for r in stats if r["exporter"] is None}
    assert totals["datagrams"] == len(MIXED)
    assert totals["flows"] == flows.num_rows
    per_exporter = [r for r in stats if r["exporter"] == "127.0.0.1"]
    assert {r["metric"]: r["value"] for r in per_exporter}["datagrams"] == len(MIXED)


def test_templates_survive_a_restart(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    with collecting(ws) as (port, out):
        send(port, [cap("python-netflow-v9-softflowd/packet_v9_template.bin")])
    assert out["summary"].flows == 8
    with collecting(ws) as (port, out):
        send(port, [cap("python-netflow-v9-softflowd/packets_v9_1.bin")])
    assert out["summary"].flows == 12
    assert out["summary"].stats.get("unknown_template", 0) == 0
    assert read_dataset(ws.flows, FLOW_SCHEMA).num_rows == 20


def test_bad_datagrams_quarantined_stream_unaffected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    invalid = cap("python-netflow-v9-softflowd/packet_invalid.bin")
    garbage = [invalid, b"\x00\x05\x00\x10" + b"\x00" * 10, b"\x00\x00\x00\x05" + b"\xff" * 30]
    good = cap("python-netflow-v9-softflowd/packet_v5.bin")
    with (
        caplog.at_level("WARNING", logger="collectors.udp.service"),
        collecting(ws, stats_interval=3600) as (port, out),
    ):
        send(port, [good, *garbage, good, invalid, invalid])
    summary = out["summary"]
    assert summary.flows == 6
    assert summary.rejected == 5
    quarantined = read_dataset(ws.quarantine, REJECT_SCHEMA)
    assert quarantined.num_rows == 5
    assert sorted(quarantined.column("raw").to_pylist()) == sorted([*garbage, invalid, invalid])
    assert all(
        s.startswith("udp://127.0.0.1:") for s in quarantined.column("source_file").to_pylist()
    )
    assert all(quarantined.column("reason").to_pylist())
    # one quarantine file per interval; each (exporter, reason) logged once per interval
    assert len(dataset_files(ws.quarantine)) == 1
    reasons = quarantined.column("reason").to_pylist()
    logged = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(logged) == len(set(reasons))


def test_allowlist_refuses_other_exporters(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    with collecting(ws, allowlist=["192.0.2.0/24"]) as (port, out):
        send(port, [cap("python-netflow-v9-softflowd/packet_v5.bin")] * 3)
    assert out["summary"].flows == 0
    assert out["summary"].not_allowed == 3
    assert dataset_files(ws.flows) == []
    ws2 = WorkspacePaths(tmp_path / "w2")
    with collecting(ws2, allowlist=["127.0.0.0/8"]) as (port, out):
        send(port, [cap("python-netflow-v9-softflowd/packet_v5.bin")] * 3)
    assert out["summary"].flows == 9


def test_many_datagrams_two_sockets_rotation(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    v5 = cap("goflow2/netflowlegacy_data.bin")
    collector = UdpCollector(
        [("127.0.0.1", 0), ("127.0.0.1", 0)], ws, rotate_bytes=20_000, chunk_bytes=1 << 17
    )
    ports = [a[1] for a in collector.addresses]
    stop = threading.Event()
    result: dict[str, CollectorSummary] = {}
    thread = threading.Thread(target=lambda: result.update(s=collector.run(stop)))
    thread.start()
    send(ports[0], [v5] * 500)
    send(ports[1], [v5] * 500)
    stop.set()
    thread.join(60)
    summary = result["s"]
    assert summary.datagrams == 1000
    assert summary.flows == 6000 == read_dataset(ws.flows, FLOW_SCHEMA).num_rows
    assert len(summary.flow_files) > 1  # rotated by size


@pytest.mark.parametrize("max_datagram", [9216, 65535])  # recvmmsg, recvfrom_into
@pytest.mark.parametrize("receive_process", [True, False])  # a child process, or a thread
def test_both_receivers_take_every_datagram(
    tmp_path: Path, max_datagram: int, receive_process: bool
) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    v5 = cap("goflow2/netflowlegacy_data.bin")
    big = cap("python-netflow-v9-softflowd/packet_v5.bin") + bytes(12_000)  # trailing junk
    options = {"max_datagram": max_datagram, "receive_process": receive_process}
    with collecting(ws, chunk_bytes=1 << 16, **options) as (port, out):
        send(port, [v5] * 300 + [big])
    summary = out["summary"]
    if max_datagram == 9216:  # larger than a slot: dropped and counted, never half-decoded
        assert summary.datagrams == 300
        assert summary.stats["malformed:oversize"] == 1
    else:
        assert summary.datagrams == 301
    assert summary.flows == 300 * 6 + (3 if max_datagram == 65535 else 0)
    received = read_dataset(ws.flows, FLOW_SCHEMA)
    assert received.num_rows == summary.flows


def test_ipv6_listener(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    ws = WorkspacePaths(tmp_path / "w")
    collector = UdpCollector([("::1", 0)], ws)
    port = collector.addresses[0][1]
    stop = threading.Event()
    result: dict[str, CollectorSummary] = {}
    thread = threading.Thread(target=lambda: result.update(s=collector.run(stop)))
    thread.start()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.sendto(cap("python-netflow-v9-softflowd/packet_v5.bin"), ("::1", port))
        s.sendto(b"junk", ("::1", port))
    stop.set()
    thread.join(60)
    assert result["s"].flows == 3
    rows = read_dataset(ws.flows, FLOW_SCHEMA).to_pylist()
    assert {r["exporter"] for r in rows} == {bytes(15) + b"\x01"}
    quarantined = read_dataset(ws.quarantine, REJECT_SCHEMA).to_pylist()
    assert quarantined[0]["source_file"].startswith("udp://[::1]:")


def test_sigterm_flushes_and_exits_zero(tmp_path: Path) -> None:
    ws = tmp_path / "w"
    code = (
        "import sys; from pathlib import Path\n"
        "from collectors.udp.service import run_collector\n"
        "from collectors.workspace import WorkspacePaths\n"
        "def ready(a):\n"
        "    print(a[0][1], flush=True)\n"
        f"run_collector([('127.0.0.1', 0)], WorkspacePaths(Path({str(ws)!r})), on_ready=ready)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    ) as proc:
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            send(port, [cap("python-netflow-v9-softflowd/packet_v5.bin")] * 4)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert read_dataset(WorkspacePaths(ws).flows, FLOW_SCHEMA).num_rows == 12


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:2055") == ("127.0.0.1", 2055)
    assert parse_listen("[::1]:6343") == ("::1", 6343)
    assert parse_listen(":9995") == ("0.0.0.0", 9995)
    for bad in ("localhost", "1.2.3.4:x", "1.2.3.4:70000"):
        with pytest.raises(CollectorError):
            parse_listen(bad)


def test_sequence_gaps_reach_the_log_and_the_stats_dataset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from collectors.netflow.export_synth import synth_v5_datagrams

    ws = WorkspacePaths(tmp_path / "w")
    first, _lost, third = synth_v5_datagrams(3, 30)
    with (
        caplog.at_level("INFO", logger="collectors.udp.service"),
        collecting(ws) as (port, _out),
    ):
        send(port, [first, third])
    stats = read_dataset(ws.collector_stats, STATS_SCHEMA).to_pylist()
    totals: dict[str, int] = {}
    for r in stats:
        if r["exporter"] is None:
            totals[r["metric"]] = totals.get(r["metric"], 0) + r["value"]
    assert totals["sequence_missing"] == 30  # v5 sequence numbers count flows
    assert totals["flows"] == 60
    per_exporter = [r for r in stats if r["exporter"] == "127.0.0.1"]
    assert {r["metric"]: r["value"] for r in per_exporter}["sequence_missing"] == 30
    lines = [r.getMessage() for r in caplog.records if "collector stats" in r.getMessage()]
    assert any("sequence{missing=30}" in line for line in lines)


def test_kernel_drops_are_counted(tmp_path: Path) -> None:
    if not Path("/proc/net/udp").exists():
        pytest.skip("needs Linux /proc/net/udp")
    ws = WorkspacePaths(tmp_path / "w")
    collector = UdpCollector([("127.0.0.1", 0)], ws, rcvbuf=16384)
    port = collector.addresses[0][1]
    v5 = cap("goflow2/netflowlegacy_data.bin")
    send(port, [v5] * 400, pause_every=10_000)  # nobody reads yet: the buffer overflows
    stop = threading.Event()
    stop.set()  # drain what the kernel kept, then stop
    summary = collector.run(stop)
    assert summary.socket_drops > 0
    assert summary.datagrams + summary.socket_drops == 400
    stats = read_dataset(ws.collector_stats, STATS_SCHEMA).to_pylist()
    assert {r["metric"]: r["value"] for r in stats if r["exporter"] is None}[
        "socket_drops"
    ] == summary.socket_drops
