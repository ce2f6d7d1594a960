"""Traffic aggregations over flows: time buckets per key, top-N, hour-of-week, distinct peers.

Every function takes a ``FLOW_SCHEMA`` table or batch (subscription keys also need a
:class:`~rating_engine.traffic.attribution.PrefixIndex`) and returns an Arrow table whose metric
columns are ``bytes``, ``packets`` and ``flows`` (uint64). Volumes are renormalised by
the sampling interval unless ``renormalise=False`` (bytes and packets times N).

Partitions (threads, Dask tasks): the tables returned by :func:`bucket_traffic`,
:func:`top_n` with ``n=None`` and :func:`peer_pairs` are *partials*; merging any
grouping of them with :func:`combine_traffic` / :func:`combine_peer_pairs` and then
finishing (:func:`finish_top_n`, :func:`count_peers`) equals the one-shot result exactly.
Top-N partials keep every key (truncating a partition's list would make the result
approximate).

Keys (``key=`` / ``by=``): ``subscription`` (primary attribution: the destination's
subscription if it has one, else the source's), ``exporter``, ``input_if`` and
``output_if`` (each with its exporter), ``src_prefix`` / ``dst_prefix`` (IPv4 /24,
IPv6 /48 by default), or any integer or address column of ``FLOW_SCHEMA`` (``protocol``,
``src_port``, ``dst_port``, ``src_as``, ``dst_as``, ``src_addr``, ``dst_addr``, ...), or a
sequence of those. A null exporter is grouped as ``::``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from collectors.addresses import addresses_to_strings
from rating_engine.errors import RatingError
from rating_engine.kernel_threads import row_chunks, run_chunks
from rating_engine.traffic.attribution import PrefixIndex, flow_entries
from rating_engine.traffic.bucket_kernel import aggregate_by_code

# the ranking and the names need no Numba: they live with the dataset queries (flow_query),
# which import this module only when they run a kernel
from rating_engine.traffic.flow_query import KEY_ALIASES, METRICS, finish_top_n
from rating_engine.traffic.flow_query import sortable as _sortable
from rating_engine.traffic.groupby_kernel import (
    EMPTY_U8,
    EMPTY_U32,
    EMPTY_U64,
    address_words,
    bucket_width_us,
    hash_aggregate_parallel,
    numeric_column,
    sampling_multipliers,
)

__all__ = [
    "KEY_ALIASES",
    "METRICS",
    "bucket_traffic",
    "combine_peer_pairs",
    "combine_traffic",
    "count_peers",
    "distinct_peers",
    "finish_top_n",
    "hour_of_week_profile",
    "peer_pairs",
    "top_conversations",
    "top_n",
    "with_address_text",
]

_ADDR = pa.binary(16)
_TS = pa.timestamp("us", tz="UTC")
_HOUR_US = 3_600_000_000
# 1970-01-01 was a Thursday: +72 h makes hour 0 Monday 00:00 UTC.
_HOW_SHIFT = 72

U64 = npt.NDArray[np.uint64]
Table: TypeAlias = pa.Table | pa.RecordBatch


def _as_table(flows: Table) -> pa.Table:
    return flows if isinstance(flows, pa.Table) else pa.Table.from_batches([flows])


def _expand(key: str | Sequence[str]) -> list[str]:
    names = [key] if isinstance(key, str) else list(key)
    out: list[str] = []
    for name in (KEY_ALIASES.get(n, n) for n in names):
        if name in ("input_if", "output_if"):
            out += ["exporter", name]
        else:
            out.append(name)
    return out


def _prefix_words(words: U64, v4_len: int, v6_len: int) -> U64:
    """Mask raw address words to the prefix (IPv4-mapped rows use ``v4_len``)."""

    def mask(bits: int) -> U64:
        m = (((1 << bits) - 1) << (128 - bits)).to_bytes(16, "big")
        return np.frombuffer(m, dtype=np.uint64)

    # native view of bytes 8..11 == 00 00 ff ff, bytes 0..7 zero -> IPv4-mapped
    is_v4 = (words[:, 0] == 0) & (
        (words[:, 1] & np.uint64(0xFFFFFFFF)) == np.frombuffer(b"\x00\x00\xff\xff", np.uint32)[0]
    )
    return np.where(is_v4[:, None], words & mask(96 + v4_len), words & mask(v6_len))


def _column_words(
    table: pa.Table,
    name: str,
    index: PrefixIndex | None,
    v4_len: int,
    v6_len: int,
) -> tuple[np.ndarray, pa.Field]:
    """Key column ``name`` as uint64 words ``(n, w)`` and the output field.

    With ``index=None`` and a column of that name present, a name is read as a plain
    column (how partial results are re-read by the combines).
    """
    if name in table.schema.names and index is None:
        pass
    elif name in ("src_prefix", "dst_prefix"):
        col = table.column(name.replace("prefix", "addr"))
        return _prefix_words(address_words(col), v4_len, v6_len), pa.field(name, _ADDR)
    if name not in table.schema.names:
        raise RatingError(f"flows: no field {name} to group by")
    col = table.column(name)
    if pa.types.is_fixed_size_binary(col.type):
        if col.null_count:
            col = pc.fill_null(col, pa.scalar(b"\x00" * 16, _ADDR))
        return address_words(col), pa.field(name, _ADDR)
    if not pa.types.is_integer(col.type):
        raise RatingError(f"flows: field {name} ({col.type}) cannot be a group key")
    if col.null_count:
        col = pc.fill_null(col, 0)
    values = numeric_column(col, col.type.to_pandas_dtype())
    return values.astype(np.uint64).reshape(-1, 1), pa.field(name, col.type)


def _key_matrix(
    table: pa.Table, names: list[str], index: PrefixIndex | None, v4_len: int, v6_len: int
) -> tuple[U64, list[pa.Field]]:
    parts = [_column_words(table, n, index, v4_len, v6_len) for n in names]
    fields = [f for _w, f in parts]
    if len(parts) == 1 and parts[0][0].dtype == np.uint64:
        return parts[0][0], fields
    return np.ascontiguousarray(
        np.concatenate([w.astype(np.uint64) for w, _f in parts], axis=1)
    ), fields


def _columns_from_words(words: U64, fields: list[pa.Field]) -> list[pa.Array]:
    out: list[pa.Array] = []
    j = 0
    g = words.shape[0]
    for f in fields:
        if f.type == _ADDR:
            raw = np.ascontiguousarray(words[:, j : j + 2]).tobytes()
            out.append(pa.FixedSizeBinaryArray.from_buffers(_ADDR, g, [None, pa.py_buffer(raw)]))
            j += 2
        else:
            col = words[:, j]
            if pa.types.is_signed_integer(f.type):
                col = col.view(np.int64)
            out.append(pa.array(col.astype(f.type.to_pandas_dtype()), type=f.type))
            j += 1
    return out


def _metrics(
    table: pa.Table, renormalise: bool, need_time: bool = True
) -> tuple[npt.NDArray[np.int64], U64, U64, npt.NDArray[np.uint32]]:
    # totals without a window never look at time, so flow_start need not even be read
    t = (
        numeric_column(table.column("flow_start"), np.int64)
        if need_time
        else np.empty(0, dtype=np.int64)
    )
    nbytes = numeric_column(table.column("bytes"), np.uint64)
    npk = numeric_column(table.column("packets"), np.uint64)
    mult = EMPTY_U32
    if renormalise:
        mult = sampling_multipliers(table)
    return t, nbytes, npk, mult


def _window_mask(t: npt.NDArray[np.int64], window: tuple[int, int] | None) -> npt.NDArray[np.uint8]:
    if window is None:
        return EMPTY_U8
    return ((t >= window[0]) & (t < window[1])).view(np.uint8)


def bucket_traffic(
    flows: Table,
    key: str | Sequence[str] = "subscription",
    bucket: str | int | None = "5min",
    *,
    index: PrefixIndex | None = None,
    window: tuple[int, int] | None = None,
    renormalise: bool = True,
    v4_prefix: int = 24,
    v6_prefix: int = 48,
    ordered: bool = True,
) -> pa.Table:
    """Bytes, packets and flows per key and epoch-aligned time bucket (UTC).

    ``bucket``: ``1min``, ``5min``, ``hour``, ``day``, a width in us, or None for totals.
    ``window`` = ``(start_us, end_us)`` keeps flows starting in ``[start, end)``.
    Result: key column(s), ``bucket_start`` (timestamp[us, UTC]), ``bytes``, ``packets``,
    ``flows``; sorted by bucket then key (``ordered=False`` may leave multi-word keys in
    hash order: cheaper for partials). Flows with no subscription are left out of a
    ``subscription`` grouping (see attribution stats for their count).
    """
    table = _as_table(flows)
    width = bucket_width_us(bucket)
    names = _expand(key)
    t, nbytes, npk, mult = _metrics(table, renormalise, bool(width) or window is not None)
    sel = _window_mask(t, window)
    if names == ["subscription"]:
        return _by_subscription(table, index, t, width, nbytes, npk, mult, sel)
    words, fields = _key_matrix(table, names, index, v4_prefix, v6_prefix)
    if table.num_rows == 0:
        return _traffic_table(
            words, fields, *[EMPTY_U64] * 3, start=np.empty(0, np.int64) if width else None
        )
    if len(fields) == 1 and pa.types.is_integer(fields[0].type):
        # single integer key: codes relative to the smallest value, strategy chosen below
        vals = words[:, 0].view(np.int64)
        lo, hi = int(vals.min()), int(vals.max())
        codes = vals - lo
        if sel.size:
            codes = np.where(sel.view(bool), codes, -1)
        c, start, b, p, f = aggregate_by_code(codes, hi - lo + 1, t, width, nbytes, npk, mult=mult)
        kw = (c + lo).view(np.uint64).reshape(-1, 1)
        return _traffic_table(kw, fields, b, p, f, start=start if width else None)
    t0 = int(t.min()) // width * width if width else 0
    gk, gb, gp, gf = hash_aggregate_parallel(
        words, t, t0, width, nbytes, npk, EMPTY_U64, mult, sel, ordered=ordered
    )
    starts = gk[:, -1].astype(np.int64) * width + t0 if width else None
    return _traffic_table(np.ascontiguousarray(gk[:, :-1]), fields, gb, gp, gf, start=starts)


@njit(cache=True, nogil=True)
def _primary_chunk(
    es: npt.NDArray[np.int32],
    ed: npt.NDArray[np.int32],
    code_of: npt.NDArray[np.int32],
    out: npt.NDArray[np.int32],
    lo: int,
    hi: int,
) -> None:
    for i in range(lo, hi):
        e = ed[i] if ed[i] >= 0 else es[i]
        out[i] = code_of[e] if e >= 0 else -1


def _primary_codes(
    es: npt.NDArray[np.int32], ed: npt.NDArray[np.int32], code_of: npt.NDArray[np.int32]
) -> npt.NDArray[np.int32]:
    """Subscription code of each flow's primary side (destination first), -1 if none.

    Row chunks on a thread pool over the GIL-free kernel, not a Numba parfor: it
    compiled several times longer on a cold cache (issue #22).
    """
    out = np.empty(es.shape[0], dtype=np.int32)
    run_chunks(_primary_chunk, (es, ed, code_of, out), row_chunks(es.shape[0]))
    return out


def _by_subscription(
    table: pa.Table,
    index: PrefixIndex | None,
    t: npt.NDArray[np.int64],
    width: int,
    nbytes: U64,
    npk: U64,
    mult: npt.NDArray[np.uint32],
    sel: npt.NDArray[np.uint8],
) -> pa.Table:
    if index is None:
        raise RatingError("key subscription: pass index= (a PrefixIndex)")
    ids = np.unique(index.subscription_id)
    code_of = np.searchsorted(ids, index.subscription_id).astype(np.int32)
    es, ed = flow_entries(table, index)
    codes = _primary_codes(es, ed, code_of)
    if sel.size:
        codes[sel == 0] = -1
    c, start, b, p, f = aggregate_by_code(codes, max(ids.size, 1), t, width, nbytes, npk, mult=mult)
    field = pa.field("subscription_id", pa.int64())
    sid = ids[c] if ids.size else np.empty(0, np.int64)
    return _traffic_table(
        sid.view(np.uint64).reshape(-1, 1), [field], b, p, f, start=start if width else None
    )


def _traffic_table(
    words: U64,
    fields: list[pa.Field],
    b: U64,
    p: U64,
    f: U64,
    *,
    start: npt.NDArray[np.int64] | None = None,
) -> pa.Table:
    cols = _columns_from_words(words, fields) if fields else []
    names = [fl.name for fl in fields]
    if start is not None:
        cols.append(pa.array(start, pa.int64()).cast(_TS))
        names.append("bucket_start")
    cols += [pa.array(b, pa.uint64()), pa.array(p, pa.uint64()), pa.array(f, pa.uint64())]
    return pa.table(cols, names=[*names, *METRICS])


def combine_traffic(tables: Iterable[pa.Table], *, ordered: bool = True) -> pa.Table:
    """Merge partial results of :func:`bucket_traffic` (or ``top_n(n=None)``): sum per key.

    ``ordered`` sorts as :func:`bucket_traffic` does; ``False`` keeps hash order.
    """
    parts = [t for t in tables]
    if not parts:
        raise RatingError("combine_traffic: no partial results")
    table = pa.concat_tables(parts).combine_chunks()
    keys = [n for n in table.schema.names if n not in METRICS and n != "rank"]
    has_bucket = "bucket_start" in keys
    key_cols = [k for k in keys if k != "bucket_start"]
    words, fields = _key_matrix(table, key_cols, None, 24, 48)
    fields = [table.schema.field(k) for k in key_cols]
    # bucket_start goes in as time with width 1, so groups come out bucket-major as in
    # bucket_traffic
    tb = (
        numeric_column(table.column("bucket_start"), np.int64)
        if has_bucket
        else np.zeros(table.num_rows, np.int64)
    )
    t0 = int(tb.min()) if table.num_rows else 0
    gk, gb, gp, gf = hash_aggregate_parallel(
        words,
        tb,
        t0,
        1 if has_bucket else 0,
        numeric_column(table.column("bytes"), np.uint64),
        numeric_column(table.column("packets"), np.uint64),
        numeric_column(table.column("flows"), np.uint64),
        ordered=ordered,
    )
    start = gk[:, -1].astype(np.int64) + t0 if has_bucket else None
    kw = np.ascontiguousarray(gk[:, :-1])
    return _traffic_table(kw, fields, gb, gp, gf, start=start)


def top_n(
    flows: Table,
    by: str | Sequence[str] = "src_addr",
    metric: str = "bytes",
    n: int | None = 10,
    window: tuple[int, int] | None = None,
    *,
    index: PrefixIndex | None = None,
    renormalise: bool = True,
) -> pa.Table:
    """Top-N talkers by ``by`` (an address, prefix, port, ... key) over ``window``.

    Like ``nfdump -s srcip/bytes -n 10``. ``n=None`` returns the whole partial (every
    key, unsorted) for a later :func:`combine_traffic` + :func:`finish_top_n`.

    >>> from collectors import FlowMeter, read_packets
    >>> from rating_engine import top_n, with_address_text
    >>> meter = FlowMeter()
    >>> flows = pa.concat_tables([meter.add(read_packets("traffic.pcap.gz")), meter.flush()])
    >>> for row in with_address_text(top_n(flows, "src_addr", "bytes", 3)).to_pylist():
    ...     print(row)
    {'src_addr': '192.0.2.80', 'bytes': 956447, 'packets': 1091, 'flows': 135, 'rank': 1}
    {'src_addr': '192.0.2.53', 'bytes': 934227, 'packets': 1515, 'flows': 634, 'rank': 2}
    {'src_addr': '192.0.2.20', 'bytes': 878361, 'packets': 1028, 'flows': 133, 'rank': 3}
    """
    partial = bucket_traffic(
        flows, by, None, index=index, window=window, renormalise=renormalise, ordered=False
    )
    return partial if n is None else finish_top_n(partial, metric, n)


def top_conversations(
    flows: Table,
    metric: str = "bytes",
    n: int = 10,
    window: tuple[int, int] | None = None,
    *,
    bidirectional: bool = True,
    renormalise: bool = True,
) -> pa.Table:
    """Top-N address pairs. ``bidirectional`` merges A->B with B->A (pair ordered by bytes)."""
    table = _as_table(flows)
    if bidirectional and table.num_rows:
        s = address_words(table.column("src_addr"))
        d = address_words(table.column("dst_addr"))
        sb = _byte_order_key(s)
        db = _byte_order_key(d)
        swap = (sb[:, 0] > db[:, 0]) | ((sb[:, 0] == db[:, 0]) & (sb[:, 1] > db[:, 1]))
        a = np.where(swap[:, None], d, s)
        b = np.where(swap[:, None], s, d)
        table = table.set_column(
            table.schema.get_field_index("src_addr"), "src_addr", _addr_array(a)
        ).set_column(table.schema.get_field_index("dst_addr"), "dst_addr", _addr_array(b))
    partial = bucket_traffic(
        table, ["src_addr", "dst_addr"], None, window=window, renormalise=renormalise,
        ordered=False,
    )  # fmt: skip
    return finish_top_n(partial, metric, n)


def _byte_order_key(words: U64) -> U64:
    return words.byteswap() if np.little_endian else words


def _addr_array(words: U64) -> pa.Array:
    raw = np.ascontiguousarray(words).tobytes()
    return pa.FixedSizeBinaryArray.from_buffers(_ADDR, words.shape[0], [None, pa.py_buffer(raw)])


def hour_of_week_profile(flows: Table, index: PrefixIndex, *, renormalise: bool = True) -> pa.Table:
    """Usage per subscription and hour of week (0 = Monday 00:00-01:00 UTC ... 167).

    Columns: ``subscription_id``, ``hour_of_week`` (int16), ``bytes_down``, ``bytes_up``,
    ``flows_down``, ``flows_up`` - both sides of a flow count for their own subscription.
    Totals over the data given (divide by the number of weeks for an average week).
    Partials combine by summing per (subscription_id, hour_of_week).
    """
    table = _as_table(flows)
    ids = np.unique(index.subscription_id)
    code_of = np.searchsorted(ids, index.subscription_id)
    if table.num_rows == 0 or ids.size == 0:
        return _profile_table(np.empty(0, np.int64), np.empty(0, np.int64), *[EMPTY_U64] * 4)
    es, ed = flow_entries(table, index)
    t, nbytes, npk, mult = _metrics(table, renormalise)
    how = (t // _HOUR_US + _HOW_SHIFT) % 168
    sides = []
    for ent in (ed, es):
        codes = np.where(ent >= 0, code_of[np.maximum(ent, 0)], -1).astype(np.int64)
        c, h, b, _p, f = aggregate_by_code(codes, ids.size, how, 1, nbytes, npk, mult=mult)
        sides.append((c * 168 + h, b, f))
    cells = np.union1d(sides[0][0], sides[1][0])
    vals = []
    for cell, b, f in sides:
        pos = np.searchsorted(cells, cell)
        vb, vf = np.zeros(cells.size, np.uint64), np.zeros(cells.size, np.uint64)
        vb[pos], vf[pos] = b, f
        vals.append((vb, vf))
    return _profile_table(
        ids[cells // 168], cells % 168, vals[0][0], vals[1][0], vals[0][1], vals[1][1]
    )


def _profile_table(
    sid: np.ndarray, how: np.ndarray, bd: U64, bu: U64, fd: U64, fu: U64
) -> pa.Table:
    return pa.table(
        {
            "subscription_id": pa.array(sid, pa.int64()),
            "hour_of_week": pa.array(how.astype(np.int16), pa.int16()),
            "bytes_down": pa.array(bd, pa.uint64()),
            "bytes_up": pa.array(bu, pa.uint64()),
            "flows_down": pa.array(fd, pa.uint64()),
            "flows_up": pa.array(fu, pa.uint64()),
        }
    )


def peer_pairs(
    flows: Table,
    by: str = "src_addr",
    peer: str = "dst_addr",
    window: tuple[int, int] | None = None,
) -> pa.Table:
    """Partial for distinct peers: the distinct (``by``, ``peer``) pairs of these flows."""
    partial = bucket_traffic(flows, [by, peer], None, window=window, renormalise=False)
    return partial.select([by, peer])


def combine_peer_pairs(tables: Iterable[pa.Table]) -> pa.Table:
    """Union of pair partials (deduplicated)."""
    parts = list(tables)
    if not parts:
        raise RatingError("combine_peer_pairs: no partial results")
    t = pa.concat_tables(parts).combine_chunks()
    names = t.schema.names
    words, fields = _key_matrix(t, names, None, 24, 48)
    z = np.zeros(t.num_rows, np.int64)
    ones = np.ones(t.num_rows, np.uint64)
    gk = hash_aggregate_parallel(words, z, 0, 0, ones, ones)[0]
    return pa.table(_columns_from_words(np.ascontiguousarray(gk[:, :-1]), fields), names=names)


def count_peers(pairs: pa.Table) -> pa.Table:
    """Exact distinct-peer count per key, largest first: columns ``<by>``, ``peers``."""
    by = pairs.schema.names[0]
    words, fields = _key_matrix(pairs, [by], None, 24, 48)
    z = np.zeros(pairs.num_rows, np.int64)
    ones = np.ones(pairs.num_rows, np.uint64)
    gk, _b, _p, gf = hash_aggregate_parallel(words, z, 0, 0, ones, ones)
    out = pa.table(
        [*_columns_from_words(np.ascontiguousarray(gk[:, :-1]), fields), pa.array(gf)],
        names=[by, "peers"],
    )
    return out.take(pc.sort_indices(_sortable(out), [("peers", "descending"), (by, "ascending")]))


def distinct_peers(
    flows: Table,
    by: str = "src_addr",
    peer: str = "dst_addr",
    window: tuple[int, int] | None = None,
) -> pa.Table:
    """Exact number of distinct ``peer`` values per ``by`` value (no HyperLogLog error)."""
    return count_peers(peer_pairs(flows, by, peer, window))


def with_address_text(table: pa.Table) -> pa.Table:
    """Copy of ``table`` with every 16-byte address column as text (IPv4 unmapped).

    For people: CLI tables, ``--json`` output and notebooks.
    """
    cols = []
    for col in table.columns:
        if col.type == _ADDR:
            col = pa.array(addresses_to_strings(col), pa.string())
        cols.append(col)
    return pa.table(cols, names=table.schema.names)
