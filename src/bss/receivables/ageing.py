"""Ageing of what accounts owe: open amounts by days past their due date.

Open items are the bills (due on their due date) and the charges added by adjustments
(due on their date). A credit note reduces its own bill; payments, write-offs, credit
adjustments and bills of a negative amount are applied to the oldest items first (by due
date, then posting order), as no payment here names the bill it pays. What is left of
each item is aged by the days from its due date to ``as_of``: ``current`` (not yet due),
``1-30``, ``31-60``, ``61-90`` and ``90+``; what was paid beyond every item is the
account's ``unapplied`` credit. Only entries dated on or before ``as_of`` count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from itertools import groupby

import duckdb

__all__ = ["BUCKETS", "Ageing", "OpenItem", "age_accounts", "bucket_of"]

BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")

_ENTRIES = """
SELECT e.account_id, a.external_id, e.currency, e.id, e.kind, e.entry_date, e.reference,
       l.amount_minor, b.due_date, c.bill_no
FROM journal_entry e
JOIN billing_account a ON a.id = e.account_id
JOIN journal_line l ON l.entry_id = e.id AND l.ledger = 'receivable'
LEFT JOIN bill b ON e.kind = 'bill' AND b.bill_no = e.reference
LEFT JOIN credit_note c ON e.kind = 'credit_note' AND c.credit_no = e.reference
WHERE e.entry_date <= $as_of AND ($account IS NULL OR e.account_id = $account)
ORDER BY e.account_id, e.id
"""


@dataclass
class OpenItem:
    reference: str  # bill number or adjustment reference
    due_date: date
    amount: int  # minor units still open
    days_overdue: int = 0


@dataclass(frozen=True)
class Ageing:
    account_id: int
    account: str
    currency: str
    buckets: dict[str, int]  # minor units open per bucket
    unapplied: int  # credit not applied to any item (paid ahead)
    items: list[OpenItem] = field(default_factory=list)

    @property
    def balance(self) -> int:
        return sum(self.buckets.values()) - self.unapplied

    @property
    def overdue(self) -> int:
        return sum(v for k, v in self.buckets.items() if k != "current")

    @property
    def days_overdue(self) -> int:
        """Days past due of the oldest open item (0: nothing overdue)."""
        return max((i.days_overdue for i in self.items if i.amount > 0), default=0)


def bucket_of(days_overdue: int) -> str:
    """``current`` for 0 or fewer days past due, else the 30-day band."""
    if days_overdue <= 0:
        return "current"
    if days_overdue <= 30:
        return "1-30"
    if days_overdue <= 60:
        return "31-60"
    if days_overdue <= 90:
        return "61-90"
    return "90+"


def _age(rows: list[tuple], as_of: date) -> Ageing:
    account_id, account, currency = rows[0][0], rows[0][1], rows[0][2]
    items: dict[str, OpenItem] = {}
    order: dict[str, int] = {}
    pool = 0
    for _, _, _, entry_id, kind, entry_date, reference, amount, due_date, bill_no in rows:
        amount = int(amount)
        if kind == "bill" and amount > 0:
            items[reference] = OpenItem(reference, due_date or entry_date, amount)
            order[reference] = entry_id
        elif kind == "adjustment" and amount > 0:
            items[reference] = OpenItem(reference, entry_date, amount)
            order[reference] = entry_id
        elif kind == "credit_note" and bill_no in items:
            item = items[bill_no]
            used = min(item.amount, -amount)
            item.amount -= used
            pool += -amount - used
        else:  # payments, write-offs, credit adjustments, negative bills
            pool += -amount
    open_items = sorted(items.values(), key=lambda i: (i.due_date, order[i.reference]))
    for item in open_items:
        used = min(item.amount, pool)
        item.amount -= used
        pool -= used
    buckets = dict.fromkeys(BUCKETS, 0)
    left = [i for i in open_items if i.amount]
    for item in left:
        item.days_overdue = (as_of - item.due_date).days
        buckets[bucket_of(item.days_overdue)] += item.amount
    return Ageing(int(account_id), account, currency, buckets, pool, left)


def age_accounts(
    conn: duckdb.DuckDBPyConnection, as_of: date, account_id: int | None = None
) -> list[Ageing]:
    """Every account with ledger entries (or the one given), aged at ``as_of``."""
    rows = conn.execute(_ENTRIES, {"as_of": as_of, "account": account_id}).fetchall()
    return [_age(list(group), as_of) for _, group in groupby(rows, key=lambda r: r[0])]
