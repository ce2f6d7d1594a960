"""Numpy column buffers for flows and their zero-copy conversion to ``FLOW_SCHEMA`` batches.

Decoders (NetFlow v5, v9, IPFIX) fill :class:`FlowColumns` - one numpy array per
``FLOW_SCHEMA`` field, addresses as ``(n, 16)`` uint8 - and :func:`to_record_batch`
wraps the buffers as Arrow arrays without a Python loop per row. A sampling interval
of 0 in the buffers is "not announced" and becomes null; MPLS label stacks are an
``(n, MAX_LABELS)`` block (``(n, 0)`` when a call saw none) plus a depth per row.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa

from collectors.schemas import FLOW_SCHEMA, MPLS_LABELS, SOURCE_FORMATS

__all__ = [
    "FORMAT_CODES",
    "MAX_LABELS",
    "FlowColumns",
    "concat_flow_batches",
    "empty_flow_batch",
    "to_record_batch",
]

#: Code of each ``source_format`` value, as stored in :attr:`FlowColumns.source_format`.
FORMAT_CODES: dict[str, int] = {name: i for i, name in enumerate(SOURCE_FORMATS)}
#: Labels kept per flow: IPFIX has ten label elements (70-79); deeper stacks are cut.
MAX_LABELS = 10
_FORMAT_LENGTHS = np.array([len(f) for f in SOURCE_FORMATS], np.int32)
_FORMAT_CHARS = np.array(
    [list(f.encode().ljust(int(_FORMAT_LENGTHS.max()), b"\0")) for f in SOURCE_FORMATS], np.uint8
)


@dataclass
class FlowColumns:
    """One numpy array per flow field; ``*_valid`` arrays mark non-null nullable fields."""

    exporter: np.ndarray  # (n, 16) uint8
    observation_domain: np.ndarray  # uint32
    flow_start: np.ndarray  # int64 microseconds since epoch
    flow_end: np.ndarray  # int64
    src_addr: np.ndarray  # (n, 16) uint8
    dst_addr: np.ndarray  # (n, 16) uint8
    src_port: np.ndarray  # uint16
    dst_port: np.ndarray  # uint16
    protocol: np.ndarray  # uint8
    tcp_flags: np.ndarray  # uint16
    tos: np.ndarray  # uint8
    bytes: np.ndarray  # uint64
    packets: np.ndarray  # uint64
    input_if: np.ndarray  # uint32
    output_if: np.ndarray  # uint32
    src_as: np.ndarray  # uint32
    dst_as: np.ndarray  # uint32
    next_hop: np.ndarray  # (n, 16) uint8
    next_hop_valid: np.ndarray  # bool
    vlan: np.ndarray  # uint16
    sampling_interval: np.ndarray  # uint32, 0 = not announced (null)
    direction: np.ndarray  # uint8
    direction_valid: np.ndarray  # bool
    source_format: np.ndarray  # uint8 code into SOURCE_FORMATS
    mpls_labels: np.ndarray  # (n, MAX_LABELS) or (n, 0) uint32 label values, top first
    mpls_depth: np.ndarray  # uint8 labels in use per row; 0 = null

    @classmethod
    def allocate(cls, n: int, *, labels: bool = False) -> FlowColumns:
        """Zeroed columns for ``n`` flows: nullable fields null, sampling not announced.

        ``labels``: room for MPLS label stacks (else the label block is ``(n, 0)``).
        """
        return cls(
            exporter=np.zeros((n, 16), np.uint8),
            observation_domain=np.zeros(n, np.uint32),
            flow_start=np.zeros(n, np.int64),
            flow_end=np.zeros(n, np.int64),
            src_addr=np.zeros((n, 16), np.uint8),
            dst_addr=np.zeros((n, 16), np.uint8),
            src_port=np.zeros(n, np.uint16),
            dst_port=np.zeros(n, np.uint16),
            protocol=np.zeros(n, np.uint8),
            tcp_flags=np.zeros(n, np.uint16),
            tos=np.zeros(n, np.uint8),
            bytes=np.zeros(n, np.uint64),
            packets=np.zeros(n, np.uint64),
            input_if=np.zeros(n, np.uint32),
            output_if=np.zeros(n, np.uint32),
            src_as=np.zeros(n, np.uint32),
            dst_as=np.zeros(n, np.uint32),
            next_hop=np.zeros((n, 16), np.uint8),
            next_hop_valid=np.zeros(n, np.bool_),
            vlan=np.zeros(n, np.uint16),
            sampling_interval=np.zeros(n, np.uint32),
            direction=np.zeros(n, np.uint8),
            direction_valid=np.zeros(n, np.bool_),
            source_format=np.zeros(n, np.uint8),
            mpls_labels=np.zeros((n, MAX_LABELS if labels else 0), np.uint32),
            mpls_depth=np.zeros(n, np.uint8),
        )

    def __len__(self) -> int:
        return int(self.observation_domain.shape[0])

    def take(self, index: np.ndarray) -> FlowColumns:
        """Rows ``index`` (an integer or boolean array) of every column."""
        return FlowColumns(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


# All-null columns and one-format ``source_format`` columns are slices of arrays built once
# (per type, per format; regrown when a call is larger): building them per call was ~30 ns
# a v5 flow of decoding (pa.nulls zero-fills every buffer). Slices share the buffers.
_CACHED_ROWS = 1 << 16
_NULLS: dict[pa.DataType, pa.Array] = {}
_ONE_FORMAT: dict[int, tuple[pa.Buffer, pa.Buffer, int]] = {}


def _nulls(n: int, type_: pa.DataType) -> pa.Array:
    """``n`` nulls of ``type_`` (a slice of a cached array)."""
    cached = _NULLS.get(type_)
    if cached is None or len(cached) < n:
        cached = _NULLS[type_] = pa.nulls(max(n, _CACHED_ROWS), type_)
    return cached.slice(0, n)


def _fixed16(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    n = values.shape[0]
    data = pa.py_buffer(np.ascontiguousarray(values, dtype=np.uint8))
    if valid is None or bool(valid.all()):
        return pa.Array.from_buffers(pa.binary(16), n, [None, data])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.binary(16), n, [bitmap, data], null_count=int(n - valid.sum()))


def _numeric(values: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None else ~valid
    return pa.array(np.ascontiguousarray(values), type=type_, mask=mask)


def _labels(values: np.ndarray, depth: np.ndarray) -> pa.Array:
    """The ``mpls_labels`` list column: row ``i`` is ``values[i, :depth[i]]``, null if 0."""
    n = depth.shape[0]
    if values.shape[1] == 0 or not depth.any():
        return _nulls(n, MPLS_LABELS)
    depth = np.minimum(depth, values.shape[1])
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(depth, out=offsets[1:])
    flat = values[np.arange(values.shape[1]) < depth[:, None]]
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(flat, pa.uint32()), mask=pa.array(depth == 0)
    )


def _sampling(values: np.ndarray) -> pa.Array:
    """The sampling column: 0 (not announced) is null; one pass when all or none are."""
    known = np.count_nonzero(values)
    if known == 0:
        return _nulls(values.shape[0], pa.uint32())
    return _numeric(values, pa.uint32(), None if known == values.shape[0] else values != 0)


def _format_strings(codes: np.ndarray) -> pa.Array:
    """The ``source_format`` string column built from codes with numpy (no per-row work)."""
    n = codes.shape[0]
    if n and bool((codes == codes[0]).all()):
        code = int(codes[0])
        cached = _ONE_FORMAT.get(code)
        if cached is None or cached[2] < n:
            name = SOURCE_FORMATS[code].encode()
            rows = max(n, _CACHED_ROWS)
            offsets_buffer = pa.py_buffer(np.arange(rows + 1, dtype=np.int32) * len(name))
            cached = _ONE_FORMAT[code] = (offsets_buffer, pa.py_buffer(name * rows), rows)
        # the buffers may be longer than the column: it reads n + 1 offsets
        return pa.Array.from_buffers(pa.string(), n, [None, cached[0], cached[1]])
    else:
        lengths = _FORMAT_LENGTHS[codes]
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(lengths, out=offsets[1:])
        chars = _FORMAT_CHARS[codes]  # (n, longest) padded with NUL
        data = pa.py_buffer(chars[np.arange(chars.shape[1]) < lengths[:, None]].tobytes())
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), data])


def to_record_batch(cols: FlowColumns) -> pa.RecordBatch:
    """Wrap ``cols`` as a ``FLOW_SCHEMA`` record batch (buffers shared, not copied per row)."""
    n = len(cols)
    ts = pa.timestamp("us", tz="UTC")
    formats = _format_strings(cols.source_format)
    arrays = [
        _fixed16(cols.exporter),
        _numeric(cols.observation_domain, pa.uint32()),
        pa.Array.from_buffers(ts, n, [None, pa.py_buffer(np.ascontiguousarray(cols.flow_start))]),
        pa.Array.from_buffers(ts, n, [None, pa.py_buffer(np.ascontiguousarray(cols.flow_end))]),
        _fixed16(cols.src_addr),
        _fixed16(cols.dst_addr),
        _numeric(cols.src_port, pa.uint16()),
        _numeric(cols.dst_port, pa.uint16()),
        _numeric(cols.protocol, pa.uint8()),
        _numeric(cols.tcp_flags, pa.uint16()),
        _numeric(cols.tos, pa.uint8()),
        _numeric(cols.bytes, pa.uint64()),
        _numeric(cols.packets, pa.uint64()),
        _numeric(cols.input_if, pa.uint32()),
        _numeric(cols.output_if, pa.uint32()),
        _numeric(cols.src_as, pa.uint32()),
        _numeric(cols.dst_as, pa.uint32()),
        _fixed16(cols.next_hop, cols.next_hop_valid),
        _numeric(cols.vlan, pa.uint16()),
        _sampling(cols.sampling_interval),
        _numeric(cols.direction, pa.uint8(), cols.direction_valid),
        formats,
        _labels(cols.mpls_labels, cols.mpls_depth),
    ]
    # columns no decoder fills (enrichment, collectors.enrich): typed nulls
    arrays += [_nulls(n, f.type) for f in list(FLOW_SCHEMA)[len(arrays) :]]
    return pa.RecordBatch.from_arrays(arrays, schema=FLOW_SCHEMA)


def empty_flow_batch() -> pa.RecordBatch:
    """A zero-row ``FLOW_SCHEMA`` batch."""
    return pa.RecordBatch.from_pylist([], schema=FLOW_SCHEMA)


def concat_flow_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One ``FLOW_SCHEMA`` batch from several (empty ones skipped)."""
    batches = [b for b in batches if b.num_rows]
    if not batches:
        return empty_flow_batch()
    if len(batches) == 1:
        return batches[0]
    return pa.concat_batches(batches)
