"""Issued bills in the journal, and the statement a new bill carries.

A billing pass posts its bills inside its own transaction (:func:`post_pass_bills`):
receivable debited with the amount due, revenue and tax credited, in minor units. A
pass that is repeated after a crash writes the same bills and posts them once (the
journal's ``(kind, reference)`` is unique and the pass is atomic); a rerun of a billed
period makes no pass, so posts nothing. Bills issued before the ledger existed are
posted by the first operation that needs the ledger (:func:`post_unposted_bills`).

Before its bill is posted, each account with earlier entries gets a statement
(``bill_statement``): the balance after its previous bill, the payments and the other
movements (credit notes, adjustments, write-offs) posted since, and the balance with
the new bill - what "previous balance" and "payments received" on a bill mean here.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.money import mul_ratio_half_even_array
from bss.db import arrow_query, utc_now
from bss.receivables.statements import currency_digits

__all__ = ["post_pass_bills", "post_unposted_bills"]

_UNPOSTED = """
SELECT b.bill_no, b.account_id, b.currency, b.bill_date,
       CAST(b.amount_due * 1000000 AS BIGINT) AS due_micros,
       CAST(b.tax_amount * 1000000 AS BIGINT) AS tax_micros
FROM bill b
WHERE NOT EXISTS (SELECT 1 FROM journal_entry e WHERE e.kind = 'bill' AND e.reference = b.bill_no)
  AND ($bills IS NULL OR list_contains($bills, b.bill_no))
ORDER BY b.bill_date, b.bill_no
"""

_STATEMENTS = """
INSERT INTO bill_statement
WITH last_bill AS (
    SELECT account_id, max(id) AS id FROM journal_entry
    WHERE kind = 'bill' AND account_id IN (SELECT account_id FROM _post) GROUP BY account_id
), moves AS (
    SELECT e.account_id, e.id, e.kind, l.amount_minor AS amount FROM journal_entry e
    JOIN journal_line l ON l.entry_id = e.id AND l.ledger = 'receivable'
    WHERE e.account_id IN (SELECT account_id FROM _post)
), sums AS (
    SELECT p.bill_no, p.due,
           coalesce(sum(m.amount) FILTER (WHERE m.id <= lb.id), 0) AS previous_balance_minor,
           coalesce(-sum(m.amount) FILTER (WHERE m.id > coalesce(lb.id, 0)
                                           AND m.kind = 'payment'), 0) AS payments_received_minor,
           coalesce(-sum(m.amount) FILTER (WHERE m.id > coalesce(lb.id, 0)
                                           AND m.kind <> 'payment'), 0) AS other_credits_minor,
           count(m.id) AS moved
    FROM _post p LEFT JOIN last_bill lb ON lb.account_id = p.account_id
    LEFT JOIN moves m ON m.account_id = p.account_id
    GROUP BY p.bill_no, p.due
)
SELECT bill_no, previous_balance_minor, payments_received_minor, other_credits_minor,
       previous_balance_minor - payments_received_minor - other_credits_minor + due
FROM sums WHERE moved > 0
"""


def _to_post(conn: duckdb.DuckDBPyConnection, bills: list[str] | None) -> pa.Table:
    rows = arrow_query(conn, _UNPOSTED, {"bills": bills})
    steps = 10 ** (6 - currency_digits(rows.column("currency")))
    due = mul_ratio_half_even_array(rows.column("due_micros").to_numpy(), 1, steps)
    tax = mul_ratio_half_even_array(rows.column("tax_micros").to_numpy(), 1, steps)
    return pa.table({
        "bill_no": rows.column("bill_no"), "account_id": rows.column("account_id"),
        "currency": rows.column("currency"), "bill_date": rows.column("bill_date"),
        "due": pa.array(due, pa.int64()), "tax": pa.array(tax, pa.int64()),
    })  # fmt: skip


def _post(conn: duckdb.DuckDBPyConnection, table: pa.Table, statements: bool) -> int:
    if table.num_rows == 0:
        return 0
    conn.register("_post", table)
    try:
        if statements:
            conn.execute(_STATEMENTS)
        conn.execute(
            "INSERT INTO journal_entry (kind, account_id, currency, entry_date, reference, "
            "description, posted_at) SELECT 'bill', account_id, currency, bill_date, bill_no, "
            "'bill ' || bill_no, $now FROM _post ORDER BY bill_date, bill_no",
            {"now": utc_now()},
        )
        # receivable debited with the amount due; tax and the rest (revenue) credited
        conn.execute(
            "INSERT INTO journal_line SELECT e.id, n.line_no, n.ledger, "
            "CASE n.line_no WHEN 1 THEN p.due WHEN 2 THEN p.tax - p.due ELSE -p.tax END "
            "FROM _post p JOIN journal_entry e ON e.kind = 'bill' AND e.reference = p.bill_no "
            "CROSS JOIN (VALUES (1, 'receivable'), (2, 'revenue'), (3, 'tax')) n(line_no, ledger)"
        )
    finally:
        conn.unregister("_post")
    return int(table.num_rows)


def post_unposted_bills(conn: duckdb.DuckDBPyConnection) -> int:
    """Post every issued bill the journal lacks (bills made before it existed); returns
    how many. Call inside the transaction of the operation that needs the ledger."""
    row = conn.execute("SELECT (SELECT count(*) FROM bill), (SELECT count(*) FROM journal_entry "
                       "WHERE kind = 'bill')").fetchone()  # fmt: skip
    if row is not None and row[0] == row[1]:  # bills are never deleted: all are posted
        return 0
    return _post(conn, _to_post(conn, None), statements=False)


def post_pass_bills(conn: duckdb.DuckDBPyConnection, bills: pa.Table) -> int:
    """Inside a billing pass's transaction, after its bills are written: post earlier
    unposted bills, then each of ``bills`` (``bill_no`` column) with its statement."""
    if bills.num_rows == 0:
        return 0
    waiting = _to_post(conn, None)
    new = pc.is_in(waiting.column("bill_no"), value_set=bills.column("bill_no").combine_chunks())
    _post(conn, waiting.filter(pc.invert(new)), statements=False)
    return _post(conn, waiting.filter(new), statements=True)
