"""The accounts-receivable journal: balanced double entries in integer minor units.

Every money movement of a billing account is one :func:`post_entry`: a bill issued
(receivable against revenue and tax), a payment (cash against receivable), a credit note
(revenue returned and tax back against receivable), an adjustment or a write-off. Its
lines are signed amounts, debits positive and credits negative, in minor units of the
account's currency, and they sum to zero or nothing is written. Balances are sums over
the lines (:func:`account_balance`), never stored numbers that could drift from them;
entries are never changed, a correction is another entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb

from bss.db import utc_now
from bss.errors import ValidationError

__all__ = [
    "ENTRY_KINDS",
    "LEDGERS",
    "Entry",
    "account_balance",
    "entries_of",
    "ledger_balances",
    "post_entry",
    "unbalanced_entries",
]

#: What moved the money.
ENTRY_KINDS = ("bill", "payment", "credit_note", "adjustment", "write_off")
#: The chart of accounts. ``receivable`` is per billing account (the entry's account);
#: the others are the operator's: revenue, tax (VAT payable), cash, credit_notes (sales
#: returns), adjustments, bad_debt.
LEDGERS = ("receivable", "revenue", "tax", "cash", "credit_notes", "adjustments", "bad_debt")


@dataclass(frozen=True)
class Entry:
    id: int
    kind: str
    account_id: int
    currency: str
    entry_date: date
    reference: str
    description: str
    lines: tuple[tuple[str, int], ...]  # (ledger, amount): debit > 0, credit < 0

    @property
    def receivable(self) -> int:
        """What the entry moved the account's balance by (positive: the customer owes more)."""
        return sum(amount for ledger, amount in self.lines if ledger == "receivable")


def _check(kind: str, reference: str, lines: Sequence[tuple[str, int]]) -> None:
    if kind not in ENTRY_KINDS:
        raise ValidationError(f"journal entry kind {kind!r} is not one of {', '.join(ENTRY_KINDS)}")
    if not reference:
        raise ValidationError(f"a {kind} entry needs a reference")
    if len(lines) < 2:
        raise ValidationError(f"{kind} {reference}: a journal entry has two lines or more")
    for ledger, amount in lines:
        if ledger not in LEDGERS:
            raise ValidationError(f"{kind} {reference}: unknown ledger account {ledger!r}")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ValidationError(f"{kind} {reference}: amounts are integer minor units")
        if abs(amount) >= 1 << 62:
            raise ValidationError(f"{kind} {reference}: amount {amount} beyond exact money")
    total = sum(amount for _, amount in lines)
    if total != 0:
        raise ValidationError(f"{kind} {reference}: debits and credits differ by {total}")


def post_entry(
    conn: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    account_id: int,
    currency: str,
    entry_date: date,
    reference: str,
    lines: Sequence[tuple[str, int]],
    description: str = "",
) -> int:
    """Write one balanced entry; returns its id (posting order). Unbalanced lines, an
    unknown ledger or kind, a (kind, reference) already posted: :class:`ValidationError`,
    nothing written. The caller's transaction, if any, holds it together with its records."""
    _check(kind, reference, lines)
    if conn.execute("SELECT 1 FROM journal_entry WHERE kind = ? AND reference = ?",
                    [kind, reference]).fetchone():  # fmt: skip
        raise ValidationError(f"{kind} {reference} is posted already")
    row = conn.execute(
        "INSERT INTO journal_entry (kind, account_id, currency, entry_date, reference, "
        "description, posted_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [kind, account_id, currency, entry_date, reference, description, utc_now()],
    ).fetchone()
    assert row is not None
    conn.executemany(
        "INSERT INTO journal_line VALUES (?, ?, ?, ?)",
        [[row[0], n, ledger, amount] for n, (ledger, amount) in enumerate(lines, 1)],
    )
    return int(row[0])


def account_balance(
    conn: duckdb.DuckDBPyConnection, account_id: int, *, until: int | None = None
) -> int:
    """What the account owes (negative: what it has in credit), in minor units: the sum of
    its receivable lines (of entries up to id ``until``, if given)."""
    row = conn.execute(
        "SELECT coalesce(sum(l.amount_minor), 0) FROM journal_line l JOIN journal_entry e "
        "ON e.id = l.entry_id WHERE e.account_id = ? AND l.ledger = 'receivable' "
        "AND (? IS NULL OR e.id <= ?)",
        [account_id, until, until],
    ).fetchone()
    return int(row[0]) if row else 0


def ledger_balances(conn: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], int]:
    """(ledger, currency) -> balance over every entry; each currency's balances sum to 0."""
    rows = conn.execute(
        "SELECT l.ledger, e.currency, sum(l.amount_minor) FROM journal_line l JOIN journal_entry e "
        "ON e.id = l.entry_id GROUP BY ALL ORDER BY 2, 1"
    ).fetchall()
    return {(ledger, currency): int(total) for ledger, currency, total in rows}


def unbalanced_entries(conn: duckdb.DuckDBPyConnection) -> list[int]:
    """Ids of entries whose lines do not sum to zero (or that have no lines): none, ever."""
    rows = conn.execute(
        "SELECT e.id FROM journal_entry e LEFT JOIN journal_line l ON l.entry_id = e.id "
        "GROUP BY e.id HAVING count(l.entry_id) < 2 OR sum(l.amount_minor) <> 0 ORDER BY e.id"
    ).fetchall()
    return [int(r[0]) for r in rows]


def entries_of(conn: duckdb.DuckDBPyConnection, account_id: int) -> list[Entry]:
    """The account's entries in posting order, with their lines."""
    heads = conn.execute(
        "SELECT id, kind, account_id, currency, entry_date, reference, description "
        "FROM journal_entry WHERE account_id = ? ORDER BY id",
        [account_id],
    ).fetchall()
    lines: dict[int, list[tuple[str, int]]] = {}
    for entry_id, ledger, amount in conn.execute(
        "SELECT l.entry_id, l.ledger, l.amount_minor FROM journal_line l JOIN journal_entry e "
        "ON e.id = l.entry_id WHERE e.account_id = ? ORDER BY l.entry_id, l.line_no",
        [account_id],
    ).fetchall():
        lines.setdefault(int(entry_id), []).append((ledger, int(amount)))
    return [Entry(int(i), k, int(a), c, d, r, t, tuple(lines.get(int(i), [])))
            for i, k, a, c, d, r, t in heads]  # fmt: skip
