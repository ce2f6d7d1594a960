"""nfdump's statistics (``-s``, ``-A``) and flow listing (``-c``, ``-O``) over Parquet flows.

    stats = [parse_stat("srcip/bytes"), parse_stat("dstport/flows/packets"),
             parse_stat("srcip,dstport/bps")]
    tables, totals = flow_statistics("W/flows", stats, flow_filter=f, n=10)
    rows = select_flows("W/flows", flow_filter=f, order="tstart", limit=20)

Both are polars lazy scans of the dataset's files (polars reads and filters our Parquet
faster than DuckDB - see ``benchmarks/nfdump_filter_vs_peers.py``): the filter is pushed
into the Parquet reader (row groups whose statistics cannot match are skipped), ``date=``
partitions outside the window are not listed, and every statistic of one call is
computed from one scan (polars shares the common filtered scan between them; with
several statistics and a top-N of one address among them, the matching flows are held
once and, from 500k of them, that statistic is summed by the Numba hash group-by, which
takes a quarter of polars' CPU on hundreds of thousands of addresses). Addresses are
grouped as 128-bit integers and come back as 16 bytes. A listing of the first N in time
order reads row-group statistics first (:mod:`rating_engine.traffic.flow_parts`).

A statistic groups by one or more keys and orders by ``flows``, ``packets``, ``bytes``,
``pps``, ``bps`` or ``bpp`` (descending; ties by key). Per group: flows, packets and
bytes (renormalised by the sampling interval unless ``renormalise=False``), first seen
and last seen, and the rates nfdump prints: ``pps`` = packets / duration, ``bps`` =
8 * bytes / duration (0 when the group lasts 0 ms), ``bpp`` = bytes / packets (integers,
truncated). Keys ``ip``, ``port``, ``as`` and ``if`` count each flow on both sides (so
their shares add up to 200 %), as nfdump's do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from collectors.schemas import FLOW_SCHEMA
from rating_engine.errors import RatingError
from rating_engine.traffic.flow_filter import (
    FlowFilter,
    address_u128,
    combined_columns,
    flow_value,
)
from rating_engine.traffic.flow_parts import (
    IrregularLayoutError,
    day_of,
    earliest_flows,
    hour_partitions,
    parquet_parts,
    partition_groups,
    time_groups,
)

__all__ = [
    "ELEMENTS",
    "ORDERS",
    "FlowTotals",
    "StatSpec",
    "flow_statistics",
    "parse_stat",
    "polars_sums",
    "select_flows",
    "window_files",
]

ORDERS = ("flows", "packets", "bytes", "pps", "bps", "bpp")
LIST_ORDERS = ("tstart", "tend", *ORDERS)
_ADDRESS_COLUMNS = ("src_addr", "dst_addr", "next_hop", "exporter")
_DAY_US = 86_400_000_000
#: ``-s`` / ``-A`` element names (nfdump's and ours) -> flow column.
ELEMENTS = {
    "srcip": "src_addr", "src_ip": "src_addr", "src_addr": "src_addr",
    "dstip": "dst_addr", "dst_ip": "dst_addr", "dst_addr": "dst_addr",
    "srcport": "src_port", "src_port": "src_port", "dstport": "dst_port",
    "dst_port": "dst_port", "proto": "protocol", "protocol": "protocol",
    "srcas": "src_as", "src_as": "src_as", "dstas": "dst_as", "dst_as": "dst_as",
    "inif": "input_if", "input_if": "input_if", "outif": "output_if",
    "output_if": "output_if", "nhip": "next_hop", "next_hop": "next_hop",
    "router": "exporter", "exporter": "exporter", "vlan": "vlan", "srcvlan": "vlan",
    "tos": "tos", "srctos": "tos", "flags": "tcp_flags", "tcp_flags": "tcp_flags",
}  # fmt: skip
#: Elements counted on both sides of a flow: name -> (source column, destination column).
EITHER = {"ip": ("src_addr", "dst_addr"), "port": ("src_port", "dst_port"),
          "as": ("src_as", "dst_as"), "if": ("input_if", "output_if")}  # fmt: skip
#: ``record`` without ``-A`` keys: nfdump's flow key.
RECORD_KEYS = ("protocol", "src_addr", "src_port", "dst_addr", "dst_port")
_PREFIX = re.compile(r"^(src|dst)ip([46])$")
_ELEMENT = r"[a-z_0-9]+(?:/\d+)?"
_STAT = re.compile(rf"({_ELEMENT}(?:\s*,\s*{_ELEMENT})*)((?:/[a-z]+)*)")


@dataclass(frozen=True)
class StatSpec:
    """One statistic: group keys, orders (one top-N table each), the text it came from.

    ``keys`` are flow columns, address prefixes (``src_addr/v4:24/v6:64``: IPv4 addresses
    cut to /24, IPv6 to /64; ``srcip4/24`` alone leaves IPv6 whole, ``/v6:128``), or one of
    the two-sided names ``ip``, ``port``, ``as``, ``if``.
    """

    keys: tuple[str, ...]
    orders: tuple[str, ...] = ("flows",)
    text: str = ""


@dataclass(frozen=True)
class FlowTotals:
    """Sums over every flow the window and filter keep (the percentages' denominators)."""

    flows: int
    packets: int
    bytes: int


def parse_stat(text: str, aggregate: Sequence[str] = ()) -> StatSpec:
    """``ELEMENT[,ELEMENT...][/ORDER...]``, e.g. ``srcip/bytes``, ``srcip,dstport/bps/pps``,
    ``srcip4/24/bytes``, ``record/bytes`` (``record`` = ``aggregate`` keys, else the
    5-tuple). The default order is flows, as nfdump's."""
    m = _STAT.fullmatch(text.strip().lower())
    if m is None or not text.strip():
        raise RatingError(
            f"statistic {text!r}: write ELEMENT[,ELEMENT...][/ORDER...], e.g. srcip/bytes"
        )
    keys: list[str] = []
    prefixes: dict[str, dict[str, int]] = {}
    for item in m.group(1).split(","):
        element, _, bits_text = item.strip().partition("/")
        prefix = _PREFIX.match(element)
        if prefix:
            if not bits_text:
                raise RatingError(f"statistic {text!r}: {element} needs /BITS, e.g. /24")
            bits, top = int(bits_text), 32 if prefix.group(2) == "4" else 128
            if not 0 < bits <= top:
                raise RatingError(f"statistic {text!r}: {element} takes /1..{top}")
            column = f"{prefix.group(1)}_addr"
            masks = dict(prefixes.get(column, {"4": 32, "6": 128}))
            masks[prefix.group(2)] = bits
            prefixes[column] = masks
            key = f"{column}/v4:{masks['4']}/v6:{masks['6']}"  # srcip4/24,srcip6/64: one key
            keys = [k for k in keys if not k.startswith(f"{column}/")] + [key]
            continue
        if bits_text:
            raise RatingError(f"statistic {text!r}: only srcip4/6, dstip4/6 take /BITS")
        if element == "record":
            keys.extend(parse_stat(",".join(aggregate)).keys if aggregate else RECORD_KEYS)
        elif element in EITHER:
            keys.append(element)
        elif element in ELEMENTS:
            keys.append(ELEMENTS[element])
        else:
            names = ", ".join(sorted({*ELEMENTS, *EITHER, "record", "srcip4/N", "dstip6/N"}))
            raise RatingError(f"statistic {text!r}: unknown element {element!r}; use {names}")
    rest = [o for o in m.group(2).split("/") if o]
    if any(k in EITHER for k in keys) and len(keys) > 1:
        raise RatingError(f"statistic {text!r}: ip, port, as and if cannot be combined")
    orders = rest or ["flows"]
    bad = [o for o in orders if o not in ORDERS]
    if bad:
        raise RatingError(f"statistic {text!r}: order {bad[0]!r}; use {', '.join(ORDERS)}")
    return StatSpec(tuple(dict.fromkeys(keys)), tuple(dict.fromkeys(orders)), text)


def window_files(source: str | Path, window: tuple[int, int] | None) -> list[Path]:
    """Parquet parts of a dataset folder (or the one file) that may hold the window's
    flows: ``date=`` partitions wholly outside ``[start, end)`` are left out (and their
    folders not listed)."""
    root = Path(source)
    if root.is_file():
        return [root]
    days = None if window is None else (window[0] // _DAY_US, (window[1] - 1) // _DAY_US)
    found: list[str] = []
    if root.is_dir():
        # below a date= folder already, the first date= part of a path is the root's
        parquet_parts(str(root), found, None if day_of(root) else days)
    files = [Path(f) for f in sorted(found)]
    if days is None:
        return files
    epoch = date(1970, 1, 1)
    return [f for f in files if (d := day_of(f)) is None or days[0] <= (d - epoch).days <= days[1]]


def _scan(
    files: Sequence[str | Path],
    columns: Sequence[str],
    flow_filter: FlowFilter | None,
    window: tuple[int, int] | None,
) -> pl.LazyFrame:
    cols = combined_columns(columns, flow_filter.columns if flow_filter else (),
                            ("flow_start",) if window else ())  # fmt: skip
    frame = pl.scan_parquet(
        [str(f) for f in files],
        hive_partitioning=False,
        schema=_polars_schema(),
        missing_columns="insert",  # parts written before a column was added: nulls
        extra_columns="ignore",
    ).select(cols)
    if window is not None:
        ts = pl.col("flow_start").dt.epoch("us")
        frame = frame.filter((ts >= window[0]) & (ts < window[1]))
    if flow_filter is not None and not flow_filter.matches_all:
        frame = frame.filter(flow_filter.polars)
    return frame


@cache  # a constant: built once a process (~1 ms a query otherwise)
def _polars_schema() -> pl.Schema:
    frame = pl.from_arrow(FLOW_SCHEMA.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return pl.Schema(frame.schema)


def _key_expr(key: str) -> tuple[str, pl.Expr]:
    """(output name, group expression) of one key; addresses as 128-bit integers."""
    if "/v" in key:
        column, v4_spec, v6_spec = key.split("/")
        v4_bits, v6_bits = int(v4_spec[3:]), int(v6_spec[3:])
        name = f"{column.split('_')[0]}_prefix"
        u = address_u128(column)
        v4 = u.is_between(pl.lit(0xFFFF << 32, dtype=pl.UInt128),
                          pl.lit((0xFFFF << 32) | 0xFFFFFFFF, dtype=pl.UInt128))  # fmt: skip

        def masked(bits: int) -> pl.Expr:
            return u & pl.lit(((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1), dtype=pl.UInt128)

        return name, pl.when(v4).then(masked(96 + v4_bits)).otherwise(masked(v6_bits)).alias(name)
    if key in _ADDRESS_COLUMNS:
        return key, address_u128(key).alias(key)
    return key, pl.col(key)


def _metrics(renormalise: bool) -> list[pl.Expr]:
    mult = pl.col("sampling_interval").fill_null(1).clip(1).cast(pl.UInt64)
    return [
        pl.len().cast(pl.UInt64).alias("flows"),  # volumes as stored: not multiplied by 1
        *((pl.col(m) * mult if renormalise else pl.col(m)).sum().alias(m)
          for m in ("packets", "bytes")),
        pl.col("flow_start").min().alias("first"),
        pl.col("flow_end").max().alias("last"),
    ]  # fmt: skip


def _rates() -> list[pl.Expr]:
    dur = (pl.col("last") - pl.col("first")).dt.total_milliseconds().clip(0).cast(pl.UInt64)
    return [
        pl.when(dur > 0).then(pl.col("packets") * 1000 // dur.clip(1)).otherwise(0).alias("pps"),
        pl.when(dur > 0).then(pl.col("bytes") * 8000 // dur.clip(1)).otherwise(0).alias("bps"),
        pl.when(pl.col("packets") > 0).then(pl.col("bytes") // pl.col("packets").clip(1))
        .otherwise(0).alias("bpp"),
    ]  # fmt: skip


def _to_arrow(frame: pl.DataFrame, address_keys: Sequence[str]) -> pa.Table:
    """Polars result -> Arrow: 128-bit address keys back to 16 bytes, large types to the
    canonical ones."""
    arrays = []
    for name in frame.columns:
        series = frame[name]
        if name in address_keys:
            values = [None if v is None else int(v).to_bytes(16, "big") for v in series]
            arrays.append(pa.array(values, pa.binary(16)))
            continue
        arr = series.to_arrow(compat_level=pl.CompatLevel.oldest())
        if pa.types.is_large_string(arr.type):
            arr = arr.cast(pa.string())
        elif pa.types.is_large_binary(arr.type):
            arr = arr.cast(pa.binary(16))
        arrays.append(arr)
    return pa.table(arrays, names=frame.columns)


def polars_sums(
    files: Sequence[str | Path],
    columns: Sequence[str],
    bucket_us: int = 0,
    *,
    window: tuple[int, int] | None = None,
    flow_filter: FlowFilter | None = None,
    renormalise: bool = True,
    pairs: bool = False,
    ranks: tuple[str, int] | None = None,
) -> pa.Table | None:
    """Bytes, packets and flows per value of ``columns`` (and per ``bucket_us`` bucket of
    ``flow_start``, epoch-aligned, as ``bucket_start``) over ``files``, by one polars lazy
    scan (window and filter pushed into the reader): the partial of
    :func:`rating_engine.traffic.flow_query.arrow_sums` - same columns, types and sums, in
    hash order; None when no flow matches. ``pairs``: ``src_addr``, ``dst_addr`` put in
    byte order first (a conversation). Null keys group as 0 (``::``), a null or 0
    sampling interval counts as 1, as the other engines do (``sampling_interval`` is not
    read where the footers show none above 1: :func:`_grouped`). ``ranks`` = ``(metric, n)``:
    only the groups that can rank in the top ``n`` by ``metric`` (at or above its n-th
    largest value: ``finish_top_n`` ranks them as it would all), the sums over every
    group in the schema metadata (``total_flows``, ``total_packets``, ``total_bytes``)."""
    if not files:
        return None
    keys: list[pl.Expr] = []
    for name in columns:
        if name in _ADDRESS_COLUMNS:  # grouped as 128-bit integers (faster than bytes)
            keys.append(address_u128(name).fill_null(0).alias(name))
        else:
            keys.append(pl.col(name).fill_null(0))
    if pairs:
        a, b = keys[columns.index("src_addr")], keys[columns.index("dst_addr")]
        keys[columns.index("src_addr")] = pl.min_horizontal(a, b).alias("src_addr")
        keys[columns.index("dst_addr")] = pl.max_horizontal(a, b).alias("dst_addr")
    names = list(columns)
    if bucket_us:  # floor division, as the kernels (before 1970 too)
        start = pl.col("flow_start").dt.epoch("us") // bucket_us * bucket_us
        keys.append(start.cast(pl.Datetime("us", "UTC")).alias("bucket_start"))
        names.append("bucket_start")

    def plan(sampled: bool) -> pl.LazyFrame:
        metrics = ["bytes", "packets", *(["sampling_interval"] if sampled else [])]
        frame = _scan(files, combined_columns(columns, ["flow_start"] if bucket_us else [],
                                              metrics), flow_filter, window)  # fmt: skip
        return frame.group_by(keys).agg(_metrics(sampled)[:3])

    grouped = _grouped(files, plan, renormalise)
    # addresses leave polars as two big-endian 64-bit halves (no 128-bit type in Arrow)
    halves = [e for n in names if n in _ADDRESS_COLUMNS
              for e in ((pl.col(n) // _2_64).cast(pl.UInt64).alias(f"{n}.hi"),
                        (pl.col(n) & _LOW_64).cast(pl.UInt64).alias(f"{n}.lo"))]  # fmt: skip
    meta: dict[str, str] | None = None
    if ranks is not None:  # only the candidates leave polars
        total = grouped.select(pl.col(m).sum() for m in ("flows", "packets", "bytes"))
        meta = {f"total_{m}": str(int(total[m][0] or 0)) for m in total.columns}
        metric = pl.col(ranks[0])
        # top_k takes a 64-bit count: past the groups there are, every group is a candidate
        k = min(ranks[1], grouped.height)
        grouped = grouped.filter(metric >= metric.top_k(k).min())
    got = grouped.with_columns(halves) if halves else grouped
    if got.height == 0:
        return None
    arrays: list[pa.Array] = []
    for name in names:
        if name in _ADDRESS_COLUMNS:
            words = np.column_stack([got[f"{name}.{h}"].to_numpy() for h in ("hi", "lo")])
            raw = pa.py_buffer(words.astype(">u8"))  # big-endian: the address's bytes
            arrays.append(pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), got.height,
                                                               [None, raw]))  # fmt: skip
        else:
            kind = pa.timestamp("us", tz="UTC") if name == "bucket_start" else None
            arr = got[name].to_arrow().cast(kind or FLOW_SCHEMA.field(name).type)
            arrays.append(arr)
    arrays += [got[m].to_arrow() for m in ("bytes", "packets", "flows")]
    return pa.table(arrays, names=[*names, "bytes", "packets", "flows"], metadata=meta)


def _grouped(
    files: Sequence[str | Path], plan: Callable[[bool], pl.LazyFrame], renormalise: bool
) -> pl.DataFrame:
    """``plan(sampled)`` collected; ``sampled`` unless the footers of ``files`` show every
    ``sampling_interval`` 0, 1 or null. The footers (~0.2 ms a file, 5 ms for a day of
    hourly parts; reading the column cost 3x that CPU) are read while polars already runs
    the unsampled plan on another thread, when the first and last files are unsampled;
    should one between be sampled, that result is dropped (its thread runs to its end)
    and the sampled plan run."""
    from rating_engine.traffic.flow_query import unsampled_files

    if not renormalise or not unsampled_files([*files[:1], *files[1:][-1:]]):
        return plan(renormalise).collect()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        guess = pool.submit(plan(False).collect)  # polars lets go of the GIL as it runs
        return guess.result() if unsampled_files(files[1:-1]) else plan(True).collect()
    finally:
        pool.shutdown(wait=False)


_2_64 = pl.lit(1 << 64, dtype=pl.UInt128)
_LOW_64 = pl.lit((1 << 64) - 1, dtype=pl.UInt128)


def flow_statistics(
    source: str | Path,
    stats: Sequence[StatSpec],
    *,
    flow_filter: FlowFilter | None = None,
    window: tuple[int, int] | None = None,
    n: int = 10,
    renormalise: bool = True,
) -> tuple[list[pa.Table], FlowTotals]:
    """One top-``n`` table per (statistic, order), in the order given, plus the totals.

    Each table: the key columns (addresses as 16 bytes, prefixes as ``src_prefix`` /
    ``dst_prefix``, two-sided keys under their name), ``flows``, ``packets``, ``bytes``,
    ``first``, ``last``, ``pps``, ``bps``, ``bpp``; ``n=0`` keeps every group.
    """
    if n < 0:
        raise RatingError(f"statistics: n={n} must be 0 (all) or more")
    from rating_engine.traffic.flow_query import unsampled_files

    files = window_files(source, window)
    # footers showing no interval above 1 (~0.2 ms a part): the column is left unread
    renormalise = renormalise and not unsampled_files(files)
    metrics_cols = ["flow_start", "flow_end", "packets", "bytes"]
    metrics_cols += ["sampling_interval"] if renormalise else []
    key_cols: list[str] = []
    for spec in stats:
        for key in spec.keys:
            key_cols.extend(EITHER.get(key, (key.split("/")[0],)))
    if not files:
        empty = [_empty_stat(spec) for spec in stats for _ in spec.orders]
        return empty, FlowTotals(0, 0, 0)
    base = _scan(files, combined_columns(key_cols, metrics_cols), flow_filter, window)
    # several statistics in one call: the matching flows are held once in memory and
    # shared (one statistic streams: polars fuses the scan and the group-by)
    kernel = [_by_kernel(spec, n) and len(stats) > 1 for spec in stats]
    if any(kernel):
        frame = base.collect()
        kernel = [k and frame.height >= _KERNEL_ROWS
                  and not any(frame[c].null_count() for c in spec.keys)
                  for k, spec in zip(kernel, stats, strict=True)]  # fmt: skip
        base = frame.lazy()
    plans: list[pl.LazyFrame] = []
    address_keys: list[list[str]] = []
    for spec, by_kernel in zip(stats, kernel, strict=True):
        if by_kernel:
            continue
        if spec.keys[0] in EITHER:
            name = spec.keys[0]
            sides = [base.select(pl.col(c).alias(name), *metrics_cols) for c in EITHER[name]]
            grouped_frame = pl.concat(sides)
            exprs = [_key_expr(name)[1]] if name != "ip" else [address_u128(name).alias(name)]
            names = [name]
            addr = [name] if name == "ip" else []
        else:
            pairs = [_key_expr(k) for k in spec.keys]
            grouped_frame, names, exprs = base, [p[0] for p in pairs], [p[1] for p in pairs]
            addr = [nm for nm, k in zip(names, spec.keys, strict=True)
                    if k in _ADDRESS_COLUMNS or "/v" in k]  # fmt: skip
        grouped = grouped_frame.group_by(exprs).agg(_metrics(renormalise)).with_columns(_rates())
        for order in spec.orders:
            plans.append(_ranked(grouped, order, names, n))
            address_keys.append(addr)
    totals_plan = base.select(_metrics(renormalise)[:3])
    results = pl.collect_all([*plans, totals_plan])
    tot = results[-1].row(0) if results[-1].height else (0, 0, 0)
    totals = FlowTotals(*(int(v or 0) for v in tot))
    polars_tables = iter(_to_arrow(r, a) for r, a in zip(results[:-1], address_keys, strict=True))
    tables: list[pa.Table] = []
    for spec, by_kernel in zip(stats, kernel, strict=True):
        if by_kernel:
            addr = [k for k in spec.keys if k in _ADDRESS_COLUMNS]
            tables += [_to_arrow(t, addr) for t in _kernel_top(frame, spec, n, renormalise)]
        else:
            tables += [next(polars_tables) for _ in spec.orders]
    return tables, totals


def _ranked(grouped: pl.LazyFrame, order: str, names: Sequence[str], n: int) -> pl.LazyFrame:
    """Groups by ``order`` (descending), ties by key; the first ``n`` (0: all)."""
    ranked = grouped.sort([order, *names], descending=[True] + [False] * len(names),
                          nulls_last=True)  # fmt: skip
    return ranked.head(n) if n else ranked


#: fewer matching flows than this are grouped by polars (the kernel's gain is in the
#: many-group case; below it, polars was as fast or faster: measured)
_KERNEL_ROWS = 500_000


def _by_kernel(spec: StatSpec, n: int) -> bool:
    """A top-``n`` statistic of one address (often hundreds of thousands of groups) ranked
    by a volume: the Numba hash group-by of :mod:`rating_engine.traffic.aggregate` sums it
    in about a quarter of the CPU of polars' group-by (2M flows, 650k addresses; with a
    second key, or a port alone, polars is as fast or faster: measured)."""
    return (n > 0 and spec.keys in (("src_addr",), ("dst_addr",))
            and all(o in ("flows", "packets", "bytes") for o in spec.orders))  # fmt: skip


def _kernel_top(
    frame: pl.DataFrame, spec: StatSpec, n: int, renormalise: bool
) -> list[pl.DataFrame]:
    """:func:`flow_statistics`' tables of one statistic (one per order) with the volumes
    summed by the hash group-by kernel; first and last seen are then taken over the
    flows of the few groups that can rank (those at or above each order's n-th value),
    and those are ranked exactly as the polars path ranks (same expressions)."""
    from rating_engine.traffic.aggregate import bucket_traffic

    keys = list(spec.keys)
    columns = [*keys, "bytes", "packets", *(["sampling_interval"] if renormalise else [])]
    table = frame.select(columns).to_arrow()
    table = table.cast(pa.schema([FLOW_SCHEMA.field(c) for c in columns]))
    sums = bucket_traffic(table, keys, None, renormalise=renormalise, ordered=False)
    tops: list[pl.DataFrame] = []
    for order in spec.orders:
        v = sums.column(order).to_numpy()
        at = len(v) - n
        rows = np.flatnonzero(v >= np.partition(v, at)[at]) if at > 0 else np.arange(len(v))
        top = pl.from_arrow(sums.take(rows))
        assert isinstance(top, pl.DataFrame)
        tops.append(top)
    candidates = pl.concat([t.select(keys) for t in tops]).unique()
    seen = (frame.join(candidates, on=keys, how="semi").group_by(keys)
            .agg(pl.col("flow_start").min().alias("first"),
                 pl.col("flow_end").max().alias("last")))  # fmt: skip
    names = [_key_expr(k)[1] for k in keys]
    out = []
    for order, top in zip(spec.orders, tops, strict=True):
        joined = top.join(seen, on=keys, how="left").select(
            *names, pl.col("flows"), pl.col("packets"), pl.col("bytes"), pl.col("first"),
            pl.col("last"),
        )  # fmt: skip
        out.append(_ranked(joined.lazy().with_columns(_rates()), order, keys, n).collect())
    return out


def _empty_stat(spec: StatSpec) -> pa.Table:
    fields = []
    for key in spec.keys:
        if key in EITHER:
            typ = pa.binary(16) if key == "ip" else pa.uint32()
            fields.append(pa.field(key, typ))
        elif "/v" in key:
            fields.append(pa.field(f"{key.split('_')[0]}_prefix", pa.binary(16)))
        else:
            fields.append(pa.field(key, FLOW_SCHEMA.field(key).type))
    ts = pa.timestamp("us", tz="UTC")
    fields += [pa.field(m, pa.uint64()) for m in ("flows", "packets", "bytes")]
    fields += [pa.field("first", ts), pa.field("last", ts)]
    fields += [pa.field(m, pa.uint64()) for m in ("pps", "bps", "bpp")]
    return pa.schema(fields).empty_table()


def select_flows(
    source: str | Path,
    *,
    flow_filter: FlowFilter | None = None,
    window: tuple[int, int] | None = None,
    order: str | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """The flows that match, as stored (``FLOW_SCHEMA`` columns, or ``columns``).

    ``order``: ``tstart`` / ``tend`` (ascending, as ``nfdump -O tstart``) or a volume
    (``bytes``, ``packets``, ``pps``, ``bps``, ``bpp``, descending); None keeps the
    dataset's order (partition, then arrival). ``limit`` keeps the first N (``-c``).
    """
    if order is not None and order not in LIST_ORDERS:
        raise RatingError(f"flow order {order!r}: use one of {', '.join(LIST_ORDERS)}")
    if limit is not None and limit < 1:
        raise RatingError(f"flow limit {limit}: must be at least 1")
    wanted = list(columns) if columns is not None else FLOW_SCHEMA.names
    schema = pa.schema([FLOW_SCHEMA.field(c) for c in wanted])
    if limit is not None and order in ("tstart", "tend"):
        try:  # hour partitions listed one by one, as reached (a date=/hour= dataset)
            first = earliest_flows(hour_partitions(Path(source), window), schema, flow_filter,
                                   window, order, limit)  # fmt: skip
        except IrregularLayoutError:  # laid out otherwise: every part listed first
            first = earliest_flows(partition_groups(window_files(source, window)), schema,
                                   flow_filter, window, order, limit)  # fmt: skip
        if first is not None:
            return first if first.schema == schema else first.cast(schema)
    files = window_files(source, window)
    if not files:
        return schema.empty_table()
    needs = {"tstart": ["flow_start"], "tend": ["flow_end"], "bytes": ["bytes"],
             "packets": ["packets"], "bpp": ["bytes", "packets"],
             "pps": ["flow_start", "flow_end", "packets"],
             "bps": ["flow_start", "flow_end", "bytes"]}.get(order or "", [])  # fmt: skip
    cols = combined_columns(wanted, needs)

    def ordered(frame: pl.LazyFrame) -> pl.LazyFrame:
        if order in ("tstart", "tend"):
            return frame.sort("flow_start" if order == "tstart" else "flow_end",
                              maintain_order=True)  # fmt: skip
        if order is not None:
            return frame.sort(flow_value(order), descending=True, maintain_order=True)
        return frame

    groups = time_groups(files) if limit is not None and order is None else None
    if groups is None or limit is None:
        frame = ordered(_scan(files, cols, flow_filter, window))
        if limit is not None:
            frame = frame.head(limit)
        return _to_arrow(frame.select(wanted).collect(), []).cast(schema)
    # -c N in time or stored order: partitions hold disjoint, ascending ranges of flow
    # starts, so reading them in order can stop once N flows matched (nfdump stops too)
    parts: list[pa.Table] = []
    got = 0
    for group in groups:
        frame = ordered(_scan(group, cols, flow_filter, window)).head(limit - got)
        part = _to_arrow(frame.select(wanted).collect(), []).cast(schema)
        parts.append(part)
        got += part.num_rows
        if got >= limit:
            break
    return pa.concat_tables(parts)
