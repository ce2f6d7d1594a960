"""Numba decode of one captured frame into packet columns, and the packet schema.

The container readers (:mod:`collectors.pcap.reader`) walk records and call
:func:`decode_packet` for each frame. It reads the link layer (Ethernet with
802.1Q / QinQ tags, Linux cooked SLL and SLL2, raw IP, BSD loopback), IPv4 or
IPv6 (hop-by-hop, routing, destination-options and fragment extension headers,
as softflowd walks them) and the first bytes of TCP, UDP, ICMP or ICMPv6.

Columns live in a few 2-D arrays whose rows are the fields (``u32c[U32_IP_LEN]``
is the IP length of every packet), so each field is contiguous and goes to Arrow
without a copy. Addresses are ``(n, 16)`` uint8 rows, IPv4 mapped as
``::ffff:a.b.c.d``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

from collectors.schemas import TIMESTAMP

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "N_U8",
    "N_U16",
    "N_U32",
    "PACKET_SCHEMA",
    "REJECT_REASONS",
    "STATUS_NON_IP",
    "STATUS_OK",
    "U8_FRAGMENT",
    "U8_ICMP_CODE",
    "U8_ICMP_TYPE",
    "U8_IP_VERSION",
    "U8_L4_TRUNCATED",
    "U8_PROTOCOL",
    "U8_STATUS",
    "U8_TOS",
    "U16_DST_PORT",
    "U16_SRC_PORT",
    "U16_TCP_FLAGS",
    "U16_VLAN",
    "U32_CAP_LEN",
    "U32_IP_END",
    "U32_IP_LEN",
    "U32_L4_OFFSET",
    "U32_WIRE_LEN",
    "decode_frames",
    "decode_packet",
]

# Link types (tcpdump.org/linktypes.html); 12 and 14 are DLT_RAW on some BSDs.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

# Row indices of the column blocks. U32_L4_OFFSET is where the transport header starts and
# U32_IP_END where the IP packet ends by its length field (link padding follows), both
# counted from the frame's first byte, 0 when not reached: UDP payloads are read between.
U32_WIRE_LEN, U32_CAP_LEN, U32_IP_LEN, U32_L4_OFFSET, U32_IP_END = 0, 1, 2, 3, 4
N_U32 = 5
U16_SRC_PORT, U16_DST_PORT, U16_TCP_FLAGS, U16_VLAN = 0, 1, 2, 3
N_U16 = 4
U8_IP_VERSION, U8_PROTOCOL, U8_TOS, U8_ICMP_TYPE = 0, 1, 2, 3
U8_ICMP_CODE, U8_FRAGMENT, U8_L4_TRUNCATED, U8_STATUS = 4, 5, 6, 7
N_U8 = 8

# Packet status codes. OK and NON_IP are normal; the others are rejected.
STATUS_OK = 0
STATUS_NON_IP = 1
STATUS_TRUNCATED_LINK = 2
STATUS_TRUNCATED_IP = 3
STATUS_BAD_IP_VERSION = 4
STATUS_BAD_IP_HEADER = 5
STATUS_UNSUPPORTED_LINK = 6

#: status code -> reason code written to the rejected dataset.
REJECT_REASONS = {
    STATUS_TRUNCATED_LINK: "truncated_link_header",
    STATUS_TRUNCATED_IP: "truncated_ip_header",
    STATUS_BAD_IP_VERSION: "bad_ip_version",
    STATUS_BAD_IP_HEADER: "bad_ip_header_length",
    STATUS_UNSUPPORTED_LINK: "unsupported_linktype",
}


def _f(name: str, type_: pa.DataType, doc: str) -> pa.Field:
    return pa.field(name, type_, nullable=False, metadata={"doc": doc})


PACKET_SCHEMA = pa.schema(
    [
        _f("time", TIMESTAMP, "capture time, UTC (nanosecond captures are floored to us)"),
        _f("source_file", pa.string(), "capture file (or interface) the packet came from"),
        _f("offset", pa.int64(), "byte offset of the record in the (decompressed) file"),
        _f("wire_len", pa.uint32(), "original frame length on the wire"),
        _f("cap_len", pa.uint32(), "captured length (less than wire_len when snaplen cut it)"),
        _f("vlan", pa.uint16(), "outer 802.1Q / 802.1ad VLAN id; 0 if untagged"),
        _f("ip_version", pa.uint8(), "4, 6, or 0 for frames that are not IP"),
        _f("src_addr", pa.binary(16), "source address (IPv4 mapped); zeros if not IP"),
        _f("dst_addr", pa.binary(16), "destination address (IPv4 mapped); zeros if not IP"),
        _f(
            "protocol",
            pa.uint8(),
            "IP protocol / IPv6 next header after hop-by-hop, routing, dest-options, fragment",
        ),
        _f("tos", pa.uint8(), "IPv4 ToS / IPv6 traffic class"),
        _f(
            "ip_len",
            pa.uint32(),
            "IP length: IPv4 total length, IPv6 40 + payload length "
            "(from the frame length when the header says 0)",
        ),
        _f("src_port", pa.uint16(), "TCP/UDP source port; 0 otherwise or if not captured"),
        _f("dst_port", pa.uint16(), "TCP/UDP destination port; 0 otherwise or if not captured"),
        _f("tcp_flags", pa.uint16(), "TCP flags (9 bits, NS..FIN); 0 if not TCP"),
        _f("icmp_type", pa.uint8(), "ICMP / ICMPv6 type; 0 otherwise"),
        _f("icmp_code", pa.uint8(), "ICMP / ICMPv6 code; 0 otherwise"),
        _f("fragment", pa.uint8(), "0 not a fragment, 1 first fragment, 2 later fragment"),
        _f(
            "l4_truncated",
            pa.uint8(),
            "1 if the transport header was cut by snaplen (ports/flags left 0)",
        ),
    ]
)


@njit(cache=True, nogil=True, inline="always")
def _be16(buf: np.ndarray, p: int) -> int:
    return (int(buf[p]) << 8) | int(buf[p + 1])


@njit(cache=True, nogil=True, inline="always")
def _be32(buf: np.ndarray, p: int) -> int:
    return (int(buf[p]) << 24) | (int(buf[p + 1]) << 16) | (int(buf[p + 2]) << 8) | int(buf[p + 3])


@njit(cache=True, nogil=True, inline="always")
def _transport(
    buf: np.ndarray,
    p: int,
    avail: int,
    proto: int,
    i: int,
    u16c: np.ndarray,
    u8c: np.ndarray,
) -> None:
    """Ports, TCP flags or ICMP type/code from the transport header at ``p``."""
    if proto == 6:
        if avail >= 14:
            u16c[U16_SRC_PORT, i] = _be16(buf, p)
            u16c[U16_DST_PORT, i] = _be16(buf, p + 2)
            u16c[U16_TCP_FLAGS, i] = ((int(buf[p + 12]) & 1) << 8) | int(buf[p + 13])
        else:
            u8c[U8_L4_TRUNCATED, i] = 1
            if avail >= 4:
                u16c[U16_SRC_PORT, i] = _be16(buf, p)
                u16c[U16_DST_PORT, i] = _be16(buf, p + 2)
    elif proto == 17 or proto == 132 or proto == 136:
        # UDP, SCTP and UDP-Lite all start with the two ports.
        if avail >= 4:
            u16c[U16_SRC_PORT, i] = _be16(buf, p)
            u16c[U16_DST_PORT, i] = _be16(buf, p + 2)
        if avail < 8 and proto == 17:
            u8c[U8_L4_TRUNCATED, i] = 1
    elif proto == 1 or proto == 58:
        if avail >= 2:
            u8c[U8_ICMP_TYPE, i] = buf[p]
            u8c[U8_ICMP_CODE, i] = buf[p + 1]
        else:
            u8c[U8_L4_TRUNCATED, i] = 1


@njit(cache=True, nogil=True)
def decode_packet(
    buf: np.ndarray,
    off: int,
    caplen: int,
    wirelen: int,
    linktype: int,
    i: int,
    src: np.ndarray,
    dst: np.ndarray,
    u32c: np.ndarray,
    u16c: np.ndarray,
    u8c: np.ndarray,
) -> None:
    """Decode the frame ``buf[off:off+caplen]`` into row ``i`` of the columns.

    Every field of row ``i`` is written (zeros where absent), so the column
    arrays may be reused without clearing.
    """
    u32c[U32_WIRE_LEN, i] = wirelen
    u32c[U32_CAP_LEN, i] = caplen
    u32c[U32_IP_LEN, i] = 0
    u32c[U32_L4_OFFSET, i] = 0
    u32c[U32_IP_END, i] = 0
    for k in range(N_U16):
        u16c[k, i] = 0
    for k in range(N_U8):
        u8c[k, i] = 0
    for k in range(16):
        src[i, k] = 0
        dst[i, k] = 0
    end = off + caplen
    # Link layer: find the network header and its kind (4, 6, 0 = by version nibble).
    p = off
    kind = -1
    if linktype == LINKTYPE_ETHERNET:
        if caplen < 14:
            u8c[U8_STATUS, i] = STATUS_TRUNCATED_LINK
            return
        etype = _be16(buf, off + 12)
        p = off + 14
        first = True
        while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            if p + 4 > end:
                u8c[U8_STATUS, i] = STATUS_TRUNCATED_LINK
                return
            if first:
                u16c[U16_VLAN, i] = _be16(buf, p) & 0x0FFF
                first = False
            etype = _be16(buf, p + 2)
            p += 4
        kind = 4 if etype == 0x0800 else (6 if etype == 0x86DD else -1)
    elif linktype in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        hl = 16 if linktype == LINKTYPE_LINUX_SLL else 20
        if caplen < hl:
            u8c[U8_STATUS, i] = STATUS_TRUNCATED_LINK
            return
        etype = _be16(buf, off + (14 if linktype == LINKTYPE_LINUX_SLL else 0))
        p = off + hl
        if etype == 0x8100 or etype == 0x88A8:
            if p + 4 > end:
                u8c[U8_STATUS, i] = STATUS_TRUNCATED_LINK
                return
            u16c[U16_VLAN, i] = _be16(buf, p) & 0x0FFF
            etype = _be16(buf, p + 2)
            p += 4
        kind = 4 if etype == 0x0800 else (6 if etype == 0x86DD else -1)
    elif linktype == LINKTYPE_RAW or linktype == 12 or linktype == 14:
        kind = 0
    elif linktype == LINKTYPE_IPV4:
        kind = 4
    elif linktype == LINKTYPE_IPV6:
        kind = 6
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if caplen < 4:
            u8c[U8_STATUS, i] = STATUS_TRUNCATED_LINK
            return
        if linktype == LINKTYPE_LOOP:
            fam = _be32(buf, off)
        else:  # host byte order of the writer: accept either
            fam = _be32(buf, off)
            if fam > 0xFFFF:
                fam = (
                    int(buf[off])
                    | (int(buf[off + 1]) << 8)
                    | (int(buf[off + 2]) << 16)
                    | (int(buf[off + 3]) << 24)
                )
        p = off + 4
        kind = 4 if fam == 2 else (6 if fam == 10 or fam == 24 or fam == 28 or fam == 30 else -1)
    else:
        u8c[U8_STATUS, i] = STATUS_UNSUPPORTED_LINK
        return
    if kind == -1:
        u8c[U8_STATUS, i] = STATUS_NON_IP
        return
    if p >= end:
        u8c[U8_STATUS, i] = STATUS_TRUNCATED_IP
        return
    version = int(buf[p]) >> 4
    if kind == 0:
        kind = version
    if kind == 4:
        if p + 20 > end:
            u8c[U8_STATUS, i] = STATUS_TRUNCATED_IP
            return
        if version != 4:
            u8c[U8_STATUS, i] = STATUS_BAD_IP_VERSION
            return
        ihl = (int(buf[p]) & 0x0F) * 4
        if ihl < 20:
            u8c[U8_STATUS, i] = STATUS_BAD_IP_HEADER
            return
        if p + ihl > end:
            u8c[U8_STATUS, i] = STATUS_TRUNCATED_IP
            return
        u8c[U8_IP_VERSION, i] = 4
        u8c[U8_TOS, i] = buf[p + 1]
        total = _be16(buf, p + 2)
        if total == 0:  # TSO / offloaded captures leave it 0: use the frame
            total = wirelen - (p - off)
        u32c[U32_IP_LEN, i] = total
        u32c[U32_IP_END, i] = p - off + total
        proto = int(buf[p + 9])
        u8c[U8_PROTOCOL, i] = proto
        src[i, 10] = 0xFF
        src[i, 11] = 0xFF
        dst[i, 10] = 0xFF
        dst[i, 11] = 0xFF
        for k in range(4):
            src[i, 12 + k] = buf[p + 12 + k]
            dst[i, 12 + k] = buf[p + 16 + k]
        frag = _be16(buf, p + 6)
        if (frag & 0x1FFF) != 0:
            u8c[U8_FRAGMENT, i] = 2
            return
        if (frag & 0x2000) != 0:
            u8c[U8_FRAGMENT, i] = 1
        u32c[U32_L4_OFFSET, i] = p + ihl - off
        _transport(buf, p + ihl, end - (p + ihl), proto, i, u16c, u8c)
        return
    if kind == 6:
        if p + 40 > end:
            u8c[U8_STATUS, i] = STATUS_TRUNCATED_IP
            return
        if version != 6:
            u8c[U8_STATUS, i] = STATUS_BAD_IP_VERSION
            return
        u8c[U8_IP_VERSION, i] = 6
        u8c[U8_TOS, i] = ((int(buf[p]) & 0x0F) << 4) | (int(buf[p + 1]) >> 4)
        plen = _be16(buf, p + 4)
        u32c[U32_IP_LEN, i] = 40 + plen if plen != 0 else wirelen - (p - off)
        u32c[U32_IP_END, i] = p - off + u32c[U32_IP_LEN, i]
        for k in range(16):
            src[i, k] = buf[p + 8 + k]
            dst[i, k] = buf[p + 24 + k]
        nxt = int(buf[p + 6])
        q = p + 40
        # Walk the extension headers softflowd walks; stop at anything else.
        while True:
            if nxt == 0 or nxt == 43 or nxt == 60:
                if q + 2 > end:
                    u8c[U8_PROTOCOL, i] = nxt
                    u8c[U8_L4_TRUNCATED, i] = 1
                    return
                hl = (int(buf[q + 1]) + 1) * 8
                if q + hl > end:
                    u8c[U8_PROTOCOL, i] = nxt
                    u8c[U8_L4_TRUNCATED, i] = 1
                    return
                nxt = int(buf[q])
                q += hl
            elif nxt == 44:
                if q + 8 > end:
                    u8c[U8_PROTOCOL, i] = nxt
                    u8c[U8_L4_TRUNCATED, i] = 1
                    return
                fo = _be16(buf, q + 2)
                nxt = int(buf[q])
                q += 8
                if (fo & 0xFFF8) != 0:
                    u8c[U8_FRAGMENT, i] = 2
                    u8c[U8_PROTOCOL, i] = nxt
                    return
                u8c[U8_FRAGMENT, i] = 1
            else:
                break
        u8c[U8_PROTOCOL, i] = nxt
        u32c[U32_L4_OFFSET, i] = q - off
        _transport(buf, q, end - q, nxt, i, u16c, u8c)
        return
    u8c[U8_STATUS, i] = STATUS_BAD_IP_VERSION


@njit(cache=True, nogil=True)
def decode_frames(
    buf: np.ndarray,
    offsets: np.ndarray,
    caplens: np.ndarray,
    wirelens: np.ndarray,
    linktype: int,
    src: np.ndarray,
    dst: np.ndarray,
    u32c: np.ndarray,
    u16c: np.ndarray,
    u8c: np.ndarray,
) -> None:
    """Decode frames laid out at ``offsets`` in ``buf`` (live capture path)."""
    for i in range(offsets.shape[0]):
        decode_packet(
            buf, offsets[i], caplens[i], wirelens[i], linktype, i, src, dst, u32c, u16c, u8c
        )
