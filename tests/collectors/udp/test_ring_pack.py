"""The receiver process's compiled packing: what crosses the ring equals what the receiver
took itself, for one sender a batch (the compiled path) and interleaved senders (the
per-datagram path), refused and oversize datagrams counted per sender."""

from __future__ import annotations

import ipaddress
import select
import socket

import numpy as np
import pytest

from collectors.udp.receive import MmsgReceiver, PeerTable
from collectors.udp.receiver_process import ReceiverProcess, available
from collectors.udp.ring_pack import pack_record, record_bytes
from collectors.udp.sockets import bind_socket

pytestmark = pytest.mark.skipif(
    not (available() and hasattr(socket, "AF_PACKET")), reason="recvmmsg and fork (Linux)"
)

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def _through_ring(mixed: bool) -> tuple[list[tuple[bytes, str, int]], list[tuple]]:
    allowed = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("127.0.0.2/32")]
    peers = PeerTable(allowed)  # 127.0.0.3 is refused
    senders = []
    for host in HOSTS:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        senders.append(s)
    port_of = {s.getsockname()[0]: s.getsockname()[1] for s in senders}
    expected = []
    try:
        with bind_socket("127.0.0.1", 0, 4 << 20) as sock:
            # 16 slots of 2048 bytes: many records, batches within them
            proc = ReceiverProcess([sock], MmsgReceiver(peers, slots=16, slot_size=2048), peers, 0)
            proc.start()
            try:
                for i in range(240):
                    k = i % 3 if mixed else i // 80  # interleaved, or one sender at a time
                    data = bytes([i % 251]) * (3000 if i % 37 == 5 else 20 + i)
                    senders[k].sendto(data, sock.getsockname())
                    host = HOSTS[k]
                    if host != "127.0.0.3" and len(data) <= 2048:
                        expected.append((data, host, port_of[host]))
                proc.stop()
                rows: list[tuple[bytes, str, int]] = []
                refused: dict[str, int] = {}
                oversize: dict[str, int] = {}
                while True:
                    chunk = proc.next_chunk()
                    if chunk is None:
                        if proc.finished:
                            break
                        select.select([proc.bell], [], [], 1.0)
                        proc.poll()
                        continue
                    for i, d in enumerate(chunk.datagrams()):
                        rows.append((d, chunk.hosts[i], chunk.ports[i]))
                        assert chunk.exporters[i] == PeerTable.from_host(chunk.hosts[i])
                    for host, c in chunk.refused.items():
                        refused[host] = refused.get(host, 0) + c
                    for host, c in chunk.oversize.items():
                        oversize[host] = oversize.get(host, 0) + c
                    proc.release(chunk)
                assert proc.error is None
            finally:
                proc.abort()
                proc.join(10)
                proc.close()
    finally:
        for s in senders:
            s.close()
    assert rows == expected
    return rows, [sorted(refused.items()), sorted(oversize.items())]


@pytest.mark.parametrize("mixed", [False, True])
def test_the_ring_carries_what_the_receiver_took(mixed: bool) -> None:
    _, (refused, oversize) = _through_ring(mixed)
    assert refused == [("127.0.0.3", 80)]
    big = {}
    for i in range(240):
        host = HOSTS[i % 3 if mixed else i // 80]
        if i % 37 == 5 and host != "127.0.0.3":
            big[host] = big.get(host, 0) + 1
    assert oversize == sorted(big.items())


def test_a_record_is_laid_out_as_the_parent_reads_it() -> None:
    slot = 32
    landing = np.arange(4 * slot, dtype=np.uint8)
    lengths = np.array([3, 0, 5, 7], np.uint32)
    keep = np.array([True, True, False, True])
    ports = np.array([1, 2, 3, 4], np.int64)
    times = np.array([10, 20, 30, 40], np.int64)
    addrs = np.arange(64, dtype=np.uint8).reshape(4, 16)
    drop_addrs = np.full((1, 16), 9, np.uint8)
    ring = np.zeros(512, np.uint8)
    size = pack_record(
        ring, ring.view(np.int64), 8, landing, slot, lengths, keep, ports, times, addrs, 4,
        drop_addrs, np.array([5], np.int64), np.array([1], np.int64),
    )  # fmt: skip
    assert size == record_bytes(3, 10, 1) == 32 + 120 + 32 + 16
    words = ring[8:].view(np.int64)
    assert words[:4].tolist() == [3, 10, 1, size]
    assert words[4:13].tolist() == [3, 0, 7, 1, 2, 4, 10, 20, 40]
    at = 8 + 32 + 72
    assert ring[at : at + 48].tolist() == addrs[[0, 1, 3]].ravel().tolist()
    assert ring[at + 48 : at + 64].tolist() == [9] * 16
    assert ring[at + 64 : at + 80].view(np.int64).tolist() == [5, 1]
    payload = ring[at + 80 : at + 90].tolist()
    assert payload == landing[0:3].tolist() + landing[3 * slot : 3 * slot + 7].tolist()
    assert not ring[8 + size :].any()  # nothing outside the record
    assert not ring[:8].any()
