"""Sampled packet headers parsed for their flow key: sFlow raw headers, IPFIX packet sections.

A sampled header is a *truncated copy* of a real packet (sFlow raw packet header records,
IPFIX/PSAMP ``dataLinkFrameSection`` 315 and ``ipHeaderPacketSection`` 313), so running out
of bytes is normal: we fill what the bytes give (addresses without ports, say) and never
fail. One Numba kernel, :func:`parse_headers`, walks

* Ethernet with 802.1Q / 802.1ad / QinQ tags (the outer VLAN id is kept),
* MPLS label stacks (EtherType 0x8847/0x8848, or a header that starts with MPLS): up to
  :data:`MAX_LABELS` label values are kept, top first; after the bottom of the stack an
  IPv4 or IPv6 payload is told by its version nibble, and a nibble of 0 is a pseudowire
  control word followed by an Ethernet frame (EVPN / L2VPN),
* IPv4 (non-first fragments carry no ports) and IPv6 with hop-by-hop, routing (SRv6
  segment routing headers included), destination-options, AH and fragment headers,
* the first bytes of TCP, UDP and SCTP (ports; TCP flags with NS as bit 8) and ICMP /
  ICMPv6 (type * 256 + code in the destination port, as NetFlow exporters put it).

SRv6 traffic keeps its outer IPv6 header (source -> SID; the protocol is what follows the
segment routing header, e.g. 4 or 41). VXLAN (UDP destination port 4789) is decapsulated
only on request: the key (addresses, ports, protocol, ToS, TCP flags) becomes the inner
packet's, while ``ip_length`` stays the outer packet's - decapsulation changes who the
traffic belongs to, never how much crossed the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

__all__ = [
    "HEADER_ETHERNET",
    "HEADER_IP",
    "HEADER_IPV4",
    "HEADER_IPV6",
    "HEADER_MPLS",
    "INFO_DECAPSULATED",
    "INFO_DEPTH",
    "INFO_DST_PORT",
    "INFO_IP_LENGTH",
    "INFO_IP_VERSION",
    "INFO_PARSED",
    "INFO_PROTOCOL",
    "INFO_SRC_PORT",
    "INFO_TCP_FLAGS",
    "INFO_TOS",
    "INFO_VLAN",
    "MAX_LABELS",
    "N_INFO",
    "VXLAN_PORT",
    "HeaderFields",
    "SampledPacket",
    "parse_header",
    "parse_headers",
]

#: What a header starts with: sFlow ``header_protocol`` numbers, plus 0 for "an IP header
#: of either version" (IPFIX ``ipHeaderPacketSection``).
HEADER_IP = 0
HEADER_ETHERNET = 1
HEADER_IPV4 = 11
HEADER_IPV6 = 12
HEADER_MPLS = 13
#: IANA port of VXLAN (RFC 7348).
VXLAN_PORT = 4789
#: Label values kept per header (IPFIX has ten label elements; deeper stacks are cut).
MAX_LABELS = 10

# Columns of the ``info`` block, one row per header.
INFO_PARSED = 0  # 1 when an IP header was found (addresses are valid)
INFO_IP_VERSION = 1
INFO_PROTOCOL = 2
INFO_TOS = 3
INFO_SRC_PORT = 4
INFO_DST_PORT = 5
INFO_TCP_FLAGS = 6
INFO_IP_LENGTH = 7  # IPv4 total length / IPv6 payload length + 40 of the outer IP header
INFO_VLAN = 8
INFO_DEPTH = 9  # MPLS labels seen (the first MAX_LABELS are in ``labels``)
INFO_DECAPSULATED = 10  # 1 when the key is a VXLAN packet's inner one
N_INFO = 11

_ZERO16 = bytes(16)
# States of the header walk.
_S_ETH, _S_MPLS, _S_IP, _S_V4, _S_V6, _S_DONE = 1, 2, 3, 4, 6, 7


@njit(cache=True, nogil=True, inline="always")
def _be16(b: np.ndarray, p: int) -> int:
    return (int(b[p]) << 8) | int(b[p + 1])


@njit(cache=True, nogil=True)
def _transport(b: np.ndarray, p: int, end: int, proto: int, i: int, info: np.ndarray) -> None:
    """Ports / ICMP type-code / TCP flags from the transport header at ``p`` if it is there."""
    info[i, INFO_SRC_PORT] = 0
    info[i, INFO_DST_PORT] = 0
    info[i, INFO_TCP_FLAGS] = 0
    if (proto == 6 or proto == 17 or proto == 132) and p + 4 <= end:
        info[i, INFO_SRC_PORT] = _be16(b, p)
        info[i, INFO_DST_PORT] = _be16(b, p + 2)
        if proto == 6 and p + 14 <= end:
            info[i, INFO_TCP_FLAGS] = ((int(b[p + 12]) & 1) << 8) | int(b[p + 13])
    elif (proto == 1 or proto == 58) and p + 2 <= end:
        info[i, INFO_DST_PORT] = int(b[p]) * 256 + int(b[p + 1])


@njit(cache=True, nogil=True)
def _parse_one(
    b: np.ndarray,
    o: int,
    end: int,
    kind: int,
    decap: bool,
    i: int,
    addr: np.ndarray,
    info: np.ndarray,
    labels: np.ndarray,
) -> None:
    """Parse the header ``b[o:end]`` that starts with ``kind`` into row ``i`` (every field
    of the row is written)."""
    for k in range(N_INFO):
        info[i, k] = 0
    for k in range(16):
        addr[i, 0, k] = 0
        addr[i, 1, k] = 0
    for k in range(MAX_LABELS):
        labels[i, k] = 0
    p = o
    if kind == HEADER_ETHERNET:
        state = _S_ETH
    elif kind == HEADER_IPV4:
        state = _S_V4
    elif kind == HEADER_IPV6:
        state = _S_V6
    elif kind == HEADER_MPLS:
        state = _S_MPLS
    elif kind == HEADER_IP:
        state = _S_IP
    else:
        return
    # Ends: every Ethernet or MPLS pass consumes bytes, an IP header ends the walk unless
    # it opens the one VXLAN packet allowed.
    while True:
        if state == _S_ETH:
            if p + 14 > end:
                return
            etype = _be16(b, p + 12)
            p += 14
            while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and p + 4 <= end:
                if info[i, INFO_VLAN] == 0:
                    info[i, INFO_VLAN] = _be16(b, p) & 0x0FFF  # the outer tag
                etype = _be16(b, p + 2)
                p += 4
            if etype == 0x0800:
                state = _S_V4
            elif etype == 0x86DD:
                state = _S_V6
            elif etype == 0x8847 or etype == 0x8848:
                state = _S_MPLS
            else:
                return
        elif state == _S_MPLS:
            bottom = False
            while p + 4 <= end:
                entry = (int(b[p]) << 24) | (int(b[p + 1]) << 16) | (int(b[p + 2]) << 8)
                depth = info[i, INFO_DEPTH]
                if depth < MAX_LABELS:
                    labels[i, depth] = entry >> 12
                info[i, INFO_DEPTH] = depth + 1
                p += 4
                if entry & 0x100:
                    bottom = True
                    break
            if not bottom or p >= end:
                return
            nibble = int(b[p]) >> 4
            if nibble == 4:
                state = _S_V4
            elif nibble == 6:
                state = _S_V6
            elif nibble == 0:
                p += 4  # pseudowire control word, then the customer's Ethernet frame
                state = _S_ETH
            else:
                return
        elif state == _S_IP:
            if p >= end:
                return
            nibble = int(b[p]) >> 4
            if nibble == 4:
                state = _S_V4
            elif nibble == 6:
                state = _S_V6
            else:
                return
        elif state == _S_V4:
            if p + 20 > end or int(b[p]) >> 4 != 4:
                return
            ihl = (int(b[p]) & 0x0F) * 4
            proto = int(b[p + 9])
            info[i, INFO_PARSED] = 1
            info[i, INFO_IP_VERSION] = 4
            info[i, INFO_TOS] = b[p + 1]
            info[i, INFO_PROTOCOL] = proto
            if info[i, INFO_DECAPSULATED] == 0:
                info[i, INFO_IP_LENGTH] = _be16(b, p + 2)
            for k in range(10):
                addr[i, 0, k] = 0
                addr[i, 1, k] = 0
            addr[i, 0, 10] = 0xFF
            addr[i, 0, 11] = 0xFF
            addr[i, 1, 10] = 0xFF
            addr[i, 1, 11] = 0xFF
            for k in range(4):
                addr[i, 0, 12 + k] = b[p + 12 + k]
                addr[i, 1, 12 + k] = b[p + 16 + k]
            info[i, INFO_SRC_PORT] = 0
            info[i, INFO_DST_PORT] = 0
            info[i, INFO_TCP_FLAGS] = 0
            if (_be16(b, p + 6) & 0x1FFF) != 0 or ihl < 20:
                return  # only the first fragment carries the transport header
            p += ihl
            _transport(b, p, end, proto, i, info)
            state = _S_DONE
        elif state == _S_V6:
            if p + 40 > end or int(b[p]) >> 4 != 6:
                return
            info[i, INFO_PARSED] = 1
            info[i, INFO_IP_VERSION] = 6
            info[i, INFO_TOS] = ((int(b[p]) & 0x0F) << 4) | (int(b[p + 1]) >> 4)
            if info[i, INFO_DECAPSULATED] == 0:
                info[i, INFO_IP_LENGTH] = _be16(b, p + 4) + 40
            for k in range(16):
                addr[i, 0, k] = b[p + 8 + k]
                addr[i, 1, k] = b[p + 24 + k]
            info[i, INFO_SRC_PORT] = 0
            info[i, INFO_DST_PORT] = 0
            info[i, INFO_TCP_FLAGS] = 0
            nxt = int(b[p + 6])
            p += 40
            cut = False
            for _ext in range(8):  # a bounded walk of the extension headers
                if nxt == 0 or nxt == 43 or nxt == 60 or nxt == 51:
                    if p + 2 > end:
                        cut = True
                        break
                    # AH counts 4-byte words, the others 8-byte ones.
                    step = (int(b[p + 1]) + 2) * 4 if nxt == 51 else (int(b[p + 1]) + 1) * 8
                    nxt = int(b[p])
                    p += step
                elif nxt == 44:  # fragment header: later fragments carry no ports
                    if p + 8 > end:
                        cut = True
                        break
                    later = (_be16(b, p + 2) >> 3) != 0
                    nxt = int(b[p])
                    p += 8
                    if later:
                        cut = True
                        break
                else:
                    break
            info[i, INFO_PROTOCOL] = nxt
            if cut:
                return
            _transport(b, p, end, nxt, i, info)
            state = _S_DONE
        if state == _S_DONE:
            proto = info[i, INFO_PROTOCOL]
            # p is the transport header here: UDP 8 bytes, VXLAN 8 bytes (flags: I bit).
            if (
                decap
                and proto == 17
                and info[i, INFO_DST_PORT] == VXLAN_PORT
                and info[i, INFO_DECAPSULATED] == 0
                and p + 16 + 14 <= end
                and (int(b[p + 8]) & 0x08) != 0
            ):
                info[i, INFO_DECAPSULATED] = 1
                p += 16
                state = _S_ETH
                continue
            return


@njit(cache=True, nogil=True)
def parse_headers(
    buf: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    kinds: np.ndarray,
    decapsulate_vxlan: bool,
    addr: np.ndarray,
    info: np.ndarray,
    labels: np.ndarray,
) -> None:
    """Parse header ``i`` = ``buf[offsets[i]:offsets[i]+lengths[i]]`` (starting with
    ``kinds[i]``) into row ``i`` of ``addr`` ``(n, 2, 16)`` (source, destination; IPv4
    mapped), ``info`` ``(n, N_INFO)`` int64 and ``labels`` ``(n, MAX_LABELS)`` uint32."""
    for i in range(offsets.shape[0]):
        o = offsets[i]
        _parse_one(buf, o, o + lengths[i], kinds[i], decapsulate_vxlan, i, addr, info, labels)


@njit(cache=True, nogil=True)
def _parse_single(
    buf: np.ndarray,
    kind: int,
    decapsulate_vxlan: bool,
    addr: np.ndarray,
    info: np.ndarray,
    labels: np.ndarray,
) -> None:
    """:func:`parse_headers` for one header, the whole of ``buf`` (sFlow: one per sample)."""
    _parse_one(buf, 0, buf.shape[0], kind, decapsulate_vxlan, 0, addr, info, labels)


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
    mpls_labels: tuple[int, ...] = field(default=())


@dataclass(slots=True)
class HeaderFields:
    """The parse of many headers at once: the three blocks :func:`parse_headers` fills."""

    addr: np.ndarray
    info: np.ndarray
    labels: np.ndarray

    @classmethod
    def parse(
        cls,
        buf: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        kinds: np.ndarray,
        decapsulate_vxlan: bool = False,
    ) -> HeaderFields:
        """Parse every header (see :func:`parse_headers`)."""
        n = offsets.shape[0]
        out = cls(
            np.empty((n, 2, 16), np.uint8),
            np.empty((n, N_INFO), np.int64),
            np.empty((n, MAX_LABELS), np.uint32),
        )
        if n:
            parse_headers(
                buf,
                np.asarray(offsets, np.int64),
                np.asarray(lengths, np.int64),
                np.asarray(kinds, np.int64),
                decapsulate_vxlan,
                out.addr,
                out.info,
                out.labels,
            )
        return out


def parse_header(kind: int, data: bytes, decapsulate_vxlan: bool = False) -> SampledPacket:
    """One header's flow key; ``parsed`` is False when no IP header could be found."""
    addr = np.empty((1, 2, 16), np.uint8)
    row = np.empty((1, N_INFO), np.int64)
    labels = np.empty((1, MAX_LABELS), np.uint32)
    _parse_single(np.frombuffer(data, np.uint8), kind, decapsulate_vxlan, addr, row, labels)
    info = row[0].tolist()
    depth = min(info[INFO_DEPTH], MAX_LABELS)
    parsed = bool(info[INFO_PARSED])
    pair = addr.tobytes()
    return SampledPacket(
        src_addr=pair[:16],
        dst_addr=pair[16:],
        src_port=info[INFO_SRC_PORT],
        dst_port=info[INFO_DST_PORT],
        protocol=info[INFO_PROTOCOL],
        tcp_flags=info[INFO_TCP_FLAGS],
        tos=info[INFO_TOS],
        ip_length=info[INFO_IP_LENGTH] if parsed else None,
        vlan=info[INFO_VLAN],
        parsed=parsed,
        mpls_labels=tuple(labels[0, :depth].tolist()) if depth else (),
    )
