"""Export datagrams from files: pcap / pcapng captures of export traffic and raw ``.bin`` files.

:func:`iter_datagrams_from_pcap` yields every UDP payload (any port) with the sender as a
16-byte address and the capture time in microseconds; it reads with dpkt, not scapy,
for speed. Link types: Ethernet (with 802.1Q tags), Linux cooked (SLL, SLL2), raw IP
and BSD loopback. IP fragments other than the first and non-UDP packets are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import dpkt

from collectors.errors import IngestError

__all__ = ["iter_datagram_files", "iter_datagrams_from_pcap"]

_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"
_ETH_IP4, _ETH_IP6, _ETH_VLAN, _ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8


def _ip_from_ether(frame: bytes) -> bytes | None:
    pos = 12
    while pos + 2 <= len(frame):
        ethertype = struct.unpack_from(">H", frame, pos)[0]
        if ethertype in (_ETH_VLAN, _ETH_QINQ):
            pos += 4
            continue
        if ethertype in (_ETH_IP4, _ETH_IP6):
            return frame[pos + 2 :]
        return None
    return None


def _ip_payload(linktype: int, frame: bytes) -> bytes | None:
    if linktype == dpkt.pcap.DLT_EN10MB:
        return _ip_from_ether(frame)
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return (
            frame[16:] if struct.unpack_from(">H", frame, 14)[0] in (_ETH_IP4, _ETH_IP6) else None
        )
    if linktype == 276:  # LINUX_SLL2
        return frame[20:] if struct.unpack_from(">H", frame, 0)[0] in (_ETH_IP4, _ETH_IP6) else None
    if linktype in (dpkt.pcap.DLT_RAW, 12, 14, 228, 229):
        return frame
    if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return frame[4:]
    return None


def _udp(ip_bytes: bytes) -> tuple[bytes, bytes] | None:
    """(payload, 16-byte source) of a UDP packet, or None."""
    if not ip_bytes:
        return None
    version = ip_bytes[0] >> 4
    if version == 4:
        ip4 = dpkt.ip.IP(ip_bytes)
        if ip4.p != dpkt.ip.IP_PROTO_UDP or ip4.offset:
            return None
        udp = ip4.data
        src = _V4_PREFIX + ip4.src
    elif version == 6:
        ip6 = dpkt.ip6.IP6(ip_bytes)
        if ip6.nxt != dpkt.ip.IP_PROTO_UDP:
            return None
        udp = ip6.data
        src = ip6.src
    else:
        return None
    if not isinstance(udp, dpkt.udp.UDP):
        return None
    return bytes(udp.data), src


def iter_datagrams_from_pcap(path: str | Path) -> Iterator[tuple[bytes, bytes, int]]:
    """Yield (UDP payload, exporter as 16 bytes, capture time in microseconds) per packet."""
    path = Path(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise IngestError(f"cannot open capture {path}: {exc}") from exc
    try:
        try:
            reader: dpkt.pcap.Reader | dpkt.pcapng.Reader = dpkt.pcap.Reader(fh)
        except ValueError:
            fh.seek(0)
            try:
                reader = dpkt.pcapng.Reader(fh)
            except ValueError as exc:
                raise IngestError(f"{path} is neither pcap nor pcapng") from exc
        linktype = reader.datalink()
        for ts, frame in reader:
            try:
                ip_bytes = _ip_payload(linktype, frame)
                got = _udp(ip_bytes) if ip_bytes is not None else None
            except (dpkt.UnpackError, struct.error, IndexError):
                continue  # a damaged frame is not an export datagram
            if got is not None:
                yield got[0], got[1], round(float(ts) * 1_000_000)
    finally:
        fh.close()


def iter_datagram_files(
    paths: list[str | Path],
) -> Iterator[tuple[bytes, bytes, int]]:
    """Datagrams from several files: pcap/pcapng captures, or one raw datagram per ``.bin``.

    A ``.bin`` file has no sender or time: exporter ``::`` and time 0 are reported.
    """
    for p in map(Path, paths):
        if p.suffix == ".bin":
            yield p.read_bytes(), bytes(16), 0
        else:
            yield from iter_datagrams_from_pcap(p)
