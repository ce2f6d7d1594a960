"""Ageing: credit notes reduce their own bill, payments pay the oldest items first, what is
paid beyond every item is unapplied; buckets by days past the due date."""

from __future__ import annotations

from datetime import date

import duckdb
from receivables_business import NOW

from bss.billing.run import run_billing
from bss.receivables.adjustments import adjust_balance
from bss.receivables.ageing import BUCKETS, age_accounts, bucket_of
from bss.receivables.credit_notes import credit_bill
from bss.receivables.journal import account_balance
from bss.receivables.payments import add_payment
from collectors.workspace import WorkspacePaths


def test_bucket_edges() -> None:
    edges = [bucket_of(d) for d in (-3, 0, 1, 30, 31, 60, 61, 90, 91)]
    assert edges == ["current", "current", "1-30", "1-30", "31-60", "31-60", "61-90", "61-90",
                     "90+"]  # fmt: skip


def test_oldest_first_and_credit_notes_on_their_bill(
    billed: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    run_billing(billed, billed_ws, "2026-11", now=NOW, export=False)  # due 2026-12-15
    # October's bill (372.00, due 2026-11-15) and November's (372.00, due 2026-12-15)
    credit_bill(
        billed, "B202611-000001", amount="72.00", reason="outage", issue_date=date(2026, 12, 2)
    )
    add_payment(billed, "A1", "100.00", payment_date=date(2026, 12, 3), reference="P1")
    adjust_balance(billed, "A1", "5.00", reason="reminder fee", entry_date=date(2026, 12, 4))
    (a1,) = age_accounts(billed, date(2027, 1, 20), 1)
    # October: 372 - 100 paid = 272, 66 days late; November: 372 - 72 = 300, 36 days;
    # the fee: 5.00 due on its date, 47 days (items in due-date order)
    assert [(i.reference, i.amount, i.days_overdue) for i in a1.items] == [
        ("B202610-000001", 27200, 66), ("ADJ-A1-1", 500, 47),
        ("B202611-000001", 30000, 36)]  # fmt: skip
    assert a1.buckets == {"current": 0, "1-30": 0, "31-60": 30500, "61-90": 27200, "90+": 0}
    assert (a1.balance, a1.days_overdue) == (account_balance(billed, 1), 66)
    # on 2026-12-01 only what was dated by then counts: October overdue, November not yet due
    (early,) = age_accounts(billed, date(2026, 12, 1), 1)
    assert early.buckets["1-30"] == 37200
    assert early.buckets["current"] == 37200
    add_payment(billed, "A1", "700.00", payment_date=date(2027, 1, 5), reference="P2")
    (paid,) = age_accounts(billed, date(2027, 1, 20), 1)
    assert set(paid.buckets.values()) == {0}
    assert paid.unapplied == 70000 - 57700
    assert paid.balance == account_balance(billed, 1) == -12300
    assert list(paid.buckets) == list(BUCKETS)
