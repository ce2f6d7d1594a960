"""Adjustments and write-offs: the other movements of an account's balance.

An adjustment moves the balance by a signed amount against the ``adjustments`` ledger (a
goodwill credit, a fee charged by hand); a write-off gives up on what the customer owes,
against ``bad_debt``, and never more than the balance. Each is its own journal entry with
a reference ``ADJ-<account>-<n>`` / ``WO-<account>-<n>`` and the reason in its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

import duckdb

from bss.customers import get_account
from bss.db import transaction
from bss.errors import ValidationError
from bss.receivables.amounts import format_minor, parse_amount
from bss.receivables.bill_entries import post_unposted_bills
from bss.receivables.journal import account_balance, post_entry
from bss.receivables.payments import split_amount

__all__ = ["Movement", "adjust_balance", "write_off"]


@dataclass(frozen=True)
class Movement:
    reference: str
    account: str
    currency: str
    amount: int  # minor units, as it moved the balance (credit < 0)
    balance: int

    @property
    def amount_text(self) -> str:
        return format_minor(self.amount, self.currency)


def _reference(conn: duckdb.DuckDBPyConnection, prefix: str, kind: str, account: str) -> str:
    row = conn.execute(
        "SELECT count(*) FROM journal_entry WHERE kind = ? AND reference LIKE ?",
        [kind, f"{prefix}-{account}-%"],
    ).fetchone()
    return f"{prefix}-{account}-{(row[0] if row else 0) + 1}"


def _amount(text: str, currency: str, what: str) -> int:
    number, named = split_amount(text)
    if named is not None and named != currency:
        raise ValidationError(f"{what}: {named} is not the account's currency ({currency})")
    try:  # Decimal's grammar: one optional sign ("+-5", "--5" are not numbers)
        Decimal(number)
    except InvalidOperation:
        raise ValidationError(f"{what} {text!r} is not a decimal number") from None
    negative = number.startswith("-")
    minor = parse_amount(number[1:] if number[0] in "+-" else number, currency, what=what)
    return -minor if negative else minor


def adjust_balance(
    conn: duckdb.DuckDBPyConnection, account: str | int, amount: str, *, reason: str,
    entry_date: date,
) -> Movement:  # fmt: skip
    """Move the balance by ``amount`` (``"-5.00"`` credits the customer, ``"5.00"`` charges)."""
    acct = get_account(conn, account)
    if not reason.strip():
        raise ValidationError("an adjustment needs a reason")
    minor = _amount(amount, acct.currency, f"adjustment of {acct.external_id}")
    with transaction(conn):
        post_unposted_bills(conn)
        ref = _reference(conn, "ADJ", "adjustment", acct.external_id)
        post_entry(conn, kind="adjustment", account_id=acct.id, currency=acct.currency,
                   entry_date=entry_date, reference=ref, description=reason.strip(),
                   lines=[("receivable", minor), ("adjustments", -minor)])  # fmt: skip
        balance = account_balance(conn, acct.id)
    return Movement(ref, acct.external_id, acct.currency, minor, balance)


def write_off(
    conn: duckdb.DuckDBPyConnection, account: str | int, amount: str | None, *, reason: str,
    entry_date: date,
) -> Movement:  # fmt: skip
    """Write off ``amount`` (None: the whole balance) of what the account owes."""
    acct = get_account(conn, account)
    if not reason.strip():
        raise ValidationError("a write-off needs a reason")
    with transaction(conn):
        post_unposted_bills(conn)
        owed = account_balance(conn, acct.id)
        minor = owed if amount is None else _amount(amount, acct.currency,
                                                    f"write-off of {acct.external_id}")  # fmt: skip
        if minor <= 0 or minor > owed:
            raise ValidationError(
                f"write-off of {acct.external_id}: {format_minor(minor, acct.currency)} "
                f"{acct.currency} is not within what the account owes "
                f"({format_minor(owed, acct.currency)} {acct.currency}); nothing written"
            )
        ref = _reference(conn, "WO", "write_off", acct.external_id)
        post_entry(conn, kind="write_off", account_id=acct.id, currency=acct.currency,
                   entry_date=entry_date, reference=ref, description=reason.strip(),
                   lines=[("bad_debt", minor), ("receivable", -minor)])  # fmt: skip
        balance = account_balance(conn, acct.id)
    return Movement(ref, acct.external_id, acct.currency, -minor, balance)
