"""NetFlow v1, v5 and v7: fixed-layout records decoded in bulk by one Numba kernel.

Many datagrams go in per call as one concatenated byte buffer plus offsets; a first
pass validates every header and counts records, a second writes the flow columns
directly (no Python loop per record or per datagram). Times are absolute: the export
time from ``unix_secs``/``unix_nsecs`` minus the signed 32-bit distance between
``sysUptime`` and the record's ``First``/``Last`` - wrap-safe when the uptime counter
rolls over at 2**32 ms.

Header layouts (bytes): v1 16, v5 24, v7 24; records: v1 48, v5 48, v7 52.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from collectors.flows.batch import FORMAT_CODES, FlowColumns

__all__ = [
    "STATUS_REASONS",
    "V5Result",
    "decode_legacy_many",
    "pack_datagrams",
]

#: Status code per datagram -> reason code (0 means decoded).
STATUS_REASONS: dict[int, str] = {
    1: "truncated",
    2: "unsupported_version",
    3: "bad_length",
}

_FMT_V1 = FORMAT_CODES["netflow_v1"]
_FMT_V5 = FORMAT_CODES["netflow_v5"]
_FMT_V7 = FORMAT_CODES["netflow_v7"]


@dataclass
class V5Result:
    """Flows of a bulk call plus one header summary per datagram (for loss accounting)."""

    columns: FlowColumns
    status: np.ndarray  # int8 per datagram, 0 = ok, else a STATUS_REASONS key
    version: np.ndarray  # uint16 per datagram
    count: np.ndarray  # uint32 records per datagram
    sequence: np.ndarray  # uint32 flow_sequence (0 for v1)
    domain: np.ndarray  # uint32 engine_type << 8 | engine_id (v5), else 0
    first_row: np.ndarray  # int64 index of each datagram's first flow in ``columns``


def pack_datagrams(datagrams: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate datagrams into one uint8 buffer; return it and int64 offsets (n + 1)."""
    lengths = np.fromiter(map(len, datagrams), dtype=np.int64, count=len(datagrams))
    offsets = np.zeros(len(datagrams) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buf = np.frombuffer(b"".join(datagrams), dtype=np.uint8)
    return buf, offsets


@njit(cache=True, nogil=True, inline="always")
def _u16(b: np.ndarray, o: int) -> np.int64:
    return (np.int64(b[o]) << 8) | np.int64(b[o + 1])


@njit(cache=True, nogil=True, inline="always")
def _u32(b: np.ndarray, o: int) -> np.int64:
    return (
        (np.int64(b[o]) << 24)
        | (np.int64(b[o + 1]) << 16)
        | (np.int64(b[o + 2]) << 8)
        | np.int64(b[o + 3])
    )


@njit(cache=True, nogil=True)
def _scan(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    status: np.ndarray,
    version: np.ndarray,
    count: np.ndarray,
    sequence: np.ndarray,
    domain: np.ndarray,
    first_row: np.ndarray,
) -> int:
    """Validate headers; fill per-datagram summaries; return the total number of flows."""
    total = 0
    for i in range(starts.shape[0]):
        start = starts[i]
        size = ends[i] - start
        first_row[i] = total
        if size < 4:
            status[i] = 1
            continue
        ver = _u16(buf, start)
        version[i] = ver
        if ver == 1:
            hdr, rec = 16, 48
        elif ver == 5:
            hdr, rec = 24, 48
        elif ver == 7:
            hdr, rec = 24, 52
        else:
            status[i] = 2
            continue
        if size < hdr:
            status[i] = 1
            continue
        n = _u16(buf, start + 2)
        if hdr + n * rec > size:
            status[i] = 3
            continue
        count[i] = n
        if ver != 1:
            sequence[i] = _u32(buf, start + 16)
        if ver == 5:
            domain[i] = (np.int64(buf[start + 20]) << 8) | np.int64(buf[start + 21])
        total += int(n)
    return total


@njit(cache=True, nogil=True, inline="always")
def _put_v4(dst: np.ndarray, row: int, b: np.ndarray, o: int) -> None:
    dst[row, 10] = 0xFF
    dst[row, 11] = 0xFF
    dst[row, 12] = b[o]
    dst[row, 13] = b[o + 1]
    dst[row, 14] = b[o + 2]
    dst[row, 15] = b[o + 3]


@njit(cache=True, nogil=True)
def _fill(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    exporters: np.ndarray,
    status: np.ndarray,
    version: np.ndarray,
    count: np.ndarray,
    domain: np.ndarray,
    first_row: np.ndarray,
    c_exporter: np.ndarray,
    c_domain: np.ndarray,
    c_start: np.ndarray,
    c_end: np.ndarray,
    c_src: np.ndarray,
    c_dst: np.ndarray,
    c_sport: np.ndarray,
    c_dport: np.ndarray,
    c_proto: np.ndarray,
    c_flags: np.ndarray,
    c_tos: np.ndarray,
    c_bytes: np.ndarray,
    c_packets: np.ndarray,
    c_in: np.ndarray,
    c_out: np.ndarray,
    c_src_as: np.ndarray,
    c_dst_as: np.ndarray,
    c_nh: np.ndarray,
    c_nh_valid: np.ndarray,
    c_sampling: np.ndarray,
    c_format: np.ndarray,
) -> None:
    for i in range(starts.shape[0]):
        if status[i] != 0:
            continue
        base = starts[i]
        ver = version[i]
        uptime = _u32(buf, base + 4)
        export_us = _u32(buf, base + 8) * 1_000_000 + _u32(buf, base + 12) // 1000
        sampling = 0  # not announced (null): v1 and v7 have no sampling field
        if ver == 1:
            hdr, rec, fmt = 16, 48, _FMT_V1
        elif ver == 5:
            hdr, rec, fmt = 24, 48, _FMT_V5
            sampling = int(_u16(buf, base + 22) & 0x3FFF)  # 0: not announced
        else:
            hdr, rec, fmt = 24, 52, _FMT_V7
        row = first_row[i]
        for k in range(count[i]):
            o = base + hdr + k * rec
            for j in range(16):
                c_exporter[row, j] = exporters[i, j]
            c_domain[row] = domain[i]
            _put_v4(c_src, row, buf, o)
            _put_v4(c_dst, row, buf, o + 4)
            _put_v4(c_nh, row, buf, o + 8)
            c_nh_valid[row] = True
            c_in[row] = _u16(buf, o + 12)
            c_out[row] = _u16(buf, o + 14)
            c_packets[row] = _u32(buf, o + 16)
            c_bytes[row] = _u32(buf, o + 20)
            # Signed 32-bit distance from the record's uptime stamp to the header's:
            # correct across the 2**32 ms uptime wrap and for stamps slightly ahead.
            d_first = np.int32(np.uint32(uptime - _u32(buf, o + 24)))
            d_last = np.int32(np.uint32(uptime - _u32(buf, o + 28)))
            c_start[row] = export_us - np.int64(d_first) * 1000
            c_end[row] = export_us - np.int64(d_last) * 1000
            c_sport[row] = _u16(buf, o + 32)
            c_dport[row] = _u16(buf, o + 34)
            if ver == 1:
                c_proto[row] = buf[o + 38]
                c_tos[row] = buf[o + 39]
                c_flags[row] = buf[o + 40]
            else:
                c_flags[row] = buf[o + 37]
                c_proto[row] = buf[o + 38]
                c_tos[row] = buf[o + 39]
                c_src_as[row] = _u16(buf, o + 40)
                c_dst_as[row] = _u16(buf, o + 42)
            c_sampling[row] = sampling
            c_format[row] = fmt
            row += 1


def decode_legacy_many(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, exporters: np.ndarray
) -> V5Result:
    """Decode NetFlow v1/v5/v7 datagrams ``buf[starts[i]:ends[i]]`` in one pass.

    ``exporters`` is an ``(n, 16)`` uint8 array of exporter addresses. Datagrams that
    fail validation get a non-zero ``status`` and contribute no flows; the rest are
    unaffected.
    """
    n = starts.shape[0]
    status = np.zeros(n, np.int8)
    version = np.zeros(n, np.uint16)
    count = np.zeros(n, np.uint32)
    sequence = np.zeros(n, np.uint32)
    domain = np.zeros(n, np.uint32)
    first_row = np.zeros(n, np.int64)
    total = _scan(buf, starts, ends, status, version, count, sequence, domain, first_row)
    cols = FlowColumns.allocate(int(total))
    _fill(
        buf,
        starts,
        ends,
        exporters,
        status,
        version,
        count,
        domain,
        first_row,
        cols.exporter,
        cols.observation_domain,
        cols.flow_start,
        cols.flow_end,
        cols.src_addr,
        cols.dst_addr,
        cols.src_port,
        cols.dst_port,
        cols.protocol,
        cols.tcp_flags,
        cols.tos,
        cols.bytes,
        cols.packets,
        cols.input_if,
        cols.output_if,
        cols.src_as,
        cols.dst_as,
        cols.next_hop,
        cols.next_hop_valid,
        cols.sampling_interval,
        cols.source_format,
    )
    return V5Result(cols, status, version, count, sequence, domain, first_row)
