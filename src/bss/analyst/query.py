"""Top-N and time-bucket queries over a workspace's flows, the way ``nfdump -s`` reports them.

``top_talkers(paths, by="src_ip", metric="bytes", n=10)`` is ``nfdump -s srcip/bytes -n 10``
over the workspace's Parquet flows, grouped by whichever engine is faster for the key
in this process (:func:`_engine`): one polars lazy scan (window and filter pushed into
the reader), or the rows streamed batch by batch through Arrow's hash aggregation or the
Numba kernels of :mod:`rating_engine.traffic.aggregate`, a partial per batch merged
with the associative combine (memory bounded by the number of distinct keys). Each row
carries its share of the window's total flows, packets and bytes in percent, as nfdump
prints them. Volumes are renormalised by the sampling interval unless
``renormalise=False``.

Keys (``by``): ``src_ip``, ``dst_ip``, ``src_port``, ``dst_port``, ``proto``,
``conversation`` (address pair, A->B and B->A merged), ``pair`` (directed src->dst),
``exporter``, ``input_if`` / ``output_if`` (with their exporter), ``src_as``, ``dst_as``,
``src_prefix`` / ``dst_prefix`` (/24, /48) and ``subscription`` (the bss IP blocks).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.analyst.times import TimeLike, parse_window, to_us, window_of
from bss.errors import ValidationError
from collectors.workspace import WorkspacePaths, visible_parts
from rating_engine.errors import FilterError
from rating_engine.traffic.flow_query import (
    METRICS,
    arrow_combine,
    arrow_sums,
    bucket_width_us,
    finish_top_n,
    flow_columns,
    numpy_array,
    plain_columns,
    prefer_polars,
    scan_flows,
    window_bytes,
)

if TYPE_CHECKING:
    # imported where used: a query of plain keys without a filter starts without Numba
    # (the kernels), polars (the filter's compiler) and DuckDB (the bss database)
    from rating_engine.traffic.attribution import PrefixIndex
    from rating_engine.traffic.flow_filter import FlowFilter

__all__ = [
    "BY_KEYS",
    "TimeLike",
    "Totals",
    "address_text",
    "addresses_as_text",
    "checked_filter",
    "flow_buckets",
    "parse_window",
    "prefix_index",
    "to_us",
    "top_talkers",
    "window_of",
]

_ADDR = pa.binary(16)
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_TS = pa.timestamp("us", tz="UTC")
#: Merge the accumulated partials once they hold this many rows (bounds memory).
_MERGE_ROWS = 4_000_000
#: Rows handed to the kernels at once.
_CHUNK_ROWS = 2_000_000
#: Rows handed to Arrow's grouping at once (it needs no contiguous copy; fewer, larger
#: partials spare merging them: 5M flows by address took 0.80 s CPU in one chunk, 1.24 s
#: in 2M-row chunks).
_ARROW_CHUNK_ROWS = 8_000_000

#: ``--by`` names (nfdump's words and ours) -> group key of :mod:`rating_engine.traffic.aggregate`.
BY_KEYS: dict[str, tuple[str, ...]] = {
    "src_ip": ("src_addr",),
    "srcip": ("src_addr",),
    "src_addr": ("src_addr",),
    "dst_ip": ("dst_addr",),
    "dstip": ("dst_addr",),
    "dst_addr": ("dst_addr",),
    "src_port": ("src_port",),
    "srcport": ("src_port",),
    "dst_port": ("dst_port",),
    "dstport": ("dst_port",),
    "proto": ("protocol",),
    "protocol": ("protocol",),
    "conversation": ("src_addr", "dst_addr"),
    "pair": ("src_addr", "dst_addr"),
    "exporter": ("exporter",),
    "input_if": ("input_if",),
    "inif": ("input_if",),
    "output_if": ("output_if",),
    "outif": ("output_if",),
    "src_as": ("src_as",),
    "srcas": ("src_as",),
    "dst_as": ("dst_as",),
    "dstas": ("dst_as",),
    "src_prefix": ("src_prefix",),
    "dst_prefix": ("dst_prefix",),
    "subscription": ("subscription",),
}


@dataclass(frozen=True)
class Totals:
    """Sums over every flow in the window (the denominators of the percentages)."""

    flows: int
    packets: int
    bytes: int


def address_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """16-byte addresses as text (``192.0.2.1``, ``2001:db8::1``); nulls and odd sizes -> null.

    IPv4 (mapped) addresses are written by Arrow kernels from their four bytes; IPv6
    ones are converted once per distinct address by :mod:`ipaddress` (RFC 5952 text).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], _ADDR)
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        # DuckDB hands BLOBs over as variable binary: only 16-byte values are addresses
        ok = pc.equal(pc.binary_length(column), 16)
        column = pc.if_else(ok, column, pa.scalar(None, column.type)).cast(_ADDR)
    n = len(column)
    if n == 0:
        return pa.array([], pa.string())
    start = column.offset * 16
    raw = np.frombuffer(column.buffers()[1], np.uint8)[start : start + n * 16].reshape(n, 16)
    v4 = (raw[:, :12] == np.frombuffer(_V4_MAPPED, np.uint8)).all(axis=1)
    octets = [numpy_array(raw[:, 12 + i]).cast(pa.string()) for i in range(4)]
    text = pc.binary_join_element_wise(*octets, ".")
    v6 = ~v4 & column.is_valid().to_numpy(zero_copy_only=False)
    if v6.any():
        from collectors.addresses import addresses_to_strings  # ipaddress: only for IPv6

        others = column.filter(pa.array(v6))
        encoded = pc.dictionary_encode(others)
        names = pa.array(addresses_to_strings(encoded.dictionary), pa.string())
        text = pc.replace_with_mask(text, pa.array(v6), pc.take(names, encoded.indices))
    if column.null_count:
        text = pc.if_else(column.is_valid(), text, pa.scalar(None, pa.string()))
    return text


def addresses_as_text(table: pa.Table) -> pa.Table:
    """Every 16-byte address column of ``table`` replaced by its text form (same name).

    Prefix columns (``src_prefix``, ``dst_prefix``) get their length: ``192.0.2.0/24``.
    """
    for i, field in enumerate(table.schema):
        if field.type == _ADDR:
            text = address_text(table.column(i))
            if field.name.endswith("_prefix"):
                v4 = pc.match_substring(text, ".")
                text = pc.binary_join_element_wise(text, pc.if_else(v4, "24", "48"), "/")
            table = table.set_column(i, field.name, text)
    return table


def prefix_index(paths: WorkspacePaths) -> PrefixIndex:
    """IP-block index of every subscription binding in the workspace's bss (read-only)."""
    import duckdb

    from bss.subscriptions import subscription_table
    from rating_engine.traffic.attribution import build_prefix_index

    if not paths.database.exists():
        raise ValidationError(f"workspace {paths.root}: no bss database, so no subscriptions")
    conn = duckdb.connect(str(paths.database), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        subs = subscription_table(conn, datetime(9999, 1, 1, tzinfo=UTC))
    finally:
        conn.close()
    return build_prefix_index(subs)


def checked_filter(expression: str | FlowFilter | None) -> FlowFilter | None:
    """:func:`~rating_engine.traffic.flow_filter.compile_filter` with its error as a
    :class:`ValidationError` (bad input: exit code 3), position and caret kept."""
    if expression is None:
        return None
    from rating_engine.traffic.flow_filter import compile_filter

    try:
        return compile_filter(expression)
    except FilterError as exc:
        error = ValidationError(str(exc))
        error.details = exc.details
        raise error from exc


def _chunks(
    batches: Iterator[pa.RecordBatch], size: int, contiguous: bool = True
) -> Iterator[pa.Table]:
    """Batches gathered into tables of at least ``size`` rows (fewer, larger kernel calls
    and partials: one hourly file is often only a few 100k flows); ``contiguous`` (for the
    kernels): each column in one buffer (a copy; Arrow's grouping needs none)."""
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        held.append(batch)
        rows += batch.num_rows
        if rows >= size:
            table = pa.Table.from_batches(held)
            yield table.combine_chunks() if contiguous else table
            held, rows = [], 0
    if held:
        table = pa.Table.from_batches(held)
        yield table.combine_chunks() if contiguous else table


#: Which engine aggregates a query: None chooses (see :func:`_engine`); tests set
#: "arrow", "kernels" or "polars" to compare them.
ENGINE: str | None = None


def _engine(key: tuple[str, ...], window_bytes: Callable[[], int] | None = None) -> str:
    """``kernels`` (Numba), ``polars`` (a lazy scan) or ``arrow`` (Arrow's hash
    aggregation): the same sums, whichever is faster for the key in this process -
    measured in benchmarks/query_top.py (in process) and benchmarks/query_processes.py
    (whole processes); ``window_bytes``: the size of the window's Parquet, if asked.

    Subscriptions and prefixes need the kernels (IP-block index, masks). Plain keys go
    to polars where :func:`~rating_engine.traffic.flow_query.prefer_polars` says (it is
    loaded, or the window is large; one address goes to the kernels once Numba is
    loaded), else to the kernels when Numba is loaded, else to Arrow: a one-shot
    ``rating-engine query`` does not load Numba (~0.5 s CPU with its kernels: more than
    they save).
    """
    if plain_columns(key) is None:
        return "kernels"
    if ENGINE is not None:
        return ENGINE
    if prefer_polars(plain_columns(key) or [], window_bytes):
        return "polars"
    return "kernels" if "numba" in sys.modules else "arrow"


def _words(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``(n, 2)`` uint64 view of 16-byte addresses (a chunked column is combined first)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if n == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    return np.frombuffer(arr.buffers()[1], np.uint64, 2 * n, arr.offset * 16).reshape(n, 2)


def _ordered_pairs(chunk: pa.Table) -> pa.Table:
    """Each flow's two addresses put in byte order (A <= B), so A->B and B->A group together.

    Same pairing as :func:`rating_engine.traffic.aggregate.top_conversations`, done per chunk so
    the pairs can be grouped as partials and merged across chunks.
    """
    src = _words(chunk.column("src_addr"))
    dst = _words(chunk.column("dst_addr"))
    # big-endian words compare like the bytes
    sb = src.byteswap() if sys.byteorder == "little" else src
    db = dst.byteswap() if sys.byteorder == "little" else dst
    swap = (sb[:, 0] > db[:, 0]) | ((sb[:, 0] == db[:, 0]) & (sb[:, 1] > db[:, 1]))
    a = np.where(swap[:, None], dst, src)
    b = np.where(swap[:, None], src, dst)
    i = chunk.schema.get_field_index
    chunk = chunk.set_column(i("src_addr"), "src_addr", _addresses(a))
    return chunk.set_column(i("dst_addr"), "dst_addr", _addresses(b))


def _addresses(words: np.ndarray) -> pa.Array:
    raw = pa.py_buffer(np.ascontiguousarray(words).tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(_ADDR, words.shape[0], [None, raw])


def _batch_totals(batch: pa.Table, renormalise: bool) -> tuple[int, int, int]:
    nbytes = batch.column("bytes")
    npk = batch.column("packets")
    if renormalise and "sampling_interval" in batch.schema.names:
        # sampling interval 0 means unsampled, as in the kernels (a batch without the
        # column: the row-group statistics showed nothing to renormalise)
        mult = pc.max_element_wise(batch.column("sampling_interval"), 1).cast(pa.uint64())
        nbytes = pc.multiply(nbytes, mult)
        npk = pc.multiply(npk, mult)
    b = pc.sum(nbytes).as_py() or 0
    p = pc.sum(npk).as_py() or 0
    return batch.num_rows, int(p), int(b)


def _source_partial(
    source: Path | tuple[str, ...],
    *,
    by: str,
    bucket: str | int | None,
    window: tuple[int, int] | None,
    renormalise: bool,
    index: PrefixIndex | None,
    flow_filter: FlowFilter | None = None,
    ranks: tuple[str, int] | None = None,
) -> tuple[pa.Table | None, tuple[int, int, int]]:
    """Every key's sums over ``source`` (the flows folder, or some of its files) and the
    flows' totals (for ``subscription`` the groups leave out unattributed flows).
    ``ranks`` = ``(metric, n)``: the groups that cannot be in that top ``n`` may be left
    out (polars keeps them to itself)."""
    key = BY_KEYS[by]

    engine = _engine(key, lambda: window_bytes(source, window))
    if engine == "polars":
        from rating_engine.traffic.flow_stats import polars_sums, window_files

        files = window_files(source, window) if isinstance(source, Path) else list(source)
        total = polars_sums(files, plain_columns(key) or [], bucket_width_us(bucket),
                            window=window, flow_filter=flow_filter, renormalise=renormalise,
                            pairs=by == "conversation", ranks=ranks)  # fmt: skip
        if ranks is None or total is None:
            return total, _group_totals(total)
        meta = total.schema.metadata
        tf, tp, tb = (int(meta[f"total_{m}".encode()]) for m in ("flows", "packets", "bytes"))
        return total.replace_schema_metadata(None), (tf, tp, tb)
    kernels = engine == "kernels"
    partials: list[pa.Table] = []
    rows = 0
    tf = tp = tb = 0
    cols = flow_columns(key, renormalise, timed=bucket is not None)
    batches = (scan_flows(source, cols, window, flow_filter, drop_unsampled=True)
               if source else iter(()))  # fmt: skip
    size = _CHUNK_ROWS if kernels else _ARROW_CHUNK_ROWS
    for chunk in _chunks(batches, size, contiguous=kernels):
        if key == ("subscription",):
            # flows outside every subscription are left out of the groups, not the totals
            f, p, b = _batch_totals(chunk, renormalise)
            tf, tp, tb = tf + f, tp + p, tb + b
        if by == "conversation":
            chunk = _ordered_pairs(chunk)
        partials.append(_sums(chunk, key, bucket, index, renormalise, kernels))
        rows += partials[-1].num_rows
        if rows > _MERGE_ROWS and len(partials) > 1:
            partials = [_combine(partials, kernels)]
            rows = partials[0].num_rows
    if not partials:
        return None, (0, 0, 0)
    total = partials[0] if len(partials) == 1 else _combine(partials, kernels)
    return total, (tf, tp, tb) if key == ("subscription",) else _group_totals(total)


def _group_totals(total: pa.Table | None) -> tuple[int, int, int]:
    """Flows, packets and bytes over every group: each flow is in exactly one."""
    if total is None:
        return 0, 0, 0
    tf, tp, tb = (int(pc.sum(total.column(m)).as_py() or 0) for m in ("flows", "packets", "bytes"))
    return tf, tp, tb


def _sums(
    chunk: pa.Table,
    key: tuple[str, ...],
    bucket: str | int | None,
    index: PrefixIndex | None,
    renormalise: bool,
    kernels: bool,
) -> pa.Table:
    """One chunk's partial, in hash order: callers rank (finish_top_n) or sort it."""
    group: str | list[str] = key[0] if len(key) == 1 else list(key)
    if not kernels:
        return arrow_sums(chunk, group, bucket, renormalise)
    from rating_engine.traffic.aggregate import bucket_traffic

    return bucket_traffic(chunk, group, bucket, index=index, renormalise=renormalise,
                          ordered=False)  # fmt: skip


def _combine(tables: list[pa.Table], kernels: bool) -> pa.Table:
    """Partials merged (sum per key), by the engine that made them."""
    if not kernels:
        return arrow_combine(tables)
    from rating_engine.traffic.aggregate import combine_traffic

    return combine_traffic(tables, ordered=False)


def _combine_sources(
    *parts: tuple[pa.Table | None, tuple[int, int, int]],
) -> tuple[pa.Table | None, tuple[int, int, int]]:
    """Associative combine of :func:`_source_partial` results."""
    tables = [t for t, _ in parts if t is not None]
    # either engine merges either's partials (same columns and types)
    kernels = "numba" in sys.modules
    total = None if not tables else tables[0] if len(tables) == 1 else _combine(tables, kernels)
    sums = tuple(sum(t[i] for _, t in parts) for i in range(3))
    return total, (sums[0], sums[1], sums[2])


def _aggregate(
    paths: WorkspacePaths,
    by: str,
    bucket: str | int | None,
    window: tuple[int, int] | None,
    renormalise: bool,
    index: PrefixIndex | None,
    flow_filter: FlowFilter | None = None,
    client: Any | None = None,
    ranks: tuple[str, int] | None = None,
) -> tuple[pa.Table, Totals]:
    """The full partial (every key; with ``ranks`` = ``(metric, n)`` at least those that
    can be in that top ``n``) over the window plus the window's totals; with ``client``,
    a task per day of flows on its Dask cluster (the same result)."""
    if by not in BY_KEYS:
        raise ValidationError(f"group by {by!r}: use one of {', '.join(sorted(BY_KEYS))}")
    key = BY_KEYS[by]
    if key == ("subscription",) and index is None:
        index = prefix_index(paths)
    options: dict[str, Any] = {"by": by, "bucket": bucket, "window": window,
                               "renormalise": renormalise, "flow_filter": flow_filter}  # fmt: skip
    has_flows = next(visible_parts(paths.flows), None) is not None  # the first part will do
    if client is None:
        source: Path | tuple[str, ...] = paths.flows if has_flows else ()
        total, sums = _source_partial(source, index=index, ranks=ranks, **options)
    else:
        from rating_engine.scale.executor import executor_for
        from rating_engine.scale.traffic import flow_day_groups

        executor = executor_for(client, f"query-{uuid.uuid4().hex[:8]}", paths.root)
        groups = flow_day_groups(paths.flows) if has_flows else []
        shared = executor.share(index) if index is not None else None
        partials = executor.map_partials(_source_partial, groups, name="query", index=shared,
                                         **options)  # fmt: skip
        total, sums = (
            executor.reduce(_combine_sources, partials, name="query") if partials
            else (None, (0, 0, 0))
        )  # fmt: skip
    if total is None:
        total = _sums(_empty_flows(key, renormalise), key, bucket, index, renormalise,
                      _engine(key) == "kernels")  # fmt: skip
    return total, Totals(*sums)


def _empty_flows(key: tuple[str, ...], renormalise: bool) -> pa.Table:
    from collectors.schemas import FLOW_SCHEMA

    return FLOW_SCHEMA.empty_table().select(flow_columns(key, renormalise))


def _pct(values: pa.ChunkedArray | pa.Array, total: int) -> pa.Array:
    v = np.asarray(values.to_numpy(), dtype=np.float64)
    return numpy_array(v * 100.0 / total if total else np.zeros_like(v))


def top_talkers(
    workspace_paths: WorkspacePaths,
    by: str = "src_ip",
    metric: str = "bytes",
    n: int = 10,
    window: tuple[TimeLike, TimeLike] | None = None,
    *,
    renormalise: bool = True,
    index: PrefixIndex | None = None,
    text: bool = True,
    flow_filter: str | FlowFilter | None = None,
    client: Any | None = None,
) -> pa.Table:
    """Top ``n`` keys by ``metric`` over the window (``[start, end)``), like ``nfdump -s``.

    ``flow_filter`` (an nfdump filter expression) keeps only the flows it matches; the
    totals and percentages are then those of the matching flows. ``client``: a
    ``dask.distributed.Client``, to aggregate a day of flows per task on its cluster.

    Columns: ``rank``, the key column(s) (addresses as text unless ``text=False``),
    ``flows``, ``flows_pct``, ``packets``, ``packets_pct``, ``bytes``, ``bytes_pct``,
    ``bpp`` (bytes per packet, integer). Ties: smaller key first. The window's totals
    are in the schema metadata (``total_flows``, ``total_packets``, ``total_bytes``).
    """
    if metric not in METRICS:
        raise ValidationError(f"top-N metric {metric!r}: use one of {', '.join(METRICS)}")
    if n < 1:
        raise ValidationError(f"top-N n={n}: must be at least 1")
    win = None if window is None else window_of(window[0], window[1])
    flt = checked_filter(flow_filter)
    partial, totals = _aggregate(workspace_paths, by, None, win, renormalise, index, flt, client,
                                 (metric, n))  # fmt: skip
    top = finish_top_n(partial, metric, n)
    keys = [c for c in top.schema.names if c not in (*METRICS, "rank")]
    out = top.select(["rank", *keys])
    if text:
        out = addresses_as_text(out)
    for name, total in (("flows", totals.flows), ("packets", totals.packets)):
        out = out.append_column(name, top.column(name))
        out = out.append_column(f"{name}_pct", _pct(top.column(name), total))
    out = out.append_column("bytes", top.column("bytes"))
    out = out.append_column("bytes_pct", _pct(top.column("bytes"), totals.bytes))
    pk = np.asarray(top.column("packets").to_numpy(), dtype=np.uint64)
    by_ = np.asarray(top.column("bytes").to_numpy(), dtype=np.uint64)
    bpp = np.where(pk > 0, by_ // np.maximum(pk, np.uint64(1)), np.uint64(0))
    out = out.append_column("bpp", numpy_array(bpp.astype(np.uint64)))
    meta = {
        "by": by,
        "metric": metric,
        "total_flows": str(totals.flows),
        "total_packets": str(totals.packets),
        "total_bytes": str(totals.bytes),
    }
    return out.replace_schema_metadata(meta)


def flow_buckets(
    workspace_paths: WorkspacePaths,
    by: str = "subscription",
    bucket: str | int | None = "hour",
    window: tuple[TimeLike, TimeLike] | None = None,
    *,
    renormalise: bool = True,
    index: PrefixIndex | None = None,
    text: bool = True,
    flow_filter: str | FlowFilter | None = None,
    client: Any | None = None,
) -> pa.Table:
    """Bytes, packets and flows per key and time bucket (``1min``, ``5min``, ``hour``, ``day``)
    of the flows ``flow_filter`` matches (all without one); ``client`` as for
    :func:`top_talkers`.

    Columns: key column(s) (``subscription_id`` for ``by="subscription"``),
    ``bucket_start``, ``bytes``, ``packets``, ``flows``; sorted by bucket then key.
    """
    if by == "conversation":
        raise ValidationError("time buckets by conversation: use by='pair' (directed)")
    win = None if window is None else window_of(window[0], window[1])
    flt = checked_filter(flow_filter)
    table, _totals = _aggregate(workspace_paths, by, bucket, win, renormalise, index, flt,
                                client)  # fmt: skip
    keys = [c for c in table.schema.names if c not in (*METRICS, "bucket_start")]
    order: list[tuple[str, str]] = [("bucket_start", "ascending")] if bucket else []
    sortable = pa.table(
        [c.cast(pa.binary()) if c.type == _ADDR else c for c in table.columns],
        names=table.schema.names,
    )
    order += [(k, "ascending") for k in keys]
    if order:
        table = table.take(pc.sort_indices(sortable, sort_keys=order))
    return addresses_as_text(table) if text else table
