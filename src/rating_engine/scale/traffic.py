"""Traffic aggregations over a flows dataset as partition tasks: top-N, time buckets, p95.

One task per day of flows (its files) reduces them to a partial - every key's sums
(:func:`~rating_engine.traffic.aggregate.bucket_traffic`), or every subscription's
non-zero 5-minute byte sums (:func:`~rating_engine.traffic.percentile.percentile_samples`)
- and the partials are combined in a tree with the exact associative combines; the
result is finished (ranked, sorted, the 95th percentile taken) once. Equal to the
one-pass functions of :mod:`rating_engine.traffic.flow_query` for any cut.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from collectors.dataset import dataset_files
from rating_engine.errors import RatingError
from rating_engine.scale.executor import Executor, executor_for
from rating_engine.scale.parts import day_of_path
from rating_engine.traffic.aggregate import METRICS, combine_traffic
from rating_engine.traffic.attribution import PrefixIndex
from rating_engine.traffic.flow_query import ranked_top_n, scan_flows, traffic_sums
from rating_engine.traffic.percentile import (
    SAMPLES_SCHEMA,
    combine_samples,
    p95_from_samples,
    percentile_samples,
)

__all__ = [
    "bucket_traffic_tasks",
    "flow_day_groups",
    "percentile_95_tasks",
    "top_n_tasks",
    "traffic_partial",
]


def flow_day_groups(source: str | Path | Sequence[str | Path]) -> list[tuple[str, ...]]:
    """The dataset's files, one group per ``date=`` day (files outside one: a group each)."""
    if isinstance(source, str | Path) and Path(source).is_dir():
        files = [str(p) for p in dataset_files(Path(source))]
    elif isinstance(source, str | Path):
        files = [str(source)]
    else:
        files = [str(p) for p in source]
    groups: dict[object, list[str]] = {}
    for path in sorted(files):
        day = day_of_path(path)
        groups.setdefault(day if day is not None else path, []).append(path)
    return [tuple(g) for g in groups.values()]


def traffic_partial(
    files: tuple[str, ...],
    *,
    group: str | Sequence[str],
    bucket: str | int | None,
    index: PrefixIndex | None,
    window: tuple[int, int] | None,
    renormalise: bool,
) -> pa.Table | None:
    """Every key's sums over ``files`` (None when no flow is in the window); ``group`` is
    the key of :func:`~rating_engine.traffic.aggregate.bucket_traffic`."""
    return traffic_sums(list(files), group, bucket, index=index, window=window,
                        renormalise=renormalise, ordered=False)  # fmt: skip


def _executor(client: Any | None, what: str, source: object) -> Executor:
    root = Path(source) if isinstance(source, str | Path) and Path(source).is_dir() else None
    return executor_for(client, f"{what}-{uuid.uuid4().hex[:8]}", root)


def _combine(*parts: pa.Table | None) -> pa.Table | None:
    tables = [p for p in parts if p is not None]
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else combine_traffic(tables, ordered=False)


def _traffic(
    executor: Executor,
    source: str | Path | Sequence[str | Path],
    key: str | Sequence[str],
    bucket: str | int | None,
    index: PrefixIndex | None,
    window: tuple[int, int] | None,
    renormalise: bool,
) -> pa.Table | None:
    groups = flow_day_groups(source)
    if not groups:
        return None
    shared = executor.share(index) if index is not None else None
    partials = executor.map_partials(
        traffic_partial, groups, name="traffic", group=key, bucket=bucket, index=shared,
        window=window, renormalise=renormalise,
    )  # fmt: skip
    result: pa.Table | None = executor.reduce(_combine, partials, name="traffic")
    return result


def top_n_tasks(
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
    """:func:`~rating_engine.traffic.flow_query.top_n_dataset` as a task per day of flows
    (on ``client``'s Dask cluster, or here)."""
    if metric not in METRICS:
        raise RatingError(f"top-N metric {metric!r}: use one of {', '.join(METRICS)}")
    executor = _executor(client, "top-n", source)
    total = _traffic(executor, source, by, None, index, window, renormalise)
    return ranked_top_n(total, by, metric, n, index=index, renormalise=renormalise)


def bucket_traffic_tasks(
    source: str | Path | Sequence[str | Path],
    key: str | Sequence[str] = "subscription",
    bucket: str | int | None = "5min",
    *,
    index: PrefixIndex | None = None,
    window: tuple[int, int] | None = None,
    renormalise: bool = True,
    client: Any | None = None,
) -> pa.Table:
    """:func:`~rating_engine.traffic.flow_query.bucket_traffic_dataset` as a task per day of
    flows (sorted by bucket then key, as it is)."""
    executor = _executor(client, "buckets", source)
    total = _traffic(executor, source, key, bucket, index, window, renormalise)
    if total is None:
        raise RatingError(f"flows dataset {source}: no flows in the window")
    # the tree combined in hash order: sort as the one-pass function does
    return combine_traffic([total], ordered=True)


def _samples(files: tuple[str, ...], *, index: PrefixIndex, start_us: int, end_us: int) -> pa.Table:
    cols = ["src_addr", "dst_addr", "flow_start", "flow_end", "bytes", "sampling_interval"]
    parts = [
        percentile_samples(b, index, start_us, end_us)
        for b in scan_flows(list(files), cols)
        if b.num_rows
    ]
    return combine_samples(parts) if parts else SAMPLES_SCHEMA.empty_table()


def _combine_samples(*parts: pa.Table) -> pa.Table:
    return combine_samples(parts)


def percentile_95_tasks(
    source: str | Path | Sequence[str | Path],
    index: PrefixIndex,
    period_start_us: int,
    period_end_us: int,
    *,
    client: Any | None = None,
) -> pa.Table:
    """:func:`~rating_engine.traffic.percentile.percentile_95` over a flows dataset, a task
    per day of flows (a flow spreads its bytes over the intervals it overlaps, whatever
    file it is in, so any day may feed any interval: the sums combine exactly)."""
    executor = _executor(client, "p95", source)
    groups = flow_day_groups(source)
    samples = SAMPLES_SCHEMA.empty_table()
    if groups:
        partials = executor.map_partials(
            _samples, groups, name="p95", index=executor.share(index),
            start_us=period_start_us, end_us=period_end_us,
        )  # fmt: skip
        samples = executor.reduce(_combine_samples, partials, name="p95")
    return p95_from_samples(samples, index, period_start_us, period_end_us)
