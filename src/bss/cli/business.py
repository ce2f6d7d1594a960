"""CLI commands of the business layer: customers, accounts, catalog, orders, business TOML."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bss.cli.support import CliState, database, emit, get_state, table
from bss.errors import NotFoundError, ValidationError

if TYPE_CHECKING:  # the business modules (DuckDB, pyarrow) load in the commands that use
    # them: --help and the other commands start without them
    import duckdb

    from bss.customers import Account
    from bss.orders import Order

__all__ = ["register_business"]

customers_app = typer.Typer(help="Customers (TMF629) and billing accounts (TMF666).")
catalog_app = typer.Typer(help="Product catalog (TMF620): offerings and prices.")
orders_app = typer.Typer(help="Product orders (TMF622) and products (TMF637).")


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
    from bss import customers

    state = get_state(ctx)
    with database(state) as conn:
        customer = customers.create_customer(conn, external_id, name)
    emit(state, asdict(customer), f"customer {customer.external_id} created")


def _account_out(conn: duckdb.DuckDBPyConnection, account: Account) -> dict[str, Any]:
    """An account for --json: its fields (numeric ``id`` kept) and the business ids."""
    from bss import customers

    owner = customers.get_customer(conn, account.customer_id).external_id
    return {**asdict(account), "account": account.external_id, "customer": owner}


@customers_app.command("list")
def customers_list(ctx: typer.Context) -> None:
    """Billing accounts with their customers (the ids you gave them)."""
    from bss import customers

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
    from bss import customers

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
    from bss import customers

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
    from bss import customers

    state = get_state(ctx)
    with database(state) as conn:
        customers.set_tax_rate(conn, jurisdiction, name, rate)
    emit(state, {"jurisdiction": jurisdiction, "rate": rate}, f"{jurisdiction}: {rate}")


@catalog_app.command("list")
def catalog_list(ctx: typer.Context) -> None:
    """Offerings and their prices."""
    from bss import catalog

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
    from bss import catalog

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
    from bss import catalog
    from bss.db import transaction

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
    from bss import catalog

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
    from bss import catalog

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
    from bss import catalog

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
    from bss import orders

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


def _order_out(conn: duckdb.DuckDBPyConnection, order: Order) -> dict[str, Any]:
    """An order for --json: its fields and the account's business id."""
    from bss import customers

    return {**asdict(order), "account": customers.get_account(conn, order.account_id).external_id}


@orders_app.command("transition")
def orders_transition(
    ctx: typer.Context, external_id: str, to_state: str, reason: str = ""
) -> None:
    """Move an order to another TMF622 state (illegal moves are refused)."""
    from bss import orders

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
    from bss import customers, orders

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
    from bss.seed import apply_seed, load_seed_file

    state = get_state(ctx)
    with database(state) as conn:
        summary = apply_seed(conn, load_seed_file(file), str(file))
    emit(state, asdict(summary), f"created {summary.created}, updated {summary.updated}, "
         f"already there and unchanged {summary.existing}")  # fmt: skip


def register_business(app: typer.Typer) -> None:
    """Attach the business commands to the root app."""
    app.add_typer(customers_app, name="customers")
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(orders_app, name="orders")
    app.command("load")(load)
