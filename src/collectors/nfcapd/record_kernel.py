"""One Numba pass over a decompressed nfcapd data block: V3 flow records to flow columns.

nfdump 1.7 stores each flow as a V3 record (type 11): a 12-byte header (type, size,
element count, engine type/id, exporter sysid, flags, NetFlow version) followed by
extension elements, each with a 4-byte header (element id, length). All integers are
little-endian (the magic 0xA50C was checked by the caller); IPv4 addresses are host-order
uint32, IPv6 addresses two host-order uint64 (high word first). Elements read here:

==  =====================  ==================================================
id  element                flow columns
==  =====================  ==================================================
1   EXgenericFlow          times (ms), packets, bytes, ports, protocol, flags, tos
2   EXipv4Flow             src/dst address (IPv4)
3   EXipv6Flow             src/dst address (IPv6)
4   EXflowMisc             input/output interface
5   EXcntFlow              aggregated flow count (counted; one row per record)
6   EXvLan                 vlan (source VLAN)
7   EXasRouting            src/dst AS
10  EXipNextHopV4          next hop
11  EXipNextHopV6          next hop
12  EXipReceivedV4         exporter (the address the export came from)
13  EXipReceivedV6         exporter
14  EXmplsLabel            MPLS label stack (label = entry >> 4, to bottom of stack)
==  =====================  ==================================================

Exporter-info records (type 7) give each sysid its address and observation domain; a
flow without an EXipReceived element takes its exporter from them. Other record and
element types are skipped by their length. A record that breaks the framing (size past
the block, an element past the record) stops the block: the flows before it are kept.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["RECORD_STATUS", "decode_block"]

#: Status per record (0 = a flow row, 1 = not a flow, e.g. exporter info) -> reason code.
RECORD_STATUS = {
    2: "bad_record_size",
    3: "bad_element_length",
    4: "no_generic_flow",
    5: "no_addresses",
}
V3_RECORD = 11
EXPORTER_INFO = 7


@njit(cache=True, nogil=True, inline="always")
def _u16(b: np.ndarray, p: int) -> int:
    return int(b[p]) | (int(b[p + 1]) << 8)


@njit(cache=True, nogil=True, inline="always")
def _u32(b: np.ndarray, p: int) -> int:
    return _u16(b, p) | (_u16(b, p + 2) << 16)


@njit(cache=True, nogil=True, inline="always")
def _u64(b: np.ndarray, p: int) -> np.uint64:
    return np.uint64(_u32(b, p)) | (np.uint64(_u32(b, p + 4)) << np.uint64(32))


@njit(cache=True, nogil=True, inline="always")
def _put_v4(out: np.ndarray, row: int, b: np.ndarray, p: int) -> None:
    # host-order uint32 -> ::ffff:a.b.c.d (network order bytes)
    for k in range(10):
        out[row, k] = 0
    out[row, 10] = 0xFF
    out[row, 11] = 0xFF
    for k in range(4):
        out[row, 12 + k] = b[p + 3 - k]


@njit(cache=True, nogil=True, inline="always")
def _put_v6(out: np.ndarray, row: int, b: np.ndarray, p: int) -> None:
    # two host-order uint64 (high, low) -> 16 network-order bytes
    for k in range(8):
        out[row, k] = b[p + 7 - k]
        out[row, 8 + k] = b[p + 15 - k]


@njit(cache=True, nogil=True)
def decode_block(
    b: np.ndarray,
    count: int,
    ints: np.ndarray,
    addrs: np.ndarray,
    has: np.ndarray,
    mpls: np.ndarray,
    status: np.ndarray,
    offsets: np.ndarray,
    exporter_addr: np.ndarray,
    exporter_domain: np.ndarray,
    exporter_known: np.ndarray,
) -> tuple[int, int, int]:
    """Decode up to ``count`` records of block ``b``; returns (records read, flows, error
    field: 0 or the element id / -1 record header / -2 size that broke the framing).

    Per flow row ``i``: ``ints[i]`` = first ms, last ms, packets, bytes, src port, dst
    port, protocol, tcp flags, tos, input if, output if, src as, dst as, vlan, sysid,
    NetFlow version, aggregated flows; ``addrs[i]`` = src, dst, next hop, exporter (16
    bytes each); ``has[i]`` = next hop, exporter, mpls flags; ``mpls[i]`` = labels (count
    first). ``status`` / ``offsets`` are per record read.
    """
    n = b.shape[0]
    pos = 0
    flows = 0
    for r in range(count):
        offsets[r] = pos
        if pos + 4 > n:
            status[r] = 2
            return r + 1, flows, -2
        rtype = _u16(b, pos)
        size = _u16(b, pos + 2)
        if size < 4 or pos + size > n:
            status[r] = 2
            return r + 1, flows, -2
        if rtype == EXPORTER_INFO and size >= 32:
            sysid = _u16(b, pos + 26)
            family = _u16(b, pos + 24)
            if family == 2:
                _put_v4(exporter_addr, sysid, b, pos + 16)
            else:
                _put_v6(exporter_addr, sysid, b, pos + 8)
            exporter_domain[sysid] = _u32(b, pos + 28)
            exporter_known[sysid] = 1
            status[r] = 1
        elif rtype == V3_RECORD and size >= 12:
            elements = _u16(b, pos + 4)
            row = flows
            for k in range(ints.shape[1]):
                ints[row, k] = 0
            for k in range(has.shape[1]):
                has[row, k] = 0
            ints[row, 14] = _u16(b, pos + 8)
            ints[row, 15] = b[pos + 11]
            ints[row, 16] = 1
            generic = False
            address = False
            p = pos + 12
            end = pos + size
            bad = 0
            for _ in range(elements):
                if p + 4 > end:
                    bad = -1
                    break
                eid = _u16(b, p)
                elen = _u16(b, p + 2)
                if elen < 4 or p + elen > end:
                    bad = eid if eid > 0 else -1
                    break
                q = p + 4
                if eid == 1:
                    if elen < 52:
                        bad = eid
                        break
                    ints[row, 0] = _u64(b, q)
                    ints[row, 1] = _u64(b, q + 8)
                    ints[row, 2] = _u64(b, q + 24)
                    ints[row, 3] = _u64(b, q + 32)
                    ints[row, 4] = _u16(b, q + 40)
                    ints[row, 5] = _u16(b, q + 42)
                    ints[row, 6] = b[q + 44]
                    ints[row, 7] = b[q + 45]
                    ints[row, 8] = b[q + 47]
                    generic = True
                elif eid == 2 or eid == 3:
                    if elen < (12 if eid == 2 else 36):
                        bad = eid
                        break
                    if eid == 2:
                        _put_v4(addrs[0], row, b, q)
                        _put_v4(addrs[1], row, b, q + 4)
                    else:
                        _put_v6(addrs[0], row, b, q)
                        _put_v6(addrs[1], row, b, q + 16)
                    address = True
                elif eid == 4 and elen >= 12:
                    ints[row, 9] = _u32(b, q)
                    ints[row, 10] = _u32(b, q + 4)
                elif eid == 5 and elen >= 12:
                    ints[row, 16] = _u64(b, q)
                elif eid == 6 and elen >= 8:
                    ints[row, 13] = _u32(b, q) & 0xFFFF
                elif eid == 7 and elen >= 12:
                    ints[row, 11] = _u32(b, q)
                    ints[row, 12] = _u32(b, q + 4)
                elif (eid == 10 and elen >= 8) or (eid == 11 and elen >= 20):
                    if eid == 10:
                        _put_v4(addrs[2], row, b, q)
                    else:
                        _put_v6(addrs[2], row, b, q)
                    has[row, 0] = 1
                elif (eid == 12 and elen >= 8) or (eid == 13 and elen >= 20):
                    if eid == 12:
                        _put_v4(addrs[3], row, b, q)
                    else:
                        _put_v6(addrs[3], row, b, q)
                    has[row, 1] = 1
                elif eid == 14 and elen >= 44:
                    labels = 0
                    for k in range(10):
                        entry = _u32(b, q + 4 * k)
                        if entry == 0:
                            break
                        mpls[row, 1 + labels] = entry >> 4
                        labels += 1
                        if entry & 1:  # bottom of stack
                            break
                    mpls[row, 0] = labels
                    has[row, 2] = 1 if labels > 0 else 0
                p += elen
            if bad != 0:
                status[r] = 3
                return r + 1, flows, bad
            if not generic:
                status[r] = 4
            elif not address:
                status[r] = 5
            else:
                if has[row, 1] == 0 and exporter_known[ints[row, 14]] == 1:
                    for k in range(16):
                        addrs[3, row, k] = exporter_addr[ints[row, 14], k]
                    has[row, 1] = 1
                status[r] = 0
                flows += 1
        else:
            status[r] = 1  # appendix, statistics, samplers: not flows
        pos += size
    return count, flows, 0
