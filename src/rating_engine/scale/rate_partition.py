"""Rating a billing pass as partition tasks: per usage day, then per account bucket.

Allowances are consumed per subscription in (start_time, record_id) order. Days are
disjoint time ranges, so rating whole days one call after another with one allowance
state consumes in exactly that order; a call may take several consecutive days. With
one partition (``buckets == 1``) a task reads the usage days itself. With more, a first
stage (:func:`split_day`, one task per day) routes every unbilled record to its account
bucket (:class:`~rating_engine.scale.routing.AccountRouter`) into scratch files, and
:func:`rate_bucket` (one task per bucket) rates its bucket's days in order: every
record of a subscription is in one bucket, so the buckets are independent.

A task writes its rated rows (only those the pass bills) and its suspense rows as parts
named for the pass and bucket, and returns a :class:`RatePartial`. Records already
billed - in the rated parts of committed passes of the same day - are skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collectors.schemas import REJECT_SCHEMA, USAGE_PRICED_SCHEMA, USAGE_SCHEMA
from rating_engine.rating.period_pricing import combine_quantities
from rating_engine.rating.rate import RATING_COLUMNS, SubscriptionIndex, rate_stream
from rating_engine.scale.partials import RatePartial, UsageAccumulator, in_period_quantities
from rating_engine.scale.parts import (
    DAY_US,
    DayPartWriter,
    ScratchWriter,
    day_folder,
    ids_in,
    part_name,
    read_ipc,
)
from rating_engine.scale.routing import AccountRouter
from rating_engine.schemas import RATED_SCHEMA
from rating_engine.tariff.allowances import AllowanceState
from rating_engine.tariff.plan import RatingPlan, labels

__all__ = [
    "Billable",
    "DayFiles",
    "RateContext",
    "RateJob",
    "day_files",
    "rate_bucket",
    "split_day",
    "usage_rows",
    "with_prices",
]

I64 = npt.NDArray[np.int64]
_EMPTY = np.zeros(0, np.int64)
#: Rows read from a usage file at a time while splitting a day into buckets.
_SPLIT_BATCH = 1 << 20
#: Partials combined once this many have piled up in a task.
_COMBINE_EVERY = 8
#: What a task reads of a usage part: the columns rating reads, and the price.
_READ_SCHEMA = pa.schema([USAGE_PRICED_SCHEMA.field(n) for n in (*RATING_COLUMNS, "price")])


@dataclass(frozen=True)
class DayFiles:
    """One usage day: its files, and the rated parts of committed passes in that day."""

    day: int  # days since 1970-01-01
    usage: tuple[str, ...]
    billed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Billable:
    """Which rated rows a pass bills: every account's (``everyone``), else the accounts
    in ``accounts`` and the subscriptions in ``subscriptions``; never an account in
    ``excluded``. Arrays are sorted."""

    everyone: bool = True
    accounts: I64 = field(default_factory=lambda: _EMPTY)
    subscriptions: I64 = field(default_factory=lambda: _EMPTY)
    excluded: I64 = field(default_factory=lambda: _EMPTY)

    def mask(self, rated: pa.Table) -> npt.NDArray[np.bool_] | None:
        """Rows of ``rated`` this pass bills; None when it bills them all."""
        if self.everyone and self.excluded.shape[0] == 0:
            return None
        acc = np.asarray(rated.column("account_id").to_numpy(), dtype=np.int64)
        keep = np.ones(acc.shape[0], bool) if self.everyone else _isin(acc, self.accounts)
        if not self.everyone and self.subscriptions.shape[0]:
            sub = np.asarray(rated.column("subscription_id").to_numpy(), dtype=np.int64)
            keep |= _isin(sub, self.subscriptions)
        if self.excluded.shape[0]:
            keep &= ~_isin(acc, self.excluded)
        return keep


def _isin(values: I64, sorted_set: I64) -> npt.NDArray[np.bool_]:
    if sorted_set.shape[0] == 0:
        return np.zeros(values.shape[0], bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), sorted_set.shape[0] - 1)
    return np.asarray(sorted_set[pos] == values)


@dataclass(frozen=True)
class RateJob:
    """What every rating task of a pass shares, apart from the large context."""

    usage_root: str
    rated_root: str
    suspense_root: str
    scratch: str  # the pass's scratch folder (bucket split)
    tag: str
    period_start_us: int
    period_end_us: int
    days: tuple[DayFiles, ...]  # ascending
    buckets: int = 1
    chunk_rows: int = 1 << 19


@dataclass(frozen=True)
class RateContext:
    """The large, read-only inputs: sent to each worker once."""

    index: SubscriptionIndex
    plan: RatingPlan
    router: AccountRouter
    billable: Billable = field(default_factory=Billable)
    #: sorted subscription ids and their accounts: the slots of the usage sums
    sub_ids: I64 = field(default_factory=lambda: _EMPTY)
    sub_accounts: I64 = field(default_factory=lambda: _EMPTY)

    @classmethod
    def of(cls, subscriptions: pa.Table, plan: RatingPlan, router: AccountRouter,
           billable: Billable | None = None) -> RateContext:  # fmt: skip
        """The context for rating against ``subscriptions`` (``SUBSCRIPTION_SCHEMA``)."""
        sub = np.asarray(subscriptions.column("subscription_id").to_numpy(), np.int64)
        acc = np.asarray(subscriptions.column("account_id").to_numpy(), np.int64)
        ids, first = np.unique(sub, return_index=True)
        return cls(SubscriptionIndex.build(subscriptions, plan), plan, router,
                   billable or Billable(), ids, acc[first])  # fmt: skip


def _unbilled(job: RateJob, day: DayFiles) -> Iterator[pa.Table]:
    """The day's usage before the period's end and not billed yet, in pieces."""
    end = pa.scalar(job.period_end_us, pa.int64()).cast(USAGE_SCHEMA.field("start_time").type)
    billed = ids_in([Path(p) for p in day.billed]) if day.billed else _EMPTY
    if billed.shape[0]:
        # an earlier day is usually billed in full: look at the ids before the rows
        ids = ids_in([Path(p) for p in day.usage])
        if _isin(ids, billed).all():
            return
    for path in day.usage:
        source = pq.ParquetFile(path, page_checksum_verification=True)
        columns = _READ_SCHEMA.names
        if "price" not in source.schema_arrow.names:
            columns = columns[:-1]
        for batch in source.iter_batches(batch_size=_SPLIT_BATCH, columns=columns):
            table = with_prices(pa.Table.from_batches([batch]), _READ_SCHEMA)
            times = table.column("start_time")
            # a filter copies every column: only when some row goes
            keep = None if pc.less(pc.max(times), end).as_py() else pc.less(times, end)
            if billed.shape[0]:
                ids = np.asarray(table.column("record_id").to_numpy(), dtype=np.int64)
                gone = _isin(ids, billed)
                if gone.any():
                    keep = pa.array(~gone) if keep is None else pc.and_(keep, pa.array(~gone))
            if keep is not None:
                table = table.filter(keep)
            if table.num_rows:
                yield table


def with_prices(table: pa.Table, schema: pa.Schema = USAGE_PRICED_SCHEMA) -> pa.Table:
    """``table`` as ``schema`` (``USAGE_PRICED_SCHEMA`` or columns of it): usage parts
    written without the optional ``price`` column (all but CDR files with a price) read as
    null prices, so every part of a day concatenates and pass-through rates see the prices
    of those that have them."""
    if "price" not in table.column_names:
        table = table.append_column("price", pa.nulls(table.num_rows, pa.int64()))
    return table.select(schema.names).cast(schema)


def _scratch(job: RateJob, day: int, bucket: int) -> Path:
    return Path(job.scratch) / "split" / day_folder(day) / f"b{bucket:03d}.arrow"


def split_day(day: DayFiles, *, job: RateJob, router: AccountRouter) -> int:
    """Stage one: the day's unbilled records into one scratch file per bucket; returns
    how many records."""
    out = ScratchWriter(_READ_SCHEMA)
    rows = 0
    try:
        for table in _unbilled(job, day):
            ids = np.asarray(table.column("record_id").to_numpy(), dtype=np.int64)
            bucket = router.route(table.column("subscriber_key"), ids)
            order = np.argsort(bucket, kind="stable")
            sorted_b = bucket[order]
            cuts = np.flatnonzero(np.diff(sorted_b)) + 1
            taken = table.take(pa.array(order))
            for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, order.shape[0]], strict=True):
                out.write(_scratch(job, day.day, int(sorted_b[lo])),
                          taken.slice(int(lo), int(hi - lo)))  # fmt: skip
            rows += table.num_rows
    except BaseException:
        out.abort()
        raise
    out.close()
    return rows


def _day_tables(job: RateJob, bucket: int) -> Iterator[pa.Table]:
    """The bucket's unbilled usage, one table per day, days ascending."""
    for day in job.days:
        if job.buckets == 1:
            pieces = list(_unbilled(job, day))
            if pieces:
                yield pa.concat_tables(pieces)
        else:
            path = _scratch(job, day.day, bucket)
            if path.exists():
                yield read_ipc(path)


def _chunks(job: RateJob, bucket: int) -> Iterator[pa.RecordBatch]:
    """Whole consecutive days, at most ``chunk_rows`` records at a time unless one day is
    larger, as one batch each (one rating call: allowances are consumed in time order
    within and across)."""
    held: list[pa.Table] = []
    rows = 0

    def flush() -> Iterator[pa.RecordBatch]:
        table = pa.concat_tables(held).combine_chunks()
        batches = table.to_batches()
        if len(batches) > 1:  # too large for one batch: time order across the calls
            table = table.sort_by([("start_time", "ascending"), ("record_id", "ascending")])
            batches = table.to_batches()
        yield from batches

    for table in _day_tables(job, bucket):
        if held and rows + table.num_rows > job.chunk_rows:
            yield from flush()
            held, rows = [], 0
        held.append(table)
        rows += table.num_rows
    if held:
        yield from flush()


def _ahead(items: Iterator[pa.RecordBatch], pool: ThreadPoolExecutor) -> Iterator[pa.RecordBatch]:
    """``items``, the next one read on ``pool`` while the caller works on the current."""
    pending = pool.submit(next, items, None)
    while (item := pending.result()) is not None:
        pending = pool.submit(next, items, None)
        yield item


def rate_bucket(bucket: int, *, job: RateJob, context: RateContext) -> RatePartial:
    """Stage two: rate one bucket's days in time order, write its parts, return its partial.

    The next chunk is read, and the last one written, on threads while a chunk is rated
    (Parquet and the kernels release the GIL).
    """
    name = part_name(job.tag, bucket, job.buckets)
    # a bucket's days come in ascending order: each day's part is published once rated.
    # LZ4, not zstd: the run writes the rated records once and DuckDB reads them twice
    # (ledger, duplicate check); per 10M records LZ4 costs 0.7 s less CPU to write and
    # 0.6 s less to read into the ledger, for parts a third larger (316 vs 238 MB)
    rated_out = DayPartWriter(Path(job.rated_root), name, RATED_SCHEMA, "start_time",
                              ordered=True, compression="lz4")  # fmt: skip
    suspense_out = DayPartWriter(Path(job.suspense_root), name, REJECT_SCHEMA, "rejected_at")
    plan = context.plan
    usage = UsageAccumulator(context.sub_ids, context.sub_accounts, labels(plan.currencies),
                             job.period_start_us)  # fmt: skip
    quantities: list[pa.Table] = []
    reasons: Counter[str] = Counter()
    rated_rows = suspense_rows = 0
    state = AllowanceState()

    def write(rated: pa.Table, rejected: pa.Table) -> None:
        rated_out.write(rated)
        suspense_out.write(rejected)

    with rated_out, suspense_out, ThreadPoolExecutor(max_workers=2) as pool:
        chunks = _ahead(_chunks(job, bucket), pool)
        writing: Future[None] | None = None
        # the units drawn are in the rated rows; the allowance ledger is not kept here
        for result in rate_stream(chunks, context.index, plan, allowances=state,
                                  allowance_ledger=False):  # fmt: skip
            rated = result.rated.cast(RATED_SCHEMA)
            keep = context.billable.mask(rated)
            if keep is not None:
                rated = rated.filter(pa.array(keep))
            rejected = result.rejected.cast(REJECT_SCHEMA)
            if writing is not None:
                writing.result()
            writing = pool.submit(write, rated, rejected)
            usage.add(rated)
            quantities.append(in_period_quantities(rated, plan, job.period_start_us))
            if len(quantities) >= _COMBINE_EVERY:
                quantities = [combine_quantities(*quantities)]
            rated_rows += rated.num_rows
            suspense_rows += rejected.num_rows
            if rejected.num_rows:
                reasons.update(dict(zip(*_value_counts(rejected.column("reason")), strict=True)))
        if writing is not None:
            writing.result()
    return RatePartial(
        usage.table(), combine_quantities(*quantities), rated_rows, suspense_rows,
        dict(sorted(reasons.items())),
    )  # fmt: skip


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    counts = pc.value_counts(column).flatten()
    return counts[0].to_pylist(), counts[1].to_pylist()


def day_files(
    usage_by_day: dict[int, list[Path]],
    rated_by_day: dict[int, list[Path]],
    end_us: int,
) -> tuple[DayFiles, ...]:
    """The usage days before ``end_us`` with the billed parts of each, ascending."""
    last = (end_us - 1) // DAY_US
    return tuple(
        DayFiles(day, tuple(str(p) for p in files),
                 tuple(str(p) for p in rated_by_day.get(day, [])))
        for day, files in sorted(usage_by_day.items())
        if day <= last
    )  # fmt: skip


def usage_rows(days: tuple[DayFiles, ...]) -> list[int]:
    """Records per day from the Parquet footers (no data read): sizes the partitions."""
    return [sum(pq.read_metadata(p).num_rows for p in d.usage) for d in days]
