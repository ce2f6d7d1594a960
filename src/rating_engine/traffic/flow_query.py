"""Aggregations straight from Parquet flow datasets, streaming batch by batch.

Only the columns a query needs are read; each batch is reduced to a partial result
(:mod:`rating_engine.traffic.aggregate`) and the partials are merged with the associative
combine, so memory stays bounded by the number of distinct keys, not by the rows. The
same per-batch functions are what a Dask task would run on one file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

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

__all__ = ["bucket_traffic_dataset", "flow_columns", "scan_flows", "top_n_dataset"]

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
) -> Iterator[pa.RecordBatch]:
    """Batches (one per Parquet row group) of ``columns`` from a flows dataset.

    ``source`` is a dataset folder (hive-partitioned), a file, or a list of files.
    ``window`` = ``(start_us, end_us)`` keeps rows with ``flow_start`` in ``[start, end)``;
    ``date=`` partitions entirely outside it are not opened. ``flow_filter`` keeps the
    flows it matches; row groups whose statistics rule it out are not read. The next row
    group is decoded on a second thread while the caller works on the current one.
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
    cols = list(dict.fromkeys([*columns, *(["flow_start"] if window is not None else []),
                               *extra]))  # fmt: skip

    def read(task: tuple[str, int]) -> pa.Table:
        return pq.ParquetFile(task[0]).read_row_group(task[1], columns=cols, use_threads=True)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, tasks[0]) if tasks else None
        for k in range(len(tasks)):
            assert pending is not None
            table = pending.result()
            pending = pool.submit(read, tasks[k + 1]) if k + 1 < len(tasks) else None
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
        partials.append(
            bucket_traffic(table, key, bucket, index=index, renormalise=renormalise,
                           ordered=ordered)
        )  # fmt: skip
        block.clear()

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
    cols = flow_columns(by, renormalise, False)
    total = _stream(scan_flows(source, cols, window), by, None, index, renormalise, False)
    if total is None:
        empty = _open(source).schema.empty_table().select(cols)
        total = bucket_traffic(empty, by, None, index=index)
    return finish_top_n(total, metric, n)


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
    cols = flow_columns(key, renormalise, bucket is not None)
    total = _stream(scan_flows(source, cols, window), key, bucket, index, renormalise, True)
    if total is None:
        raise RatingError(f"flows dataset {source}: no flows in the window")
    return total
