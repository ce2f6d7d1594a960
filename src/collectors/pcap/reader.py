"""pcap and pcapng capture files to packet columns, window by window.

Plain files are memory-mapped one window at a time (``window_bytes``, 64 MiB by
default), so memory stays flat however large the file; gzip-compressed files are
inflated in chunks into a small rolling buffer. A Numba loop walks the records of
each window and decodes every frame with :func:`collectors.pcap.packet_kernel.decode_packet`
into :class:`PacketBatch` columns of up to ``batch_size`` packets.

Supported: classic pcap in both byte orders with micro- or nanosecond stamps
(nanoseconds are floored to microseconds), snaplen-cut packets (``cap_len <
wire_len``), pcapng sections in either byte order with Section Header,
Interface Description (per-interface link type, ``if_tsresol`` and
``if_tsoffset``), Enhanced, Simple and obsolete Packet blocks. Simple Packet
Blocks carry no time stamp and take the time of the packet before them.

A file cut short yields every whole packet before the cut; :attr:`CaptureReader.truncated_at`
then holds the offset of the partial record and :attr:`CaptureReader.warnings` says so.
A record header that cannot be right (captured length beyond any snaplen, bad
block length) stops the file the same way: a pcap cannot be resynchronised.
"""

from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
from numba import njit

from collectors.errors import IngestError
from collectors.pcap.packet_batch import PacketBatch
from collectors.pcap.packet_kernel import (
    N_U8,
    N_U16,
    N_U32,
    PACKET_SCHEMA,
    STATUS_NON_IP,
    STATUS_OK,
    U8_FRAGMENT,
    U8_L4_TRUNCATED,
    U8_PROTOCOL,
    U8_STATUS,
    U32_CAP_LEN,
    U32_IP_END,
    U32_L4_OFFSET,
    decode_packet,
)

__all__ = ["CaptureReader", "PacketBatch", "read_packets"]

# Kernel return codes.
_BATCH_FULL = 0
_NEED_MORE = 1
_CORRUPT = 2

_MAX_RECORD = 1 << 20  # no link type captures frames beyond 1 MiB
_MAX_BLOCK = 16 << 20  # pcapng blocks beyond this are taken as corruption
_MAX_IF = 256
_INFLATE_STEP = 16 << 20
_PCAPNG_SHB = 0x0A0D0D0A


@njit(cache=True, nogil=True, inline="always")
def _rd16(buf: np.ndarray, p: int, be: bool) -> int:
    if be:
        return (int(buf[p]) << 8) | int(buf[p + 1])
    return int(buf[p]) | (int(buf[p + 1]) << 8)


@njit(cache=True, nogil=True, inline="always")
def _rd32(buf: np.ndarray, p: int, be: bool) -> int:
    if be:
        return (
            (int(buf[p]) << 24) | (int(buf[p + 1]) << 16) | (int(buf[p + 2]) << 8) | int(buf[p + 3])
        )
    return int(buf[p]) | (int(buf[p + 1]) << 8) | (int(buf[p + 2]) << 16) | (int(buf[p + 3]) << 24)


@njit(cache=True, nogil=True)
def _scan_pcap(
    buf: np.ndarray,
    pos: int,
    be: bool,
    nanos: bool,
    linktype: int,
    max_record: int,
    base: int,
    n0: int,
    times: np.ndarray,
    offsets: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    u32c: np.ndarray,
    u16c: np.ndarray,
    u8c: np.ndarray,
) -> tuple[int, int, int]:
    """Walk classic pcap records from ``pos``; returns (pos, rows filled, code)."""
    end = buf.shape[0]
    cap = times.shape[0]
    i = n0
    while i < cap:
        if pos + 16 > end:
            return pos, i, _NEED_MORE
        incl = _rd32(buf, pos + 8, be)
        if incl > max_record:
            return pos, i, _CORRUPT
        if pos + 16 + incl > end:
            return pos, i, _NEED_MORE
        sec = _rd32(buf, pos, be)
        frac = _rd32(buf, pos + 4, be)
        times[i] = sec * 1_000_000 + (frac // 1000 if nanos else frac)
        offsets[i] = base + pos
        decode_packet(
            buf, pos + 16, incl, _rd32(buf, pos + 12, be), linktype, i, src, dst, u32c, u16c, u8c
        )
        pos += 16 + incl
        i += 1
    return pos, i, _BATCH_FULL


@njit(cache=True, nogil=True, inline="always")
def _ticks_to_us(ticks: int, kind: int, exp: int) -> int:
    if (kind == 0 and exp > 24) or (kind != 0 and exp > 62):
        return 0  # a resolution no capture uses: not representable, keep 0
    if kind == 0:  # 10^-exp seconds per tick
        if exp == 6:
            return int(ticks)
        if exp > 6:
            return int(ticks // (10 ** (exp - 6)))
        return int(ticks * (10 ** (6 - exp)))
    # 2^-exp seconds per tick, split to keep the product inside int64
    q = ticks >> exp
    r = ticks & ((1 << exp) - 1)
    return int(q * 1_000_000 + ((r * 1_000_000) >> exp))


@njit(cache=True, nogil=True)
def _scan_pcapng(
    buf: np.ndarray,
    pos: int,
    st: np.ndarray,
    ifs: np.ndarray,
    base: int,
    n0: int,
    times: np.ndarray,
    offsets: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    u32c: np.ndarray,
    u16c: np.ndarray,
    u8c: np.ndarray,
) -> tuple[int, int, int]:
    """Walk pcapng blocks from ``pos``.

    ``st`` = [big endian, interface count, last time us]; ``ifs[k]`` = [linktype,
    snaplen, tsresol kind, tsresol exponent, tsoffset seconds] per interface of
    the current section. Both persist across calls.
    """
    end = buf.shape[0]
    cap = times.shape[0]
    i = n0
    while i < cap:
        if pos + 12 > end:
            return pos, i, _NEED_MORE
        if (
            buf[pos] == 0x0A
            and buf[pos + 1] == 0x0D
            and buf[pos + 2] == 0x0D
            and buf[pos + 3] == 0x0A
        ):
            bom = buf[pos + 8]
            if bom == 0x1A:
                st[0] = 1
            elif bom == 0x4D:
                st[0] = 0
            else:
                return pos, i, _CORRUPT
            st[1] = 0
        be = st[0] == 1
        btype = _rd32(buf, pos, be)
        blen = _rd32(buf, pos + 4, be)
        if blen < 12 or (blen & 3) != 0 or blen > _MAX_BLOCK:
            return pos, i, _CORRUPT
        if pos + blen > end:
            return pos, i, _NEED_MORE
        # The fixed part of each block must fit inside it.
        if (
            (btype == 1 and blen < 20)
            or ((btype == 6 or btype == 2) and blen < 32)
            or (btype == 3 and blen < 16)
        ):
            return pos, i, _CORRUPT
        if btype == 1:  # Interface Description Block
            k = st[1]
            if k < ifs.shape[0]:
                ifs[k, 0] = _rd16(buf, pos + 8, be)
                ifs[k, 1] = _rd32(buf, pos + 12, be)
                ifs[k, 2] = 0
                ifs[k, 3] = 6
                ifs[k, 4] = 0
                q = pos + 16
                oend = pos + blen - 4
                while q + 4 <= oend:
                    code = _rd16(buf, q, be)
                    olen = _rd16(buf, q + 2, be)
                    if code == 0 or q + 4 + olen > oend:
                        break
                    if code == 9 and olen >= 1:
                        v = int(buf[q + 4])
                        ifs[k, 2] = v >> 7
                        ifs[k, 3] = v & 0x7F
                    elif code == 14 and olen >= 8:
                        a = _rd32(buf, q + 4, be)
                        b = _rd32(buf, q + 8, be)
                        ifs[k, 4] = (a << 32) | b if be else (b << 32) | a
                    q += 4 + ((olen + 3) & ~3)
            st[1] = k + 1
        elif btype == 6 or btype == 2:  # Enhanced / obsolete Packet Block
            ifid = _rd32(buf, pos + 8, be) if btype == 6 else _rd16(buf, pos + 8, be)
            incl = _rd32(buf, pos + 20, be)
            if ifid >= st[1] or ifid >= ifs.shape[0] or 28 + incl > blen:
                return pos, i, _CORRUPT
            ticks = (_rd32(buf, pos + 12, be) << 32) | _rd32(buf, pos + 16, be)
            t = _ticks_to_us(ticks, ifs[ifid, 2], ifs[ifid, 3]) + ifs[ifid, 4] * 1_000_000
            times[i] = t
            st[2] = t
            offsets[i] = base + pos
            decode_packet(
                buf,
                pos + 28,
                incl,
                _rd32(buf, pos + 24, be),
                ifs[ifid, 0],
                i,
                src,
                dst,
                u32c,
                u16c,
                u8c,
            )
            i += 1
        elif btype == 3:  # Simple Packet Block: interface 0, no time stamp
            if st[1] < 1:
                return pos, i, _CORRUPT
            orig = _rd32(buf, pos + 8, be)
            incl = min(orig, blen - 16)
            if ifs[0, 1] > 0:
                incl = min(incl, ifs[0, 1])
            times[i] = st[2]
            offsets[i] = base + pos
            decode_packet(buf, pos + 12, incl, orig, ifs[0, 0], i, src, dst, u32c, u16c, u8c)
            i += 1
        pos += blen
    return pos, i, _BATCH_FULL


def _alloc(n: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty((n, 16), np.uint8),
        np.empty((n, 16), np.uint8),
        np.empty((N_U32, n), np.uint32),
        np.empty((N_U16, n), np.uint16),
        np.empty((N_U8, n), np.uint8),
    )


class CaptureReader:
    """Read one pcap / pcapng file (optionally gzip-compressed) as packet batches.

    Raises :class:`collectors.errors.IngestError` if the file cannot be opened or
    is not a capture. Problems inside the file end the iteration early and are
    reported through :attr:`warnings` and :attr:`truncated_at`. With
    ``udp_payloads=True`` each batch also carries the payload of every whole or first
    fragment UDP packet (:meth:`udp_datagrams` reads a capture of flow exports so).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 1 << 18,
        window_bytes: int = 64 << 20,
        udp_payloads: bool = False,
    ) -> None:
        self.path = Path(path)
        self.udp_payloads = udp_payloads
        self.batch_size = batch_size
        self.window_bytes = max(window_bytes, 1 << 16)
        self.warnings: list[str] = []
        self.truncated_at: int | None = None
        self.corrupt_at: int | None = None
        self.packets = 0
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(2)
                self.size = os.fstat(fh.fileno()).st_size
        except OSError as exc:
            raise IngestError(f"cannot read capture {self.path}: {exc.strerror}") from exc
        self.compressed = head == b"\x1f\x8b"
        first = self._first_bytes(24)
        magic = first[:4]
        self.nanos = False
        self.big_endian = False
        self.linktype = -1
        self.snaplen = 0
        if magic == b"\x0a\x0d\x0d\x0a":
            self.format = "pcapng"
            self.header_len = 0
        elif magic in (
            b"\xa1\xb2\xc3\xd4",
            b"\xd4\xc3\xb2\xa1",
            b"\xa1\xb2\x3c\x4d",
            b"\x4d\x3c\xb2\xa1",
        ):
            if len(first) < 24:
                raise IngestError(f"capture {self.path} is cut inside its 24-byte file header")
            self.format = "pcap"
            self.header_len = 24
            self.big_endian = magic[0] == 0xA1
            self.nanos = magic in (b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1")
            order = ">" if self.big_endian else "<"
            self.snaplen = int.from_bytes(first[16:20], "big" if order == ">" else "little")
            self.linktype = int.from_bytes(first[20:24], "big" if order == ">" else "little")
            self.linktype &= 0xFFFF
        else:
            raise IngestError(
                f"{self.path} is not a pcap or pcapng capture (magic {magic.hex() or 'empty'})"
            )
        self._st = np.zeros(3, np.int64)
        self._ifs = np.zeros((_MAX_IF, 5), np.int64)

    def _first_bytes(self, n: int) -> bytes:
        if not self.compressed:
            with open(self.path, "rb") as fh:
                return fh.read(n)
        d = zlib.decompressobj(wbits=47)
        out = b""
        with open(self.path, "rb") as fh:
            while len(out) < n:
                chunk = fh.read(1 << 14)
                if not chunk:
                    break
                try:
                    out += d.decompress(chunk, n - len(out))
                except zlib.error as exc:
                    raise IngestError(f"capture {self.path}: bad gzip data: {exc}") from exc
                while d.unconsumed_tail and len(out) < n:
                    out += d.decompress(d.unconsumed_tail, n - len(out))
        return out

    def _scan(
        self, buf: np.ndarray, pos: int, base: int, n0: int, cols: tuple[np.ndarray, ...]
    ) -> tuple[int, int, int]:
        if self.format == "pcap":
            max_record = max(self.snaplen, 262144) if self.snaplen <= _MAX_RECORD else _MAX_RECORD
            return _scan_pcap(
                buf, pos, self.big_endian, self.nanos, self.linktype, max_record, base, n0, *cols
            )
        return _scan_pcapng(buf, pos, self._st, self._ifs, base, n0, *cols)

    def _finish(
        self, cols: tuple[np.ndarray, ...], n: int, buf: np.ndarray, base: int
    ) -> PacketBatch:
        t, o, s, d, u32, u16, u8 = cols
        batch = PacketBatch(
            t[:n].copy(),
            o[:n].copy(),
            s[:n].copy(),
            d[:n].copy(),
            u32[:, :n].copy(),
            u16[:, :n].copy(),
            u8[:, :n].copy(),
        )
        bad = np.flatnonzero(batch.u8c[U8_STATUS] > STATUS_NON_IP)
        for idx in bad.tolist():
            batch.rejected[idx] = self._frame(batch, idx, buf, base, 0, 1 << 32)
        if self.udp_payloads:
            u8c = batch.u8c
            udp = (u8c[U8_STATUS] == STATUS_OK) & (u8c[U8_PROTOCOL] == 17)
            udp &= (u8c[U8_FRAGMENT] != 2) & (u8c[U8_L4_TRUNCATED] == 0)
            for idx in np.flatnonzero(udp).tolist():
                l4 = int(batch.u32c[U32_L4_OFFSET, idx])
                seg = self._frame(batch, idx, buf, base, l4, int(batch.u32c[U32_IP_END, idx]))
                ulen = int.from_bytes(seg[4:6], "big")  # 0 = IPv6 jumbogram: the IP length
                batch.udp_payloads[idx] = seg[8 : ulen if ulen >= 8 else len(seg)]
        self.packets += n
        return batch

    def _frame(
        self, batch: PacketBatch, idx: int, buf: np.ndarray, base: int, skip: int, stop: int
    ) -> bytes:
        """Captured bytes ``skip:stop`` of row ``idx``'s frame (b"" if not in ``buf``)."""
        start = int(batch.offset[idx]) - base
        if start < 0:
            return b""
        if self.format == "pcap":
            hdr = 16
        else:  # Simple Packet Block (type 3, either byte order) has a 12-byte header
            hdr = 12 if 3 in (int(buf[start]), int(buf[start + 3])) else 28
        cap = int(batch.u32c[U32_CAP_LEN, idx])
        if start + hdr + cap > buf.shape[0]:
            return b""
        return bytes(buf[start + hdr + skip : start + hdr + min(cap, stop)])

    def batches(self) -> Iterator[PacketBatch]:
        """Decode the whole file, ``batch_size`` packets at a time."""
        if self.compressed:
            yield from self._batches_gzip()
        else:
            yield from self._batches_mmap()

    def udp_datagrams(self) -> Iterator[tuple[bytes, bytes, int]]:
        """(UDP payload, 16-byte source address, capture time in us) of each UDP packet.

        Later IP fragments and packets whose UDP header snaplen cut are skipped; a payload
        cut by snaplen comes back as captured (its decoder then reports it short).
        """
        self.udp_payloads = True
        for batch in self.batches():
            for idx, payload in batch.udp_payloads.items():
                yield payload, batch.src[idx].tobytes(), int(batch.time_us[idx])

    def _stop(self, code: int, at: int, eof_end: int) -> None:
        if code == _CORRUPT:
            self.corrupt_at = at
            self.warnings.append(
                f"{self.path}: corrupt record header at offset {at}; "
                f"kept the {self.packets} packets before it and stopped reading"
            )
        elif at < eof_end:
            self.truncated_at = at
            self.warnings.append(
                f"{self.path}: file is truncated at offset {at} ({eof_end - at} bytes of a "
                f"partial record); kept the {self.packets} whole packets before the cut"
            )

    def _batches_mmap(self) -> Iterator[PacketBatch]:
        size = self.size
        pos_abs = self.header_len
        window = self.window_bytes
        gran = mmap.ALLOCATIONGRANULARITY
        cols = _alloc(self.batch_size)
        n = 0
        with open(self.path, "rb") as fh:
            while pos_abs < size:
                start = pos_abs - pos_abs % gran
                length = min(size - start, window)
                mm = mmap.mmap(fh.fileno(), length, offset=start, access=mmap.ACCESS_READ)
                buf = np.frombuffer(mm, np.uint8)
                try:
                    pos = pos_abs - start
                    while True:
                        pos, n, code = self._scan(buf, pos, start, n, cols)
                        if code == _BATCH_FULL:
                            yield self._finish(cols, n, buf, start)
                            n = 0
                            continue
                        break
                    if n:
                        yield self._finish(cols, n, buf, start)
                        n = 0
                finally:
                    # The view goes before the map closes, also when a consumer stops early
                    # (closing the generator): else mmap refuses to close.
                    del buf
                    mm.close()
                last = start + length >= size
                new_abs = start + pos
                if code == _CORRUPT:
                    self._stop(code, new_abs, size)
                    return
                if last:
                    self._stop(code, new_abs, size)
                    return
                if new_abs == pos_abs:
                    window *= 2  # one record larger than the window
                pos_abs = new_abs

    @staticmethod
    def _inflate(fh: BinaryIO, d: Any, pending: bytearray) -> tuple[Any, bool, str]:
        """Append at most ``_INFLATE_STEP`` inflated bytes to ``pending``.

        Bounded steps keep memory flat even for data that compresses 1000:1.
        Returns (decompressor, at end of file, problem or "").
        """
        if d.unconsumed_tail:
            pending += d.decompress(d.unconsumed_tail, _INFLATE_STEP)
            return d, False, ""
        if d.eof:  # a member ended: the next one (concatenated gzip) or the end
            rest = d.unused_data or fh.read(1 << 20)
            if not rest:
                return d, True, ""
            d = zlib.decompressobj(wbits=47)
            pending += d.decompress(rest, _INFLATE_STEP)
            return d, False, ""
        chunk = fh.read(1 << 20)
        if not chunk:
            return d, True, "compressed stream ends early"
        pending += d.decompress(chunk, _INFLATE_STEP)
        return d, False, ""

    def _batches_gzip(self) -> Iterator[PacketBatch]:
        d = zlib.decompressobj(wbits=47)
        pending = bytearray()
        base = 0  # absolute offset of pending[0] in the decompressed stream
        pos = self.header_len
        cols = _alloc(self.batch_size)
        n = 0
        eof = False
        broken = ""
        with open(self.path, "rb") as fh:
            while True:
                if not eof:
                    try:
                        d, eof, broken = self._inflate(fh, d, pending)
                    except zlib.error as exc:
                        eof = True
                        broken = f"bad gzip data ({exc})"
                buf = np.frombuffer(bytes(pending), np.uint8)
                while True:
                    pos, n, code = self._scan(buf, pos, base, n, cols)
                    if code == _BATCH_FULL:
                        yield self._finish(cols, n, buf, base)
                        n = 0
                        continue
                    break
                if n:
                    yield self._finish(cols, n, buf, base)
                    n = 0
                if code == _CORRUPT or eof:
                    if broken:
                        self.warnings.append(f"{self.path}: {broken}")
                    self._stop(code, base + pos, base + buf.shape[0])
                    if broken and self.truncated_at is None and code != _CORRUPT:
                        self.truncated_at = base + pos
                    return
                del pending[:pos]
                base += pos
                pos = 0


def read_packets(path: str | os.PathLike[str]) -> pa.Table:
    """Whole file as one table in ``PACKET_SCHEMA`` (small files, tests, notebooks).

    >>> from collectors import read_packets
    >>> packets = read_packets("traffic.pcap.gz")  # `rating-engine examples .` writes it
    >>> packets.num_rows, packets.column_names[:4]
    (10531, ['time', 'source_file', 'offset', 'wire_len'])

    ``FlowMeter().add(packets)`` meters it into flows; large files: :class:`CaptureReader`.
    """
    reader = CaptureReader(path)
    tables = [b.to_arrow(reader.path.name) for b in reader.batches()]
    if not tables:
        return PACKET_SCHEMA.empty_table()
    return pa.concat_tables(tables)
