"""The nfdump 1.7 file layout (``LAYOUT_VERSION_2``): file header, data blocks, compression.

    +------------+-----------+-----------+-----+-----------+----------+
    | header 40B | block 0   | block 1   | ... | block n-1 | appendix |
    +------------+-----------+-----------+-----+-----------+----------+

Header (little-endian): magic 0xA50C (u16), layout version 2 (u16), nfdump version
(u32), creation time (s, i64), compression (u8: 0 none, 1 LZO, 2 BZ2, 3 LZ4, 4 ZSTD),
encryption (u8, 0), appendix block count (u16), creator (u32), appendix offset (i64),
maximum block size (u32), data block count (u32). Each block: record count (u32),
payload size (u32), block type (u16, 3 = records), flags (u16; bit 0: this block is
stored uncompressed whatever the file says), then the payload. The appendix (ident,
statistics) holds no flows and is not read.

Decompression uses well-kept libraries: :mod:`bz2` (stdlib), ``lz4`` (LZ4 raw blocks),
``zstandard`` (ZSTD frames) and ``lzallright`` (LZO1X, a safe Rust port of lzokay;
``python-lzo`` has no wheels and needs a compiler). A block that fails to decompress
is reported and skipped; the blocks around it are still read.
"""

from __future__ import annotations

import bz2
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from collectors.errors import DecodeError, IngestError

__all__ = [
    "COMPRESSIONS",
    "MAGIC",
    "Block",
    "NfcapdHeader",
    "decompress",
    "is_nfcapd_file",
    "iter_blocks",
    "read_header",
]

MAGIC = 0xA50C
LAYOUT_VERSION = 2
HEADER = struct.Struct("<HHIqBBHIqII")
BLOCK = struct.Struct("<IIHH")
#: nfdump's largest block (BUFFSIZE, 5 MiB) with room for a header: a bigger size is damage.
MAX_BLOCK = 5 * 1048576 + 1024
COMPRESSIONS = {0: "none", 1: "lzo", 2: "bz2", 3: "lz4", 4: "zstd"}
_UNCOMPRESSED_BLOCK = 0x1


@dataclass(frozen=True)
class NfcapdHeader:
    """The fields of the file header a reader needs."""

    nfdump_version: int
    created: int
    compression: str
    appendix_offset: int
    blocks: int


@dataclass(frozen=True)
class Block:
    """One data block: its index, file offset, record count and decompressed payload
    (``payload`` is None and ``error`` says why when it could not be decompressed)."""

    index: int
    offset: int
    records: int
    payload: bytes | None
    error: str | None = None


def read_header(fh: BinaryIO, source: str) -> NfcapdHeader:
    """The file header; :class:`IngestError` for anything that is not an nfdump 1.7 file."""
    raw = fh.read(HEADER.size)
    if len(raw) < 4 or struct.unpack_from("<H", raw)[0] != MAGIC:
        raise IngestError(f"{source}: not an nfcapd/nfdump file (no 0xA50C magic)")
    version = struct.unpack_from("<H", raw, 2)[0]
    if version == 1:
        raise IngestError(
            f"{source}: nfdump 1.6 layout (version 1); convert it with nfdump 1.7: "
            "nfdump -r OLD -w NEW"
        )
    if version != LAYOUT_VERSION:
        raise IngestError(f"{source}: nfdump file layout version {version} (1.7 writes 2)")
    if len(raw) < HEADER.size:
        raise IngestError(f"{source}: header truncated at {len(raw)} of {HEADER.size} bytes")
    _m, _v, nfd, created, comp, enc, _apx, _creator, off_apx, _bsize, nblocks = HEADER.unpack(raw)
    if comp not in COMPRESSIONS:
        raise IngestError(f"{source}: header field compression = {comp}, not 0..4")
    if enc != 0:
        raise IngestError(
            f"{source}: header field encryption = {enc}: encrypted files are not read"
        )
    return NfcapdHeader(nfd, created, COMPRESSIONS[comp], off_apx, nblocks)


def decompress(kind: str, payload: bytes) -> bytes:
    """A block payload decompressed (``kind`` from :data:`COMPRESSIONS`); raises
    :class:`DecodeError` with the library's reason."""
    if kind == "none":
        return payload
    if kind == "bz2":
        try:
            return bz2.decompress(payload)
        except (OSError, ValueError, EOFError) as exc:
            raise _bad(kind, exc) from exc
    if kind == "lz4":
        import lz4.block

        try:
            return bytes(lz4.block.decompress(payload, uncompressed_size=MAX_BLOCK))
        except lz4.block.LZ4BlockError as exc:
            raise _bad(kind, exc) from exc
    if kind == "zstd":
        import zstandard

        try:
            return bytes(
                zstandard.ZstdDecompressor().decompress(payload, max_output_size=MAX_BLOCK)
            )
        except zstandard.ZstdError as exc:
            raise _bad(kind, exc) from exc
    if kind == "lzo":
        import lzallright

        try:
            return bytes(lzallright.LZOCompressor.decompress(payload, output_size_hint=MAX_BLOCK))
        except lzallright.LZOError as exc:
            raise _bad(kind, exc) from exc
    raise DecodeError("unsupported_compression", f"compression {kind!r}")


def _bad(kind: str, exc: BaseException) -> DecodeError:
    return DecodeError("bad_compressed_block", f"{kind} block does not decompress: {exc!r}")


def iter_blocks(fh: BinaryIO, header: NfcapdHeader, source: str) -> Iterator[Block]:
    """The data blocks in file order, decompressed; stops at the appendix or the end.

    A truncated last block ends the iteration with an error block (what came before is
    kept); a block that does not decompress is yielded with its error and skipped.
    """
    index = 0
    offset = HEADER.size
    end = header.appendix_offset if header.appendix_offset > HEADER.size else None
    while end is None or offset < end:
        raw = fh.read(BLOCK.size)
        if not raw:
            return
        if len(raw) < BLOCK.size:
            yield Block(index, offset, 0, None, f"block header truncated at offset {offset}")
            return
        records, size, btype, flags = BLOCK.unpack(raw)
        if size > MAX_BLOCK:
            reason = f"block size {size} is larger than nfdump writes ({MAX_BLOCK})"
            yield Block(index, offset, records, None, reason)
            return
        payload = fh.read(size)
        if len(payload) < size:
            yield Block(index, offset, records, None,
                        f"block truncated: {len(payload)} of {size} bytes")  # fmt: skip
            return
        if btype != 3:
            yield Block(index, offset, records, None, f"block type {btype} is not a record block")
        else:
            kind = "none" if flags & _UNCOMPRESSED_BLOCK else header.compression
            try:
                yield Block(index, offset, records, decompress(kind, payload))
            except DecodeError as exc:
                yield Block(index, offset, records, None, str(exc))
        index += 1
        offset += BLOCK.size + size


def is_nfcapd_file(path: Path) -> bool:
    """True when the file starts with nfdump's magic (little-endian 0xA50C)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return len(head) == 2 and struct.unpack("<H", head)[0] == MAGIC
