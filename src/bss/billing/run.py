"""Billing runs: rate a period's usage, add recurring, one-time, discount and tax, write bills.

A run is idempotent and atomic. Rated and suspense Parquet files get names derived from
the period, so a rerun replaces them; every database write of a run (bills, lines, the
billed-usage ledger, the run record) happens in one DuckDB transaction, so a run killed
at any moment leaves either nothing or everything. A period that has a run record is
final: running it again changes nothing. Usage that arrives after its period was billed
is billed on the next period's bill as a separately described line, and a tariff corrected
after a period was billed re-rates that period's records and bills the difference on the
next bill (``rerating``) - a final bill is never rewritten.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.charges import Line, product_charges
from bss.billing.export import bills_for_period, export_bills, sha256_of
from bss.billing.money import (
    micros_to_decimal_array,
    mul_ratio_half_even,
    round_to_minor,
    to_micros,
)
from bss.billing.period import Period, parse_period
from bss.billing.rating_step import RatingOutcome, rate_period
from bss.billing.rerating import record_adjustments, rerate_final_periods
from bss.db import arrow_query, transaction, utc_now
from bss.errors import BillingError
from bss.subscriptions import subscription_table
from collectors.workspace import WorkspacePaths
from rating_engine.schemas import decode_labels

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
    adjusted_records: int = 0


def _usage_lines(rated: pa.Table, period: Period, labels: dict[int, str]) -> dict[int, list[Line]]:
    """Per account: one line per subscription and service, late usage on its own line."""
    if rated.num_rows == 0:
        return {}
    start = rated.schema.field("start_time").type
    late = pc.less(rated.column("start_time"), pa.scalar(period.start, start))
    grouped = decode_labels(
        rated.append_column("late", late)
        .group_by(["account_id", "subscription_id", "service", "late"])
        .aggregate(
            [("billed_units", "sum"), ("allowance_units", "sum"), ("cost", "sum"),
             ("record_id", "count")]
        )
    ).sort_by([("account_id", "ascending"), ("subscription_id", "ascending"),
                  ("service", "ascending"), ("late", "ascending")])  # fmt: skip
    out: dict[int, list[Line]] = defaultdict(list)
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
            Line("usage", row["subscription_id"], what, row["billed_units_sum"], unit,
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
    return f"B{period.name.replace('-', '')}-{account_id:06d}"


def _write_bills(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    accounts: list[tuple[int, str, int, Decimal]],
    lines: dict[int, list[Line]],
) -> None:
    """Insert every bill and line of the run in bulk (through Arrow, not row by row)."""
    billed = [(a, cur, terms, rate) for a, cur, terms, rate in accounts if lines.get(a)]
    if not billed:
        return
    bill_nos = [_bill_no(period, a) for a, _, _, _ in billed]
    all_lines = [lines[a] for a, _, _, _ in billed]
    excl = [sum(line.micros for line in mine) for mine in all_lines]
    tax = [
        mul_ratio_half_even(e, to_micros(b[3]), 1_000_000)
        for e, b in zip(excl, billed, strict=True)
    ]
    incl = [e + t for e, t in zip(excl, tax, strict=True)]
    bill_table = pa.table({
        "bill_no": bill_nos,
        "account_id": pa.array([b[0] for b in billed], pa.int64()),
        "currency": [b[1] for b in billed],
        "due_date": pa.array([period.bill_date + timedelta(days=b[2]) for b in billed],
                             pa.date32()),
        "tax_rate": pa.array([b[3] for b in billed], pa.decimal128(9, 6)),
        "excl": micros_to_decimal_array(pa.array(excl, pa.int64())),
        "tax": micros_to_decimal_array(pa.array(tax, pa.int64())),
        "incl": micros_to_decimal_array(pa.array(incl, pa.int64())),
        "due": micros_to_decimal_array(pa.array(
            [round_to_minor(i, b[1]) for i, b in zip(incl, billed, strict=True)], pa.int64())),
    })  # fmt: skip
    flat = [line for mine in all_lines for line in mine]
    line_table = pa.table({
        "bill_no": [no for no, mine in zip(bill_nos, all_lines, strict=True) for _ in mine],
        "line_no": pa.array([n for mine in all_lines for n in range(1, len(mine) + 1)],
                            pa.int32()),
        "line_type": [ln.line_type for ln in flat],
        "product_id": pa.array([ln.product_id for ln in flat], pa.int64()),
        "description": [ln.description for ln in flat],
        "quantity": pa.array([ln.quantity for ln in flat], pa.int64()),
        "unit": [ln.unit for ln in flat],
        "amount": micros_to_decimal_array(pa.array([ln.micros for ln in flat], pa.int64())),
    })  # fmt: skip
    conn.register("_bills", bill_table)
    conn.register("_lines", line_table)
    try:
        conn.execute(
            "INSERT INTO bill SELECT bill_no, account_id, $period, $start, $end, $bill_date, "
            "due_date, currency, excl, tax_rate, tax, incl, due, 'final' FROM _bills",
            {"period": period.name, "start": period.start, "end": period.end,
             "bill_date": period.bill_date},
        )  # fmt: skip
        conn.execute(
            "INSERT INTO bill_line SELECT bill_no, line_no, line_type, product_id, description, "
            "quantity, unit, amount FROM _lines"
        )
    finally:
        conn.unregister("_bills")
        conn.unregister("_lines")


def _summary(
    bills: list[dict[str, Any]],
    period: str,
    changed: bool,
    outcome: RatingOutcome | None,
    exports: Path | None,
    sha256: str | None = None,
    adjusted_records: int = 0,
) -> BillingRunResult:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for bill in bills:
        totals[bill["currency"]] += Decimal(bill["amount_incl_tax"])
    return BillingRunResult(
        period=period,
        accounts=len(bills),
        total=sum(totals.values(), Decimal(0)),
        currency_totals={k: str(v) for k, v in sorted(totals.items())},
        changed=changed,
        bills_sha256=sha256 or sha256_of(bills),
        rated=outcome.rated.num_rows if outcome else 0,
        suspense=outcome.suspense.num_rows if outcome else 0,
        suspense_by_reason=outcome.suspense_by_reason() if outcome else {},
        exports=exports,
        adjusted_records=adjusted_records,
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
        bills = bills_for_period(conn, period.name)
        if export and not exports.exists():
            export_bills(conn, period.name, exports, bills)
        return _summary(bills, period.name, False, None, exports if export else None)

    subscriptions = subscription_table(conn, period.end)
    billed = arrow_query(conn, "SELECT record_id FROM billed_usage")
    outcome = rate_period(workspace, period, subscriptions, billed.column("record_id"))
    accounts = conn.execute(
        "SELECT a.id, a.currency, a.payment_terms_days, t.rate "
        "FROM billing_account a JOIN tax_rate t ON t.jurisdiction = a.tax_jurisdiction "
        "ORDER BY a.id"
    ).fetchall()
    distinct = pc.count_distinct(outcome.rated.column("record_id")).as_py()
    if distinct != outcome.rated.num_rows:
        raise BillingError(
            f"period {period.name}: {outcome.rated.num_rows - distinct} rated records repeat a "
            "record_id; refusing to bill any record twice (check the usage dataset)"
        )
    charges, one_time = product_charges(conn, period)
    adjustments = rerate_final_periods(conn, workspace, period, subscriptions, outcome.plan)
    labels = _product_labels(conn)
    for account_id, usage_lines in _usage_lines(outcome.rated, period, labels).items():
        charges[account_id].extend(usage_lines)
    for row in outcome.period_charges.to_pylist():
        if row["charge"]:
            what = f"{row['service']} {row['mode']} pricing {row['pricing']} "
            what += f"{labels.get(row['subscription_id'], '')}: {row['detail']}"
            charges[row["account_id"]].append(
                Line("usage", row["subscription_id"], what, row["quantity"],
                     _UNITS.get(row["service"], ""), row["charge"])
            )  # fmt: skip
    for account_id, lines in adjustments.lines().items():
        charges[account_id].extend(lines)
    with transaction(conn):
        _write_bills(conn, period, accounts, charges)
        record_adjustments(conn, adjustments, period, outcome.plan)
        for account_id, product_id, price_id in one_time:
            conn.execute(
                "INSERT INTO billed_one_time VALUES (?, ?, ?)",
                [product_id, price_id, _bill_no(period, account_id)],
            )
        _record_billed_usage(conn, outcome.rated, period)
        bills = bills_for_period(conn, period.name)
        digest = sha256_of(bills)
        conn.execute(
            "INSERT INTO billing_run (period, finished_at, bills, rated_records, "
            "suspense_records, bills_sha256) VALUES (?, ?, ?, ?, ?, ?)",
            [period.name, utc_now(), len(bills), outcome.rated.num_rows,
             outcome.suspense.num_rows, digest],
        )  # fmt: skip
    if export:
        export_bills(conn, period.name, exports, bills)
    return _summary(bills, period.name, True, outcome, exports if export else None, digest,
                    adjustments.deltas.num_rows)  # fmt: skip


def _record_billed_usage(conn: duckdb.DuckDBPyConnection, rated: pa.Table, period: Period) -> None:
    if rated.num_rows == 0:
        return
    ledger = pa.table(
        {
            "record_id": rated.column("record_id"),
            "account_id": rated.column("account_id"),
            "cost": micros_to_decimal_array(rated.column("cost")),
        }
    )
    conn.register("_billed_ledger", ledger)
    try:
        conn.execute(
            "INSERT INTO billed_usage SELECT record_id, account_id, ?, cost FROM _billed_ledger",
            [period.name],
        )
    finally:
        conn.unregister("_billed_ledger")
