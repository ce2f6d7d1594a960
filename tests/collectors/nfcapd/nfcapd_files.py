"""A small writer of nfdump 1.7 files for tests (the reader's twin), and a re-compressor.

``write_nfcapd(path, flows, compression=...)`` writes V3 records the way nfcapd does
(generic flow, IPv4 or IPv6 addresses, misc, AS, VLAN, next hop, received address,
MPLS) in blocks, plus an exporter-info record; ``recompress(src, dst, kind)`` rewrites
an nfcapd-written file with every block compressed another way. The peer tests have
nfdump read both, so this writer is checked against nfdump too.
"""

from __future__ import annotations

import bz2
import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Flow", "compress", "recompress", "write_nfcapd"]

KINDS = {"none": 0, "lzo": 1, "bz2": 2, "lz4": 3, "zstd": 4}
HEADER = struct.Struct("<HHIqBBHIqII")
BLOCK = struct.Struct("<IIHH")


@dataclass(frozen=True)
class Flow:
    """One flow as nfdump stores it (addresses as text, times in ms)."""

    src: str
    dst: str
    first_ms: int
    last_ms: int
    packets: int
    octets: int
    sport: int = 0
    dport: int = 0
    proto: int = 6
    flags: int = 0
    tos: int = 0
    in_if: int = 0
    out_if: int = 0
    src_as: int | None = None
    dst_as: int | None = None
    vlan: int | None = None
    next_hop: str | None = None
    received: str | None = None
    mpls: tuple[int, ...] = ()
    nfversion: int = 9


def _element(eid: int, body: bytes) -> bytes:
    return struct.pack("<HH", eid, 4 + len(body)) + body


def _ip(text: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return 4, struct.pack("<I", int(ip))
    value = int(ip)
    return 6, struct.pack("<QQ", value >> 64, value & (2**64 - 1))


def record(f: Flow, sysid: int = 1) -> bytes:
    elements = [
        _element(1, struct.pack("<QQQQQHHBBBB", f.first_ms, f.last_ms, f.last_ms + 5,
                                f.packets, f.octets, f.sport, f.dport, f.proto, f.flags,
                                0, f.tos)),
    ]  # fmt: skip
    v_src, src = _ip(f.src)
    v_dst, dst = _ip(f.dst)
    assert v_src == v_dst
    elements.append(_element(2 if v_src == 4 else 3, src + dst))
    elements.append(_element(4, struct.pack("<IIBBBBBBBB", f.in_if, f.out_if, 0, 0, 0, 0, 0,
                                            0, 0, 0)))  # fmt: skip
    if f.vlan is not None:
        elements.append(_element(6, struct.pack("<II", f.vlan, 0)))
    if f.src_as is not None or f.dst_as is not None:
        elements.append(_element(7, struct.pack("<II", f.src_as or 0, f.dst_as or 0)))
    if f.next_hop is not None:
        v, raw = _ip(f.next_hop)
        elements.append(_element(10 if v == 4 else 11, raw))
    if f.received is not None:
        v, raw = _ip(f.received)
        elements.append(_element(12 if v == 4 else 13, raw))
    if f.mpls:
        entries = [(label << 4) | (1 if i == len(f.mpls) - 1 else 0)
                   for i, label in enumerate(f.mpls)]  # fmt: skip
        elements.append(_element(14, struct.pack("<10I", *(entries + [0] * (10 - len(entries))))))
    body = b"".join(elements)
    header = struct.pack("<HHHBBHBB", 11, 12 + len(body), len(elements), 0, 0, sysid, 0,
                         f.nfversion)  # fmt: skip
    return header + body


def exporter_info(address: str, sysid: int, domain: int, version: int = 9) -> bytes:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        ip_words = struct.pack("<QQ", 0, int(ip))
        family = 2
    else:
        value = int(ip)
        ip_words = struct.pack("<QQ", value >> 64, value & (2**64 - 1))
        family = 10
    return struct.pack("<HHI", 7, 32, version) + ip_words + struct.pack("<HHI", family, sysid,
                                                                         domain)  # fmt: skip


def compress(kind: str, payload: bytes) -> bytes:
    if kind == "none":
        return payload
    if kind == "bz2":
        return bz2.compress(payload)
    if kind == "lz4":
        import lz4.block

        return bytes(lz4.block.compress(payload, store_size=False))
    if kind == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor().compress(payload))
    import lzallright

    return bytes(lzallright.LZOCompressor().compress(payload))


def _header(kind: str, blocks: int, appendix: int = 0) -> bytes:
    return HEADER.pack(0xA50C, 2, 0x01070100, 1_790_000_000, KINDS[kind], 0, 0, 1, appendix,
                       5 * 1048576, blocks)  # fmt: skip


def write_nfcapd(
    path: Path,
    flows: list[Flow],
    *,
    compression: str = "none",
    per_block: int = 100,
    exporter: tuple[str, int, int] | None = ("192.0.2.254", 1, 7),
    raw_records: dict[int, bytes] | None = None,
) -> Path:
    """Flows in blocks of ``per_block`` records; ``raw_records`` replaces the record at an
    index with given bytes (damage tests). The exporter-info record opens block 0."""
    records = [record(f) for f in flows]
    for i, raw in (raw_records or {}).items():
        records[i] = raw
    if exporter is not None:
        records.insert(0, exporter_info(*exporter))
    chunks = [records[i : i + per_block] for i in range(0, len(records), per_block)] or [[]]
    out = [_header(compression, len(chunks))]
    for chunk in chunks:
        payload = compress(compression, b"".join(chunk))
        out.append(BLOCK.pack(len(chunk), len(payload), 3, 0) + payload)
    path.write_bytes(b"".join(out))
    return path


def recompress(src: Path, dst: Path, kind: str) -> Path:
    """``src`` (an nfcapd file) with every data block compressed as ``kind``."""
    from collectors.nfcapd.file_format import decompress

    data = src.read_bytes()
    fields = list(HEADER.unpack_from(data, 0))
    old = {v: k for k, v in KINDS.items()}[fields[4]]
    pos, out = HEADER.size, []
    end = fields[8] if fields[8] > HEADER.size else len(data)
    while pos < end:
        n, size, btype, flags = BLOCK.unpack_from(data, pos)
        payload = data[pos + BLOCK.size : pos + BLOCK.size + size]
        plain = payload if flags & 1 else decompress(old, payload)
        new = compress(kind, plain)
        out.append(BLOCK.pack(n, len(new), btype, flags & ~1) + new)
        pos += BLOCK.size + size
    fields[4] = KINDS[kind]
    fields[6] = 0  # the appendix is left out
    fields[8] = 0
    dst.write_bytes(HEADER.pack(*fields) + b"".join(out))
    return dst
