"""Bills in the journal: posted by the billing pass once, and the next bill's statement."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import duckdb
import pytest
from receivables_business import NOW

import bss.billing.run as billing_run
from bss.billing.bill_json import bills_digest
from bss.billing.export import bills_for_period, canonical_json
from bss.billing.run import run_billing
from bss.orders import OrderItem, create_order, process_order
from bss.receivables.adjustments import adjust_balance
from bss.receivables.bill_entries import post_unposted_bills
from bss.receivables.credit_notes import credit_bill
from bss.receivables.journal import account_balance, ledger_balances, unbalanced_entries
from bss.receivables.payments import add_payment
from collectors.workspace import WorkspacePaths


def _bill_entries(conn: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT e.reference, l.ledger, l.amount_minor FROM journal_entry e JOIN journal_line l "
        "ON l.entry_id = e.id WHERE e.kind = 'bill' ORDER BY 1, l.line_no"
    ).fetchall()


def test_the_billing_run_posts_each_bill_once(
    billed: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    # 310.00 EUR + 20 % TVA; 12345 JPY + 10 % JCT, rounded half-even on the yen: 1234
    assert _bill_entries(billed) == [
        ("B202610-000001", "receivable", 37200), ("B202610-000001", "revenue", -31000),
        ("B202610-000001", "tax", -6200),
        ("B202610-000002", "receivable", 13579), ("B202610-000002", "revenue", -12345),
        ("B202610-000002", "tax", -1234),
    ]  # fmt: skip
    sha = bills_digest(billed, "2026-10")[0]
    again = run_billing(billed, billed_ws, "2026-10", now=NOW, export=False)
    assert (again.changed, again.bills_sha256) == (False, sha)
    assert post_unposted_bills(billed) == 0
    assert len(_bill_entries(billed)) == 6
    assert unbalanced_entries(billed) == []


def test_bills_from_before_the_ledger_are_posted_once(billed: duckdb.DuckDBPyConnection) -> None:
    billed.execute("DELETE FROM journal_line")
    billed.execute("DELETE FROM journal_entry")  # as a workspace billed before 0007
    assert post_unposted_bills(billed) == 2
    assert post_unposted_bills(billed) == 0
    assert account_balance(billed, 1) == 37200


def test_the_next_bill_shows_previous_balance_and_payments(
    billed: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    first = bills_for_period(billed, "2026-10")
    assert not {"previous_balance", "balance_due"} & set(first[0])  # a first bill: unchanged
    add_payment(billed, "A1", "300.00", payment_date=date(2026, 11, 10), reference="BANK-1")
    credit_bill(billed, "B202610-000001", amount="12.00", reason="late install",
                issue_date=date(2026, 11, 12))  # fmt: skip
    adjust_balance(billed, "A1", "2.50", reason="paper bill fee", entry_date=date(2026, 11, 13))
    run_billing(billed, billed_ws, "2026-11", now=NOW, export=False)
    bills = {b["account"]: b for b in bills_for_period(billed, "2026-11")}
    a1, a2 = bills["A1"], bills["A2"]
    assert (a1["previous_balance"], a1["payments_received"], a1["other_credits"]) == (
        "372.00", "300.00", "9.50")  # fmt: skip
    assert a1["balance_due"] == "434.50"  # 372 - 300 - 9.50 + 372
    assert (a2["previous_balance"], a2["payments_received"], a2["balance_due"]) == (
        "13579", "0", "27158")  # fmt: skip
    assert account_balance(billed, 1) == 43450
    # the streamed digest writes the same bytes as json.dumps of the bills
    digest = hashlib.sha256(canonical_json(bills_for_period(billed, "2026-11"))).hexdigest()
    assert bills_digest(billed, "2026-11")[0] == digest
    totals: dict[str, int] = {}
    for (_, currency), amount in ledger_balances(billed).items():
        totals[currency] = totals.get(currency, 0) + amount
    assert totals == {"EUR": 0, "JPY": 0}


def test_a_supplementary_bill_is_posted_with_its_statement(
    billed: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    create_order(billed, "O3", "A1", [OrderItem("add", "link-100", None, ("ip:192.0.2.16/28",))],
                 requested_start=datetime(2026, 10, 17, tzinfo=UTC))  # fmt: skip
    process_order(billed, "O3")
    result = run_billing(billed, billed_ws, "2026-10", now=NOW, export=False)
    assert (result.supplementary, result.new_bills) == (True, 1)
    (extra,) = [b for b in bills_for_period(billed, "2026-10") if b.get("kind")]
    assert extra["bill_no"] == "B202610-000001-S2"
    # 310.00 * 15 / 31 days = 150.00, + 20 % = 180.00; the regular bill is the previous one
    assert (extra["previous_balance"], extra["balance_due"]) == ("372.00", "552.00")
    assert account_balance(billed, 1) == 55200
    assert run_billing(billed, billed_ws, "2026-10", now=NOW, export=False).new_bills == 0
    assert len(_bill_entries(billed)) == 9


def test_a_pass_that_fails_posts_nothing(
    billed: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object) -> None:
        raise RuntimeError("killed after the bills were posted")

    monkeypatch.setattr(billing_run, "record_one_time", crash)  # runs after post_pass_bills
    with pytest.raises(RuntimeError):
        run_billing(billed, billed_ws, "2026-11", now=NOW, export=False)
    assert len(_bill_entries(billed)) == 6  # October's only: the pass rolled back whole
    monkeypatch.undo()
    result = run_billing(billed, billed_ws, "2026-11", now=NOW, export=False)
    assert result.new_bills == 2
    assert len(_bill_entries(billed)) == 12
    assert unbalanced_entries(billed) == []
