"""sFlow v5 flow records: the sampled packet header parsed to a 5-tuple, and the extended records.

The record layouts are those of sflow_version_5.txt (sFlow.org, 2004). A sampled
header is a *truncated copy* of a real packet, so running out of header bytes is
normal: :mod:`collectors.sampled_headers` (shared with IPFIX packet sections) fills
what the bytes give and never fails. Only structural faults of the sFlow encoding
itself (a record overrunning its sample) are errors, and those are raised by
:mod:`collectors.sflow.datagram`.
"""

from __future__ import annotations

import struct

from collectors.sampled_headers import (
    HEADER_ETHERNET,
    HEADER_IPV4,
    HEADER_IPV6,
    HEADER_MPLS,
    SampledPacket,
    parse_header,
)

__all__ = [
    "HEADER_ETHERNET",
    "HEADER_IPV4",
    "HEADER_IPV6",
    "HEADER_MPLS",
    "SampledPacket",
    "parse_extended_gateway",
    "parse_extended_router",
    "parse_sampled_header",
    "parse_sampled_ip",
]

_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"
_U32 = struct.Struct(">I")
_SAMPLED_IPV4 = struct.Struct(">II4s4sIIII")
_SAMPLED_IPV6 = struct.Struct(">II16s16sIIII")
_HEADER_KINDS = (HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6, HEADER_MPLS)


def parse_sampled_header(
    header_protocol: int, buf: bytes, decapsulate_vxlan: bool = False
) -> SampledPacket:
    """Parse a raw packet header record's bytes (Ethernet with 802.1Q/QinQ, MPLS, IPv4, IPv6).

    ``parsed`` is False when no IP header could be found (other protocols, a header cut
    before the IP addresses). ``decapsulate_vxlan``: see :mod:`collectors.sampled_headers`.
    """
    if header_protocol not in _HEADER_KINDS:
        return SampledPacket()
    return parse_header(header_protocol, buf, decapsulate_vxlan)


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
    """Record 1003: (next hop, source AS, destination AS = last AS of the AS path).

    A source AS of 0 or an empty destination AS path is how an agent says the address is
    local to the router (nothing learned from BGP): the router's own AS is used then.
    """
    hop, pos = _next_hop(body)
    if hop is None or pos + 16 > len(body):
        return hop, 0, 0
    router_as, src_as, _peer_as, segments = struct.unpack_from(">IIII", body, pos)
    src_as = src_as or router_as
    pos += 16
    dst_as = router_as
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
