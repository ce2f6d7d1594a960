"""The journal: every entry balanced, every balance the sum of its account's entries,
whatever sequence of payments, credit notes, adjustments and write-offs (and refusals)."""

from __future__ import annotations

import uuid
from datetime import date

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bss.errors import BssError, ValidationError
from bss.receivables.adjustments import adjust_balance, write_off
from bss.receivables.ageing import age_accounts
from bss.receivables.credit_notes import credit_bill
from bss.receivables.journal import (
    account_balance,
    entries_of,
    ledger_balances,
    post_entry,
    unbalanced_entries,
)
from bss.receivables.payments import add_payment

DAY = date(2026, 11, 20)
BILL = {"A1": "B202610-000001", "A2": "B202610-000002"}
DIGITS = {"A1": 2, "A2": 0}  # EUR, JPY


def _text(minor: int, account: str) -> str:
    d = DIGITS[account]
    return (
        str(minor)
        if d == 0
        else f"{'-' if minor < 0 else ''}{abs(minor) // 100}.{abs(minor) % 100:02d}"
    )


operations = st.lists(
    st.tuples(
        st.sampled_from(["pay", "credit", "adjust", "write_off", "pay_again", "bad_payment"]),
        st.sampled_from(["A1", "A2"]),
        st.integers(min_value=-5_000, max_value=60_000),
    ),
    max_size=5,
)


def _snapshot(conn: duckdb.DuckDBPyConnection) -> tuple[object, ...]:
    return (
        conn.execute("SELECT count(*) FROM journal_entry").fetchone(),
        conn.execute("SELECT count(*), sum(amount_minor) FROM journal_line").fetchone(),
    )


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(ops=operations)
def test_ledger_balances_whatever_happens(billed: duckdb.DuckDBPyConnection, ops: list) -> None:
    # one database for every example: each starts where the last left off, which the
    # model reads from the entries themselves (not from account_balance's SQL)
    conn = billed
    ids = dict(conn.execute("SELECT external_id, id FROM billing_account").fetchall())
    due = dict(conn.execute(
        "SELECT a.external_id, CAST(b.amount_due * CASE b.currency WHEN 'JPY' THEN 1 "
        "ELSE 100 END AS BIGINT) FROM bill b JOIN billing_account a ON a.id = b.account_id"
    ).fetchall())  # fmt: skip
    # the model: what each account owes, and what its bill has had credited
    expected = {a: sum(e.receivable for e in entries_of(conn, ids[a])) for a in due}
    credited = {a: int(conn.execute(
        "SELECT coalesce(sum(amount_incl_tax_minor), 0) FROM credit_note WHERE bill_no = ?",
        [BILL[a]]).fetchone()[0]) for a in due}  # fmt: skip
    for n, (op, account, minor) in enumerate(ops):
        before = _snapshot(conn)
        try:
            if op in ("pay", "pay_again"):
                ref = "R-same" if op == "pay_again" else f"R{uuid.uuid4().hex}"
                paid = add_payment(conn, account, _text(minor, account), payment_date=DAY,
                                   reference=ref)  # fmt: skip
                if paid.created:
                    expected[account] -= minor
            elif op == "bad_payment":  # another currency: refused
                other = "JPY" if account == "A1" else "EUR"
                add_payment(conn, account, f"{abs(minor) + 1} {other}", payment_date=DAY,
                            reference=f"X{n}-{uuid.uuid4().hex}")  # fmt: skip
                pytest.fail("a payment in another currency was accepted")
            elif op == "credit":
                note = credit_bill(conn, BILL[account], amount=_text(minor, account),
                                   reason="test", issue_date=DAY)  # fmt: skip
                assert note.amount_incl_tax == minor
                assert note.amount_excl_tax + note.tax_amount == minor
                credited[account] += minor
                assert credited[account] <= due[account]
                expected[account] -= minor
            elif op == "adjust":
                adjust_balance(conn, account, _text(minor, account), reason="test",
                               entry_date=DAY)  # fmt: skip
                expected[account] += minor
            else:
                write_off(conn, account, _text(minor, account), reason="test", entry_date=DAY)
                expected[account] -= minor
        except BssError as exc:
            refused = (type(exc).__name__, _snapshot(conn) == before)
            assert refused == ("ValidationError", True), f"{op}: {exc}"  # noqa: PT017
        for account, account_id in ids.items():
            assert account_balance(conn, account_id) == expected[account]
    assert unbalanced_entries(conn) == []
    for account, account_id in ids.items():
        assert expected[account] == sum(e.receivable for e in entries_of(conn, account_id))
    per_currency: dict[str, int] = {}
    for (_, currency), total in ledger_balances(conn).items():
        per_currency[currency] = per_currency.get(currency, 0) + total
    assert set(per_currency.values()) <= {0}
    for aged in age_accounts(conn, date(2027, 6, 1)):
        assert aged.balance == expected[aged.account]


def test_post_entry_refuses_unbalanced_and_unknown(billed: duckdb.DuckDBPyConnection) -> None:
    args = {"kind": "adjustment", "account_id": 1, "currency": "EUR", "entry_date": DAY}
    with pytest.raises(ValidationError, match="differ by 1"):
        post_entry(billed, reference="x1", lines=[("receivable", 5), ("adjustments", -4)], **args)
    with pytest.raises(ValidationError, match="unknown ledger"):
        post_entry(billed, reference="x2", lines=[("receivable", 5), ("sales", -5)], **args)
    with pytest.raises(ValidationError, match="integer minor units"):
        post_entry(billed, reference="x3", lines=[("receivable", 0.5), ("adjustments", -0.5)],
                   **args)  # type: ignore[list-item]  # fmt: skip
    assert unbalanced_entries(billed) == []
    entry = post_entry(billed, reference="x4", lines=[("receivable", 5), ("adjustments", -5)],
                       **args)  # fmt: skip
    with pytest.raises(ValidationError, match="posted already"):
        post_entry(billed, reference="x4", lines=[("receivable", 5), ("adjustments", -5)], **args)
    assert [e.id for e in entries_of(billed, 1)][-1] == entry
