"""Aggregations straight from Parquet flow datasets, streaming batch by batch.

Only the columns a query needs are read; each batch is reduced to a partial result
(:mod:`rating_engine.traffic.aggregate`) and the partials are merged with the associative
combine, so memory stays bounded by the number of distinct keys, not by the rows. The
same per-batch functions are what a Dask task would run on one file.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import visible_parts
from rating_engine.errors import RatingError

if TYPE_CHECKING:
    import pyarrow.dataset as pads  # where the Arrow path scans (~20 ms to import)

    # Numba's modules (the kernels of aggregate, the index of attribution) and the filter
    # compiler (polars) are imported where they run: a query answered without them - a
    # scan, a ranking, Arrow's hash aggregation - starts without their ~0.5 s of loading
    from rating_engine.traffic.attribution import PrefixIndex
    from rating_engine.traffic.flow_filter import FlowFilter

__all__ = [
    "BUCKET_US",
    "KEY_ALIASES",
    "METRICS",
    "arrow_combine",
    "arrow_sums",
    "bucket_traffic_dataset",
    "bucket_width_us",
    "finish_top_n",
    "flow_columns",
    "numpy_array",
    "parts_in_window",
    "plain_columns",
    "prefer_polars",
    "ranked_top_n",
    "scan_flows",
    "sortable",
    "top_n_dataset",
    "traffic_sums",
    "unsampled_files",
    "window_bytes",
]

#: The metric columns of every aggregation (uint64).
METRICS = ("bytes", "packets", "flows")
#: nfdump-style names accepted as keys.
KEY_ALIASES = {
    "src_ip": "src_addr",
    "dst_ip": "dst_addr",
    "srcip": "src_addr",
    "dstip": "dst_addr",
    "proto": "protocol",
    "srcport": "src_port",
    "dstport": "dst_port",
    "srcas": "src_as",
    "dstas": "dst_as",
}
_ADDR = pa.binary(16)
_TS = pa.timestamp("us", tz="UTC")

#: Time bucket widths in microseconds, by name. Buckets are aligned to the epoch (UTC).
BUCKET_US = {"1min": 60_000_000, "5min": 300_000_000, "hour": 3_600_000_000,
             "day": 86_400_000_000}  # fmt: skip


def bucket_width_us(bucket: str | int | None) -> int:
    """Width of a bucket name (``1min``, ``5min``, ``hour``, ``day``) or a width in us; 0 = none."""
    if bucket is None:
        return 0
    if isinstance(bucket, int):
        if bucket < 0:
            raise ValueError(f"bucket width must be >= 0 us, got {bucket}")
        return bucket
    try:
        return BUCKET_US[bucket]
    except KeyError:
        raise ValueError(f"unknown bucket {bucket!r}; use one of {sorted(BUCKET_US)}") from None


#: Row groups read ahead of the caller, and the rows they may hold (beyond the first):
#: small groups (hourly files) 4 at a time, ~1M-row groups 2 at a time - more would only
#: fault in fresh memory (a one-shot query's system time) for no faster read.
_READ_AHEAD = 4
_READ_AHEAD_ROWS = 2_000_000
#: Rows aggregated at a time (bounds memory: only this many rows are decoded at once).
_BLOCK_ROWS = 8_000_000
_DAY_US = 86_400_000_000
_ADDRESS_KEYS = {"src_prefix": "src_addr", "dst_prefix": "dst_addr"}


def flow_columns(key: str | Sequence[str], renormalise: bool, timed: bool = True) -> list[str]:
    """Flow columns a group-by on ``key`` reads; ``flow_start`` only for time buckets and
    subscriptions (a window filter reads it by itself)."""
    names = [key] if isinstance(key, str) else list(key)
    cols: list[str] = []
    for name in (KEY_ALIASES.get(n, n) for n in names):
        if name == "subscription":
            cols += ["src_addr", "dst_addr"]
            timed = True  # bindings are matched at each flow's start
        elif name in ("input_if", "output_if"):
            cols += ["exporter", name]
        else:
            cols.append(_ADDRESS_KEYS.get(name, name))
    cols += ["flow_start", "bytes", "packets"] if timed else ["bytes", "packets"]
    if renormalise:
        cols.append("sampling_interval")
    return list(dict.fromkeys(cols))


def numpy_array(values: np.ndarray) -> pa.Array:
    """A 1-d numpy array of numbers as an Arrow array (no nulls; zero-copy when contiguous):
    ``pa.array(ndarray)`` asks numpy for ``np.ma`` (is it a masked array?), which imports
    numpy.ma (~14 ms CPU) in a one-shot ``query`` process that never uses it."""
    values = np.ascontiguousarray(values)
    if values.dtype.kind not in "iuf" or values.ndim != 1:
        raise TypeError(f"numpy_array: 1-d numbers only, got {values.dtype} x {values.ndim}")
    kind = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(kind, values.shape[0], [None, pa.py_buffer(values)])


def _open(source: str | Path | Sequence[str | Path]) -> pads.Dataset:
    import pyarrow.dataset as pads

    paths = [str(source)] if isinstance(source, str | Path) else [str(p) for p in source]
    try:
        return pads.dataset(
            paths[0] if len(paths) == 1 else paths, format="parquet", partitioning="hive"
        )
    except (FileNotFoundError, pa.ArrowInvalid) as exc:
        if isinstance(exc, pa.ArrowInvalid) and "parquet" in str(exc).lower():
            raise  # a part whose schema cannot be read back (damaged): stored data's fault
        raise RatingError(f"flows dataset {paths[0]}: cannot open ({exc})") from exc


def _day_of(path: str) -> int | None:
    """Days since epoch of a ``date=YYYY-MM-DD`` partition folder in ``path``, if any."""
    part = next((p for p in Path(path).parts if p.startswith("date=")), None)
    try:
        return None if part is None else (date.fromisoformat(part[5:]) - date(1970, 1, 1)).days
    except ValueError:
        return None


def parts_in_window(files: Sequence[str], window: tuple[int, int] | None) -> list[str]:
    """``files`` less those in a ``date=YYYY-MM-DD`` folder wholly outside ``window``."""
    if window is None:
        return list(files)
    lo_day, hi_day = window[0] // _DAY_US, (window[1] - 1) // _DAY_US
    return [f for f in files if (d := _day_of(f)) is None or lo_day <= d <= hi_day]


def window_bytes(source: str | Path | Sequence[str | Path], window: tuple[int, int] | None) -> int:
    """Bytes of the Parquet parts of ``source`` (folders, files) that may hold ``window``."""
    paths = [source] if isinstance(source, str | Path) else list(source)
    found = [str(f) for p in paths for f in (visible_parts(Path(p)) if os.path.isdir(p) else [p])]
    return sum(os.stat(f).st_size for f in parts_in_window(found, window))


def scan_flows(
    source: str | Path | Sequence[str | Path],
    columns: Sequence[str],
    window: tuple[int, int] | None = None,
    flow_filter: FlowFilter | None = None,
    *,
    drop_unsampled: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Batches (one per Parquet row group) of ``columns`` from a flows dataset.

    ``source`` is a dataset folder (hive-partitioned), a file, or a list of files.
    ``window`` = ``(start_us, end_us)`` keeps rows with ``flow_start`` in ``[start, end)``;
    ``date=`` partitions entirely outside it are not opened. ``flow_filter`` keeps the
    flows it matches; row groups whose statistics rule it out are not read.
    ``drop_unsampled``: when the row-group statistics show every ``sampling_interval`` to
    be 0, 1 or null (nothing to renormalise), that column is not read and the batches
    lack it. Row groups are decoded two at a time on worker threads, in order, while the
    caller works on the current one.
    """
    dataset = _open(source)
    if flow_filter is not None and flow_filter.matches_all:
        flow_filter = None
    extra = list(flow_filter.columns) if flow_filter is not None else []
    missing = [c for c in [*columns, *extra] if c not in dataset.schema.names]
    if missing:
        raise RatingError(f"flows dataset {source}: missing field(s) {', '.join(missing)}")
    files = parts_in_window(dataset.files, window)
    # each footer is read once: listing the row groups, the sampling statistics and every
    # read of a row group reuse it (a 30-column footer takes ~0.2 ms to parse)
    metas: dict[str, pq.FileMetaData] = {}
    if flow_filter is None:
        metas = {f: pq.read_metadata(f) for f in files}
        tasks = [(f, i, metas[f].row_group(i).num_rows)
                 for f in files for i in range(metas[f].num_row_groups)]  # fmt: skip
    else:  # only the row groups whose min/max statistics leave room for a match
        tasks = []
        if files:
            import pyarrow.dataset as pads

            kept = pads.dataset(files, format="parquet")
            tasks = [
                (piece.path, piece.row_groups[0].id, piece.row_groups[0].num_rows)
                for frag in kept.get_fragments()
                for piece in frag.split_by_row_group(flow_filter.arrow, schema=kept.schema)
            ]
    if drop_unsampled and "sampling_interval" in columns and _unsampled(tasks, metas):
        columns = [c for c in columns if c != "sampling_interval"]
    cols = list(dict.fromkeys([*columns, *(["flow_start"] if window is not None else []),
                               *extra]))  # fmt: skip

    def read(task: tuple[str, int, int]) -> pa.Table:
        file = pq.ParquetFile(task[0], metadata=metas.get(task[0]))
        return file.read_row_group(task[1], columns=cols, use_threads=True)

    # several row groups in flight (up to _READ_AHEAD, and _READ_AHEAD_ROWS rows once one
    # is): one group's columns are too few and too unequal to keep both cores decoding,
    # hourly files' groups are small (their reads' fixed costs overlap), and the caller's
    # work overlaps the next reads. 24 hourly files, 3 columns: 4 in flight read
    # 1.26-1.35x faster than 2 (benchmarks/query_top.py's layout, 0.3M and 3M flows).
    with ThreadPoolExecutor(max_workers=_READ_AHEAD) as pool:
        pending: deque[tuple[Future[pa.Table], int]] = deque()
        ahead = rows_ahead = 0
        for _ in range(len(tasks)):
            while (
                ahead < len(tasks)
                and len(pending) < _READ_AHEAD
                and (not pending or rows_ahead + tasks[ahead][2] <= _READ_AHEAD_ROWS)
            ):
                pending.append((pool.submit(read, tasks[ahead]), tasks[ahead][2]))
                rows_ahead += tasks[ahead][2]
                ahead += 1
            future, rows = pending.popleft()
            rows_ahead -= rows
            table = future.result()
            if window is not None:
                ts = table.column("flow_start")
                table = table.filter(pc.and_(pc.greater_equal(ts, pa.scalar(window[0], _TS)),
                                             pc.less(ts, pa.scalar(window[1], _TS))))  # fmt: skip
            if flow_filter is not None:
                table = table.filter(flow_filter.arrow)
            yield from table.select(list(columns)).combine_chunks().to_batches()


def finish_top_n(partial: pa.Table, metric: str = "bytes", n: int = 10) -> pa.Table:
    """The ``n`` keys with the largest ``metric`` (ties: smaller key bytes first), ranked 1..n."""
    if metric not in METRICS:
        raise RatingError(f"top-N metric {metric!r}: use one of {', '.join(METRICS)}")
    if partial.num_rows == 0:
        return partial.append_column("rank", pa.array([], pa.int64()))
    values = np.asarray(partial.column(metric).to_numpy(), dtype=np.uint64)
    k = min(n, values.shape[0])
    # candidates: everything >= the k-th largest value, then an exact ordered sort
    kth = np.partition(values, values.shape[0] - k)[values.shape[0] - k]
    cand = np.flatnonzero(values >= kth)
    sub = partial.take(numpy_array(cand))
    keys = [c for c in sub.schema.names if c not in METRICS]
    sort_keys = [(metric, "descending")] + [(c, "ascending") for c in keys]
    top = sub.take(pc.sort_indices(sortable(sub), sort_keys=sort_keys)).slice(0, k)
    return top.append_column("rank", numpy_array(np.arange(1, k + 1, dtype=np.int64)))


def sortable(table: pa.Table) -> pa.Table:
    """``table`` with its address columns as binary: Arrow cannot sort fixed_size_binary;
    binary sorts the same bytes the same way."""
    cols = [c.cast(pa.binary()) if c.type == _ADDR else c for c in table.columns]
    return pa.table(cols, names=table.schema.names)


def plain_columns(key: str | Sequence[str]) -> list[str] | None:
    """The flow columns a group-by on ``key`` groups by, when they are plain columns
    (addresses, ports, protocol, AS, exporter, interfaces with their exporter); None for
    the keys only the kernels compute (``subscription``, ``src_prefix``, ``dst_prefix``)."""
    names = [key] if isinstance(key, str) else list(key)
    cols: list[str] = []
    for name in (KEY_ALIASES.get(n, n) for n in names):
        if name in ("subscription", "src_prefix", "dst_prefix"):
            return None
        cols += ["exporter", name] if name in ("input_if", "output_if") else [name]
    return cols


def arrow_sums(
    flows: pa.Table, key: str | Sequence[str], bucket: str | int | None, renormalise: bool
) -> pa.Table:
    """Bytes, packets and flows per key (and time bucket) of ``flows`` by Arrow's hash
    aggregation (both cores): the partial :func:`~rating_engine.traffic.aggregate.
    bucket_traffic` makes, with the same columns, types and sums, in hash order.

    For the plain keys of :func:`plain_columns`. A null exporter is grouped as ``::``
    and a null integer as 0, as the kernels do; a null or 0 sampling interval counts as 1.
    """
    cols = plain_columns(key)
    if cols is None:
        raise RatingError(f"key {key!r}: not a plain column key (use bucket_traffic)")
    arrays: list[pa.Array | pa.ChunkedArray] = []
    for name in cols:
        col = flows.column(name)
        if col.null_count:
            col = pc.fill_null(col, pa.scalar(bytes(16), _ADDR) if col.type == _ADDR else 0)
        arrays.append(col)
    names = list(cols)
    width = bucket_width_us(bucket)
    if width:
        # epoch-aligned buckets, floor division as the kernels (before 1970 too)
        t = flows.column("flow_start").combine_chunks().view(pa.int64()).to_numpy()
        arrays.append(numpy_array(t // width * width).view(_TS))
        names.append("bucket_start")
    nbytes, npk = flows.column("bytes"), flows.column("packets")
    if renormalise and "sampling_interval" in flows.schema.names:
        mult = pc.max_element_wise(pc.fill_null(flows.column("sampling_interval"), 0), 1)
        mult = mult.cast(pa.uint64())
        nbytes, npk = pc.multiply(nbytes, mult), pc.multiply(npk, mult)
    table = pa.table([*arrays, nbytes, npk], names=[*names, "bytes", "packets"])
    sums = table.group_by(names, use_threads=True).aggregate(
        [("bytes", "sum"), ("packets", "sum"), ([], "count_all")]
    )
    return _partial(sums, names, "count_all")


def arrow_combine(tables: Sequence[pa.Table]) -> pa.Table:
    """Merge partials of :func:`arrow_sums` or ``bucket_traffic`` (sum per key) by Arrow's
    hash aggregation: :func:`~rating_engine.traffic.aggregate.combine_traffic` in hash order."""
    table = pa.concat_tables(tables)
    keys = [n for n in table.schema.names if n not in METRICS]
    sums = table.group_by(keys, use_threads=True).aggregate(
        [("bytes", "sum"), ("packets", "sum"), ("flows", "sum")]
    )
    return _partial(sums, keys, "flows_sum")


def _partial(sums: pa.Table, keys: list[str], flows: str) -> pa.Table:
    columns = [sums.column(k) for k in keys] + [
        sums.column("bytes_sum"),
        sums.column("packets_sum"),
        sums.column(flows).cast(pa.uint64()),
    ]
    # key columns keep their types (group_by hands them back as they went in)
    return pa.table(columns, names=[*keys, *METRICS]).combine_chunks()


def _unsampled(tasks: Sequence[tuple[str, int, int]], metas: dict[str, pq.FileMetaData]) -> bool:
    """True when the statistics of every row group in ``tasks`` prove its
    ``sampling_interval`` values all 0, 1 or null (volumes need no renormalising);
    ``metas``: footers already read, by path (the others are read and added)."""
    where: dict[str, int] = {}  # the column's leaf index in each file (-1: none)
    for path, group, _rows in tasks:
        meta = metas.get(path) or metas.setdefault(path, pq.read_metadata(path))
        if path not in where:  # by the leaf names: the footer's Arrow schema took 4x longer
            names = meta.schema.names
            at = names.index("sampling_interval") if "sampling_interval" in names else -1
            flat = at >= 0 and meta.schema.column(at).path == "sampling_interval"
            where[path] = at if flat else -1
        rg = meta.row_group(group)
        stats = rg.column(where[path]).statistics if where[path] >= 0 else None
        if stats is None:
            return False
        all_null = stats.has_null_count and stats.null_count == rg.num_rows
        if stats.max > 1 if stats.has_min_max else not all_null:
            return False
    return True


def _stream(
    batches: Iterator[pa.RecordBatch],
    key: str | Sequence[str],
    bucket: str | int | None,
    index: PrefixIndex | None,
    renormalise: bool,
    ordered: bool,
) -> pa.Table | None:
    """Aggregate ~``_BLOCK_ROWS`` rows at a time, then combine the partials."""
    from rating_engine.traffic.aggregate import bucket_traffic, combine_traffic

    partials: list[pa.Table] = []
    block: list[pa.RecordBatch] = []
    rows = 0

    def flush() -> None:
        table = pa.Table.from_batches(block).combine_chunks()
        # the batches go back to the memory pool before the kernel asks for its scratch:
        # it reuses their pages instead of faulting in fresh ones
        block.clear()
        partials.append(
            bucket_traffic(table, key, bucket, index=index, renormalise=renormalise,
                           ordered=ordered)
        )  # fmt: skip

    for batch in batches:
        if batch.num_rows == 0:
            continue
        block.append(batch)
        rows += batch.num_rows
        if rows >= _BLOCK_ROWS:
            flush()
            rows = 0
    if block:
        flush()
    if not partials:
        return None
    return partials[0] if len(partials) == 1 else combine_traffic(partials, ordered=ordered)


#: Which engine sums plain keys in top_n_dataset / bucket_traffic_dataset: None chooses
#: (:func:`prefer_polars`); tests set "polars" or "kernels".
ENGINE: str | None = None
#: A process that has not loaded polars groups by it from this many bytes of Parquet in
#: the window: its import (~0.12 s CPU) is then paid back (whole ``query top`` processes,
#: polars / Arrow, load ~11: 18 MB by port 1.02x wall 0.96x CPU, by address 0.91x /
#: 0.86x; 80 MB 0.76x / 0.84x and 0.80x / 0.87x).
_POLARS_BYTES = 16 << 20


def prefer_polars(
    columns: Sequence[str],
    window_bytes: Callable[[], int] | None = None,
    *,
    load_numba: bool = False,
) -> bool:
    """Whether plain key ``columns`` are summed by one polars lazy scan
    (:func:`rating_engine.traffic.flow_stats.polars_sums`) rather than batch by batch.

    Once polars is loaded (a filter was compiled, a notebook) it reads, filters and
    groups in one multi-threaded pass, faster than Arrow's grouping, and than the
    kernels but for one address with Numba loaded: CPU over 5M flows in 2 daily files
    (load ~10), kernels / polars / DuckDB: by address 0.48 / 0.89 / 0.85 s, by address
    pair 2.40 / 1.85, by port 0.18 / 0.20, buckets 0.38 / 0.31; 3M flows in 24 hourly
    files by address 0.38 / 0.36 / 0.43 s. ``load_numba``: the caller would load Numba
    for one address (a library call, a long-lived process: ~0.5 s once); a one-shot
    ``query`` does not. A process without polars loads it from ``_POLARS_BYTES`` of
    Parquet (``window_bytes``: the window's size, asked for only then)."""
    one_address = len(columns) == 1 and columns[0].endswith("_addr")
    if one_address and (load_numba or "numba" in sys.modules):
        return False
    if "polars" in sys.modules:
        return True
    return window_bytes is not None and window_bytes() >= _POLARS_BYTES


def _polars_partial(
    source: str | Path | Sequence[str | Path],
    key: str | Sequence[str],
    bucket: str | int | None,
    window: tuple[int, int] | None,
    renormalise: bool,
    ranks: tuple[str, int] | None = None,
) -> tuple[bool, pa.Table | None]:
    """(True, the partial of plain ``key`` by polars) if that is the engine, else (False, None)."""
    cols = plain_columns(key)
    paths = [source] if isinstance(source, str | Path) else list(source)
    if (cols is None or ENGINE == "kernels" or not set(cols) <= set(FLOW_SCHEMA.names)
            or not all(os.path.exists(p) for p in paths)):  # fmt: skip
        return False, None  # the kernels' path (or its error: no such field, file)
    if ENGINE != "polars" and not prefer_polars(
            cols, lambda: window_bytes(paths, window), load_numba=True):  # fmt: skip
        return False, None
    from rating_engine.traffic.flow_stats import polars_sums, window_files

    files = [f for p in paths for f in window_files(p, window)]
    total = polars_sums(files, cols, bucket_width_us(bucket), window=window,
                        renormalise=renormalise, ranks=ranks)  # fmt: skip
    return True, None if total is None else total.replace_schema_metadata(None)


def _kernel_order(total: pa.Table) -> pa.Table:
    """``total``'s rows in the order of the kernels' results: by bucket, then by the keys'
    64-bit words left to right (an address is two words of its bytes, native order)."""
    words: list[np.ndarray] = []
    for name in (c for c in total.schema.names if c not in (*METRICS, "bucket_start")):
        col = total.column(name).combine_chunks()
        if col.type == _ADDR:
            raw = np.frombuffer(col.buffers()[1], np.uint64, 2 * len(col), 2 * col.offset)
            words += [raw[0::2], raw[1::2]]
        else:
            words.append(col.to_numpy().astype(np.int64).view(np.uint64))
    if "bucket_start" in total.schema.names:
        words.insert(0, total.column("bucket_start").combine_chunks().view(pa.int64()).to_numpy())
    return total.take(numpy_array(np.lexsort(words[::-1])))


def unsampled_files(files: Sequence[str | Path]) -> bool:
    """True when the footers of ``files`` show every ``sampling_interval`` 0, 1 or null:
    nothing to renormalise, the column need not be read (~0.2 ms a file; read one by one
    up to the first that may be sampled)."""
    for file in map(str, files):
        meta = pq.read_metadata(file)
        if not _unsampled([(file, i, 0) for i in range(meta.num_row_groups)], {file: meta}):
            return False
    return True


def traffic_sums(
    source: str | Path | Sequence[str | Path],
    key: str | Sequence[str],
    bucket: str | int | None,
    *,
    index: PrefixIndex | None = None,
    window: tuple[int, int] | None = None,
    renormalise: bool = True,
    ordered: bool = True,
) -> pa.Table | None:
    """Every key's (and bucket's) sums over ``source``, streamed ~``_BLOCK_ROWS`` rows at a
    time (None when no flow is in the window): the partial of one task or of the whole
    dataset."""
    cols = flow_columns(key, renormalise, bucket is not None)
    batches = scan_flows(source, cols, window, drop_unsampled=True)
    return _stream(batches, key, bucket, index, renormalise, ordered)


def ranked_top_n(
    total: pa.Table | None,
    by: str | Sequence[str],
    metric: str,
    n: int,
    *,
    index: PrefixIndex | None = None,
    renormalise: bool = True,
) -> pa.Table:
    """:func:`finish_top_n` of :func:`traffic_sums`'
    result; no flows: an empty ranking with the key's columns."""
    if metric not in METRICS:
        raise RatingError(f"top-N metric {metric!r}: use one of {', '.join(METRICS)}")
    if total is None:
        from rating_engine.traffic.aggregate import bucket_traffic

        empty = FLOW_SCHEMA.empty_table().select(flow_columns(by, renormalise, False))
        total = bucket_traffic(empty, by, None, index=index)
    return finish_top_n(total, metric, n)


def top_n_dataset(
    source: str | Path | Sequence[str | Path],
    by: str | Sequence[str] = "src_addr",
    metric: str = "bytes",
    n: int = 10,
    window: tuple[int, int] | None = None,
    *,
    index: PrefixIndex | None = None,
    renormalise: bool = True,
    client: Any | None = None,
) -> pa.Table:
    """Top-N talkers over a Parquet flows dataset (``nfdump -s srcip/bytes -n 10`` style);
    ``client``: a ``dask.distributed.Client``: a task per day of flows on its cluster."""
    if client is not None:
        from rating_engine.scale.traffic import top_n_tasks

        return top_n_tasks(source, by, metric, n, window, index=index, renormalise=renormalise,
                           client=client)  # fmt: skip
    if metric not in METRICS:
        raise RatingError(f"top-N metric {metric!r}: use one of {', '.join(METRICS)}")
    summed, total = _polars_partial(source, by, None, window, renormalise, (metric, n))
    if not summed:
        total = traffic_sums(source, by, None, index=index, window=window,
                             renormalise=renormalise, ordered=False)  # fmt: skip
    return ranked_top_n(total, by, metric, n, index=index, renormalise=renormalise)


def bucket_traffic_dataset(
    source: str | Path | Sequence[str | Path],
    key: str | Sequence[str] = "subscription",
    bucket: str | int | None = "5min",
    *,
    index: PrefixIndex | None = None,
    window: tuple[int, int] | None = None,
    renormalise: bool = True,
    client: Any | None = None,
) -> pa.Table:
    """:func:`rating_engine.traffic.aggregate.bucket_traffic` over a Parquet flows dataset
    (``client``: a task per day of flows on its Dask cluster)."""
    if client is not None:
        from rating_engine.scale.traffic import bucket_traffic_tasks

        return bucket_traffic_tasks(source, key, bucket, index=index, window=window,
                                    renormalise=renormalise, client=client)  # fmt: skip
    summed, total = _polars_partial(source, key, bucket, window, renormalise)
    if summed and total is not None:
        total = _kernel_order(total)
    elif not summed:
        total = traffic_sums(source, key, bucket, index=index, window=window,
                             renormalise=renormalise)  # fmt: skip
    if total is None:
        raise RatingError(f"flows dataset {source}: no flows in the window")
    return total
