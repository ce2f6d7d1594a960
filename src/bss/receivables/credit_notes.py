"""Credit notes: money given back on an issued bill, with a number of its own.

The bill stays exactly as it was issued; the credit note records what is credited and
why, and posts revenue returned (``credit_notes``) and the tax back against the account's
receivable. Two ways to say what is credited:

- an amount, tax included (what the customer gets back): its net part is
  ``amount / (1 + rate)`` rounded half-even to the minor unit, the tax is the rest;
- whole bill lines: their amounts (as billed, in the minor unit), plus their tax computed
  as the bill's rounding policy did (:mod:`bss.invoice.rounding`, the invoice settings in
  force on the bill's date: per rate group or per line, half-even or half-up), at most
  the bill's tax not yet credited; the note crediting the bill's last line takes exactly
  that rest, so crediting every line gives back the amount due. A line is credited once;
  discount and credit lines (zero or negative) go with the first charge of their product
  credited (net: what was billed for it), never alone.

A credit note larger than what remains of the bill (its amount due less the credit notes
already issued on it), on an unknown bill or line, dated before its bill, or without a
reason, is refused with nothing written. Credit notes are numbered ``C<bill number without B>-<n>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from bss.billing.money import minor_units, mul_ratio_half_even
from bss.db import transaction
from bss.errors import NotFoundError, ValidationError
from bss.invoice.rounding import RoundingPolicy, group_tax
from bss.invoice.settings import policy_on
from bss.receivables.amounts import format_minor, micros_to_minor, parse_amount
from bss.receivables.bill_entries import post_unposted_bills
from bss.receivables.journal import account_balance, post_entry
from bss.receivables.payments import split_amount
from collectors.dataset import atomic_write_bytes

__all__ = [
    "CreditNote",
    "credit_bill",
    "credit_note_document",
    "credited_on",
    "line_credit_tax",
    "write_credit_note",
]


@dataclass(frozen=True)
class CreditNote:
    credit_no: str
    bill_no: str
    account: str
    currency: str
    issue_date: date
    reason: str
    amount_excl_tax: int  # minor units
    tax_amount: int
    amount_incl_tax: int
    lines: tuple[tuple[int | None, str, int], ...]  # (bill line, description, net amount)
    remaining: int  # what is left of the bill to credit after this one
    balance: int  # the account's balance after it

    def text(self, amount: int) -> str:
        return format_minor(amount, self.currency)


def credit_note_document(note: CreditNote) -> dict[str, Any]:
    """The credit note as a document: amounts as decimal text in the currency's digits."""
    return {
        "credit_no": note.credit_no, "bill_no": note.bill_no, "account": note.account,
        "currency": note.currency, "issue_date": note.issue_date.isoformat(),
        "reason": note.reason, "amount_excl_tax": note.text(note.amount_excl_tax),
        "tax_amount": note.text(note.tax_amount),
        "amount_incl_tax": note.text(note.amount_incl_tax),
        "lines": [{"line_no": n, "bill_line_no": bill_line, "description": text,
                   "amount": note.text(amount)}
                  for n, (bill_line, text, amount) in enumerate(note.lines, 1)],
    }  # fmt: skip


def write_credit_note(note: CreditNote, folder: Path) -> Path:
    """``<folder>/<credit_no>.json`` (sorted keys, UTF-8), written atomically."""
    payload = json.dumps(credit_note_document(note), sort_keys=True, indent=1,
                         ensure_ascii=False).encode()  # fmt: skip
    return atomic_write_bytes(folder / f"{note.credit_no}.json", payload + b"\n")


def credited_on(conn: duckdb.DuckDBPyConnection, bill_no: str) -> int:
    """Minor units credited on the bill so far (all its credit notes, tax included)."""
    row = conn.execute(
        "SELECT coalesce(sum(amount_incl_tax_minor), 0) FROM credit_note WHERE bill_no = ?",
        [bill_no],
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class _Bill:
    account_id: int
    account: str
    currency: str
    rate: int  # micro-units: 200_000 = 20 %
    due: int  # minor units
    tax: int  # minor units
    bill_date: date


def _tax_credited(conn: duckdb.DuckDBPyConnection, bill_no: str) -> int:
    rows = conn.execute("SELECT coalesce(sum(tax_minor), 0) FROM credit_note WHERE bill_no = ?",
                        [bill_no]).fetchall()  # fmt: skip
    return int(rows[0][0])


def _bill(conn: duckdb.DuckDBPyConnection, bill_no: str) -> _Bill:
    rows = conn.execute(
        "SELECT b.account_id, a.external_id, b.currency, CAST(b.tax_rate * 1000000 AS BIGINT), "
        "CAST(b.amount_due * 1000000 AS BIGINT), CAST(b.tax_amount * 1000000 AS BIGINT), "
        "b.bill_date FROM bill b JOIN billing_account a ON a.id = b.account_id "
        "WHERE b.bill_no = ?",
        [bill_no],
    ).fetchall()
    if not rows:
        raise NotFoundError(f"unknown bill {bill_no}")
    account_id, account, currency, rate, due, tax, bill_date = rows[0]
    return _Bill(int(account_id), account, currency, int(rate),
                 micros_to_minor(int(due), currency), micros_to_minor(int(tax), currency),
                 bill_date)  # fmt: skip


def line_credit_tax(parts: Sequence[int], rate: int, currency: str, policy: RoundingPolicy) -> int:
    """The tax (minor units) of credited bill lines ``parts`` (minor units, discounts < 0)
    at ``rate`` (micro-units), as the bill's rounding ``policy`` taxed them on the bill."""
    if not parts:
        return 0
    step: int = 10 ** (6 - minor_units(currency))
    got = group_tax(np.array(parts, np.int64) * step, np.zeros(1, np.int64),
                    np.array([rate], np.int64), np.array([step], np.int64), policy)  # fmt: skip
    return int(got.tax[0]) // step


def _line_credits(
    conn: duckdb.DuckDBPyConnection, bill_no: str, numbers: Sequence[int], currency: str
) -> tuple[list[tuple[int | None, str, int]], list[int], bool]:
    """The credited lines, the bill lines' amounts in them (charges and discounts), and
    whether every line of the bill is credited with them. Each named charge goes with its
    product's discount and credit lines (zero or negative, same product) if no charge of
    that product was credited before, so a discounted charge is credited at what was
    billed for it, never at its full price."""
    if len(set(numbers)) != len(numbers):
        raise ValidationError(f"bill {bill_no}: a line is named twice")
    lines = {
        int(n): (None if p is None else int(p), str(d), micros_to_minor(int(m), currency))
        for n, p, d, m in conn.execute(
            "SELECT line_no, product_id, description, CAST(amount * 1000000 AS BIGINT) "
            "FROM bill_line WHERE bill_no = ? ORDER BY line_no",
            [bill_no],
        ).fetchall()
    }
    done = {
        int(r[0])
        for r in conn.execute(
            "SELECT l.bill_line_no FROM credit_note_line l JOIN credit_note c "
            "ON c.credit_no = l.credit_no WHERE c.bill_no = ? AND l.bill_line_no IS NOT NULL",
            [bill_no],
        ).fetchall()
    }
    # products whose discount lines went with a charge credited before
    taken = {lines[n][0] for n in done if n in lines and lines[n][0] is not None}
    charged = {lines[n][0] for n in numbers if n in lines and lines[n][2] > 0}
    out: list[tuple[int | None, str, int]] = []
    parts: list[int] = []
    for n in numbers:
        if n not in lines:
            raise NotFoundError(f"bill {bill_no} has no line {n}")
        if n in done:
            raise ValidationError(f"bill {bill_no} line {n} is credited already")
        product, description, minor = lines[n]
        if minor <= 0:
            if product is not None and product in taken:
                raise ValidationError(f"bill {bill_no} line {n} ({description}) is credited "
                                      "already with its product's charge")  # fmt: skip
            if product is not None and product in charged:
                continue  # credited with its product's charge, below
            raise ValidationError(
                f"bill {bill_no} line {n} ({description}) is {format_minor(minor, currency)} "
                f"{currency}: only a charge can be credited (a discount goes with its charge)"
            )
        with_: list[int] = []
        if product is not None and product not in taken:
            taken.add(product)
            with_ = [k for k, (p, _, m) in lines.items() if p == product and m <= 0]
        net = minor + sum(lines[k][2] for k in with_)
        if net <= 0:
            raise ValidationError(
                f"bill {bill_no} line {n} ({description}) less its discount lines is "
                f"{format_minor(net, currency)} {currency}: nothing to credit"
            )
        if with_:
            description += f" (net of line{'s' if len(with_) > 1 else ''} " + ", ".join(
                map(str, with_)) + ")"  # fmt: skip
        out.append((n, description, net))
        parts += [minor, *(lines[k][2] for k in with_)]
    covered = done | set(numbers) | {k for k, (p, _, m) in lines.items() if m <= 0 and p in taken}
    return out, parts, covered >= set(lines)


def credit_bill(
    conn: duckdb.DuckDBPyConnection,
    bill_no: str,
    *,
    reason: str,
    issue_date: date,
    amount: str | None = None,
    lines: Sequence[int] | None = None,
    folder: Path | None = None,
) -> CreditNote:
    """Issue a credit note on ``bill_no`` for ``amount`` (tax included) or whole ``lines``.

    With ``folder``, its document (:func:`write_credit_note`) is written before the
    transaction commits: a failed write posts nothing, so running the same call again is
    safe (a commit that fails after the write leaves a document the retry overwrites with
    the same number)."""
    if (amount is None) == (lines is None or not len(lines)):
        raise ValidationError(f"credit of {bill_no}: give an amount or bill lines, not both")
    reason = reason.strip()
    if not reason:
        raise ValidationError(f"credit of {bill_no}: a credit note needs a reason")
    bill = _bill(conn, bill_no)
    if issue_date < bill.bill_date:
        raise ValidationError(
            f"credit of {bill_no}: {issue_date.isoformat()} is before the bill's date "
            f"({bill.bill_date.isoformat()}); a credit note cannot precede its bill"
        )
    account_id, account, currency, rate, due = (bill.account_id, bill.account, bill.currency,
                                                bill.rate, bill.due)  # fmt: skip
    if amount is not None:
        number, named = split_amount(amount)
        if named is not None and named != currency:
            raise ValidationError(f"credit of {bill_no}: {named} is not the bill's currency "
                                  f"({currency})")  # fmt: skip
        gross = parse_amount(number, currency, what=f"credit of {bill_no}: amount")
        net = mul_ratio_half_even(gross, 1_000_000, 1_000_000 + rate)
        credited: list[tuple[int | None, str, int]] = [(None, reason, net)]
        tax = gross - net
    else:
        assert lines is not None
        credited, parts, complete = _line_credits(conn, bill_no, list(lines), currency)
        net = sum(c[2] for c in credited)
        # taxed as the bill was (its policy: rounding mode, per rate group or per line);
        # never more than the bill's tax not yet credited, and exactly that on the note
        # that credits its last line, so crediting every line gives back the amount due
        tax_left = bill.tax - _tax_credited(conn, bill_no)
        tax = line_credit_tax(parts, rate, currency, policy_on(conn, bill.bill_date))
        tax = tax_left if complete else max(0, min(tax, tax_left))
        gross = net + tax
    with transaction(conn):
        left = due - credited_on(conn, bill_no)
        if gross > left:
            raise ValidationError(
                f"credit of {bill_no}: {format_minor(gross, currency)} {currency} is more than "
                f"what remains of the bill ({format_minor(max(left, 0), currency)} {currency} "
                f"of {format_minor(due, currency)}); nothing written"
            )
        post_unposted_bills(conn)
        row = conn.execute("SELECT count(*) FROM credit_note WHERE bill_no = ?",
                           [bill_no]).fetchone()  # fmt: skip
        credit_no = f"C{bill_no.removeprefix('B')}-{(row[0] if row else 0) + 1}"
        entry = post_entry(
            conn, kind="credit_note", account_id=account_id, currency=currency,
            entry_date=issue_date, reference=credit_no, description=f"{bill_no}: {reason}",
            lines=[("credit_notes", net), ("tax", tax), ("receivable", -gross)],
        )  # fmt: skip
        conn.execute(
            "INSERT INTO credit_note VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [credit_no, bill_no, account_id, issue_date, currency, reason, net, tax, gross,
             entry],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO credit_note_line VALUES (?, ?, ?, ?, ?)",
            [[credit_no, i, n, d, m] for i, (n, d, m) in enumerate(credited, 1)],
        )
        balance = account_balance(conn, account_id)
        note = CreditNote(credit_no, bill_no, account, currency, issue_date, reason, net, tax,
                          gross, tuple(credited), left - gross, balance)  # fmt: skip
        if folder is not None:
            write_credit_note(note, folder)
    return note
