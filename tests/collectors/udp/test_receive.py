"""recvmmsg batches: what a chunk holds is the same whether a batch has one sender (the
short path) or several, with refused and oversize datagrams counted per sender."""

from __future__ import annotations

import ipaddress
import select
import socket

import pytest

from collectors.udp.receive import MmsgReceiver, PeerTable, RecvFromReceiver
from collectors.udp.sockets import bind_socket

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_PACKET"), reason="recvmmsg is Linux")


def _senders() -> list[socket.socket]:
    out = []
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        out.append(s)
    return out


def _drain(receiver: MmsgReceiver | RecvFromReceiver, sock: socket.socket) -> list[tuple]:
    rows: list[tuple] = []
    refused: dict[str, int] = {}
    oversize: dict[str, int] = {}
    while select.select([sock], [], [], 0.2)[0]:
        chunk = receiver.new_chunk()
        receiver.fill(chunk, sock)  # until the socket is empty or the chunk full
        view = memoryview(chunk.buf)
        for i in range(len(chunk)):
            start, n = chunk.starts[i], chunk.lengths[i]
            host = str(ipaddress.IPv6Address(chunk.exporters[i]).ipv4_mapped)
            assert chunk.hosts[i] == host
            rows.append((bytes(view[start : start + n]), host, chunk.ports[i]))
        for name, counts in (("refused", chunk.refused), ("oversize", chunk.oversize)):
            target = refused if name == "refused" else oversize
            for host, c in counts.items():
                target[host] = target.get(host, 0) + c
    return [*rows, ("refused", sorted(refused.items())), ("oversize", sorted(oversize.items()))]


@pytest.mark.parametrize("mixed", [False, True])
def test_one_sender_and_mixed_batches_give_the_same_chunk(mixed: bool) -> None:
    allowed = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("127.0.0.2/32")]
    peers = PeerTable(allowed)  # 127.0.0.3 is not allowed
    senders = _senders()
    port_of = {s.getsockname()[0]: s.getsockname()[1] for s in senders}
    expected = []
    results = []
    try:
        receivers = (
            MmsgReceiver(peers, slots=16, slot_size=2048),  # batches within a run too
            RecvFromReceiver(peers, 1 << 20),
        )
        for receiver in receivers:
            with bind_socket("127.0.0.1", 0, 4 << 20) as sock:
                expected = []
                for i in range(150):
                    # mixed: the senders interleave; else one sender at a time, in runs
                    k = i % 3 if mixed else i // 50
                    data = bytes([i % 251]) * (3000 if i % 37 == 5 else 20 + i)
                    senders[k].sendto(data, sock.getsockname())
                    host = senders[k].getsockname()[0]
                    if host != "127.0.0.3":
                        expected.append((data, host, port_of[host]))
                results.append(_drain(receiver, sock))
    finally:
        for s in senders:
            s.close()
    by_slot, packed = results
    assert packed[:-2] == expected  # recvfrom_into takes any size
    # recvmmsg drops what is larger than its slot (2048), counted per sender
    assert by_slot[:-2] == [r for r in expected if len(r[0]) <= 2048]
    assert by_slot[-2] == packed[-2] == ("refused", [("127.0.0.3", 50)])
    big: dict[str, int] = {}
    for r in expected:
        if len(r[0]) > 2048:
            big[r[1]] = big.get(r[1], 0) + 1
    assert big
    assert by_slot[-1] == ("oversize", sorted(big.items()))
    assert packed[-1] == ("oversize", [])
