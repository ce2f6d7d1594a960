"""An nfcapd file (nfdump 1.7) to ``FLOW_SCHEMA`` batches plus the records it refuses.

    result = read_nfcapd_file(Path("nfcapd.202610050000"))
    result.table()      # the flows, a FLOW_SCHEMA table (result.batches: one per block)
    result.rejects      # (record_no, field, reason, message, raw) per refused record/block

Flows keep nfdump's values: times are the records' first/last milliseconds, packets and
bytes as nfcapd stored them (nfcapd 1.7 has already multiplied sampled exports by their
rate, so ``sampling_interval`` is null: the volume is taken as stored), the exporter is
the address nfcapd received the export from. ``source_format`` is the record's NetFlow
version (``netflow_v5``, ``netflow_v9``, ``ipfix``, ...), or ``nfcapd`` when nfdump did not
record one. A record that cannot be read is refused with the block and offset that name
it; the records beside it are kept. A damaged block (bad compression, truncated) is
refused whole and the next block is still read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors.nfcapd.file_format import Block, iter_blocks, read_header
from collectors.nfcapd.record_kernel import RECORD_STATUS, decode_block
from collectors.schemas import FLOW_SCHEMA, MPLS_LABELS

__all__ = ["NFVERSION_FORMATS", "NfcapdFile", "Reject", "read_nfcapd_file"]

#: NetFlow version in a V3 record header -> ``source_format``.
NFVERSION_FORMATS = {1: "netflow_v1", 5: "netflow_v5", 7: "netflow_v7", 9: "netflow_v9",
                     10: "ipfix"}  # fmt: skip
_INTS = 17
_TS = pa.timestamp("us", tz="UTC")
_ADDR = pa.binary(16)

Reject = tuple[int | None, str | None, str, str, bytes]
#: The flow columns an nfcapd record fills.
_OWN = frozenset({
    "exporter", "observation_domain", "flow_start", "flow_end", "src_addr", "dst_addr",
    "src_port", "dst_port", "protocol", "tcp_flags", "tos", "bytes", "packets", "input_if",
    "output_if", "src_as", "dst_as", "next_hop", "vlan", "source_format", "mpls_labels",
})  # fmt: skip


@dataclass
class NfcapdFile:
    """What one file gave: flow batches, refused records, counts."""

    source: str
    compression: str = "unknown"
    nfdump_version: str = ""
    blocks: int = 0
    records: int = 0
    flows: int = 0
    other_records: int = 0
    aggregated_records: int = 0
    batches: list[pa.RecordBatch] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)

    def table(self) -> pa.Table:
        """The flows read, as one contiguous ``FLOW_SCHEMA`` table (columns nfcapd does
        not carry are null)."""
        if self.batches:
            got = pa.Table.from_batches(self.batches).combine_chunks()
        else:
            got = pa.schema([f for f in FLOW_SCHEMA if f.name in _OWN]).empty_table()
        n = got.num_rows
        return pa.table(
            [got.column(f.name) if f.name in _OWN else pa.nulls(n, f.type) for f in FLOW_SCHEMA],
            schema=FLOW_SCHEMA,
        )


def _version_text(raw: int) -> str:
    # 0x01070100: 1.7.1; 0xF1070100: a git build based on 1.7.1
    return f"{(raw >> 24) & 0x0F}.{(raw >> 16) & 0xFF}.{(raw >> 8) & 0xFF}"


def _addresses(raw: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """(n, 16) bytes as a fixed_size_binary(16) array; ``valid`` (0/1 per row) -> nulls."""
    n = raw.shape[0]
    bitmap = None
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid.astype(bool), bitorder="little").tobytes())
    data = pa.py_buffer(np.ascontiguousarray(raw).tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(_ADDR, n, [bitmap, data])


def _labels(mpls: np.ndarray, present: np.ndarray) -> pa.Array:
    """MPLS label stacks as list<uint32> (null where the record had none)."""
    n = mpls.shape[0]
    if not present.any():
        return pa.nulls(n, MPLS_LABELS)
    counts = np.where(present.astype(bool), mpls[:, 0], 0).astype(np.int32)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = mpls[:, 1:][np.arange(10)[None, :] < counts[:, None]]
    bitmap = pa.py_buffer(np.packbits(present.astype(bool), bitorder="little").tobytes())
    return pa.ListArray.from_buffers(
        MPLS_LABELS, n, [bitmap, pa.py_buffer(offsets.tobytes())],
        children=[pa.array(values.astype(np.uint32))],
    )  # fmt: skip


_FORMAT_NAMES = pa.array([NFVERSION_FORMATS.get(v, "nfcapd") for v in range(256)], pa.string())


def _batch(
    ints: np.ndarray, addrs: np.ndarray, has: np.ndarray, mpls: np.ndarray, domains: np.ndarray
) -> pa.RecordBatch:
    versions = pa.array(np.minimum(ints[:, 15], 255).astype(np.int32))
    cols: dict[str, pa.Array] = {
        "exporter": _addresses(addrs[3], has[:, 1]),
        "observation_domain": pa.array(domains[ints[:, 14].astype(np.int64)], pa.uint32()),
        "flow_start": pa.array((ints[:, 0] * np.uint64(1000)).astype(np.int64)).cast(_TS),
        "flow_end": pa.array((ints[:, 1] * np.uint64(1000)).astype(np.int64)).cast(_TS),
        "src_addr": _addresses(addrs[0]),
        "dst_addr": _addresses(addrs[1]),
        "src_port": pa.array(ints[:, 4].astype(np.uint16)),
        "dst_port": pa.array(ints[:, 5].astype(np.uint16)),
        "protocol": pa.array(ints[:, 6].astype(np.uint8)),
        "tcp_flags": pa.array(ints[:, 7].astype(np.uint16)),
        "tos": pa.array(ints[:, 8].astype(np.uint8)),
        "bytes": pa.array(ints[:, 3].astype(np.uint64)),
        "packets": pa.array(ints[:, 2].astype(np.uint64)),
        "input_if": pa.array(ints[:, 9].astype(np.uint32)),
        "output_if": pa.array(ints[:, 10].astype(np.uint32)),
        "src_as": pa.array(ints[:, 11].astype(np.uint32)),
        "dst_as": pa.array(ints[:, 12].astype(np.uint32)),
        "next_hop": _addresses(addrs[2], has[:, 0]),
        "vlan": pa.array(ints[:, 13].astype(np.uint16)),
        "source_format": pc.take(_FORMAT_NAMES, versions),
        "mpls_labels": _labels(mpls, has[:, 2]),
    }
    # the FLOW_SCHEMA columns nfcapd has no value for are added once, by NfcapdFile.table
    fields = [f for f in FLOW_SCHEMA if f.name in cols]
    return pa.RecordBatch.from_arrays([cols[f.name] for f in fields], schema=pa.schema(fields))


def _decode(block: Block, result: NfcapdFile, tables: tuple[np.ndarray, ...],
            first_record: int) -> None:  # fmt: skip
    assert block.payload is not None
    data = np.frombuffer(block.payload, np.uint8)
    n = block.records
    ints = np.zeros((n, _INTS), np.uint64)
    addrs = np.zeros((4, n, 16), np.uint8)
    has = np.zeros((n, 3), np.uint8)
    mpls = np.zeros((n, 11), np.uint32)
    status = np.full(n, -1, np.int8)
    offsets = np.zeros(n, np.int64)
    read, flows, bad = decode_block(data, n, ints, addrs, has, mpls, status, offsets,
                                          *tables)  # fmt: skip
    read, flows, bad_field = int(read), int(flows), int(bad)  # numba may widen the tuple
    result.records += read
    result.other_records += int((status[:read] == 1).sum())
    if flows:
        rows_ = slice(0, flows)
        domains = np.where(tables[2] == 1, tables[1], 0)
        result.batches.append(_batch(ints[rows_], addrs[:, rows_], has[rows_], mpls[rows_],
                                     domains))  # fmt: skip
        result.aggregated_records += int((ints[rows_, 16] > 1).sum())
        result.flows += flows
    for r in np.flatnonzero(status[:read] >= 2):
        reason = RECORD_STATUS[int(status[r])]
        start = int(offsets[r])
        end = int(offsets[r + 1]) if r + 1 < read else len(block.payload)
        raw = block.payload[start : min(end, start + 65535)]
        where = f"block {block.index} (file offset {block.offset}), record {r} at offset {start}"
        fld = None
        if reason == "bad_element_length":
            fld = f"element {bad_field}" if bad_field > 0 else "element header"
        elif reason == "bad_record_size":
            fld = "record size"
        elif reason == "no_generic_flow":
            fld = "element 1 (EXgenericFlow)"
        elif reason == "no_addresses":
            fld = "element 2/3 (addresses)"
        message = f"{result.source}: {where}: {reason.replace('_', ' ')}" + (
            f" ({fld})" if fld else "")  # fmt: skip
        result.rejects.append((first_record + int(r), fld, reason, message, raw))
        result.rejected[reason] += 1
    if read < n:  # the framing broke: the rest of the block cannot be found
        lost = n - read
        result.rejected["unreadable_records"] += lost
        result.rejects.append((first_record + read, "record size", "unreadable_records",
                               f"{result.source}: block {block.index}: {lost} records after "
                               "a broken one cannot be framed", b""))  # fmt: skip


def read_nfcapd_file(path: Path) -> NfcapdFile:
    """Every flow of an nfcapd file; raises :class:`~collectors.errors.IngestError` only
    when the file is not an nfdump 1.7 file at all (header)."""
    result = NfcapdFile(str(path))
    exporter_addr = np.zeros((65536, 16), np.uint8)
    exporter_domain = np.zeros(65536, np.uint32)
    exporter_known = np.zeros(65536, np.uint8)
    tables = (exporter_addr, exporter_domain, exporter_known)
    with open(path, "rb") as fh:
        header = read_header(fh, str(path))
        result.compression = header.compression
        result.nfdump_version = _version_text(header.nfdump_version)
        first_record = 0
        for block in iter_blocks(fh, header, str(path)):
            result.blocks += 1
            if block.payload is None:
                reason = "bad_block"
                result.rejected[reason] += 1
                message = f"{path}: block {block.index} at offset {block.offset}: {block.error}"
                result.rejects.append((first_record, "block", reason, message, b""))
            else:
                _decode(block, result, tables, first_record)
            first_record += block.records
    return result
