"""Partial results of rating partitions, and their associative combine.

A rating task reduces what it rated to a few small tables: usage sums per (account,
subscription, service, late, currency), period-pricing quantities per subscription, and
counts. Integer sums are associative and commutative, so combining the partials of any
split of the records, in any tree, gives the same sums; the caller sorts the final
table, so no order survives from the tree either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from rating_engine.rating.period_pricing import (
    QUANTITY_SCHEMA,
    combine_quantities,
    period_quantities,
)
from rating_engine.schemas import decode_labels
from rating_engine.tariff.plan import RatingPlan

__all__ = [
    "USAGE_PARTIAL_SCHEMA",
    "RatePartial",
    "UsageAccumulator",
    "combine_rate_partials",
    "combine_usage_partials",
    "in_period_quantities",
    "usage_partial",
]

USAGE_PARTIAL_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("subscription_id", pa.int64(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("late", pa.bool_(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("billed_units", pa.int64(), nullable=False),
        pa.field("allowance_units", pa.int64(), nullable=False),
        pa.field("cost", pa.int64(), nullable=False),
        pa.field("records", pa.int64(), nullable=False),
    ]
)
_KEYS = ["account_id", "subscription_id", "service", "late", "currency"]
_SUMS = ["billed_units", "allowance_units", "cost", "records"]


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(code per row, distinct values) of a column (hashed, not sorted: O(rows))."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    return np.asarray(arr.indices.to_numpy(zero_copy_only=False), np.int64), arr.dictionary


def usage_partial(rated: pa.Table, period_start_us: int) -> pa.Table:
    """Sums of rated rows (RATED_SCHEMA) per account, subscription, service, late, currency.

    ``late`` marks usage that started before the period (billed on its own line).
    """
    if rated.num_rows == 0:
        return USAGE_PARTIAL_SCHEMA.empty_table()
    start = np.asarray(rated.column("start_time").cast(pa.int64()).to_numpy(), np.int64)
    late = (start < period_start_us).astype(np.int64)
    acc, acc_ids = _codes(rated.column("account_id"))
    sub, sub_ids = _codes(rated.column("subscription_id"))
    svc, services = _codes(rated.column("service"))
    cur, currencies = _codes(rated.column("currency"))
    n_svc, n_cur = max(len(services), 1), max(len(currencies), 1)
    slots = len(sub_ids) * n_svc * 2 * n_cur
    if slots > 8 * rated.num_rows + 1024:  # sparse keys: Arrow's hash grouping
        return _usage_partial_arrow(rated, late.astype(bool))
    slot = ((sub * n_svc + svc) * 2 + late) * n_cur + cur
    col = rated.column
    count, billed, allowance, cost, account, mixed = _accumulate(
        slot, acc, np.asarray(col("billed_units").to_numpy(), np.int64),
        np.asarray(col("allowance_units").to_numpy(), np.int64),
        np.asarray(col("cost").to_numpy(), np.int64), slots,
    )  # fmt: skip
    if mixed:  # a subscription under two accounts: group by both
        return _usage_partial_arrow(rated, late.astype(bool))
    used = np.flatnonzero(count)
    rest, cur_code = np.divmod(used, n_cur)
    rest, late_code = np.divmod(rest, 2)
    sub_code, svc_code = np.divmod(rest, n_svc)
    return pa.table(
        [acc_ids.take(pa.array(account[used])), sub_ids.take(pa.array(sub_code)),
         services.take(pa.array(svc_code)).cast(pa.string()), pa.array(late_code == 1),
         currencies.take(pa.array(cur_code)).cast(pa.string()),
         pa.array(billed[used]), pa.array(allowance[used]), pa.array(cost[used]),
         pa.array(count[used])],
        schema=USAGE_PARTIAL_SCHEMA,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _accumulate(
    slot: np.ndarray,
    account: np.ndarray,
    billed: np.ndarray,
    allowance: np.ndarray,
    cost: np.ndarray,
    slots: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Exact int64 sums per slot and each slot's account code, in one pass; the flag says
    a slot saw two accounts."""
    count = np.zeros(slots, np.int64)
    b = np.zeros(slots, np.int64)
    a = np.zeros(slots, np.int64)
    c = np.zeros(slots, np.int64)
    acc = np.zeros(slots, np.int64)
    mixed = False
    for i in range(slot.shape[0]):
        s = slot[i]
        if count[s] and acc[s] != account[i]:
            mixed = True
        count[s] += 1
        b[s] += billed[i]
        a[s] += allowance[i]
        c[s] += cost[i]
        acc[s] = account[i]
    return count, b, a, c, acc, mixed


def _usage_partial_arrow(rated: pa.Table, late: np.ndarray) -> pa.Table:
    table = decode_labels(
        rated.select(["account_id", "subscription_id", "service", "currency", "billed_units",
                      "allowance_units", "cost", "record_id"])
    ).append_column("late", pa.array(late))  # fmt: skip
    g = table.group_by(_KEYS, use_threads=False).aggregate(
        [("billed_units", "sum"), ("allowance_units", "sum"), ("cost", "sum"),
         ("record_id", "count")]
    )  # fmt: skip
    return pa.table(
        [g[k] for k in _KEYS]
        + [g["billed_units_sum"], g["allowance_units_sum"], g["cost_sum"], g["record_id_count"]],
        schema=USAGE_PARTIAL_SCHEMA,
    )


def combine_usage_partials(*tables: pa.Table) -> pa.Table:
    """Sum partial tables of :func:`usage_partial` per key (any grouping, any order)."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return USAGE_PARTIAL_SCHEMA.empty_table()
    if len(parts) == 1:
        return parts[0]
    g = (
        pa.concat_tables(parts)
        .group_by(_KEYS, use_threads=False)
        .aggregate([(c, "sum") for c in _SUMS])
    )
    return pa.table([g[k] for k in _KEYS] + [g[f"{c}_sum"] for c in _SUMS],
                    schema=USAGE_PARTIAL_SCHEMA)  # fmt: skip


_SERVICES = ("voice", "sms", "data")
#: Dense sums beyond this many slots (32 bytes each) go through per-chunk tables instead.
_DENSE_SLOTS = 8 << 20


def _known_codes(column: pa.ChunkedArray | pa.Array, names: Sequence[str]) -> np.ndarray:
    """Each row's position in ``names`` (-1 if absent), through the column's distinct values."""
    codes, values = _codes(column)
    known = pc.index_in(values.cast(pa.string()), value_set=pa.array(list(names)))
    out: np.ndarray = np.asarray(pc.fill_null(known, -1).to_numpy(zero_copy_only=False))
    picked: np.ndarray = out.astype(np.int64)[codes]
    return picked


class UsageAccumulator:
    """A task's usage sums in dense arrays over its subscriptions, added chunk by chunk.

    Slots are (subscription, service, late, currency); one pass of a Numba loop per chunk
    adds to them, so no per-chunk table is grouped and combined. Rows it has no slot for
    (a service or currency outside the plan's) go through :func:`usage_partial`.
    """

    def __init__(self, sub_ids: np.ndarray, sub_accounts: np.ndarray, currencies: list[str],
                 period_start_us: int) -> None:  # fmt: skip
        self.sub_ids = np.asarray(sub_ids, np.int64)
        self.sub_accounts = np.asarray(sub_accounts, np.int64)
        self.currencies = list(currencies) or [""]
        self.start = period_start_us
        slots = len(self.sub_ids) * len(_SERVICES) * 2 * len(self.currencies)
        self.dense = slots <= _DENSE_SLOTS
        self.sums = np.zeros((slots if self.dense else 0, 4), np.int64)  # a slot: one line
        # subscription id -> position: a direct table when the ids are dense (they are
        # numbered by a sequence), else a binary search
        self.base = int(self.sub_ids[0]) if len(self.sub_ids) else 0
        span = int(self.sub_ids[-1]) - self.base + 1 if len(self.sub_ids) else 0
        direct = 0 < span <= 8 * len(self.sub_ids) + 1024
        self.position = np.full(span if direct else 0, -1, np.int64)
        if direct:
            self.position[self.sub_ids - self.base] = np.arange(len(self.sub_ids))
        self.extra: list[pa.Table] = []

    def add(self, rated: pa.Table) -> None:
        if rated.num_rows == 0:
            return
        if not self.dense:
            self.extra = [combine_usage_partials(*self.extra, usage_partial(rated, self.start))]
            return
        col = rated.column
        start = np.asarray(col("start_time").cast(pa.int64()).to_numpy(), np.int64)
        missed = _add_dense(
            self.sums, self.sub_ids, self.position, self.base,
            np.asarray(col("subscription_id").to_numpy(), np.int64),
            _known_codes(col("service"), _SERVICES), (start < self.start).astype(np.int64),
            _known_codes(col("currency"), self.currencies),
            np.asarray(col("billed_units").to_numpy(), np.int64),
            np.asarray(col("allowance_units").to_numpy(), np.int64),
            np.asarray(col("cost").to_numpy(), np.int64), len(self.currencies),
        )  # fmt: skip
        if missed.any():
            rest = usage_partial(rated.filter(pa.array(missed)), self.start)
            self.extra = [combine_usage_partials(*self.extra, rest)]

    def table(self) -> pa.Table:
        """The sums as a ``USAGE_PARTIAL_SCHEMA`` table (slots with records only)."""
        parts = list(self.extra)
        if self.dense and self.sums.shape[0]:
            used = np.flatnonzero(self.sums[:, 3])
            n_cur = len(self.currencies)
            rest, cur = np.divmod(used, n_cur)
            rest, late = np.divmod(rest, 2)
            sub, svc = np.divmod(rest, len(_SERVICES))
            parts.append(pa.table(
                [pa.array(self.sub_accounts[sub]), pa.array(self.sub_ids[sub]),
                 pa.array(_SERVICES).take(pa.array(svc)), pa.array(late == 1),
                 pa.array(self.currencies).take(pa.array(cur)), pa.array(self.sums[used, 0]),
                 pa.array(self.sums[used, 1]), pa.array(self.sums[used, 2]),
                 pa.array(self.sums[used, 3])],
                schema=USAGE_PARTIAL_SCHEMA,
            ))  # fmt: skip
        return combine_usage_partials(*parts)


@njit(cache=True, nogil=True)
def _add_dense(
    sums: np.ndarray,
    sub_ids: np.ndarray,
    position: np.ndarray,
    base: int,
    sub: np.ndarray,
    svc: np.ndarray,
    late: np.ndarray,
    cur: np.ndarray,
    billed: np.ndarray,
    allowance: np.ndarray,
    cost: np.ndarray,
    n_cur: int,
) -> np.ndarray:
    """Add each row to its slot (sums: billed, allowance, cost, count); returns the rows
    without one."""
    missed = np.zeros(sub.shape[0], np.bool_)
    n = sub_ids.shape[0]
    span = position.shape[0]
    for i in range(sub.shape[0]):
        if span:
            k = sub[i] - base
            p = position[k] if 0 <= k < span else -1
        else:
            p = np.searchsorted(sub_ids, sub[i])
            if p >= n or sub_ids[p] != sub[i]:
                p = -1
        if p < 0 or svc[i] < 0 or cur[i] < 0:
            missed[i] = True
            continue
        s = ((p * 3 + svc[i]) * 2 + late[i]) * n_cur + cur[i]
        sums[s, 0] += billed[i]
        sums[s, 1] += allowance[i]
        sums[s, 2] += cost[i]
        sums[s, 3] += 1
    return missed


def in_period_quantities(rated: pa.Table, plan: RatingPlan, period_start_us: int) -> pa.Table:
    """Period-pricing quantities of the rows that started in the period (late usage is
    priced with its own period, never moved into another period's tiers)."""
    if rated.num_rows == 0 or not any(t.period_pricing for t in plan.tariffs.values()):
        return QUANTITY_SCHEMA.empty_table()
    start = rated.schema.field("start_time").type
    in_period = rated.filter(
        pc.greater_equal(rated.column("start_time"),
                         pa.scalar(period_start_us, pa.int64()).cast(start))
    )  # fmt: skip
    return period_quantities(in_period, plan) if in_period.num_rows else \
        QUANTITY_SCHEMA.empty_table()  # fmt: skip


@dataclass(frozen=True)
class RatePartial:
    """What a rating partition leaves for the bills: sums and counts, no records."""

    usage: pa.Table = field(default_factory=USAGE_PARTIAL_SCHEMA.empty_table)
    quantities: pa.Table = field(default_factory=QUANTITY_SCHEMA.empty_table)
    rated: int = 0
    suspense: int = 0
    suspense_by_reason: dict[str, int] = field(default_factory=dict)


def combine_rate_partials(*parts: RatePartial) -> RatePartial:
    """Associative combine of :class:`RatePartial` values."""
    reasons: Counter[str] = Counter()
    for p in parts:
        reasons.update(p.suspense_by_reason)
    return RatePartial(
        combine_usage_partials(*(p.usage for p in parts)),
        combine_quantities(*(p.quantities for p in parts)) if parts else
        QUANTITY_SCHEMA.empty_table(),
        sum(p.rated for p in parts),
        sum(p.suspense for p in parts),
        dict(sorted(reasons.items())),
    )  # fmt: skip
