"""Customers (TMF629), billing accounts (TMF666) and tax rates per jurisdiction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

import duckdb

from bss.currencies import is_currency
from bss.db import record_transition, transaction, utc_now
from bss.errors import IllegalTransitionError, NotFoundError, ValidationError

__all__ = [
    "Account",
    "Customer",
    "create_account",
    "create_customer",
    "get_account",
    "get_customer",
    "list_accounts",
    "set_account_status",
    "set_customer_status",
    "set_tax_rate",
]

_STATUSES = ("active", "suspended", "closed")
# closed is final; suspended can come back.
_ALLOWED = {"active": {"suspended", "closed"}, "suspended": {"active", "closed"}, "closed": set()}


@dataclass(frozen=True)
class Customer:
    id: int
    external_id: str
    name: str
    status: str


@dataclass(frozen=True)
class Account:
    id: int
    external_id: str
    customer_id: int
    name: str
    currency: str
    tax_jurisdiction: str
    payment_terms_days: int
    status: str
    address: str = ""  # printed on its invoices, lines separated by newlines
    vat_id: str = ""


def set_tax_rate(conn: duckdb.DuckDBPyConnection, jurisdiction: str, name: str, rate: str) -> None:
    """Create or replace the tax rate of a jurisdiction (``rate`` as a decimal string, 0.19)."""
    try:
        value = Decimal(rate)
    except InvalidOperation as exc:
        raise ValidationError(f"tax rate {jurisdiction}: rate {rate!r} is not a decimal") from exc
    if not (Decimal(0) <= value < Decimal(1)):
        raise ValidationError(f"tax rate {jurisdiction}: rate {rate} must be in [0, 1)")
    if value != value.quantize(Decimal("0.000001")):
        raise ValidationError(f"tax rate {jurisdiction}: rate {rate} has more than 6 decimals")
    conn.execute(
        "INSERT OR REPLACE INTO tax_rate VALUES (?, ?, ?)", [jurisdiction, name, str(value)]
    )


def create_customer(
    conn: duckdb.DuckDBPyConnection, external_id: str, name: str, *, at: datetime | None = None
) -> Customer:
    """Create a customer; ``external_id`` is the caller's key and must be new."""
    if not name.strip():
        raise ValidationError(f"customer {external_id}: name is empty")
    if _customer_row(conn, external_id) is not None:
        raise ValidationError(f"customer {external_id} exists already")
    when = at or utc_now()
    with transaction(conn):
        conn.execute(
            "INSERT INTO customer (external_id, name, created_at) VALUES (?, ?, ?)",
            [external_id, name, when],
        )
        customer = get_customer(conn, external_id)
        record_transition(conn, "customer", customer.id, None, "active", "created", at=when)
    return customer


def _customer_row(conn: duckdb.DuckDBPyConnection, key: str | int) -> tuple | None:
    column = "id" if isinstance(key, int) else "external_id"
    return conn.execute(
        f"SELECT id, external_id, name, status FROM customer WHERE {column} = ?", [key]
    ).fetchone()


def get_customer(conn: duckdb.DuckDBPyConnection, key: str | int) -> Customer:
    """A customer by id or external id."""
    row = _customer_row(conn, key)
    if row is None:
        raise NotFoundError(f"unknown customer {key}")
    return Customer(*row)


def create_account(
    conn: duckdb.DuckDBPyConnection,
    external_id: str,
    customer: str | int,
    name: str,
    *,
    currency: str,
    tax_jurisdiction: str,
    payment_terms_days: int = 14,
    address: str = "",
    vat_id: str = "",
    at: datetime | None = None,
) -> Account:
    """Create a billing account for an existing customer (``address``: the invoice's
    postal address, lines separated by newlines; ``vat_id``: the buyer's VAT id)."""
    owner = get_customer(conn, customer)
    if owner.status == "closed":
        raise ValidationError(f"account {external_id}: customer {owner.external_id} is closed")
    if not is_currency(currency):
        raise ValidationError(f"account {external_id}: currency {currency!r} is not ISO 4217")
    if not 0 <= payment_terms_days <= 120:
        raise ValidationError(
            f"account {external_id}: payment_terms_days {payment_terms_days} not in 0..120"
        )
    if (
        conn.execute("SELECT 1 FROM tax_rate WHERE jurisdiction = ?", [tax_jurisdiction]).fetchone()
        is None
    ):
        raise ValidationError(
            f"account {external_id}: unknown tax jurisdiction {tax_jurisdiction!r}"
        )
    if _account_row(conn, external_id) is not None:
        raise ValidationError(f"account {external_id} exists already")
    when = at or utc_now()
    with transaction(conn):
        conn.execute(
            "INSERT INTO billing_account (external_id, customer_id, name, currency, "
            "payment_terms_days, tax_jurisdiction, created_at, address, vat_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                external_id,
                owner.id,
                name,
                currency,
                payment_terms_days,
                tax_jurisdiction,
                when,
                address,
                vat_id,
            ],
        )
        account = get_account(conn, external_id)
        record_transition(conn, "billing_account", account.id, None, "active", "created", at=when)
    return account


_ACCOUNT_COLUMNS = (
    "id, external_id, customer_id, name, currency, tax_jurisdiction, payment_terms_days, status, "
    "coalesce(address, ''), coalesce(vat_id, '')"
)


def _account_row(conn: duckdb.DuckDBPyConnection, key: str | int) -> tuple | None:
    column = "id" if isinstance(key, int) else "external_id"
    return conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM billing_account WHERE {column} = ?", [key]
    ).fetchone()


def get_account(conn: duckdb.DuckDBPyConnection, key: str | int) -> Account:
    """A billing account by id or external id."""
    row = _account_row(conn, key)
    if row is None:
        raise NotFoundError(f"unknown billing account {key}")
    return Account(*row)


def list_accounts(conn: duckdb.DuckDBPyConnection) -> list[Account]:
    """All billing accounts, by id."""
    rows = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM billing_account ORDER BY id").fetchall()
    return [Account(*row) for row in rows]


def _set_status(
    conn: duckdb.DuckDBPyConnection, table: str, entity_id: int, current: str, new: str, reason: str
) -> None:
    if new not in _STATUSES:
        raise ValidationError(f"{table} {entity_id}: unknown status {new!r}")
    if new not in _ALLOWED[current]:
        raise IllegalTransitionError(f"{table} {entity_id}: cannot go from {current} to {new}")
    with transaction(conn):
        conn.execute(f"UPDATE {table} SET status = ? WHERE id = ?", [new, entity_id])
        record_transition(conn, table, entity_id, current, new, reason)


def set_customer_status(
    conn: duckdb.DuckDBPyConnection, key: str | int, status: str, reason: str = ""
) -> Customer:
    """Suspend, reactivate or close a customer (closed is final)."""
    customer = get_customer(conn, key)
    _set_status(conn, "customer", customer.id, customer.status, status, reason)
    return get_customer(conn, customer.id)


def set_account_status(
    conn: duckdb.DuckDBPyConnection, key: str | int, status: str, reason: str = ""
) -> Account:
    """Suspend, reactivate or close a billing account (closed is final)."""
    account = get_account(conn, key)
    _set_status(conn, "billing_account", account.id, account.status, status, reason)
    return get_account(conn, account.id)
