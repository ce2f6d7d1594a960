"""SLA credits from assurance: outage time of a product's objects -> a credit line.

Outage of a product in a period is the union of these intervals, clipped to the period
and to the product's own active time:

- service-affecting alarms on the product itself (``subscription:<product id>``), from
  raised to cleared (still open: to the period's end);
- service-affecting alarms on trouble tickets naming the product's customer (assurance
  links exporter and interface alarms to the customers whose traffic they carried);
- network-fault and service-problem tickets naming the customer with no alarm linked,
  from created to resolved (or closed; still open: the period's end); cancelled ones not.

Overlapping intervals are merged, so an outage seen by an alarm and its ticket counts
once. Availability is ``(active - outage) / active``; when it falls below a tier of the
offering's SLA (:mod:`sla_terms`), the billing run adds a credit line of that tier's
share of the product's recurring fee of the period (rounded half-even to the micro-unit),
with the availability and the outage minutes in its text. Compared in integers, exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.charges import ProductCharges
from bss.billing.lines import LINE_SCHEMA
from bss.billing.money import mul_ratio_half_even
from bss.billing.period import Period
from bss.db import arrow_query

__all__ = [
    "SOURCE_SLA",
    "ProductOutage",
    "merge_intervals",
    "product_outages",
    "sla_credit_lines",
    "with_sla_credits",
]

#: Bill order of SLA credit lines: after every line of lines.py's sources (0-3).
SOURCE_SLA = 4
_MINUTE_US = 60_000_000

_PRODUCTS = """
SELECT p.id, p.account_id, p.offering_id, o.name AS offering, c.id AS customer_id,
       greatest(epoch_us(p.start_date), $start) AS lo,
       least(coalesce(epoch_us(p.termination_date), $end), $end) AS hi
FROM product p
JOIN offering_sla s ON s.offering_id = p.offering_id
JOIN product_offering o ON o.id = p.offering_id
JOIN billing_account a ON a.id = p.account_id
JOIN customer c ON c.id = a.customer_id
WHERE p.start_date < $end_ts
  AND (p.termination_date IS NULL OR p.termination_date > $start_ts)
"""

_INTERVALS = """
WITH products AS (SELECT * FROM _sla_products),
alarm_windows AS (
    SELECT id, alarmed_object, epoch_us(raised_time) AS lo,
           coalesce(epoch_us(cleared_time), $end) AS hi
    FROM alarm WHERE service_affecting AND raised_time < $end_ts
      AND (cleared_time IS NULL OR cleared_time > $start_ts)
)
SELECT p.id AS product_id, w.lo, w.hi FROM products p
JOIN alarm_windows w ON w.alarmed_object = 'subscription:' || p.id
UNION ALL
SELECT p.id, w.lo, w.hi FROM products p
JOIN ticket_customer tc ON tc.customer_id = p.customer_id
JOIN ticket_alarm ta ON ta.ticket_id = tc.ticket_id
JOIN alarm_windows w ON w.id = ta.alarm_id
UNION ALL
SELECT p.id, epoch_us(t.created_at),
       coalesce(epoch_us(coalesce(t.resolved_at, t.closed_at)), $end)
FROM products p
JOIN ticket_customer tc ON tc.customer_id = p.customer_id
JOIN trouble_ticket t ON t.id = tc.ticket_id
WHERE t.ticket_type IN ('networkFault', 'serviceProblem') AND t.status <> 'cancelled'
  AND NOT EXISTS (SELECT 1 FROM ticket_alarm ta WHERE ta.ticket_id = t.id)
"""


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open intervals merged where they overlap or touch; empty ones dropped."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(i for i in intervals if i[1] > i[0]):
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


@dataclass(frozen=True)
class ProductOutage:
    product_id: int
    account_id: int
    offering_id: str
    offering: str  # its name, for the line's text
    active_us: int  # the product's time in the period
    outage_us: int  # merged outage within it

    @property
    def outage_minutes(self) -> int:
        """Whole minutes, rounded half-even."""
        return mul_ratio_half_even(self.outage_us, 1, _MINUTE_US)

    def below(self, percent: Decimal) -> bool:
        """Availability strictly below ``percent`` (exact: integers only)."""
        micro_pct = int(percent * 1_000_000)
        return (self.active_us - self.outage_us) * 100_000_000 < micro_pct * self.active_us

    def availability_text(self) -> str:
        """Availability in percent, three decimals, rounded down (never overstated)."""
        thousandths = (self.active_us - self.outage_us) * 100_000 // self.active_us
        return f"{thousandths // 1000}.{thousandths % 1000:03d}"


def product_outages(conn: duckdb.DuckDBPyConnection, period: Period) -> list[ProductOutage]:
    """Every product on an SLA offering active in the period, with its merged outage."""
    args = {
        "start": period.start_us(),
        "end": period.end_us(),
        "start_ts": period.start,
        "end_ts": period.end,
    }
    products = arrow_query(conn, _PRODUCTS, args)
    if products.num_rows == 0:
        return []
    conn.register("_sla_products", products)
    try:
        rows = conn.execute(_INTERVALS, {k: args[k] for k in ("end", "start_ts", "end_ts")}
                            ).fetchall()  # fmt: skip
    finally:
        conn.unregister("_sla_products")
    spans: dict[int, list[tuple[int, int]]] = {}
    for product_id, lo, hi in rows:
        spans.setdefault(int(product_id), []).append((int(lo), int(hi)))
    out = []
    for pid, account_id, offering_id, offering, _, lo, hi in zip(
        *products.to_pydict().values(), strict=True
    ):
        if hi <= lo:
            continue
        clipped = [(max(a, lo), min(b, hi)) for a, b in spans.get(int(pid), [])]
        outage = sum(b - a for a, b in merge_intervals(clipped))
        out.append(ProductOutage(int(pid), int(account_id), offering_id, offering, hi - lo, outage))
    return sorted(out, key=lambda o: (o.account_id, o.product_id))


def _tiers(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Decimal, Decimal]]]:
    """Offering -> its tiers (below, credit), lowest below first (the most severe)."""
    tiers: dict[str, list[tuple[Decimal, Decimal]]] = {}
    for offering_id, below, credit in conn.execute(
        "SELECT offering_id, below, credit FROM offering_sla_tier ORDER BY offering_id, below"
    ).fetchall():
        tiers.setdefault(offering_id, []).append((Decimal(below), Decimal(credit)))
    return tiers


def _percent_text(value: Decimal) -> str:
    return f"{value.normalize():f}"


def sla_credit_lines(
    conn: duckdb.DuckDBPyConnection, period: Period, charges: pa.Table
) -> pa.Table:
    """The period's SLA credit lines (``LINE_SCHEMA``) for the products whose recurring
    lines are in ``charges`` (the pass's charge lines): one per product below a tier."""
    outages = [o for o in product_outages(conn, period) if o.outage_us > 0]
    if not outages:
        return LINE_SCHEMA.empty_table()
    recurring = charges.filter(pc.equal(charges.column("line_type"), "recurring"))
    fees: dict[int, int] = {}
    for pid, micros in zip(recurring.column("product_id").to_pylist(),
                           recurring.column("micros").to_pylist(), strict=True):  # fmt: skip
        fees[pid] = fees.get(pid, 0) + micros
    tiers = _tiers(conn)
    rows: list[tuple[int, int, str, int, int]] = []
    for o in outages:
        fee = fees.get(o.product_id, 0)
        hit = next(((b, c) for b, c in tiers.get(o.offering_id, []) if o.below(b)), None)
        if hit is None or fee <= 0:
            continue
        below, credit = hit
        amount = mul_ratio_half_even(fee, int(credit * 1_000_000), 100_000_000)
        text = (f"SLA credit {o.offering}: availability {o.availability_text()} % below "
                f"{_percent_text(below)} % (outage {o.outage_minutes} min), "
                f"{_percent_text(credit)} % of the recurring fee")  # fmt: skip
        rows.append((o.account_id, o.product_id, text, o.outage_minutes, -amount))
    n = len(rows)
    if not n:
        return LINE_SCHEMA.empty_table()
    account, product, texts, minutes, micros = (list(c) for c in zip(*rows, strict=True))
    return pa.table(
        [pa.array(account, pa.int64()), pa.array(np.full(n, SOURCE_SLA, np.int8)),
         pa.array(product, pa.int64()), pa.repeat(pa.scalar("credit"), n),
         pa.array(product, pa.int64()), pa.array(texts, pa.string()),
         pa.array(minutes, pa.int64()), pa.repeat(pa.scalar("min"), n),
         pa.array(micros, pa.int64())],
        schema=LINE_SCHEMA,
    )  # fmt: skip


def with_sla_credits(
    conn: duckdb.DuckDBPyConnection, period: Period, charges: ProductCharges
) -> ProductCharges:
    """The pass's charges with their SLA credit lines added (billing run's hook)."""
    credits = sla_credit_lines(conn, period, charges.lines)
    if credits.num_rows == 0:
        return charges
    return replace(charges, lines=pa.concat_tables([charges.lines, credits]))
