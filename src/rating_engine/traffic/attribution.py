"""Attribute flows to subscriptions: longest-prefix match of addresses against IP blocks.

A subscription row with ``key_type == "ip"`` binds a CIDR block (``key``) to a
subscription from ``active_from`` (inclusive) to ``active_to`` (exclusive, null = open).
For each flow, the destination address and the source address are looked up; a flow
whose destination is in a block is *download* for that block's subscription, one whose
source is in a block is *upload* for it, both at once is *both* (the two sides may be
different subscriptions), neither is unattributed (counted, never dropped silently).

Matching rules (documented choices):
- longest prefix wins among the bindings **active at the flow's start**; an inactive
  longer binding does not hide an active shorter one;
- IPv4 addresses (stored IPv4-mapped, ``::ffff:a.b.c.d``) match IPv4 blocks, and IPv6
  blocks written inside ``::ffff:0:0/96`` are treated as the IPv4 block they map;
  native IPv6 addresses match IPv6 blocks;
- two bindings of the same block with overlapping active windows are ambiguous and
  refused when the index is built.

The index flattens the (laminar) set of blocks into disjoint address intervals, each
with its candidate bindings longest-first, plus a first-level table on the top 16 bits
of the address that narrows the binary search to a few boundaries. The kernel reads
the 16-byte address buffer zero-copy as two uint64 words and byte-swaps them to
big-endian order, which makes integer order equal address order.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from numba import njit

from rating_engine.errors import RatingError
from rating_engine.kernel_threads import row_chunks, run_chunks
from rating_engine.traffic.groupby_kernel import (
    address_words,
    numeric_column,
)

__all__ = [
    "ATTRIBUTION_COLUMNS",
    "DIRECTION_BOTH",
    "DIRECTION_DOWNLOAD",
    "DIRECTION_NAMES",
    "DIRECTION_NONE",
    "DIRECTION_UPLOAD",
    "PrefixIndex",
    "attribute_batches",
    "attribute_flows",
    "build_prefix_index",
    "entries_for",
    "flow_entries",
    "match_entries",
]

DIRECTION_NONE = 0
DIRECTION_DOWNLOAD = 1
DIRECTION_UPLOAD = 2
DIRECTION_BOTH = 3
#: Columns :func:`attribute_flows` adds.
ATTRIBUTION_COLUMNS = (
    "src_entry",
    "dst_entry",
    "src_subscription_id",
    "dst_subscription_id",
    "subscription_id",
    "account_id",
    "traffic_direction",
)
#: Text of the ``traffic_direction`` column by code (code 0 is written as null).
DIRECTION_NAMES = ("", "download", "upload", "both")

_OPEN = np.iinfo(np.int64).max
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")
_L1_BITS = 16

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class PrefixIndex:
    """Flattened, immutable IP-block index (picklable: plain numpy arrays and lists).

    Entry arrays (one element per binding, i.e. per subscription row) are indexed by the
    entry numbers the kernel returns. Per family: interval boundaries (v4 as int64, v6 as
    hi/lo uint64 pairs), CSR candidate lists per interval, and the first-level table.
    """

    subscription_id: I64
    account_id: I64
    key: tuple[str, ...]  # canonical CIDR text of each binding's block
    tariff_id: tuple[str, ...]
    prefix_len: npt.NDArray[np.int16]
    active_from: I64
    active_to: I64
    v4_bounds: I64
    v4_cand_off: I64
    v4_cand: I32
    v4_l1: I64
    v6_bounds_hi: U64
    v6_bounds_lo: U64
    v6_cand_off: I64
    v6_cand: I32
    v6_l1: I64

    @property
    def n_entries(self) -> int:
        """Number of bindings in the index."""
        return int(self.subscription_id.shape[0])


def _to_us(value: int | datetime) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise RatingError(f"time {value!r} has no time zone; use UTC")
        return int(pa.scalar(value, type=pa.timestamp("us", tz="UTC")).cast(pa.int64()).as_py())
    return int(value)


def _parse_block(
    text: str, row: int, sub_id: int
) -> tuple[int, int, int]:  # (family 4/6, first, prefix length)
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise RatingError(
            f"subscriptions row {row} (subscription_id {sub_id}), field key: "
            f"{text!r} is not a CIDR block ({exc})"
        ) from exc
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED_V4):
        first = int(net.network_address) & 0xFFFFFFFF
        return 4, first, net.prefixlen - 96
    return net.version, int(net.network_address), net.prefixlen


def _flatten(
    blocks: dict[tuple[int, int], list[int]], bits: int
) -> tuple[list[int], list[int], list[int]]:
    """Laminar sweep: disjoint intervals and their candidate entries, longest prefix first.

    ``blocks`` maps (first address, prefix length) to entry numbers (already ordered).
    Returns boundaries, CSR offsets and the flat candidate list; interval i covers
    ``[bounds[i], bounds[i+1])`` and the last one runs to the end of the space.
    """
    space = 1 << bits
    ends: dict[int, list[tuple[int, int]]] = {}
    starts: dict[int, list[tuple[int, int]]] = {}
    for first, plen in blocks:
        last = first + (1 << (bits - plen))
        starts.setdefault(first, []).append((first, plen))
        if last < space:
            ends.setdefault(last, [])
    points = sorted({0, *starts, *ends})
    stack: list[tuple[int, int, int]] = []  # (end exclusive, first, plen)
    bounds: list[int] = []
    offsets: list[int] = [0]
    cands: list[int] = []
    for p in points:
        while stack and stack[-1][0] <= p:
            stack.pop()
        for first, plen in sorted(starts.get(p, ()), key=lambda fp: fp[1]):
            stack.append((first + (1 << (bits - plen)), first, plen))
        bounds.append(p)
        for _end, first, plen in reversed(stack):
            cands.extend(blocks[(first, plen)])
        offsets.append(len(cands))
    return bounds, offsets, cands


def build_prefix_index(subscriptions: pa.Table, *, at: int | datetime | None = None) -> PrefixIndex:
    """Build the index from a ``SUBSCRIPTION_SCHEMA`` table (rows with ``key_type == "ip"``).

    ``at`` (microseconds since epoch or an aware datetime), when given, keeps only the
    bindings active at that instant; otherwise every binding is kept and the kernel
    checks each flow's start time against the binding's active window.
    """
    for name in ("subscription_id", "account_id", "key_type", "key", "active_from", "active_to"):
        if name not in subscriptions.column_names:
            raise RatingError(f"subscriptions table: missing field {name}")
    rows = subscriptions.select(
        [
            "subscription_id",
            "account_id",
            "key_type",
            "key",
            "active_from",
            "active_to",
            *(["tariff_id"] if "tariff_id" in subscriptions.column_names else []),
        ]
    ).to_pylist()
    at_us = None if at is None else _to_us(at)
    entries: list[tuple[int, int, str, str, int, int, int, int, int]] = []
    for row_no, r in enumerate(rows, start=1):
        if r["key_type"] != "ip":
            continue
        frm = _to_us(r["active_from"])
        to = _OPEN if r["active_to"] is None else _to_us(r["active_to"])
        if to <= frm:
            raise RatingError(
                f"subscriptions row {row_no} (subscription_id {r['subscription_id']}), "
                f"field active_to: not after active_from"
            )
        if at_us is not None and not (frm <= at_us < to):
            continue
        fam, first, plen = _parse_block(r["key"], row_no, r["subscription_id"])
        entries.append(
            (
                fam,
                first,
                # canonical text (as ipaddress writes it): what the rater matches usage on
                str(ipaddress.ip_network(r["key"].strip(), strict=True)),
                str(r.get("tariff_id") or ""),
                plen,
                frm,
                to,
                int(r["subscription_id"]),
                int(r["account_id"]),
            )
        )
    # entry order: family, block, active_from -> deterministic entry numbers
    entries.sort(key=lambda e: (e[0], e[1], e[4], e[5]))
    blocks: dict[int, dict[tuple[int, int], list[int]]] = {4: {}, 6: {}}
    for i, (fam, first, key, _t, plen, frm, _to, sub, _acc) in enumerate(entries):
        same = blocks[fam].setdefault((first, plen), [])
        if same:
            prev = entries[same[-1]]
            if frm < prev[6]:
                raise RatingError(
                    f"subscriptions: block {key} bound to subscription_id {prev[7]} and {sub} "
                    f"with overlapping active windows (field active_from/active_to)"
                )
        same.append(i)
    b4, o4, c4 = _flatten(blocks[4], 32)
    b6, o6, c6 = _flatten(blocks[6], 128)
    v4_bounds = np.array(b4, dtype=np.int64)
    v6_hi = np.array([b >> 64 for b in b6], dtype=np.uint64)
    v6_lo = np.array([b & 0xFFFFFFFFFFFFFFFF for b in b6], dtype=np.uint64)
    # first-level table: for each top-16-bit value, the interval holding its first address
    tops = np.arange(1 << _L1_BITS, dtype=np.int64)
    v4_l1 = np.searchsorted(v4_bounds, tops << 16, side="right").astype(np.int64) - 1
    v6_l1 = np.searchsorted(v6_hi >> np.uint64(48), tops.astype(np.uint64), side="left")
    v6_l1 = np.maximum(v6_l1.astype(np.int64) - 1, 0)
    return PrefixIndex(
        subscription_id=np.array([e[7] for e in entries], dtype=np.int64),
        account_id=np.array([e[8] for e in entries], dtype=np.int64),
        key=tuple(e[2] for e in entries),
        tariff_id=tuple(e[3] for e in entries),
        prefix_len=np.array([e[4] for e in entries], dtype=np.int16),
        active_from=np.array([e[5] for e in entries], dtype=np.int64),
        active_to=np.array([e[6] for e in entries], dtype=np.int64),
        v4_bounds=v4_bounds,
        v4_cand_off=np.array(o4, dtype=np.int64),
        v4_cand=np.array(c4, dtype=np.int32),
        v4_l1=v4_l1,
        v6_bounds_hi=v6_hi,
        v6_bounds_lo=v6_lo,
        v6_cand_off=np.array(o6, dtype=np.int64),
        v6_cand=np.array(c6, dtype=np.int32),
        v6_l1=v6_l1,
    )


@njit(cache=True, nogil=True, inline="always")
def _bswap(x: np.uint64) -> np.uint64:
    x = ((x & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(8)) | (
        (x >> np.uint64(8)) & np.uint64(0x00FF00FF00FF00FF)
    )
    x = ((x & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(16)) | (
        (x >> np.uint64(16)) & np.uint64(0x0000FFFF0000FFFF)
    )
    return (x << np.uint64(32)) | (x >> np.uint64(32))


@njit(cache=True, nogil=True)
def _match_chunk(
    src: U64,
    dst: U64,
    start_us: I64,
    v4_bounds: I64,
    v4_cand_off: I64,
    v4_cand: I32,
    v4_l1: I64,
    v6_hi: U64,
    v6_lo: U64,
    v6_cand_off: I64,
    v6_cand: I32,
    v6_l1: I64,
    active_from: I64,
    active_to: I64,
    out_src: I32,
    out_dst: I32,
    lo_row: int,
    hi_row: int,
) -> None:
    """Entry numbers of rows ``lo_row..hi_row-1`` into ``out_src`` / ``out_dst``.

    The lookup is written out in the loop: as helper functions taking the index arrays
    it ran 3x slower in a serial kernel (their reference counting in the hot loop).
    """
    n4 = v4_bounds.shape[0]
    n6 = v6_hi.shape[0]
    for i in range(lo_row, hi_row):
        ts = start_us[i]
        for side in range(2):
            if side == 0:
                hi = _bswap(src[i, 0])
                lo = _bswap(src[i, 1])
            else:
                hi = _bswap(dst[i, 0])
                lo = _bswap(dst[i, 1])
            entry = np.int32(-1)
            if hi == 0 and (lo >> np.uint64(32)) == np.uint64(0xFFFF):
                a = np.int64(lo & np.uint64(0xFFFFFFFF))
                top = a >> 16
                k = v4_l1[top]
                j = v4_l1[top + 1] if top < 65535 else n4 - 1
                # largest k in [k, j] with bounds[k] <= a (bounds[k] <= a holds);
                # branch-free halving: the select compiles to a conditional move, no
                # mispredictions
                length = j - k + 1
                while length > 1:
                    half = length >> 1
                    k = k + half if v4_bounds[k + half] <= a else k
                    length -= half
                # candidates longest prefix first: the first active at the flow's start
                for c in range(v4_cand_off[k], v4_cand_off[k + 1]):
                    e = v4_cand[c]
                    if active_from[e] <= ts and ts < active_to[e]:
                        entry = np.int32(e)
                        break
            else:
                top = np.int64(hi >> np.uint64(48))
                k = v6_l1[top]
                j = v6_l1[top + 1] if top < 65535 else n6 - 1
                length = j - k + 1
                while length > 1:
                    half = length >> 1
                    bh = v6_hi[k + half]
                    le = (bh < hi) | ((bh == hi) & (v6_lo[k + half] <= lo))
                    k = k + half if le else k
                    length -= half
                for c in range(v6_cand_off[k], v6_cand_off[k + 1]):
                    e = v6_cand[c]
                    if active_from[e] <= ts and ts < active_to[e]:
                        entry = np.int32(e)
                        break
            if side == 0:
                out_src[i] = entry
            else:
                out_dst[i] = entry


def match_entries(
    src: U64,
    dst: U64,
    start_us: I64,
    v4_bounds: I64,
    v4_cand_off: I64,
    v4_cand: I32,
    v4_l1: I64,
    v6_hi: U64,
    v6_lo: U64,
    v6_cand_off: I64,
    v6_cand: I32,
    v6_l1: I64,
    active_from: I64,
    active_to: I64,
) -> tuple[I32, I32]:
    """Entry number (or -1) of the block holding each flow's source and destination.

    Row chunks run on a thread pool over the GIL-free kernel (a Numba parfor compiled
    4x longer on a cold cache, issue #22).
    """
    n = start_us.shape[0]
    out_src = np.empty(n, dtype=np.int32)
    out_dst = np.empty(n, dtype=np.int32)
    args = (
        src, dst, start_us, v4_bounds, v4_cand_off, v4_cand, v4_l1,
        v6_hi, v6_lo, v6_cand_off, v6_cand, v6_l1, active_from, active_to, out_src, out_dst,
    )  # fmt: skip
    run_chunks(_match_chunk, args, row_chunks(n))
    return out_src, out_dst


def entries_for(flows: pa.Table | pa.RecordBatch, index: PrefixIndex) -> tuple[I32, I32]:
    """Run the kernel on a table or batch: (src entry, dst entry) per flow, -1 = none.

    Null addresses (not allowed by FLOW_SCHEMA, but tolerated) match nothing.
    """
    n = flows.num_rows
    if n == 0 or index.n_entries == 0:
        empty = np.full(n, -1, dtype=np.int32)
        return empty, empty.copy()
    src_col = flows.column("src_addr")
    dst_col = flows.column("dst_addr")
    src = address_words(src_col)
    dst = address_words(dst_col)
    start = numeric_column(flows.column("flow_start"), np.int64)
    out_src, out_dst = match_entries(
        src, dst, start,
        index.v4_bounds, index.v4_cand_off, index.v4_cand, index.v4_l1,
        index.v6_bounds_hi, index.v6_bounds_lo, index.v6_cand_off, index.v6_cand, index.v6_l1,
        index.active_from, index.active_to,
    )  # fmt: skip
    for col, out in ((src_col, out_src), (dst_col, out_dst)):
        if col.null_count:
            valid = np.asarray(col.is_valid())
            out[~valid] = -1
    return out_src, out_dst


def flow_entries(flows: pa.Table | pa.RecordBatch, index: PrefixIndex) -> tuple[I32, I32]:
    """Like :func:`entries_for`, but reuses ``src_entry``/``dst_entry`` columns when present.

    Those columns must come from :func:`attribute_flows` with the same ``index``.
    """
    names = flows.schema.names
    if "src_entry" in names and "dst_entry" in names:
        es = numeric_column(flows.column("src_entry"), np.int32)
        ed = numeric_column(flows.column("dst_entry"), np.int32)
        return es, ed
    return entries_for(flows, index)


def _take_or_null(values: np.ndarray, idx: I32, type_: pa.DataType) -> pa.Array:
    mask = idx < 0
    picked = values[np.where(mask, 0, idx)] if values.size else np.zeros(idx.shape[0], np.int64)
    return pa.array(picked, type=type_, mask=mask)


def attribute_flows(flows: pa.Table | pa.RecordBatch, index: PrefixIndex) -> pa.Table:
    """Flows plus their attribution.

    Added columns: ``src_subscription_id`` / ``dst_subscription_id`` (the subscription
    whose block holds that address, null if none), ``src_entry`` / ``dst_entry`` (int32
    binding numbers into ``index``, -1 if none), ``subscription_id`` / ``account_id`` (the
    destination side if attributed there, else the source side; null if unattributed)
    and ``traffic_direction`` (download, upload, both, or null; named so because
    ``FLOW_SCHEMA`` already has ``direction``, the exporter's ingress/egress flag).
    """
    table = flows if isinstance(flows, pa.Table) else pa.Table.from_batches([flows])
    # attributing again replaces an earlier attribution
    table = table.drop_columns([c for c in ATTRIBUTION_COLUMNS if c in table.column_names])
    es, ed = entries_for(table, index)
    code = (ed >= 0).astype(np.uint8) * DIRECTION_DOWNLOAD + (es >= 0).astype(
        np.uint8
    ) * DIRECTION_UPLOAD
    primary = np.where(ed >= 0, ed, es).astype(np.int32)
    names = pa.array(list(DIRECTION_NAMES[1:]), type=pa.string())
    direction = names.take(pa.array(code.astype(np.int32) - 1, mask=code == 0))
    return (
        table.append_column("src_entry", pa.array(es, type=pa.int32()))
        .append_column("dst_entry", pa.array(ed, type=pa.int32()))
        .append_column("src_subscription_id", _take_or_null(index.subscription_id, es, pa.int64()))
        .append_column("dst_subscription_id", _take_or_null(index.subscription_id, ed, pa.int64()))
        .append_column("subscription_id", _take_or_null(index.subscription_id, primary, pa.int64()))
        .append_column("account_id", _take_or_null(index.account_id, primary, pa.int64()))
        .append_column("traffic_direction", direction)
    )


def attribute_batches(
    batches: Iterable[pa.RecordBatch], index: PrefixIndex
) -> Iterator[pa.RecordBatch]:
    """Streaming form of :func:`attribute_flows` (one output batch per input batch)."""
    for batch in batches:
        yield from attribute_flows(batch, index).combine_chunks().to_batches()
