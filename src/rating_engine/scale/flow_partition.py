"""Flow attribution as partition tasks: one usage part per flow day.

Usage records from flows are per (binding, hour), and an hour lies in one day, so the
days of a period are independent: :func:`derive_day` turns one day's flows (read in
chunks of whole row groups, reduced with the associative
:func:`~rating_engine.traffic.usage_from_flows.combine_usage`) into that day's usage part,
the same rows in the same order as attributing the whole period at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collectors.dataset import atomic_write_table
from collectors.schemas import FLOW_SCHEMA
from rating_engine.scale.parts import day_folder, ids_in
from rating_engine.traffic.attribution import PrefixIndex
from rating_engine.traffic.flow_query import flow_columns
from rating_engine.traffic.usage_from_flows import combine_usage, usage_from_flows

__all__ = ["FlowDay", "FlowUsageJob", "derive_day"]

#: Flows attributed at a time (bounds a task's memory, not its result).
_CHUNK_ROWS = 4 << 20


@dataclass(frozen=True)
class FlowDay:
    """One day of flows, and the usage parts of earlier derivations of that day."""

    day: int
    flows: tuple[str, ...]
    earlier: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlowUsageJob:
    usage_root: str
    part: str  # usage part name, e.g. "flows-2026-10"
    period_start_us: int
    period_end_us: int
    source_file: str  # what derived records name as their source
    bucket: str = "hour"


def _flow_chunks(job: FlowUsageJob, day: FlowDay) -> Iterator[pa.Table]:
    cols = flow_columns("subscription", renormalise=True)
    schema = pa.schema([FLOW_SCHEMA.field(c) for c in cols])
    ts = FLOW_SCHEMA.field("flow_start").type
    lo = pa.scalar(job.period_start_us, pa.int64()).cast(ts)
    hi = pa.scalar(job.period_end_us, pa.int64()).cast(ts)
    held: list[pa.Table] = []
    rows = 0
    for path in day.flows:
        source = pq.ParquetFile(path, page_checksum_verification=True)
        for group in range(source.num_row_groups):
            table = source.read_row_group(group, columns=cols).cast(schema)
            start = table.column("flow_start")
            table = table.filter(pc.and_(pc.greater_equal(start, lo), pc.less(start, hi)))
            held.append(table)
            rows += table.num_rows
            if rows >= _CHUNK_ROWS:
                yield pa.concat_tables(held).combine_chunks()
                held, rows = [], 0
    if held:
        yield pa.concat_tables(held).combine_chunks()


def derive_day(day: FlowDay, *, job: FlowUsageJob, index: PrefixIndex) -> int:
    """Write the day's usage part from its flows; returns the records written.

    Records already in an ``earlier`` part of the day (a derivation committed before) are
    left there untouched and not written again.
    """
    parts = [
        usage_from_flows(chunk, index, bucket=job.bucket, source_file=job.source_file)
        for chunk in _flow_chunks(job, day)
        if chunk.num_rows
    ]
    if not parts:
        return 0
    usage = parts[0] if len(parts) == 1 else combine_usage(parts)
    if day.earlier:
        known = ids_in([Path(p) for p in day.earlier])
        ids = np.asarray(usage.column("record_id").to_numpy(), dtype=np.int64)
        pos = np.minimum(np.searchsorted(known, ids), max(known.shape[0] - 1, 0))
        fresh = ~(known[pos] == ids) if known.shape[0] else np.ones(ids.shape[0], bool)
        usage = usage.filter(pa.array(fresh))
    if usage.num_rows == 0:
        return 0
    path = Path(job.usage_root) / day_folder(day.day) / f"part-{job.part}.parquet"
    atomic_write_table(usage, path)
    return int(usage.num_rows)
