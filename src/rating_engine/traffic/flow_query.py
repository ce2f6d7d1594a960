"""Aggregations straight from Parquet flow datasets, streaming batch by batch.

Only the columns a query needs are read; each batch is reduced to a partial result
(:mod:`rating_engine.traffic.aggregate`) and the partials are merged with the associative
combine, so memory stays bounded by the number of distinct keys, not by the rows. The
same per-batch functions are what a Dask task would run on one file.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from collectors.schemas import FLOW_SCHEMA
from rating_engine.errors import RatingError
from rating_engine.traffic.aggregate import (
    KEY_ALIASES,
    METRICS,
    bucket_traffic,
    combine_traffic,
    finish_top_n,
)
from rating_engine.traffic.attribution import PrefixIndex
from rating_engine.traffic.flow_filter import FlowFilter

__all__ = [
    "bucket_traffic_dataset",
    "flow_columns",
    "ranked_top_n",
    "scan_flows",
    "top_n_dataset",
    "traffic_sums",
]

_TS = pa.timestamp("us", tz="UTC")
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


def _open(source: str | Path | Sequence[str | Path]) -> pads.Dataset:
    paths = [str(source)] if isinstance(source, str | Path) else [str(p) for p in source]
    try:
        return pads.dataset(
            paths[0] if len(paths) == 1 else paths, format="parquet", partitioning="hive"
        )
    except (FileNotFoundError, pa.ArrowInvalid) as exc:
        raise RatingError(f"flows dataset {paths[0]}: cannot open ({exc})") from exc


def _day_of(path: str) -> int | None:
    """Days since epoch of a ``date=YYYY-MM-DD`` partition folder in ``path``, if any."""
    for part in Path(path).parts:
        if part.startswith("date="):
            try:
                d = date.fromisoformat(part[5:])
            except ValueError:
                return None
            return (d - date(1970, 1, 1)).days
    return None


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
    files = list(dataset.files)
    if window is not None:
        lo_day, hi_day = window[0] // _DAY_US, (window[1] - 1) // _DAY_US
        files = [f for f in files if (d := _day_of(f)) is None or lo_day <= d <= hi_day]
    if flow_filter is None:
        tasks = [(f, i) for f in files for i in range(pq.ParquetFile(f).num_row_groups)]
    else:  # only the row groups whose min/max statistics leave room for a match
        tasks = []
        if files:
            kept = pads.dataset(files, format="parquet")
            tasks = [
                (piece.path, piece.row_groups[0].id)
                for frag in kept.get_fragments()
                for piece in frag.split_by_row_group(flow_filter.arrow, schema=kept.schema)
            ]
    if drop_unsampled and "sampling_interval" in columns and _unsampled(tasks):
        columns = [c for c in columns if c != "sampling_interval"]
    cols = list(dict.fromkeys([*columns, *(["flow_start"] if window is not None else []),
                               *extra]))  # fmt: skip

    def read(task: tuple[str, int]) -> pa.Table:
        return pq.ParquetFile(task[0]).read_row_group(task[1], columns=cols, use_threads=True)

    # two row groups in flight: one group's columns are too few and too unequal to keep
    # both cores decoding, and the caller's kernels overlap the next reads
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = deque(pool.submit(read, task) for task in tasks[:2])
        for k in range(len(tasks)):
            table = pending.popleft().result()
            if k + 2 < len(tasks):
                pending.append(pool.submit(read, tasks[k + 2]))
            if window is not None:
                ts = table.column("flow_start")
                keep = pc.and_(
                    pc.greater_equal(ts, pa.scalar(window[0], _TS)),
                    pc.less(ts, pa.scalar(window[1], _TS)),
                )
                table = table.filter(keep)
            if flow_filter is not None:
                table = table.filter(flow_filter.arrow)
            yield from table.select(list(columns)).combine_chunks().to_batches()


def _unsampled(tasks: Sequence[tuple[str, int]]) -> bool:
    """True when the statistics of every row group in ``tasks`` prove its
    ``sampling_interval`` values all 0, 1 or null (volumes need no renormalising)."""
    metas: dict[str, pq.FileMetaData] = {}
    for path, group in tasks:
        meta = metas.get(path) or metas.setdefault(path, pq.ParquetFile(path).metadata)
        names = meta.schema.to_arrow_schema().names
        if "sampling_interval" not in names:
            return False
        rg = meta.row_group(group)
        stats = rg.column(names.index("sampling_interval")).statistics
        if stats is None:
            return False
        if stats.has_min_max:
            if stats.max > 1:
                return False
        elif not (stats.has_null_count and stats.null_count == rg.num_rows):
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
    """:func:`~rating_engine.traffic.aggregate.finish_top_n` of :func:`traffic_sums`'
    result; no flows: an empty ranking with the key's columns."""
    if metric not in METRICS:
        raise RatingError(f"top-N metric {metric!r}: use one of {', '.join(METRICS)}")
    if total is None:
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
    """Top-N talkers over a Parquet flows dataset (``nfdump -s srcip/bytes -n 10`` style).

    ``client``: a ``dask.distributed.Client``: a task per day of flows on its cluster."""
    if client is not None:
        from rating_engine.scale.traffic import top_n_tasks

        return top_n_tasks(source, by, metric, n, window, index=index, renormalise=renormalise,
                           client=client)  # fmt: skip
    if metric not in METRICS:
        raise RatingError(f"top-N metric {metric!r}: use one of {', '.join(METRICS)}")
    total = traffic_sums(source, by, None, index=index, window=window, renormalise=renormalise,
                         ordered=False)  # fmt: skip
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
    total = traffic_sums(source, key, bucket, index=index, window=window,
                         renormalise=renormalise)  # fmt: skip
    if total is None:
        raise RatingError(f"flows dataset {source}: no flows in the window")
    return total
