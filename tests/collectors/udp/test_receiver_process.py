"""The receiver process: datagrams cross the shared ring in order, around its end and while it
is full, and a receiver that dies is an error of the run, not a silent stop."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from collectors.dataset import read_dataset
from collectors.errors import CollectorError
from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import synth_template_stream, synth_v5_datagrams
from collectors.schemas import FLOW_SCHEMA
from collectors.udp.receive import MmsgReceiver, PeerTable, ReceiveChunk
from collectors.udp.receiver_process import DecodePriority, ReceiverProcess, available
from collectors.udp.service import CollectorSummary, UdpCollector
from collectors.udp.sockets import bind_socket
from collectors.workspace import WorkspacePaths

pytestmark = pytest.mark.skipif(not available(), reason="the receiver process needs fork (Linux)")

LOCAL = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def test_ring_wraps_keeps_order_and_waits_when_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    # templates first, then their data: decoding out of order would lose the data
    datagrams = synth_template_stream("ipfix", 300, 12, seed=5) + synth_v5_datagrams(900, 30)
    # 16 slots of 9216 bytes a landing chunk; the ring is its minimum, 8 chunks (~1.2 MB),
    # so ~1.5 MB of datagrams wrap it; a slow worker (1 ms a chunk) lets it fill up
    collector = UdpCollector([("127.0.0.1", 0)], ws, chunk_bytes=1 << 16, buffer_bytes=0)
    ring = collector._proc.size if collector._proc is not None else 0
    process = UdpCollector._process

    def slow(self: UdpCollector, chunk: ReceiveChunk) -> None:
        threading.Event().wait(0.001)
        process(self, chunk)

    monkeypatch.setattr(UdpCollector, "_process", slow)
    port = collector.addresses[0][1]
    stop = threading.Event()
    out: dict[str, CollectorSummary] = {}
    collector.start_receiving()
    thread = threading.Thread(target=lambda: out.update(s=collector.run(stop)))
    thread.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
    stop.set()
    thread.join(60)
    summary = out["s"]
    assert sum(map(len, datagrams)) > ring > 0
    assert summary.socket_drops == 0
    assert summary.datagrams == len(datagrams)
    assert 0 < summary.buffer_peak_bytes <= ring
    reference = FlowDecoder().decode_many(datagrams, [LOCAL] * len(datagrams), [0] * len(datagrams))
    assert summary.flows == reference.flows.num_rows == 300 * 12 + 900 * 30
    cols = [c for c in FLOW_SCHEMA.names if c not in ("flow_start", "flow_end")]
    assert _rows(read_dataset(ws.flows, FLOW_SCHEMA).select(cols)) == _rows(
        pa.Table.from_batches([reference.flows]).select(cols)
    )


def test_a_dead_receiver_process_fails_the_run(tmp_path: Path) -> None:
    collector = UdpCollector([("127.0.0.1", 0)], WorkspacePaths(tmp_path / "w"))
    collector.start_receiving()
    assert collector._proc is not None
    os.kill(collector._proc._pid, signal.SIGKILL)
    with pytest.raises(CollectorError, match="receiver"):
        collector.run(threading.Event())


def test_the_callers_thread_priority_is_restored(tmp_path: Path) -> None:
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    stop = threading.Event()
    stop.set()
    UdpCollector([("127.0.0.1", 0)], WorkspacePaths(tmp_path / "w")).run(stop)
    assert os.getpriority(os.PRIO_PROCESS, tid) == before


def test_records_are_taken_together_in_order_within_the_bounds() -> None:
    # small landing chunks (8 slots) so the child hands over many records
    peers = PeerTable(None)
    receiver = MmsgReceiver(peers, slots=8, slot_size=2048)
    with bind_socket("127.0.0.1", 0, 4 << 20) as sock:  # room for all: none dropped
        proc = ReceiverProcess([sock], receiver, peers, 1 << 20)
        proc.start()
        try:
            sent = [i.to_bytes(4, "big") * (1 + i % 50) for i in range(300)]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                for d in sent:
                    out.sendto(d, sock.getsockname())
            proc.stop()
            while not proc.finished:
                select.select([proc.bell], [], [], 1.0)
                proc.poll()
            got: list[bytes] = []
            sizes: list[int] = []
            released = 0
            while (chunk := proc.next_chunk(max_datagrams=40)) is not None:
                assert chunk.release is not None
                assert chunk.release > released
                released = chunk.release
                sizes.append(len(chunk))
                got += chunk.datagrams()
                assert chunk.hosts == ["127.0.0.1"] * len(chunk)
                proc.release(chunk)
            assert got == sent
            assert max(sizes) <= 40 < sum(sizes)  # bounded, and more than one record a call
            assert len(sizes) < 300 / 8  # fewer calls than the child's records
            assert proc.held_bytes == 0
        finally:
            proc.abort()
            proc.join(10)
            proc.close()


def test_decoding_is_nicer_only_while_the_ring_has_room() -> None:
    if not DecodePriority(5, high=100, low=10).enabled:
        pytest.skip("this system lets no thread take its niceness back: none is changed")
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def worker() -> None:
        tid = threading.get_native_id()
        priority = DecodePriority(5, high=100, low=10)
        priority.add_current()
        for waiting in (0, 50, 101, 50, 5):
            priority.update(waiting)
            seen.append(os.getpriority(os.PRIO_PROCESS, tid) - before)
        priority.close()
        seen.append(os.getpriority(os.PRIO_PROCESS, tid) - before)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    # nicer at first, kept while below high, restored past it, nicer again below low
    assert seen == [5, 5, 0, 0, 5, 0]


def test_the_ring_is_faulted_in_only_ahead_of_the_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    from collectors.udp import receiver_process as rp

    monkeypatch.setattr(rp, "_PREFAULT", 1 << 20)
    monkeypatch.setattr(rp, "_PREFAULT_AHEAD", 2 << 20)
    peers = PeerTable(None)
    with bind_socket("127.0.0.1", 0, 1 << 20) as sock:
        proc = ReceiverProcess([sock], MmsgReceiver(peers, slots=8, slot_size=2048), peers, 8 << 20)
        try:
            child = rp._Child(proc, -1, os.getpid())
            while child.prefault():
                pass
            assert child.touched == 2 << 20  # the window ahead, not the whole ring
            assert not child.prefault_due()
            child.high = 5 << 20  # the writer moved on: the window moves with it
            assert child.prefault_due()
            while child.prefault():
                pass
            assert child.touched == 7 << 20
            child.high = 7 << 20
            while child.prefault():
                pass
            assert child.touched == proc.size  # never past the ring's end
            child.high = proc.size  # every page was written: none is left to touch
            assert not child.prefault()
            assert not child.prefault_due()
        finally:
            proc.close()


def test_the_prefault_leaves_the_wrap_mark_alone() -> None:
    """A burst laps the ring before the prefault reached its end and the wrap mark falls on
    a page boundary: the quiet rounds after must not zero the mark the parent has still to
    read (it read -256 as a record and failed)."""
    from collectors.udp import receiver_process as rp
    from collectors.udp.receive import RecvFromReceiver

    peers = PeerTable(None)
    proc = ReceiverProcess([], RecvFromReceiver(peers, 1 << 16), peers, buffer_bytes=1 << 20)
    payload = 3 * 4096 - 72  # a record of one datagram: 32 + 40 + payload = three pages

    def chunk(i: int) -> ReceiveChunk:
        c = ReceiveChunk(payload)
        c.buf[:] = bytes([i % 251]) * payload
        c.starts, c.lengths, c.exporters = [0], [payload], [LOCAL]
        c.hosts, c.ports, c.times = ["127.0.0.1"], [2055], [i]
        return c

    def parent_reads(most: int) -> list[int]:
        proc._produced = child.produced
        firsts: list[int] = []
        while len(firsts) < most and (c := proc.next_chunk(max_datagrams=1)) is not None:
            firsts += [d[0] for d in c.datagrams()]
            proc.release(c)
        return firsts

    read, write = os.pipe()
    try:
        os.set_blocking(write, False)
        child = rp._Child(proc, write, os.getpid())
        sent = 0
        while child.produced + 3 * 4096 <= proc.size:  # the first lap, no quiet round yet
            child.hand_over(chunk(sent))
            sent += 1
        assert parent_reads(40) == [i % 251 for i in range(40)]
        mark = child.produced % proc.size
        child.hand_over(chunk(sent))  # does not fit before the end: the mark, then offset 0
        sent += 1
        assert mark % 4096 == 0
        while child.prefault():  # the burst is over: quiet rounds
            pass
        assert parent_reads(10**6) == [i % 251 for i in range(40, sent)]
    finally:
        os.close(read)
        os.close(write)
        proc.close()
