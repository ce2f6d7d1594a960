"""CLI commands of billing: the billing run (``bill``) and the bills (``bills show/export``)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bss.billing.period import parse_period
from bss.cli.support import (
    CliState,
    SchedulerOption,
    database,
    emit,
    get_state,
    scheduler_client,
    table,
)
from bss.currencies import minor_units
from bss.errors import NotFoundError, ValidationError

if TYPE_CHECKING:  # billing and invoices (DuckDB, pyarrow, Numba) load in the commands that
    # use them: --help and the other commands start without them
    import duckdb

    from bss.invoice.document import Invoice

__all__ = ["bills_app", "money_text", "register_bills"]

bills_app = typer.Typer(
    help="Customer bills (TMF678): show and export, as text, JSON, CSV, "
    "HTML or PDF invoices, TMF678 JSON."
)


def bill(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="billing period YYYY-MM")],
    scheduler: SchedulerOption = None,
) -> None:
    """Run billing for a period: rate, charge, tax, write bills (idempotent, atomic).

    An account whose bill cannot be made is set aside as a billing exception (listed,
    exit code 10) and every other account is billed. Run again, it bills what is still
    missing - fixed exceptions, accounts and products added since - on supplementary
    bills.
    """
    from bss.billing.export import bills_for_period
    from bss.billing.run import run_billing

    state = get_state(ctx)
    with scheduler_client(scheduler, state.workspace) as client, database(state) as conn:
        result = run_billing(conn, state.workspace, period, client=client)
        shown = bills_for_period(conn, period, limit=_SHOWN_BILLS) if not state.json else []
    if not state.json:
        rows = [(b["bill_no"], b["account"], len(b["lines"]),
                 money_text(b["amount_incl_tax"], b["currency"]), b["currency"])
                for b in shown]  # fmt: skip
        more = f" (first {len(rows)} of {result.accounts})" if result.accounts > len(rows) else ""
        table(state, f"bills {period}{more}", ["bill", "account", "lines", "total", "currency"],
              rows)  # fmt: skip
        if result.exceptions:
            listed = [(e["account"], e["reason"], e["message"]) for e in result.exceptions]
            table(state, f"billing exceptions {period}: not billed (fix, then bill again)",
                  ["account", "reason", "message"], listed)  # fmt: skip
    made = ""
    if result.changed:
        kind = "supplementary pass" if result.supplementary else "pass"
        made = f" ({result.new_bills} new, {kind} {result.pass_no})"
    aside = ""
    if result.exceptions:
        accounts = len({e["account_id"] for e in result.exceptions})
        reasons = ", ".join(f"{k} {v}" for k, v in result.exceptions_by_reason.items())
        aside = f"; {accounts} account(s) set aside ({reasons})"
    emit(state, asdict(result), f"period {period}: {result.accounts} bills{made}{aside}, "
         f"changed={result.changed}, sha256 {result.bills_sha256[:16]}…, exports in "
         f"{result.exports}")  # fmt: skip
    if result.exceptions:
        from bss.cli.main import EXIT_BILLED_WITH_EXCEPTIONS

        raise typer.Exit(EXIT_BILLED_WITH_EXCEPTIONS)


#: Bills listed by ``bill`` (all of them are in the exports and ``bills show``).
_SHOWN_BILLS = 50


def money_text(amount: object, currency: str) -> str:
    """A bill amount as a person reads it: the currency's minor-unit digits ("416.56",
    not the stored "416.560000"). Never rounds: an amount off that grid (a bill made
    before invoices were rounded) is printed as stored."""
    exact = Decimal(str(amount))
    shown = exact.quantize(Decimal(1).scaleb(-minor_units(currency)))
    return f"{shown if shown == exact else exact:f}"


def _period_bills(
    conn: duckdb.DuckDBPyConnection, period: str, bill_no: str | None = None
) -> list[dict[str, Any]]:
    """The period's bills (or the one named); refuses a bad period and an unbilled one."""
    from bss.billing.export import bills_for_period

    parse_period(period)  # exit 3 on '2026-13' or 'garbage', not an empty success
    bills = [b for b in bills_for_period(conn, period) if bill_no in (None, b["bill_no"])]
    if bill_no is not None and not bills:
        raise NotFoundError(f"no bill {bill_no} in period {period}")
    billed = conn.execute("SELECT 1 FROM billing_run WHERE period = ?", [period]).fetchone()
    if billed is None:
        raise NotFoundError(
            f"period {period} has not been billed (run `rating-engine bill --period {period}`)"
        )
    return bills


BillFormat = Annotated[
    str,
    typer.Option("--format", "-f", help="text, json, tmf678, csv, html or pdf (html and pdf: "
                 "one bill, --bill-no)"),
]  # fmt: skip
_SHOW_FORMATS = ("text", "json", "tmf678", "csv", "html", "pdf")


def _write_out(state: CliState, payload: bytes, output: Path | None, what: str) -> None:
    """Bytes to --output (atomically) or to stdout."""
    from collectors.dataset import atomic_write_bytes

    if output is None:
        sys.stdout.buffer.write(payload)
        sys.stdout.flush()
        return
    atomic_write_bytes(output, payload)
    if not state.quiet:
        typer.echo(f"{what} written to {output}", err=True)


@bills_app.command("show")
def bills_show(
    ctx: typer.Context,
    period: str,
    bill_no: str | None = None,
    fmt: BillFormat = "text",
    output: Annotated[Path | None, typer.Option(help="write to this file, not stdout")] = None,
) -> None:
    """Print a period's bills (or one bill): lines, tax by rate, totals, as text or a format.

    ``--format tmf678`` gives TMF678 CustomerBill and AppliedCustomerBillingRate JSON;
    ``html`` and ``pdf`` the invoice of one bill (``--bill-no``).
    """
    from bss.billing.export import bill_csv, canonical_json
    from bss.invoice.document import invoices_for
    from bss.invoice.html import render_html
    from bss.invoice.pdf import render_pdf
    from bss.invoice.tmf678 import applied_rates, customer_bill, tmf678_json

    state = get_state(ctx)
    parse_period(period)  # refused before a database is opened or looked for
    if fmt not in _SHOW_FORMATS:
        raise ValidationError(f"--format {fmt!r}: expected one of {', '.join(_SHOW_FORMATS)}")
    if fmt in ("html", "pdf") and bill_no is None:
        raise ValidationError(
            f"--format {fmt} shows one invoice: name it with --bill-no "
            "(`bills export PERIOD FOLDER --format pdf` writes them all)"
        )
    with database(state, read_only=True) as conn:
        bills = _period_bills(conn, period, bill_no)
        invoices = invoices_for(conn, bills, state.workspace)
    if state.json and fmt == "text":
        emit(state, {"bills": bills})
    elif fmt == "json":  # the bytes bills_sha256 is taken over (for a whole period)
        _write_out(state, canonical_json(bills), output, "bills")
    elif fmt == "tmf678":
        document = {
            "customerBill": [customer_bill(i) for i in invoices],
            "appliedCustomerBillingRate": [r for i in invoices for r in applied_rates(i)],
        }
        _write_out(state, (tmf678_json(document) + "\n").encode(), output, "TMF678 bills")
    elif fmt == "csv":
        _write_out(state, b"".join(bill_csv(b) for b in bills), output, "bills")
    elif fmt == "html":
        _write_out(state, render_html(invoices[0]).encode(), output, "invoice")
    elif fmt == "pdf":
        if output is None and sys.stdout.isatty():
            raise ValidationError("--format pdf: give --output FILE (a PDF is not for a terminal)")
        _write_out(state, render_pdf(invoices[0]), output, "invoice")
    else:
        for inv in invoices:
            _show_text(state, inv)


def _show_text(state: CliState, inv: Invoice) -> None:
    """One invoice as tables: lines with humanised quantities, totals, statement."""
    from bss.invoice.html import statement_rows, total_rows

    b = inv.bill
    seller = f" from {inv.seller.name}" if inv.seller else ""
    rows: list[tuple[object, ...]] = [
        (ln.line_no, ln.line_type, ln.description, ln.quantity_text, inv.money(ln.amount))
        for ln in inv.lines
    ]
    rows += [("", "", label, "", amount) for label, amount in total_rows(inv)]
    rows += [("", "", label, "", amount) for label, amount in statement_rows(inv)]
    table(
        state,
        f"{b['bill_no']} {b['account']} {inv.buyer.name}{seller} {b['period']} due {b['due_date']}",
        ["#", "type", "description", "quantity", "amount"],
        rows,
    )
    rounding = sum((ln.amount - ln.amount_exact for ln in inv.lines), Decimal(0))
    if rounding and not state.quiet:
        typer.echo(f"rounding ({inv.rounding}): lines differ from their exact amounts by "
                   f"{rounding:f} {inv.currency} in total")  # fmt: skip


@bills_app.command("export")
def bills_export(
    ctx: typer.Context,
    period: str,
    folder: Path,
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="json, csv, html, pdf, tmf678 (repeat or comma-separate; default json,csv,html)",
        ),
    ] = None,
) -> None:
    """Write each bill of a period into a folder: JSON, CSV, HTML invoices (default), PDF
    invoices, TMF678 JSON."""
    from bss.billing.export import EXPORT_FORMATS, export_bills

    state = get_state(ctx)
    parse_period(period)  # refused before a database is opened or looked for
    formats = tuple(f.strip() for item in (fmt or ["json,csv,html"]) for f in item.split(",")
                    if f.strip())  # fmt: skip
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValidationError(f"--format {unknown[0]!r}: expected one of "
                              f"{', '.join(EXPORT_FORMATS)}")  # fmt: skip
    with database(state, read_only=True) as conn:
        files = export_bills(conn, period, folder, _period_bills(conn, period),
                             workspace=state.workspace, formats=formats)  # fmt: skip
    emit(state, {"files": [str(f) for f in files]}, f"{len(files)} files in {folder}")


def register_bills(app: typer.Typer) -> None:
    """Attach the billing commands to the root app."""
    app.add_typer(bills_app, name="bills")
    app.command("bill")(bill)
