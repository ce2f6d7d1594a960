"""Payments received: cash debited, the account's receivable credited, once per reference.

A payment is identified by its reference (the bank's or the payment provider's): adding
the same payment again changes nothing and says so, while a reference already used for
another account, amount, currency or date is refused. A payment in another currency than
the account's, to an unknown account, of zero or a negative amount, or with more decimals
than its currency has, is refused with nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from bss.customers import get_account
from bss.db import transaction
from bss.errors import ValidationError
from bss.receivables.amounts import format_minor, parse_amount
from bss.receivables.bill_entries import post_unposted_bills
from bss.receivables.journal import account_balance, post_entry

__all__ = ["Payment", "add_payment", "split_amount"]


@dataclass(frozen=True)
class Payment:
    reference: str
    account: str
    currency: str
    amount: int  # minor units
    payment_date: date
    created: bool  # False: this payment was recorded already
    balance: int  # the account's balance after it, minor units

    @property
    def amount_text(self) -> str:
        return format_minor(self.amount, self.currency)


def split_amount(text: str) -> tuple[str, str | None]:
    """``"12.50"`` -> ("12.50", None); ``"12.50 EUR"`` or ``"EUR 12.50"`` -> ("12.50", "EUR")."""
    words = text.split()
    codes = [w for w in words if w.isalpha()]
    numbers = [w for w in words if not w.isalpha()]
    if len(words) > 2 or len(codes) > 1 or len(numbers) != 1:
        raise ValidationError(f"amount {text!r}: expected a number, optionally with a currency")
    return numbers[0], codes[0].upper() if codes else None


def add_payment(
    conn: duckdb.DuckDBPyConnection,
    account: str | int,
    amount: str,
    *,
    payment_date: date,
    reference: str,
    currency: str | None = None,
) -> Payment:
    """Record a payment of ``amount`` (decimal text, optionally with its currency code) by
    ``account``; idempotent on ``reference``."""
    acct = get_account(conn, account)
    number, named = split_amount(amount)
    if named is not None and currency is not None and named != currency.upper():
        raise ValidationError(f"payment {reference}: amount in {named} but currency {currency}")
    paid_in = named or (currency.upper() if currency else acct.currency)
    if paid_in != acct.currency:
        raise ValidationError(
            f"payment {reference}: {paid_in} is not the currency of account "
            f"{acct.external_id} ({acct.currency}); nothing recorded"
        )
    minor = parse_amount(number, paid_in, what=f"payment {reference}: amount")
    reference = reference.strip()
    if not reference:
        raise ValidationError("a payment needs a reference (the bank's or provider's)")
    with transaction(conn):
        found = conn.execute(
            "SELECT e.account_id, a.external_id, e.currency, e.entry_date, l.amount_minor "
            "FROM journal_entry e JOIN billing_account a ON a.id = e.account_id "
            "JOIN journal_line l ON l.entry_id = e.id AND l.ledger = 'cash' "
            "WHERE e.kind = 'payment' AND e.reference = ?",
            [reference],
        ).fetchone()
        if found is not None:
            same = (found[0], found[2], found[3], int(found[4])) == (
                acct.id,
                paid_in,
                payment_date,
                minor,
            )
            if not same:
                raise ValidationError(
                    f"payment reference {reference} is recorded already for account {found[1]}: "
                    f"{format_minor(int(found[4]), found[2])} {found[2]} on {found[3]}; "
                    "a reference names one payment"
                )
            return Payment(reference, acct.external_id, paid_in, minor, payment_date, False,
                           account_balance(conn, acct.id))  # fmt: skip
        post_unposted_bills(conn)
        post_entry(
            conn, kind="payment", account_id=acct.id, currency=paid_in, entry_date=payment_date,
            reference=reference, lines=[("cash", minor), ("receivable", -minor)],
            description=f"payment {reference}",
        )  # fmt: skip
        balance = account_balance(conn, acct.id)
    return Payment(reference, acct.external_id, paid_in, minor, payment_date, True, balance)
