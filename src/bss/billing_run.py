"""Billing runs: rate a period's usage, add recurring, one-time, discount and tax, write bills.

A run is idempotent and atomic. Rated and suspense Parquet files get names derived from
the period, so a rerun replaces them; every database write of a run (bills, lines, the
billed-usage ledger, the run record) happens in one DuckDB transaction, so a run killed
at any moment leaves either nothing or everything. A period that has a run record is
final: running it again changes nothing. Usage that arrives after its period was billed
is billed on the next period's bill as a separately described line, never by rewriting
a final bill.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collectors.workspace import WorkspacePaths

from .bill_export import bills_for_period, bills_sha256, export_bills
from .db import transaction, utc_now
from .errors import BillingError
from .money import (
    from_micros,
    micros_to_decimal_array,
    mul_ratio_half_even,
    round_to_minor,
    to_micros,
)
from .period import Period, parse_period
from .rating_step import RatingOutcome, rate_period
from .subscriptions import subscription_table

__all__ = ["BillingRunResult", "run_billing"]

_UNITS = {"voice": "s", "sms": "event", "data": "B"}


@dataclass(frozen=True)
class BillingRunResult:
    period: str
    accounts: int
    total: Decimal
    currency_totals: dict[str, str]
    changed: bool
    bills_sha256: str
    rated: int = 0
    suspense: int = 0
    suspense_by_reason: dict[str, int] = field(default_factory=dict)
    exports: Path | None = None


@dataclass
class _Line:
    line_type: str
    product_id: int | None
    description: str
    quantity: int
    unit: str
    micros: int


def _days_active(start: datetime, end: datetime | None, period: Period) -> int:
    """Calendar days (UTC) of the period on which the product is active at any moment."""
    lo = max(start, period.start)
    hi = period.end if end is None else min(end, period.end)
    if hi <= lo:
        return 0
    first = lo.date()
    last = (hi - timedelta(microseconds=1)).date()
    return (last - first).days + 1


def _product_charges(
    conn: duckdb.DuckDBPyConnection, account_id: int, currency: str, period: Period
) -> tuple[list[_Line], list[tuple[int, str]]]:
    """Recurring (prorated), discount and not yet billed one-time charges of an account."""
    lines: list[_Line] = []
    one_time: list[tuple[int, str]] = []
    products = conn.execute(
        "SELECT p.id, p.start_date, p.termination_date, o.name FROM product p "
        "JOIN product_offering o ON o.id = p.offering_id WHERE p.account_id = ? "
        "AND p.start_date < ? AND (p.termination_date IS NULL OR p.termination_date > ?) "
        "ORDER BY p.id",
        [account_id, period.end, period.start],
    ).fetchall()
    for product_id, start, end, offering_name in products:
        prices = conn.execute(
            "SELECT pr.id, pr.name, pr.price_type, pr.amount, pr.percentage, pr.currency, "
            "pr.valid_from, pr.valid_to FROM product_offering_price pr JOIN product p "
            "ON p.offering_id = pr.offering_id WHERE p.id = ? AND pr.valid_from < ? "
            "AND (pr.valid_to IS NULL OR pr.valid_to > ?) ORDER BY pr.price_type, pr.id",
            [product_id, period.end, period.start],
        ).fetchall()
        recurring_total = 0
        discounts = []
        for price_id, name, kind, amount, share, price_currency, valid_from, valid_to in prices:
            if kind in ("recurring", "oneTime") and price_currency != currency:
                raise BillingError(
                    f"price {price_id} is in {price_currency}, account {account_id} bills "
                    f"in {currency}"
                )
            if kind == "recurring":
                lo = max(start, valid_from)
                hi = end if valid_to is None else valid_to if end is None else min(end, valid_to)
                days = _days_active(lo, hi, period)
                if days == 0:
                    continue
                micros = mul_ratio_half_even(to_micros(amount), days, period.days)
                recurring_total += micros
                label = f"{offering_name}: {name}"
                if days != period.days:
                    label += f" ({days}/{period.days} days)"
                lines.append(_Line("recurring", product_id, label, days, "day", micros))
            elif kind == "discount":
                discounts.append((name, Decimal(share)))
            elif kind == "oneTime" and start < period.end:
                billed = conn.execute(
                    "SELECT 1 FROM billed_one_time WHERE product_id = ? AND price_id = ?",
                    [product_id, price_id],
                ).fetchone()
                if billed is None:
                    lines.append(
                        _Line(
                            "oneTime",
                            product_id,
                            f"{offering_name}: {name}",
                            1,
                            "",
                            to_micros(amount),
                        )
                    )
                    one_time.append((product_id, price_id))
        for name, share in discounts:
            ppm = int(share * 1_000_000)
            credit = mul_ratio_half_even(recurring_total, ppm, 1_000_000)
            if credit:
                lines.append(
                    _Line("credit", product_id, f"{offering_name}: {name}", 1, "", -credit)
                )
    return lines, one_time


def _usage_lines(rated: pa.Table, period: Period, labels: dict[int, str]) -> dict[int, list[_Line]]:
    """Per account: one line per subscription and service, late usage on its own line."""
    if rated.num_rows == 0:
        return {}
    start = rated.schema.field("start_time").type
    late = pc.less(rated.column("start_time"), pa.scalar(period.start, start))
    grouped = (
        rated.append_column("late", late)
        .group_by(["account_id", "subscription_id", "service", "late"])
        .aggregate(
            [("billed_units", "sum"), ("allowance_units", "sum"), ("cost", "sum"),
             ("record_id", "count")]
        )
        .sort_by([("account_id", "ascending"), ("subscription_id", "ascending"),
                  ("service", "ascending"), ("late", "ascending")])
    )  # fmt: skip
    out: dict[int, list[_Line]] = defaultdict(list)
    for row in grouped.to_pylist():
        unit = _UNITS.get(row["service"], "")
        notes = [f"{row['record_id_count']} records"]
        if row["allowance_units_sum"]:
            notes.append(f"{row['allowance_units_sum']} {unit} from allowance")
        if row["late"]:
            notes.append("usage from earlier periods")
        what = (
            f"{row['service']} usage {labels.get(row['subscription_id'], '')}".rstrip()
            + f" ({', '.join(notes)})"
        )
        out[row["account_id"]].append(
            _Line("usage", row["subscription_id"], what, row["billed_units_sum"], unit,
                  row["cost_sum"])
        )  # fmt: skip
    return out


def _product_labels(conn: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Product id -> its service identifiers, for line descriptions."""
    rows = conn.execute(
        "SELECT product_id, string_agg(key, ' ' ORDER BY key_type, key) FROM service_identifier "
        "GROUP BY product_id"
    ).fetchall()
    return {int(pid): text for pid, text in rows}


def _bill_no(period: Period, account_id: int) -> str:
    """Deterministic, so a rerun of an interrupted run writes the same numbers."""
    return f"{_bill_no_prefix(period)}{account_id:06d}"


def _bill_no_prefix(period: Period) -> str:
    return f"B{period.name.replace('-', '')}-"


def _insert_bill(
    conn: duckdb.DuckDBPyConnection, account: tuple, period: Period, lines: list[_Line]
) -> None:
    account_id, _, currency, terms, rate = account
    bill_no = _bill_no(period, account_id)
    excl = sum(line.micros for line in lines)
    rate_ppm = to_micros(rate)
    tax = mul_ratio_half_even(excl, rate_ppm, 1_000_000)
    incl = excl + tax
    conn.execute(
        "INSERT INTO bill VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'final')",
        [bill_no, account_id, period.name, period.start, period.end, period.bill_date,
         period.bill_date + timedelta(days=terms), currency, str(from_micros(excl)), str(rate),
         str(from_micros(tax)), str(from_micros(incl)),
         str(from_micros(round_to_minor(incl, currency)))],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO bill_line VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [[bill_no, n, ln.line_type, ln.product_id, ln.description, ln.quantity, ln.unit,
          str(from_micros(ln.micros))] for n, ln in enumerate(lines, 1)],
    )  # fmt: skip


def _summary(
    conn: duckdb.DuckDBPyConnection,
    period: str,
    changed: bool,
    outcome: RatingOutcome | None,
    exports: Path | None,
) -> BillingRunResult:
    bills = bills_for_period(conn, period)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for bill in bills:
        totals[bill["currency"]] += Decimal(bill["amount_incl_tax"])
    return BillingRunResult(
        period=period,
        accounts=len(bills),
        total=sum(totals.values(), Decimal(0)),
        currency_totals={k: str(v) for k, v in sorted(totals.items())},
        changed=changed,
        bills_sha256=bills_sha256(conn, period),
        rated=outcome.rated.num_rows if outcome else 0,
        suspense=outcome.suspense.num_rows if outcome else 0,
        suspense_by_reason=outcome.suspense_by_reason() if outcome else {},
        exports=exports,
    )


def run_billing(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    period_name: str,
    *,
    now: datetime | None = None,
    export: bool = True,
) -> BillingRunResult:
    """Bill ``period_name`` (``YYYY-MM``) for every account with charges or usage."""
    period = parse_period(period_name)
    if period.end > (now or utc_now()):
        raise BillingError(f"period {period.name} has not ended (it ends {period.end:%Y-%m-%d})")
    exports = workspace.reports / "bills" / period.name
    done = conn.execute("SELECT 1 FROM billing_run WHERE period = ?", [period.name]).fetchone()
    if done is not None:
        if export and not exports.exists():
            export_bills(conn, period.name, exports)
        return _summary(conn, period.name, False, None, exports if export else None)

    subscriptions = subscription_table(conn, period.end)
    billed = conn.sql("SELECT record_id FROM billed_usage").to_arrow_table()
    outcome = rate_period(workspace, period, subscriptions, billed.column("record_id"))
    accounts = conn.execute(
        "SELECT a.id, a.external_id, a.currency, a.payment_terms_days, t.rate "
        "FROM billing_account a JOIN tax_rate t ON t.jurisdiction = a.tax_jurisdiction "
        "ORDER BY a.id"
    ).fetchall()
    usage = _usage_lines(outcome.rated, period, _product_labels(conn))
    with transaction(conn):
        for account in accounts:
            lines, one_time = _product_charges(conn, account[0], account[2], period)
            lines += usage.get(account[0], [])
            if not lines:
                continue
            _insert_bill(conn, account, period, lines)
            bill_no = _bill_no(period, account[0])
            for product_id, price_id in one_time:
                conn.execute(
                    "INSERT INTO billed_one_time VALUES (?, ?, ?)", [product_id, price_id, bill_no]
                )
        _record_billed_usage(conn, outcome.rated, period)
        conn.execute(
            "INSERT INTO billing_run VALUES (?, ?, ?, ?, ?, ?)",
            [period.name, utc_now(), len(bills_for_period(conn, period.name)),
             outcome.rated.num_rows, outcome.suspense.num_rows,
             bills_sha256(conn, period.name)],
        )  # fmt: skip
    if export:
        export_bills(conn, period.name, exports)
    return _summary(conn, period.name, True, outcome, exports if export else None)


def _record_billed_usage(conn: duckdb.DuckDBPyConnection, rated: pa.Table, period: Period) -> None:
    if rated.num_rows == 0:
        return
    ledger = pa.table(
        {
            "record_id": rated.column("record_id"),
            "bill_no": pc.binary_join_element_wise(
                _bill_no_prefix(period),
                pc.utf8_lpad(pc.cast(rated.column("account_id"), pa.string()), 6, "0"),
                "",
            ),
            "cost": micros_to_decimal_array(rated.column("cost")),
        }
    )
    conn.register("_billed_ledger", ledger)
    try:
        conn.execute("INSERT INTO billed_usage SELECT record_id, bill_no, cost FROM _billed_ledger")
    finally:
        conn.unregister("_billed_ledger")
