"""Non-usage charges of a billing period: prorated recurring fees, discounts, one-time fees.

Computed for every account at once from one query, so a run over 100k accounts costs one
scan rather than a query per product.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import groupby

import duckdb

from bss.billing.money import mul_ratio_half_even, to_micros
from bss.billing.period import Period
from bss.errors import BillingError

__all__ = ["Line", "days_active", "product_charges"]


@dataclass(frozen=True)
class Line:
    """One bill line before it is numbered; ``micros`` is the exact amount."""

    line_type: str
    product_id: int | None
    description: str
    quantity: int
    unit: str
    micros: int


def days_active(start: datetime, end: datetime | None, period: Period) -> int:
    """Calendar days (UTC) of the period on which something is active at any moment."""
    lo = max(start, period.start)
    hi = period.end if end is None else min(end, period.end)
    if hi <= lo:
        return 0
    return ((hi - timedelta(microseconds=1)).date() - lo.date()).days + 1


_QUERY = """
SELECT p.account_id, a.currency, p.id, p.start_date, p.termination_date, o.name,
       pr.id, pr.name, pr.price_type, pr.amount, pr.percentage, pr.currency,
       pr.valid_from, pr.valid_to, bo.product_id IS NOT NULL AS one_time_billed
FROM product p
JOIN billing_account a ON a.id = p.account_id
JOIN product_offering o ON o.id = p.offering_id
JOIN product_offering_price pr ON pr.offering_id = p.offering_id AND pr.price_type <> 'usage'
LEFT JOIN billed_one_time bo ON bo.product_id = p.id AND bo.price_id = pr.id
WHERE p.start_date < $end AND (p.termination_date IS NULL OR p.termination_date > $start)
  AND pr.valid_from < $end AND (pr.valid_to IS NULL OR pr.valid_to > $start)
ORDER BY p.account_id, p.id, pr.price_type DESC, pr.id
"""


def product_charges(
    conn: duckdb.DuckDBPyConnection, period: Period
) -> tuple[dict[int, list[Line]], list[tuple[int, int, str]]]:
    """Per account, its recurring, one-time and discount lines; and the one-time fees billed
    as (account, product, price).

    Recurring fees prorate by :func:`days_active` within the overlap of the product and
    the price validity, ``amount * days / days_in_period`` rounded half-even. Discounts
    are a share of the product's recurring total, rounded half-even, as a negative
    ``credit`` line. One-time fees are billed once per product and price.
    """
    rows = conn.execute(_QUERY, {"start": period.start, "end": period.end}).fetchall()
    lines: dict[int, list[Line]] = defaultdict(list)
    one_time: list[tuple[int, int, str]] = []
    for (account_id, product_id), group in groupby(rows, key=lambda r: (r[0], r[2])):
        recurring_total = 0
        out = lines[account_id]
        for row in group:
            (_, currency, _, start, end, offering, price_id, name, kind, amount, share,
             price_currency, valid_from, valid_to, billed) = row  # fmt: skip
            label = f"{offering}: {name}"
            if kind in ("recurring", "oneTime") and price_currency != currency:
                raise BillingError(
                    f"price {price_id} is in {price_currency}, account {account_id} bills in "
                    f"{currency}"
                )
            if kind == "recurring":
                lo = max(start, valid_from)
                hi = end if valid_to is None else valid_to if end is None else min(end, valid_to)
                days = days_active(lo, hi, period)
                if days == 0:
                    continue
                micros = mul_ratio_half_even(to_micros(amount), days, period.days)
                recurring_total += micros
                if days != period.days:
                    label += f" ({days}/{period.days} days)"
                out.append(Line("recurring", product_id, label, days, "day", micros))
            elif kind == "oneTime" and not billed:
                out.append(Line("oneTime", product_id, label, 1, "", to_micros(amount)))
                one_time.append((account_id, product_id, price_id))
            elif kind == "discount":
                ppm = to_micros(Decimal(share))
                credit = mul_ratio_half_even(recurring_total, ppm, 1_000_000)
                if credit:
                    out.append(Line("credit", product_id, label, 1, "", -credit))
    return lines, one_time
