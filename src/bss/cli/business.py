"""CLI commands of the business layer: customers, accounts, catalog, orders, bills."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer

from bss import catalog, customers, orders
from bss.billing.export import (
    EXPORT_FORMATS,
    bill_csv,
    bills_for_period,
    canonical_json,
    export_bills,
)
from bss.billing.period import parse_period
from bss.billing.run import run_billing
from bss.cli.scheduler import SchedulerOption, scheduler_client
from bss.cli.support import CliState, database, emit, get_state, table
from bss.currencies import minor_units
from bss.db import transaction
from bss.errors import NotFoundError, ValidationError
from bss.invoice.document import Invoice, invoices_for
from bss.invoice.html import render_html, statement_rows, total_rows
from bss.invoice.pdf import render_pdf
from bss.invoice.tmf678 import applied_rates, customer_bill, tmf678_json
from bss.seed import apply_seed, load_seed_file
from collectors.dataset import atomic_write_bytes

__all__ = ["register_business"]

customers_app = typer.Typer(help="Customers (TMF629) and billing accounts (TMF666).")
catalog_app = typer.Typer(help="Product catalog (TMF620): offerings and prices.")
orders_app = typer.Typer(help="Product orders (TMF622) and products (TMF637).")
bills_app = typer.Typer(
    help="Customer bills (TMF678): show and export, as text, JSON, CSV, "
    "HTML or PDF invoices, TMF678 JSON."
)


def _when(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(f"{text!r} is not an ISO 8601 date or time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@customers_app.command("add")
def customers_add(ctx: typer.Context, external_id: str, name: str) -> None:
    """Create a customer."""
    state = get_state(ctx)
    with database(state) as conn:
        customer = customers.create_customer(conn, external_id, name)
    emit(state, asdict(customer), f"customer {customer.external_id} created")


def _account_out(conn: duckdb.DuckDBPyConnection, account: customers.Account) -> dict[str, Any]:
    """An account for --json: its fields (numeric ``id`` kept) and the business ids."""
    owner = customers.get_customer(conn, account.customer_id).external_id
    return {**asdict(account), "account": account.external_id, "customer": owner}


@customers_app.command("list")
def customers_list(ctx: typer.Context) -> None:
    """Billing accounts with their customers (the ids you gave them)."""
    state = get_state(ctx)
    with database(state, read_only=True) as conn:
        accounts = [_account_out(conn, a) for a in customers.list_accounts(conn)]
    if state.json:
        emit(state, {"accounts": accounts})
        return
    table(state, "billing accounts", ["account", "customer", "name", "currency", "tax",
          "terms", "status"], [(a["account"], a["customer"], a["name"], a["currency"],
          a["tax_jurisdiction"], f"{a['payment_terms_days']} d", a["status"])
          for a in accounts])  # fmt: skip


@customers_app.command("account")
def customers_account(
    ctx: typer.Context,
    external_id: str,
    customer: str,
    name: str,
    currency: Annotated[str, typer.Option(help="ISO 4217 code")] = "EUR",
    tax: Annotated[str, typer.Option(help="tax jurisdiction")] = "DE",
    terms: Annotated[int, typer.Option(help="payment terms in days")] = 14,
    address: Annotated[
        str, typer.Option(help="postal address on its invoices ('\\n' between lines)")
    ] = "",
    vat_id: Annotated[str, typer.Option(help="the buyer's VAT id on its invoices")] = "",
) -> None:
    """Create a billing account for a customer."""
    state = get_state(ctx)
    with database(state) as conn:
        account = customers.create_account(
            conn, external_id, customer, name, currency=currency, tax_jurisdiction=tax,
            payment_terms_days=terms, address=address.replace("\\n", "\n"), vat_id=vat_id,
        )  # fmt: skip
        out = _account_out(conn, account)
    emit(state, out, f"account {account.external_id} of customer {out['customer']} created")


@customers_app.command("status")
def customers_status(
    ctx: typer.Context,
    external_id: str,
    status: str,
    account: Annotated[bool, typer.Option(help="the id is a billing account")] = False,
    reason: str = "",
) -> None:
    """Suspend, reactivate or close a customer or billing account."""
    state = get_state(ctx)
    with database(state) as conn:
        if account:
            result = _account_out(
                conn, customers.set_account_status(conn, external_id, status, reason)
            )
        else:
            result = asdict(customers.set_customer_status(conn, external_id, status, reason))
    emit(state, result, f"{external_id} is now {status}")


@customers_app.command("tax")
def customers_tax(ctx: typer.Context, jurisdiction: str, name: str, rate: str) -> None:
    """Set the tax rate of a jurisdiction (a decimal such as 0.19)."""
    state = get_state(ctx)
    with database(state) as conn:
        customers.set_tax_rate(conn, jurisdiction, name, rate)
    emit(state, {"jurisdiction": jurisdiction, "rate": rate}, f"{jurisdiction}: {rate}")


@catalog_app.command("list")
def catalog_list(ctx: typer.Context) -> None:
    """Offerings and their prices."""
    state = get_state(ctx)
    with database(state, read_only=True) as conn:
        prices = catalog.list_prices(conn)
        offerings = {o.id: o for o in catalog.list_offerings(conn)}
    if state.json:
        emit(state, {"offerings": [asdict(o) for o in offerings.values()],
                     "prices": [asdict(p) for p in prices]})  # fmt: skip
        return
    table(state, "prices", ["offering", "status", "price", "type", "amount", "tariff"],
          [(p.offering_id, offerings[p.offering_id].lifecycle_status, p.name, p.price_type,
            f"{p.amount} {p.currency}" if p.amount is not None else p.percentage or "",
            p.tariff_id) for p in prices])  # fmt: skip


@catalog_app.command("status")
def catalog_status(ctx: typer.Context, offering_id: str, status: str, reason: str = "") -> None:
    """Move an offering along inDesign -> active -> retired."""
    state = get_state(ctx)
    with database(state) as conn:
        offering = catalog.set_offering_status(conn, offering_id, status, reason)
    emit(state, asdict(offering), f"offering {offering_id} is now {status}")


Money = Annotated[str | None, typer.Option(help="decimal amount, e.g. 19.99 (exact, no floats)")]
Time = Annotated[str | None, typer.Option(help="ISO 8601 date or time (UTC if no zone)")]


@catalog_app.command("add")
def catalog_add(
    ctx: typer.Context,
    offering_id: Annotated[str, typer.Argument(help="the offering's id, e.g. mobile-s")],
    name: Annotated[str, typer.Argument(help="the offering's name for bills and lists")],
    specification: Annotated[str, typer.Option(help="product specification id (created if new)")],
    specification_name: Annotated[
        str | None, typer.Option(help="name of a new specification (default: its id)")
    ] = None,
    monthly: Money = None,
    one_time: Money = None,
    currency: Annotated[str, typer.Option(help="ISO 4217 code of the amounts")] = "EUR",
    tariff: Annotated[
        str | None, typer.Option(help="tariff id that rates the offering's usage")
    ] = None,
    discount: Annotated[
        str | None, typer.Option(help="fraction off the monthly fee, e.g. 0.10")
    ] = None,
    valid_from: Time = None,
    valid_to: Time = None,
    status: Annotated[str, typer.Option(help="active or inDesign")] = "active",
) -> None:
    """Add an offering with its prices (monthly, one-time, usage tariff, discount); all or none.

    Price ids are the offering id with -monthly, -one-time, -usage or -discount; valid from
    --valid-from (default now). Several prices or price versions: `catalog price`.
    """
    state = get_state(ctx)
    start = _when(valid_from)
    end = _when(valid_to) if valid_to is not None else None
    # (id suffix, name, type, amount, percentage, tariff) of each price asked for
    prices = [
        price
        for price in (
            ("monthly", "monthly fee", "recurring", monthly, None, None),
            ("one-time", "one-time fee", "oneTime", one_time, None, None),
            ("usage", "usage", "usage", None, None, tariff),
            ("discount", _discount_name(discount), "discount", None, discount, None),
        )
        if price[3] is not None or price[4] is not None or price[5] is not None
    ]
    with database(state) as conn, transaction(conn):
        try:
            catalog.get_specification(conn, specification)
        except NotFoundError:
            catalog.add_specification(conn, specification, specification_name or specification)
        offering = catalog.add_offering(
            conn, offering_id, specification, name, valid_from=start, valid_to=end,
            lifecycle_status=status,
        )  # fmt: skip
        for suffix, label, kind, amount, share, tariff_id in prices:
            catalog.add_price(
                conn, f"{offering_id}-{suffix}", offering_id, label, kind, valid_from=start,
                valid_to=end, amount=amount, currency=None if amount is None else currency,
                percentage=share, tariff_id=tariff_id,
            )  # fmt: skip
        out = _offering_out(conn, offering.id)
    _show_offering(state, out, f"offering {offering_id} added with {len(prices)} price(s)")


@catalog_app.command("price")
def catalog_price(
    ctx: typer.Context,
    offering_id: Annotated[str, typer.Argument(help="the offering the price belongs to")],
    price_id: Annotated[str, typer.Argument(help="the new price's id")],
    name: Annotated[str, typer.Argument(help="the price's name on bills, e.g. 'monthly fee'")],
    price_type: Annotated[
        str, typer.Option("--type", help="recurring, oneTime, usage or discount")
    ],
    amount: Money = None,
    currency: Annotated[str | None, typer.Option(help="ISO 4217 code of the amount")] = None,
    tariff: Annotated[str | None, typer.Option(help="tariff id of a usage price")] = None,
    percentage: Annotated[
        str | None, typer.Option(help="fraction off the recurring fee for a discount")
    ] = None,
    valid_from: Time = None,
    valid_to: Time = None,
) -> None:
    """Add one price to an offering (a new price version takes its own id and validity)."""
    state = get_state(ctx)
    with database(state) as conn:
        catalog.add_price(
            conn, price_id, offering_id, name, price_type, valid_from=_when(valid_from),
            valid_to=_when(valid_to) if valid_to is not None else None, amount=amount,
            currency=currency, percentage=percentage, tariff_id=tariff,
        )  # fmt: skip
        out = _offering_out(conn, offering_id)
    _show_offering(state, out, f"price {price_id} added to offering {offering_id}")


@catalog_app.command("show")
def catalog_show(
    ctx: typer.Context,
    offering_id: Annotated[str, typer.Argument(help="the offering's id")],
) -> None:
    """One offering: specification, lifecycle status, validity and every price."""
    state = get_state(ctx)
    with database(state, read_only=True) as conn:
        out = _offering_out(conn, offering_id)
    _show_offering(state, out, None)


@catalog_app.command("retire")
def catalog_retire(
    ctx: typer.Context,
    offering_id: Annotated[str, typer.Argument(help="the offering's id")],
    reason: Annotated[str, typer.Option(help="why, kept in the history")] = "",
) -> None:
    """Retire an offering: no new orders; products already sold keep running and billing."""
    state = get_state(ctx)
    with database(state) as conn:
        offering = catalog.set_offering_status(conn, offering_id, "retired", reason)
    emit(state, asdict(offering), f"offering {offering_id} is now retired")


def _discount_name(fraction: str | None) -> str:
    """``0.10`` -> ``discount 10 %`` (the text is checked as a decimal by add_price)."""
    try:
        percent = (Decimal(fraction or "") * 100).normalize()
    except InvalidOperation:
        return "discount"
    return f"discount {percent:f} %"


def _offering_out(conn: duckdb.DuckDBPyConnection, offering_id: str) -> dict[str, Any]:
    offering = catalog.get_offering(conn, offering_id)
    spec = catalog.get_specification(conn, offering.specification_id)
    return {
        **asdict(offering),
        "specification": asdict(spec),
        "prices": [asdict(p) for p in catalog.list_prices(conn, offering_id)],
    }


def _day(value: datetime | None) -> str:
    """A validity bound for people: the date alone at midnight UTC, '' for none."""
    if value is None:
        return ""
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%d}" if value.time() == time() else f"{value:%Y-%m-%d %H:%M}Z"


def _amount(value: Decimal) -> str:
    """19.990000 -> 19.99 (exact: only zeros beyond the cents are dropped)."""
    text = f"{value.normalize():f}"
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


def _show_offering(state: CliState, out: dict[str, Any], message: str | None) -> None:
    if state.json:
        emit(state, out, message)
        return
    spec = out["specification"]
    table(state, f"offering {out['id']}", ["field", "value"], [
        ("name", out["name"]),
        ("specification", spec["id"] if spec["name"] == spec["id"]
         else f"{spec['id']} ({spec['name']})"),
        ("status", out["lifecycle_status"]),
        ("valid", f"{_day(out['valid_from'])} .. {_day(out['valid_to']) or 'open'}"),
    ])  # fmt: skip
    table(state, "prices", ["price", "name", "type", "amount", "tariff", "valid"],
          [(p["id"], p["name"], p["price_type"],
            f"{_amount(p['amount'])} {p['currency']}" if p["amount"] is not None
            else _amount(p["percentage"]) if p["percentage"] is not None else "",
            p["tariff_id"] or "", f"{_day(p['valid_from'])} .. {_day(p['valid_to']) or 'open'}")
           for p in out["prices"]])  # fmt: skip
    if message:
        emit(state, {}, message)


@orders_app.command("add")
def orders_add(
    ctx: typer.Context,
    external_id: str,
    account: str,
    offering: Annotated[str, typer.Option(help="offering to add")],
    service_id: Annotated[
        list[str], typer.Option("--service-id", help="msisdn:..., imsi:... or ip:CIDR")
    ],
    start: Annotated[str | None, typer.Option(help="requested start (ISO 8601)")] = None,
    process: Annotated[bool, typer.Option(help="complete the order at once")] = True,
) -> None:
    """Order an offering for an account (one add item)."""
    state = get_state(ctx)
    item = orders.OrderItem("add", offering_id=offering, service_ids=tuple(service_id))
    with database(state) as conn:
        order = orders.create_order(
            conn, external_id, account, [item], requested_start=_when(start)
        )
        if process:
            order = orders.process_order(conn, order.id)
        out = _order_out(conn, order)
    emit(state, out, f"order {order.external_id} for account {out['account']}: {order.state}")


def _order_out(conn: duckdb.DuckDBPyConnection, order: orders.Order) -> dict[str, Any]:
    """An order for --json: its fields and the account's business id."""
    return {**asdict(order), "account": customers.get_account(conn, order.account_id).external_id}


@orders_app.command("transition")
def orders_transition(
    ctx: typer.Context, external_id: str, to_state: str, reason: str = ""
) -> None:
    """Move an order to another TMF622 state (illegal moves are refused)."""
    state = get_state(ctx)
    with database(state) as conn:
        order = (
            orders.process_order(conn, external_id)
            if to_state == "completed"
            else orders.transition_order(conn, external_id, to_state, reason)
        )
        out = _order_out(conn, order)
    emit(state, out, f"order {order.external_id}: {order.state}")


@orders_app.command("products")
def orders_products(ctx: typer.Context, account: str | None = None) -> None:
    """Products (subscriptions) with their accounts, offerings and service identifiers.

    A product's number (``product``) is the id a modify or delete order item names.
    """
    state = get_state(ctx)
    with database(state, read_only=True) as conn:
        products = orders.list_products(conn, account)
        accounts = {
            a: customers.get_account(conn, a).external_id for a in {p.account_id for p in products}
        }
    if state.json:
        emit(state, {"products": [{**asdict(p), "product": p.id, "account": accounts[p.account_id]}
                                  for p in products]})  # fmt: skip
        return
    table(state, "products", ["product", "account", "offering", "status", "start", "end",
          "services"], [(p.id, accounts[p.account_id], p.offering_id, p.status,
          f"{p.start_date:%Y-%m-%d}", f"{p.termination_date:%Y-%m-%d}" if p.termination_date
          else "", " ".join(p.service_ids)) for p in products])  # fmt: skip


def load(ctx: typer.Context, file: Path) -> None:
    """Apply a TOML file of tax rates, customers, accounts, catalog and orders (idempotent).

    An entry that exists with other values is refused with the differences listed; a price
    changes by ending it (valid_to) and adding a new price valid from that date.
    """
    state = get_state(ctx)
    with database(state) as conn:
        summary = apply_seed(conn, load_seed_file(file), str(file))
    emit(state, asdict(summary), f"created {summary.created}, updated {summary.updated}, "
         f"already there and unchanged {summary.existing}")  # fmt: skip


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


def register_business(app: typer.Typer) -> None:
    """Attach the business commands to the root app."""
    app.add_typer(customers_app, name="customers")
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(orders_app, name="orders")
    app.add_typer(bills_app, name="bills")
    app.command("load")(load)
    app.command("bill")(bill)
