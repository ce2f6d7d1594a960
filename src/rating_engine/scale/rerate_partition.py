"""Re-rating a billed period under corrected tariffs, streaming day by day.

The records a period billed are the rated parts of its committed passes. Day by day,
in time order and with one allowance state for the period (as its billing did), those
records are rated again from their usage, and each one's new cost is compared with what
it stands at now (its billed cost plus earlier adjustments). The per-record deltas go to
a scratch file for the driver to record; the task returns only sums per account.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collectors.schemas import USAGE_PRICED_SCHEMA, USAGE_SCHEMA
from rating_engine.rating.rate import SubscriptionIndex, rate_stream
from rating_engine.scale.parts import DayPartWriter
from rating_engine.scale.rate_partition import DayFiles, with_prices
from rating_engine.tariff.allowances import AllowanceState
from rating_engine.tariff.plan import RatingPlan

__all__ = [
    "ADJUSTMENT_SUM_SCHEMA",
    "DELTA_SCHEMA",
    "RerateJob",
    "ReratePartial",
    "combine_rerate_partials",
    "rerate_period",
]

I64 = npt.NDArray[np.int64]

DELTA_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.int64(), nullable=False),
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("billed_period", pa.string(), nullable=False),
        pa.field("start_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("delta", pa.int64(), nullable=False),
    ]
)
#: Per account and billed period: the sum of the records' deltas and how many changed.
ADJUSTMENT_SUM_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("billed_period", pa.string(), nullable=False),
        pa.field("delta", pa.int64(), nullable=False),
        pa.field("records", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class RerateJob:
    """One billed period to re-rate: its days (usage files, and its own rated parts)."""

    period: str
    days: tuple[DayFiles, ...]  # ascending; ``billed`` = this period's rated parts
    deltas_root: str  # scratch dataset the per-record deltas are written to
    part: str
    chunk_rows: int = 1 << 20


@dataclass(frozen=True)
class ReratePartial:
    sums: pa.Table = field(default_factory=ADJUSTMENT_SUM_SCHEMA.empty_table)
    billed: int = 0  # records of the period looked at
    rerated: int = 0  # of those, rated again (the rest the corrected tariffs reject)
    changed: int = 0  # of those, with a non-zero delta


def combine_rerate_partials(*parts: ReratePartial) -> ReratePartial:
    """Associative combine (sums per account and period)."""
    tables = [p.sums for p in parts if p.sums.num_rows]
    sums = ADJUSTMENT_SUM_SCHEMA.empty_table()
    if tables:
        g = (
            pa.concat_tables(tables)
            .group_by(["account_id", "billed_period"], use_threads=False)
            .aggregate([("delta", "sum"), ("records", "sum")])
        )
        sums = pa.table(
            [g["account_id"], g["billed_period"], g["delta_sum"], g["records_sum"]],
            schema=ADJUSTMENT_SUM_SCHEMA,
        )
    return ReratePartial(
        sums,
        sum(p.billed for p in parts),
        sum(p.rerated for p in parts),
        sum(p.changed for p in parts),
    )


def _lookup(ids: I64, keys: I64, values: I64) -> I64:
    """``values`` at ``ids`` in sorted ``keys``, 0 where absent."""
    if keys.shape[0] == 0:
        return np.zeros(ids.shape[0], np.int64)
    pos = np.minimum(np.searchsorted(keys, ids), keys.shape[0] - 1)
    return np.where(keys[pos] == ids, values[pos], 0)


def _chunks(job: RerateJob) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(billed rows, their usage) over whole consecutive days of about ``chunk_rows``."""
    billed_parts: list[pa.Table] = []
    usage_parts: list[pa.Table] = []
    rows = 0

    def flush() -> tuple[pa.Table, pa.Table]:
        return pa.concat_tables(billed_parts), pa.concat_tables(usage_parts).combine_chunks()

    for day in job.days:
        billed = pa.concat_tables(
            [pq.read_table(p, columns=["record_id", "account_id", "cost", "start_time"],
                           page_checksum_verification=True)
             for p in day.billed]
        )  # fmt: skip
        ids = pa.array(np.sort(np.asarray(billed.column("record_id").to_numpy(), np.int64)))
        for path in day.usage:
            priced = "price" in pq.read_schema(path).names
            usage = with_prices(pq.read_table(
                path, columns=(USAGE_PRICED_SCHEMA if priced else USAGE_SCHEMA).names,
                page_checksum_verification=True,
            ))  # fmt: skip
            usage_parts.append(usage.filter(pc.is_in(usage.column("record_id"), ids)))
        billed_parts.append(billed)
        rows += billed.num_rows
        if rows >= job.chunk_rows:
            yield flush()
            billed_parts, usage_parts, rows = [], [], 0
    if billed_parts:
        yield flush()


def rerate_period(
    job: RerateJob,
    *,
    index: SubscriptionIndex,
    plan: RatingPlan,
    previous: tuple[I64, I64],
) -> ReratePartial:
    """Re-rate ``job.period``'s billed records with ``plan``; ``previous`` holds the sorted
    record ids with the sum of their earlier adjustments (micro-units)."""
    state = AllowanceState()
    partials: list[ReratePartial] = []
    out = DayPartWriter(Path(job.deltas_root), job.part, DELTA_SCHEMA, "start_time")
    with out:
        for billed, usage in _chunks(job):
            usage = usage.sort_by([("start_time", "ascending"), ("record_id", "ascending")])
            batches = usage.combine_chunks().to_batches() or [
                pa.RecordBatch.from_pylist([], schema=USAGE_PRICED_SCHEMA)
            ]
            rated = pa.concat_tables(
                [r.rated for r in rate_stream(batches, index, plan, allowances=state)]
            )
            ids = np.asarray(billed.column("record_id").to_numpy(), dtype=np.int64)
            current = np.asarray(billed.column("cost").to_numpy(), dtype=np.int64)
            current = current + _lookup(ids, *previous)
            base = billed.select(["record_id", "account_id", "start_time"]).append_column(
                "current", pa.array(current, pa.int64())
            )
            joined = base.join(rated.select(["record_id", "cost"]), "record_id", join_type="inner")
            delta = pc.subtract(joined.column("cost"), joined.column("current"))
            changed = joined.append_column("delta", delta).filter(pc.not_equal(delta, 0))
            n = changed.num_rows
            deltas = pa.table(
                [changed.column("record_id"), changed.column("account_id"),
                 pa.array([job.period] * n, pa.string()), changed.column("start_time"),
                 changed.column("delta").cast(pa.int64())],
                schema=DELTA_SCHEMA,
            )  # fmt: skip
            out.write(deltas)
            g = deltas.group_by(["account_id", "billed_period"], use_threads=False).aggregate(
                [("delta", "sum"), ("record_id", "count")]
            )
            sums = pa.table(
                [g["account_id"], g["billed_period"], g["delta_sum"], g["record_id_count"]],
                schema=ADJUSTMENT_SUM_SCHEMA,
            )
            partials.append(ReratePartial(sums, billed.num_rows, joined.num_rows, n))
    return combine_rerate_partials(*partials) if partials else ReratePartial()
