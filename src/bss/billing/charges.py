"""Non-usage charges of a billing period: prorated recurring fees, discounts, one-time fees.

Computed for every account at once from one query and whole columns (no Python object
per product), so a run over a million accounts costs one scan and a few array passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.lines import LINE_SCHEMA, SOURCE_CHARGES
from bss.billing.money import mul_ratio_half_even_array
from bss.billing.period import Period
from bss.db import arrow_query

__all__ = ["ProductCharges", "days_active", "product_charges"]

_DAY_US = 86_400_000_000
_NONE = np.iinfo(np.int64).max  # an open end (no termination, no valid_to)


def days_active(start: datetime, end: datetime | None, period: Period) -> int:
    """Calendar days (UTC) of the period on which something is active at any moment."""
    lo = max(start, period.start)
    hi = period.end if end is None else min(end, period.end)
    if hi <= lo:
        return 0
    return ((hi - timedelta(microseconds=1)).date() - lo.date()).days + 1


def _days_active_us(lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64],
                    period: Period) -> npt.NDArray[np.int64]:  # fmt: skip
    """:func:`days_active` over microsecond columns (``_NONE`` = open end)."""
    lo = np.maximum(lo, period.start_us())
    hi = np.minimum(hi, period.end_us())
    days = np.floor_divide(hi - 1, _DAY_US) - np.floor_divide(lo, _DAY_US) + 1
    return np.where(hi > lo, days, 0)


_QUERY = """
SELECT p.account_id, a.currency, p.id AS product_id,
       epoch_us(p.start_date) AS start_us, epoch_us(p.termination_date) AS end_us,
       o.name AS offering, pr.id AS price_id, pr.name AS price_name, pr.price_type AS kind,
       CAST(pr.amount * 1000000 AS BIGINT) AS amount,
       CAST(pr.percentage * 1000000 AS BIGINT) AS ppm,
       pr.currency AS price_currency,
       epoch_us(pr.valid_from) AS valid_from_us, epoch_us(pr.valid_to) AS valid_to_us,
       bo.product_id IS NOT NULL AS one_time_billed
FROM product p
JOIN billing_account a ON a.id = p.account_id
JOIN product_offering o ON o.id = p.offering_id
JOIN product_offering_price pr ON pr.offering_id = p.offering_id AND pr.price_type <> 'usage'
LEFT JOIN billed_one_time bo ON bo.product_id = p.id AND bo.price_id = pr.id
WHERE p.start_date < $end AND (p.termination_date IS NULL OR p.termination_date > $start)
  AND pr.valid_from < $end AND (pr.valid_to IS NULL OR pr.valid_to > $start)
ORDER BY p.account_id, p.id, pr.price_type DESC, pr.id
"""


@dataclass(frozen=True)
class ProductCharges:
    """The period's recurring, one-time and discount lines (``LINE_SCHEMA``), the one-time
    fees they bill, and the prices whose currency is not their account's."""

    lines: pa.Table
    one_time: pa.Table  # account_id, product_id, price_id
    mismatches: pa.Table  # account_id, product_id, price_id, price_currency, currency


def _i64(table: pa.Table, name: str, null: int = 0) -> npt.NDArray[np.int64]:
    return np.asarray(pc.fill_null(table.column(name), null).to_numpy(), dtype=np.int64)


def product_charges(conn: duckdb.DuckDBPyConnection, period: Period) -> ProductCharges:
    """Per account, its recurring, one-time and discount lines, in product order.

    Recurring fees prorate by :func:`days_active` within the overlap of the product and
    the price validity, ``amount * days / days_in_period`` rounded half-even. Discounts
    are a share of the product's recurring total, rounded half-even, as a negative
    ``credit`` line. One-time fees are billed once per product and price.
    """
    rows = arrow_query(conn, _QUERY, {"start": period.start, "end": period.end})
    kind = rows.column("kind")
    is_rec = np.asarray(pc.equal(kind, "recurring").to_numpy(zero_copy_only=False))
    is_one = np.asarray(pc.equal(kind, "oneTime").to_numpy(zero_copy_only=False))
    is_disc = np.asarray(pc.equal(kind, "discount").to_numpy(zero_copy_only=False))
    own = pc.equal(rows.column("price_currency"), rows.column("currency"))
    bad = (is_rec | is_one) & ~np.asarray(pc.fill_null(own, False).to_numpy(zero_copy_only=False))
    mismatches = rows.filter(pa.array(bad)).select(
        ["account_id", "product_id", "price_id", "price_currency", "currency"]
    )
    amount = _i64(rows, "amount")
    lo = np.maximum(_i64(rows, "start_us"), _i64(rows, "valid_from_us"))
    hi = np.minimum(_i64(rows, "end_us", _NONE), _i64(rows, "valid_to_us", _NONE))
    days = np.where(is_rec, _days_active_us(lo, hi, period), 0)
    recurring = np.where(days > 0, mul_ratio_half_even_array(amount, days, period.days), 0)
    # a discount is a share of its product's recurring total (products are consecutive)
    product = _i64(rows, "product_id")
    starts = np.flatnonzero(np.r_[True, product[1:] != product[:-1]]) if len(product) else \
        np.zeros(0, np.int64)  # fmt: skip
    totals = np.add.reduceat(recurring, starts) if len(product) else np.zeros(0, np.int64)
    group_total = np.repeat(totals, np.diff(np.r_[starts, len(product)]))
    credit = np.where(
        is_disc, mul_ratio_half_even_array(group_total, _i64(rows, "ppm"), 1_000_000), 0
    )
    one_time = is_one & ~np.asarray(rows.column("one_time_billed").to_numpy(zero_copy_only=False))
    keep = (is_rec & (days > 0)) | one_time | (is_disc & (credit != 0))
    label = pc.binary_join_element_wise(rows.column("offering"), rows.column("price_name"), ": ")
    partial = is_rec & (days != period.days)
    label = pc.if_else(
        pa.array(partial),
        pc.binary_join_element_wise(
            label, " (", pc.cast(pa.array(days), pa.string()), f"/{period.days} days)", ""
        ),
        label,
    )
    line_type = np.where(is_rec, "recurring", np.where(is_one, "oneTime", "credit"))
    micros = np.where(is_rec, recurring, np.where(is_one, amount, -credit))
    sel = pa.array(np.flatnonzero(keep))
    n = len(sel)
    lines = pa.table(
        {
            "account_id": rows.column("account_id").take(sel),
            "source": pa.array(np.full(n, SOURCE_CHARGES, np.int8)),
            "ord": sel.cast(pa.int64()),
            "line_type": pa.array(line_type[keep], pa.string()),
            "product_id": rows.column("product_id").take(sel),
            "description": label.take(sel),
            "quantity": pa.array(np.where(is_rec, days, 1)[keep], pa.int64()),
            "unit": pa.array(np.where(is_rec, "day", "")[keep], pa.string()),
            "micros": pa.array(micros[keep], pa.int64()),
        },
        schema=LINE_SCHEMA,
    )
    billed_now = pa.array(np.flatnonzero(one_time))
    return ProductCharges(
        lines, rows.select(["account_id", "product_id", "price_id"]).take(billed_now), mismatches
    )
