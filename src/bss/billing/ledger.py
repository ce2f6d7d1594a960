"""The database writes of a billing pass, in bulk and inside its one transaction.

Bills and lines go in through Arrow tables (not row by row); the billed-usage ledger and
its duplicate check are DuckDB reading the pass's rated parts directly; the products a
bill took account of and the one-time fees it charged are recorded so that a later pass
bills only what is missing and nothing twice.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.lines import BillTotals
from bss.billing.money import micros_to_decimal_array
from bss.billing.passes import PassPlan
from bss.billing.period import Period
from bss.errors import BillingError

__all__ = ["bill_numbers", "record_billed_usage", "record_one_time", "write_bills"]


def bill_numbers(period: Period, accounts: np.ndarray, supplement: np.ndarray | None = None,
                 pass_no: int = 1) -> pa.Array:  # fmt: skip
    """``B<YYYYMM>-<account, 6 digits>``, and ``-S<pass>`` after it for the accounts in
    ``supplement`` (a second bill of the period). Deterministic: a pass repeated after a
    crash writes the same numbers."""
    digits = pc.utf8_lpad(pc.cast(pa.array(accounts, pa.int64()), pa.string()), 6, "0")
    numbers = pc.binary_join_element_wise(f"B{period.name.replace('-', '')}", digits, "-")
    if supplement is None or not len(supplement):
        return numbers
    again = pa.array(np.isin(np.asarray(accounts, np.int64), supplement))
    return pc.if_else(again, pc.binary_join_element_wise(numbers, f"S{pass_no}", "-"), numbers)


def write_bills(
    conn: duckdb.DuckDBPyConnection,
    plan: PassPlan,
    lines: pa.Table,
    totals: BillTotals,
    accounts: pa.Table,
    already_billed: np.ndarray,
) -> pa.Table:
    """Insert the pass's bills, lines (rounded, with their exact amounts) and tax per rate;
    returns (account_id, bill_no) of its bills.

    ``already_billed``: accounts that have a bill for the period (their new bill is
    numbered as a second one)."""
    period = plan.period
    if len(totals.account_id) == 0:
        return pa.table(
            {"account_id": pa.array([], pa.int64()), "bill_no": pa.array([], pa.string())}
        )
    pos = pa.array(np.searchsorted(np.asarray(accounts.column("id").to_numpy()),
                                   totals.account_id))  # fmt: skip
    terms = np.asarray(accounts.column("payment_terms_days").take(pos).to_numpy(), np.int64)
    bill_nos = bill_numbers(period, totals.account_id, already_billed, plan.pass_no)
    bill_date = np.datetime64(period.bill_date, "D")
    bill_table = pa.table({
        "bill_no": bill_nos,
        "account_id": pa.array(totals.account_id, pa.int64()),
        "currency": accounts.column("currency").take(pos),
        "due_date": pa.array(bill_date + terms.astype("timedelta64[D]"), pa.date32()),
        "tax_rate": accounts.column("rate").take(pos),
        "excl": micros_to_decimal_array(pa.array(totals.excl, pa.int64())),
        "tax": micros_to_decimal_array(pa.array(totals.tax, pa.int64())),
        "incl": micros_to_decimal_array(pa.array(totals.incl, pa.int64())),
        "due": micros_to_decimal_array(pa.array(totals.due, pa.int64())),
    })  # fmt: skip
    line_acc = pc.index_in(lines.column("account_id"), value_set=pa.array(totals.account_id))
    line_table = pa.table({
        "bill_no": bill_nos.take(line_acc),
        "line_no": lines.column("line_no"),
        "line_type": lines.column("line_type"),
        "product_id": lines.column("product_id"),
        "description": lines.column("description"),
        "quantity": lines.column("quantity"),
        "unit": lines.column("unit"),
        "amount": micros_to_decimal_array(lines.column("micros")),
        "amount_exact": micros_to_decimal_array(lines.column("exact")),
    })  # fmt: skip
    # the tax per rate with the rate's name as it is today (an account is one rate group)
    tax_table = pa.table({
        "bill_no": bill_nos,
        "rate": accounts.column("rate").take(pos),
        "name": accounts.column("tax_name").take(pos),
        "taxable": bill_table.column("excl"),
        "tax": bill_table.column("tax"),
    })  # fmt: skip
    conn.register("_bills", bill_table)
    conn.register("_lines", line_table)
    conn.register("_taxes", tax_table)
    try:
        conn.execute(
            "INSERT INTO bill SELECT bill_no, account_id, $period, $start, $end, $bill_date, "
            "due_date, currency, excl, tax_rate, tax, incl, due, 'final', $kind, $pass FROM _bills",
            {"period": period.name, "start": period.start, "end": period.end,
             "bill_date": period.bill_date,
             "kind": "supplementary" if plan.supplementary else "regular",
             "pass": plan.pass_no},
        )  # fmt: skip
        conn.execute(
            "INSERT INTO bill_line (bill_no, line_no, line_type, product_id, description, "
            "quantity, unit, amount, amount_exact) SELECT bill_no, line_no, line_type, "
            "product_id, description, quantity, unit, amount, amount_exact FROM _lines"
        )
        conn.execute("INSERT INTO bill_tax SELECT bill_no, rate, name, taxable, tax FROM _taxes")
        # the products these bills took account of: the account's products active in the
        # period, but on a second bill only those no bill of the period had
        conn.execute(
            "INSERT INTO billed_product SELECT $period, p.id, min(b.bill_no) FROM product p "
            "JOIN _bills b ON b.account_id = p.account_id "
            "WHERE p.start_date < $end AND (p.termination_date IS NULL OR "
            "p.termination_date > $start) AND NOT EXISTS (SELECT 1 FROM billed_product bp "
            "WHERE bp.period = $period AND bp.product_id = p.id) GROUP BY p.id",
            {"period": period.name, "start": period.start, "end": period.end},
        )
    finally:
        conn.unregister("_bills")
        conn.unregister("_lines")
        conn.unregister("_taxes")
    return bill_table.select(["account_id", "bill_no"])


def record_one_time(conn: duckdb.DuckDBPyConnection, one_time: pa.Table, bills: pa.Table) -> None:
    """The one-time fees these bills charged (billed once per product and price)."""
    if one_time.num_rows == 0:
        return
    at = pc.index_in(one_time.column("account_id"), value_set=bills.column("account_id"))
    table = one_time.append_column("bill_no", bills.column("bill_no").take(at)).filter(
        pc.is_valid(at)
    )
    conn.register("_one_time", table)
    try:
        conn.execute("INSERT INTO billed_one_time SELECT product_id, price_id, bill_no "
                     "FROM _one_time")  # fmt: skip
    finally:
        conn.unregister("_one_time")


def record_billed_usage(conn: duckdb.DuckDBPyConnection, files: list[str], period: Period) -> None:
    """Check that no record id repeats among the pass's rated parts (DuckDB groups them,
    spilling to disk beyond its memory limit), then add them to the billed-usage ledger."""
    if not files:
        return
    ((repeats,),) = conn.execute(
        "SELECT count(*) FROM (SELECT record_id FROM read_parquet($files) GROUP BY record_id "
        "HAVING count(*) > 1)",
        {"files": files},
    ).fetchall()
    if repeats:
        raise BillingError(
            f"period {period.name}: {repeats} rated records repeat a record_id; refusing to "
            "bill any record twice (check the usage dataset)"
        )
    conn.execute(
        "INSERT INTO billed_usage SELECT record_id, account_id, $period, "
        "CAST(CAST(cost AS DECIMAL(18, 0)) * 0.000001 AS DECIMAL(18, 6)) "
        "FROM read_parquet($files)",
        {"period": period.name, "files": files},
    )
