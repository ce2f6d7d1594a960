"""sFlow v5 flow records: the sampled packet header parsed to a 5-tuple, and the extended records.

The record layouts are those of sflow_version_5.txt (sFlow.org, 2004). A sampled
header is a *truncated copy* of a real packet, so running out of header bytes is
normal: we fill what the bytes give (addresses without ports, say) and never
fail. Only structural faults of the sFlow encoding itself (a record overrunning
its sample) are errors, and those are raised by :mod:`collectors.sflow.datagram`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "HEADER_ETHERNET",
    "HEADER_IPV4",
    "HEADER_IPV6",
    "SampledPacket",
    "parse_extended_gateway",
    "parse_extended_router",
    "parse_sampled_header",
    "parse_sampled_ip",
]

#: header_protocol values (sFlow v5 ``header_protocol`` enum) we can parse.
HEADER_ETHERNET = 1
HEADER_IPV4 = 11
HEADER_IPV6 = 12

_ZERO16 = bytes(16)
_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_IPV6_EXT = (0, 43, 60, 51)  # hop-by-hop, routing, destination options, AH
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_SAMPLED_IPV4 = struct.Struct(">II4s4sIIII")
_SAMPLED_IPV6 = struct.Struct(">II16s16sIIII")


@dataclass(slots=True)
class SampledPacket:
    """What one sampled packet tells about its flow (fields of the canonical flow schema)."""

    src_addr: bytes = _ZERO16
    dst_addr: bytes = _ZERO16
    src_port: int = 0
    dst_port: int = 0
    protocol: int = 0
    tcp_flags: int = 0
    tos: int = 0
    ip_length: int | None = None
    vlan: int = 0
    parsed: bool = False


def _transport(pkt: SampledPacket, buf: bytes, off: int, proto: int) -> None:
    """Ports / ICMP type-code / TCP flags from the transport header at ``off`` if it is there."""
    n = len(buf)
    if proto in (6, 17, 132) and off + 4 <= n:  # TCP, UDP, SCTP start with the two ports
        pkt.src_port = _U16.unpack_from(buf, off)[0]
        pkt.dst_port = _U16.unpack_from(buf, off + 2)[0]
        if proto == 6 and off + 14 <= n:
            # 9 flag bits: NS is the low bit of byte 12, the other eight are byte 13.
            pkt.tcp_flags = ((buf[off + 12] & 1) << 8) | buf[off + 13]
    elif proto in (1, 58) and off + 2 <= n:
        # NetFlow convention: ICMP type*256+code in the destination port.
        pkt.dst_port = buf[off] * 256 + buf[off + 1]


def _ipv4(pkt: SampledPacket, buf: bytes, off: int) -> None:
    if off + 20 > len(buf) or buf[off] >> 4 != 4:
        return
    ihl = (buf[off] & 0x0F) * 4
    pkt.tos = buf[off + 1]
    pkt.ip_length = _U16.unpack_from(buf, off + 2)[0]
    frag_offset = _U16.unpack_from(buf, off + 6)[0] & 0x1FFF
    pkt.protocol = buf[off + 9]
    pkt.src_addr = _V4_PREFIX + buf[off + 12 : off + 16]
    pkt.dst_addr = _V4_PREFIX + buf[off + 16 : off + 20]
    pkt.parsed = True
    # Only the first fragment carries the transport header.
    if frag_offset == 0 and ihl >= 20:
        _transport(pkt, buf, off + ihl, pkt.protocol)


def _ipv6(pkt: SampledPacket, buf: bytes, off: int) -> None:
    if off + 40 > len(buf) or buf[off] >> 4 != 6:
        return
    first = _U32.unpack_from(buf, off)[0]
    pkt.tos = (first >> 20) & 0xFF
    pkt.ip_length = _U16.unpack_from(buf, off + 4)[0] + 40
    nxt = buf[off + 6]
    pkt.src_addr = buf[off + 8 : off + 24]
    pkt.dst_addr = buf[off + 24 : off + 40]
    pkt.parsed = True
    pos = off + 40
    # Walk a bounded number of extension headers to the transport protocol.
    for _ in range(8):
        if nxt in _IPV6_EXT:
            if pos + 2 > len(buf):
                pkt.protocol = nxt
                return
            step = (buf[pos + 1] + 2) * 4 if nxt == 51 else (buf[pos + 1] + 1) * 8
            nxt = buf[pos]
            pos += step
        elif nxt == 44:  # fragment header: later fragments carry no ports
            if pos + 8 > len(buf):
                pkt.protocol = nxt
                return
            frag_offset = _U16.unpack_from(buf, pos + 2)[0] >> 3
            nxt = buf[pos]
            pos += 8
            if frag_offset:
                pkt.protocol = nxt
                return
        else:
            break
    pkt.protocol = nxt
    _transport(pkt, buf, pos, nxt)


def parse_sampled_header(header_protocol: int, buf: bytes) -> SampledPacket:
    """Parse a raw packet header record's bytes (Ethernet with 802.1Q/QinQ, IPv4, IPv6).

    ``parsed`` is False when no IP header could be found (other protocols, MPLS,
    a header cut before the IP addresses).
    """
    pkt = SampledPacket()
    if header_protocol == HEADER_ETHERNET:
        if len(buf) < 14:
            return pkt
        ethertype = _U16.unpack_from(buf, 12)[0]
        off = 14
        while ethertype in _VLAN_TPIDS and off + 4 <= len(buf):
            if pkt.vlan == 0:
                pkt.vlan = _U16.unpack_from(buf, off)[0] & 0x0FFF  # outer tag
            ethertype = _U16.unpack_from(buf, off + 2)[0]
            off += 4
        if ethertype == 0x0800:
            _ipv4(pkt, buf, off)
        elif ethertype == 0x86DD:
            _ipv6(pkt, buf, off)
    elif header_protocol == HEADER_IPV4:
        _ipv4(pkt, buf, 0)
    elif header_protocol == HEADER_IPV6:
        _ipv6(pkt, buf, 0)
    return pkt


def parse_sampled_ip(fmt: int, body: bytes) -> SampledPacket | None:
    """Records 3 (sampled IPv4) and 4 (sampled IPv6); None if the body is too short."""
    pkt = SampledPacket(parsed=True)
    if fmt == 3:
        if len(body) < _SAMPLED_IPV4.size:
            return None
        length, proto, src, dst, sport, dport, flags, tos = _SAMPLED_IPV4.unpack_from(body)
        pkt.src_addr, pkt.dst_addr = _V4_PREFIX + src, _V4_PREFIX + dst
    else:
        if len(body) < _SAMPLED_IPV6.size:
            return None
        length, proto, src, dst, sport, dport, flags, tos = _SAMPLED_IPV6.unpack_from(body)
        pkt.src_addr, pkt.dst_addr = src, dst
    pkt.ip_length = length
    pkt.protocol = proto & 0xFF
    pkt.src_port, pkt.dst_port = sport & 0xFFFF, dport & 0xFFFF
    pkt.tcp_flags, pkt.tos = flags & 0x1FF, tos & 0xFF
    return pkt


def _next_hop(body: bytes) -> tuple[bytes | None, int]:
    """An sFlow ``address`` (type 1 IPv4, 2 IPv6) -> (16-byte address or None, bytes used)."""
    if len(body) < 4:
        return None, len(body)
    kind = _U32.unpack_from(body, 0)[0]
    if kind == 1 and len(body) >= 8:
        return _V4_PREFIX + body[4:8], 8
    if kind == 2 and len(body) >= 20:
        return body[4:20], 20
    return None, 4 if kind == 0 else len(body)


def parse_extended_router(body: bytes) -> tuple[bytes | None, int, int]:
    """Record 1002: (next hop, source mask length, destination mask length)."""
    hop, used = _next_hop(body)
    if hop is None or used + 8 > len(body):
        return hop, 0, 0
    return hop, _U32.unpack_from(body, used)[0], _U32.unpack_from(body, used + 4)[0]


def parse_extended_gateway(body: bytes) -> tuple[bytes | None, int, int]:
    """Record 1003: (next hop, source AS, destination AS = last AS of the AS path)."""
    hop, pos = _next_hop(body)
    if hop is None or pos + 16 > len(body):
        return hop, 0, 0
    _router_as, src_as, _peer_as, segments = struct.unpack_from(">IIII", body, pos)
    pos += 16
    dst_as = 0
    # Each segment: type, count, count ASNs. Bounded by the body length, not the counts.
    for _ in range(min(segments, len(body) // 8)):
        if pos + 8 > len(body):
            break
        count = _U32.unpack_from(body, pos + 4)[0]
        pos += 8
        if count and pos + 4 * count <= len(body):
            dst_as = _U32.unpack_from(body, pos + 4 * (count - 1))[0]
            pos += 4 * count
        elif count:
            break
    return hop, src_as, dst_as
