"""CLI commands of accounts receivable: payments, balances, ageing, dunning, credit notes.

``payments add``, ``accounts balance|ageing|dunning|adjust|write-off`` and ``bills credit``
(attached to the ``bills`` group of :mod:`bss.cli.bills`). Money on the command line
is decimal text in the account's currency; errors are the business layer's
(:class:`~bss.errors.ValidationError`, :class:`~bss.errors.NotFoundError`: exit 3).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bss.cli.bills import bills_app
from bss.cli.support import CliState, database, emit, get_state, table
from bss.errors import ValidationError

if TYPE_CHECKING:  # receivables (DuckDB, pyarrow) load in the commands that use them:
    # --help and the other commands start without them
    import duckdb

    from bss.receivables.adjustments import Movement
    from bss.receivables.ageing import Ageing

__all__ = ["register_receivables"]

payments_app = typer.Typer(help="Payments received (accounts receivable).")
accounts_app = typer.Typer(help="Account balances, ageing, dunning, adjustments, write-offs.")
# a negative amount reaches the command (and its clear refusal), not click's option parser
_AMOUNTS = {"ignore_unknown_options": True}


def _day(text: str | None, what: str = "--date") -> date:
    if text is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{what} {text!r} is not a date (YYYY-MM-DD)") from None


def _ready(conn: duckdb.DuckDBPyConnection) -> None:
    """Bills issued before the ledger existed are posted first (see bill_entries)."""
    from bss.db import transaction
    from bss.receivables.bill_entries import post_unposted_bills

    with transaction(conn):
        post_unposted_bills(conn)


def _movement(state: CliState, move: Movement, what: str) -> None:
    from bss.receivables.amounts import format_minor

    out = {**asdict(move), "amount_text": move.amount_text,
           "balance_text": format_minor(move.balance, move.currency)}  # fmt: skip
    emit(state, out, f"{what} {move.reference}: {move.amount_text} {move.currency}, account "
                     f"{move.account} balance {out['balance_text']} {move.currency}")  # fmt: skip


@payments_app.command("add", context_settings=_AMOUNTS)
def payments_add(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="the billing account's id")],
    amount: Annotated[str, typer.Argument(help='"125.00" (or "125.00 EUR")')],
    reference: Annotated[str, typer.Option(help="the bank's or provider's reference")],
    date_: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD (default today)")] = None,
    currency: Annotated[str | None, typer.Option(help="default: the account's")] = None,
) -> None:
    """Record a payment received; adding the same reference again changes nothing."""
    from bss.receivables.amounts import format_minor
    from bss.receivables.payments import add_payment

    state = get_state(ctx)
    when = _day(date_)
    with database(state) as conn:
        paid = add_payment(conn, account, amount, payment_date=when, reference=reference,
                           currency=currency)  # fmt: skip
    out = {**asdict(paid), "amount_text": paid.amount_text,
           "balance_text": format_minor(paid.balance, paid.currency)}  # fmt: skip
    said = "recorded" if paid.created else "was recorded already"
    balance = f"{out['balance_text']} {paid.currency}"
    emit(state, out, f"payment {paid.reference} of {paid.amount_text} {paid.currency} by "
                     f"{paid.account} {said}; balance {balance}")  # fmt: skip


@accounts_app.command("balance")
def accounts_balance(
    ctx: typer.Context, account: Annotated[str, typer.Argument(help="the billing account's id")]
) -> None:
    """What the account owes (negative: its credit), with every journal entry."""
    from bss.customers import get_account
    from bss.receivables.amounts import format_minor
    from bss.receivables.journal import account_balance, entries_of

    state = get_state(ctx)
    with database(state) as conn:
        _ready(conn)
        acct = get_account(conn, account)
        balance = account_balance(conn, acct.id)
        entries = entries_of(conn, acct.id)
    cur = acct.currency
    rows = [{"entry": e.id, "date": e.entry_date.isoformat(), "kind": e.kind,
             "reference": e.reference, "description": e.description, "amount": e.receivable,
             "amount_text": format_minor(e.receivable, cur)} for e in entries]  # fmt: skip
    out = {"account": acct.external_id, "currency": cur, "balance": balance,
           "balance_text": format_minor(balance, cur), "entries": rows}  # fmt: skip
    if state.json:
        emit(state, out)
        return
    table(state, f"account {acct.external_id} ({cur})", ["date", "kind", "reference", "amount"],
          [(r["date"], r["kind"], r["reference"], r["amount_text"]) for r in rows])  # fmt: skip
    emit(state, out, f"balance {out['balance_text']} {cur}")


def _aged_out(aged: Ageing) -> dict[str, Any]:
    from bss.receivables.amounts import format_minor

    cur = aged.currency
    return {
        "account": aged.account, "currency": cur, "balance": aged.balance,
        "buckets": aged.buckets, "unapplied": aged.unapplied,
        "buckets_text": {k: format_minor(v, cur) for k, v in aged.buckets.items()},
        "balance_text": format_minor(aged.balance, cur), "days_overdue": aged.days_overdue,
        "items": [{"reference": i.reference, "due_date": i.due_date.isoformat(),
                   "open": format_minor(i.amount, cur), "days_overdue": i.days_overdue}
                  for i in aged.items],
    }  # fmt: skip


@accounts_app.command("ageing")
def accounts_ageing(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Argument(help="one account (default: all)")] = None,
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default today)")] = None,
) -> None:
    """Open amounts by days past due: current, 1-30, 31-60, 61-90, 90+ (per account)."""
    from bss.customers import get_account
    from bss.receivables.ageing import BUCKETS, age_accounts
    from bss.receivables.amounts import format_minor

    state = get_state(ctx)
    when = _day(as_of, "--as-of")
    with database(state) as conn:
        _ready(conn)
        account_id = get_account(conn, account).id if account is not None else None
        aged = [_aged_out(a) for a in age_accounts(conn, when, account_id)]
    if state.json:
        emit(state, {"as_of": when.isoformat(), "accounts": aged})
        return
    table(state, f"ageing at {when}", ["account", "currency", *BUCKETS, "unapplied", "balance"],
          [(a["account"], a["currency"], *a["buckets_text"].values(),
            format_minor(a["unapplied"], a["currency"]), a["balance_text"])
           for a in aged])  # fmt: skip


@accounts_app.command("dunning")
def accounts_dunning(
    ctx: typer.Context,
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default today)")] = None,
    dry_run: Annotated[bool, typer.Option(help="report the changes, record nothing")] = False,
    reminder_days: Annotated[int, typer.Option(help="days past due for a reminder")] = 1,
    final_notice_days: Annotated[int, typer.Option(help="... for a final notice")] = 15,
    suspend_days: Annotated[int, typer.Option(help="... to suspend the products")] = 30,
    tolerance: Annotated[
        str, typer.Option(help="overdue amounts up to this (in each account's currency) wait")
    ] = "0",
) -> None:
    """Move accounts between none, reminder, final notice and suspended by what is overdue;
    a suspension (and its end) is a product order on the account's products."""
    from bss.receivables.amounts import format_minor
    from bss.receivables.dunning import DunningPolicy, run_dunning

    state = get_state(ctx)
    when = _day(as_of, "--as-of")
    try:
        let_be = Decimal(tolerance.strip())
    except InvalidOperation:
        raise ValidationError(f"--tolerance {tolerance!r} is not an amount") from None
    try:
        policy = DunningPolicy(reminder_days, final_notice_days, suspend_days, let_be)
    except ValueError as exc:
        raise ValidationError(f"dunning: {exc}") from None
    with database(state) as conn:
        steps = []
        for step in run_dunning(conn, when, policy, apply=not dry_run):
            steps.append({**asdict(step), "overdue_text": format_minor(step.overdue,
                                                                       step.currency)})  # fmt: skip
    if state.json:
        emit(state, {"as_of": when.isoformat(), "dry_run": dry_run, "changes": steps})
        return
    table(state, f"dunning at {when}" + (" (dry run)" if dry_run else ""),
          ["account", "from", "to", "overdue", "days", "order"],
          [(s["account"], s["from_level"], s["to_level"], f"{s['overdue_text']} {s['currency']}",
            s["days_overdue"], s["order"] or "") for s in steps])  # fmt: skip


@accounts_app.command("adjust", context_settings=_AMOUNTS)
def accounts_adjust(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="the billing account's id")],
    amount: Annotated[str, typer.Argument(help='"-5.00" credits the customer, "5.00" charges')],
    reason: Annotated[str, typer.Option(help="why (kept in the journal)")],
    date_: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD (default today)")] = None,
) -> None:
    """Move an account's balance by hand (a journal entry against 'adjustments')."""
    from bss.receivables.adjustments import adjust_balance

    state = get_state(ctx)
    when = _day(date_)
    with database(state) as conn:
        move = adjust_balance(conn, account, amount, reason=reason, entry_date=when)
    _movement(state, move, "adjustment")


@accounts_app.command("write-off")
def accounts_write_off(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="the billing account's id")],
    reason: Annotated[str, typer.Option(help="why (kept in the journal)")],
    amount: Annotated[str | None, typer.Option(help="default: all the account owes")] = None,
    date_: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD (default today)")] = None,
) -> None:
    """Write off what an account owes (or part of it) as bad debt."""
    from bss.receivables.adjustments import write_off

    state = get_state(ctx)
    when = _day(date_)
    with database(state) as conn:
        move = write_off(conn, account, amount, reason=reason, entry_date=when)
    _movement(state, move, "write-off")


def _line_numbers(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise ValidationError(f"--lines {text!r}: bill line numbers, e.g. 1,3") from None
    if not numbers:
        raise ValidationError(f"--lines {text!r}: no line numbers")
    return numbers


def bills_credit(
    ctx: typer.Context,
    bill_no: Annotated[str, typer.Argument(help="the bill to credit, e.g. B202610-000001")],
    reason: Annotated[str, typer.Option(help="why (printed on the credit note)")],
    amount: Annotated[str | None, typer.Option(help="tax included, e.g. 12.00")] = None,
    lines: Annotated[str | None, typer.Option(help="whole bill lines, e.g. 1,3")] = None,
    date_: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD (default today)")] = None,
) -> None:
    """Issue a credit note on a bill (the bill itself stays as issued)."""
    from bss.receivables.credit_notes import credit_bill

    state = get_state(ctx)
    when = _day(date_)
    numbers = _line_numbers(lines) if lines is not None else None
    if (amount is None) == (numbers is None):
        raise ValidationError("bills credit: give --amount or --lines (one of them)")
    with database(state) as conn:
        folder = state.workspace.reports / "credit-notes"
        # the document is written inside the credit's transaction: a failed write posts
        # nothing, so re-running the command after exit 8 is safe
        note = credit_bill(conn, bill_no, reason=reason, issue_date=when, amount=amount,
                           lines=numbers, folder=folder)  # fmt: skip
    document = folder / f"{note.credit_no}.json"
    sums = ("amount_excl_tax", "tax_amount", "amount_incl_tax", "remaining", "balance")
    out = {**asdict(note), **{f"{k}_text": note.text(getattr(note, k)) for k in sums},
           "document": str(document)}  # fmt: skip
    emit(state, out, f"credit note {note.credit_no} on {note.bill_no}: "
                     f"{out['amount_incl_tax_text']} {note.currency} ({out['tax_amount_text']} "
                     f"tax); {out['remaining_text']} left to credit; account {note.account} "
                     f"balance {out['balance_text']} {note.currency}; {document}")  # fmt: skip


def register_receivables(app: typer.Typer) -> None:
    """Attach ``payments``, ``accounts`` and ``bills credit``."""
    app.add_typer(payments_app, name="payments")
    app.add_typer(accounts_app, name="accounts")
    bills_app.command("credit")(bills_credit)
