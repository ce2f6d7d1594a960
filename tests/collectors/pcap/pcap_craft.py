"""Test helpers for the pcap tests: capture writers and scapy's view of a frame.

The writers build files byte by byte (both byte orders, nanosecond stamps,
snaplen cuts, pcapng with several interfaces and time resolutions) so the tests
do not depend on what a given scapy version can write.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet

from collectors.addresses import address_to_bytes

__all__ = ["eth", "pcap_bytes", "pcapng_bytes", "scapy_fields", "write_pcap"]


def eth(**kw: Any) -> Ether:
    """Ether with fixed MACs: without them scapy resolves addresses (slow, noisy)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


Record = tuple[int, bytes, int]  # (time in ns since epoch, captured bytes, original length)


def pcap_bytes(
    records: list[Record],
    *,
    linktype: int = 1,
    big_endian: bool = False,
    nanos: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """A classic pcap file."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for t_ns, data, orig in records:
        sec, rem = divmod(t_ns, 1_000_000_000)
        frac = rem if nanos else rem // 1000
        out.append(struct.pack(e + "IIII", sec, frac, len(data), orig) + data)
    return b"".join(out)


def write_pcap(path: Path, records: list[Record], **kw: Any) -> Path:
    path.write_bytes(pcap_bytes(records, **kw))
    return path


def _opt(e: str, code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * pad


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * ((-len(body)) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def pcapng_bytes(
    interfaces: list[tuple[int, int | None, int]],
    packets: list[tuple[int, int, bytes, int]],
    *,
    big_endian: bool = False,
    simple: list[tuple[bytes, int]] | None = None,
) -> bytes:
    """A pcapng section: interfaces (linktype, if_tsresol byte or None, if_tsoffset s),
    enhanced packets (interface, ticks, data, original length), then simple packets."""
    e = ">" if big_endian else "<"
    shb = struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(e, 0, b"")
    out = [_block(e, 0x0A0D0D0A, shb)]
    for linktype, tsresol, tsoffset in interfaces:
        opts = b""
        if tsresol is not None:
            opts += _opt(e, 9, bytes([tsresol]))
        if tsoffset:
            opts += _opt(e, 14, struct.pack(e + "q", tsoffset))
        opts += _opt(e, 0, b"")
        out.append(_block(e, 1, struct.pack(e + "HHI", linktype, 0, 0) + opts))
    for ifid, ticks, data, orig in packets:
        body = struct.pack(e + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig)
        out.append(_block(e, 6, body + data))
    for data, orig in simple or []:
        out.append(_block(e, 3, struct.pack(e + "I", orig) + data))
    return b"".join(out)


_EXT = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment)


def scapy_fields(frame: bytes, linktype: int = 1) -> dict[str, Any]:
    """What scapy decodes from a frame, in our packet-column names."""
    pkt: Packet
    if linktype == 1:
        pkt = Ether(frame)
    elif linktype == 113:
        pkt = CookedLinux(frame)
    else:
        pkt = IP(frame) if frame[0] >> 4 == 4 else IPv6(frame)
    f: dict[str, Any] = {
        "vlan": 0,
        "ip_version": 0,
        "src_addr": b"\0" * 16,
        "dst_addr": b"\0" * 16,
        "protocol": 0,
        "tos": 0,
        "ip_len": 0,
        "src_port": 0,
        "dst_port": 0,
        "tcp_flags": 0,
        "icmp_type": 0,
        "icmp_code": 0,
    }
    layer: Packet = pkt
    while layer:  # the outer tag is the first 802.1Q / 802.1ad layer
        if isinstance(layer, Dot1Q | Dot1AD):
            f["vlan"] = layer.vlan
            break
        layer = layer.payload
    upper: Packet | None = None
    if pkt.haslayer(IP):
        ip = pkt[IP]
        f.update(
            ip_version=4,
            src_addr=address_to_bytes(ip.src),
            dst_addr=address_to_bytes(ip.dst),
            protocol=ip.proto,
            tos=ip.tos,
            ip_len=ip.len,
        )
        upper = ip.payload if (ip.frag == 0) else None
    elif pkt.haslayer(IPv6):
        ip6 = pkt[IPv6]
        f.update(
            ip_version=6,
            src_addr=address_to_bytes(ip6.src),
            dst_addr=address_to_bytes(ip6.dst),
            tos=ip6.tc,
            ip_len=ip6.plen + 40,
        )
        nh = ip6.nh
        upper = ip6.payload
        while isinstance(upper, _EXT):
            nh = upper.nh
            if isinstance(upper, IPv6ExtHdrFragment) and upper.offset != 0:
                upper = None
                break
            upper = upper.payload
        f["protocol"] = nh
    if upper is not None:
        if isinstance(upper, TCP | UDP):
            f["src_port"] = upper.sport
            f["dst_port"] = upper.dport
            if isinstance(upper, TCP):
                f["tcp_flags"] = int(upper.flags)
        elif isinstance(upper, ICMP) or type(upper).__name__.startswith("ICMPv6"):
            f["icmp_type"] = upper.type
            f["icmp_code"] = upper.code
    return f
