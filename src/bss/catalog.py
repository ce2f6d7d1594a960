"""Product catalog (TMF620): specifications, offerings with validity and lifecycle, prices.

Price types: ``oneTime`` and ``recurring`` (monthly, prorated by day) carry an amount and
currency; ``usage`` refers to a tariff id that rating_engine rates with (its versions and
allowances live in the tariff file); ``discount`` takes a fraction off the offering's
recurring charge. Two prices of one offering with the same type and name may not overlap
in validity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

import duckdb

from bss.currencies import MAX_AMOUNT, is_currency
from bss.db import record_transition, transaction
from bss.errors import IllegalTransitionError, NotFoundError, ValidationError

__all__ = [
    "Offering",
    "Price",
    "Specification",
    "add_offering",
    "add_price",
    "add_specification",
    "get_offering",
    "get_specification",
    "list_offerings",
    "list_prices",
    "set_offering_status",
]

PRICE_TYPES = ("oneTime", "recurring", "usage", "discount")
_LIFECYCLE = {"inDesign": {"active", "retired"}, "active": {"retired"}, "retired": set()}


@dataclass(frozen=True)
class Specification:
    id: str
    name: str
    description: str


@dataclass(frozen=True)
class Offering:
    id: str
    specification_id: str
    name: str
    lifecycle_status: str
    valid_from: datetime
    valid_to: datetime | None


@dataclass(frozen=True)
class Price:
    id: str
    offering_id: str
    name: str
    price_type: str
    amount: Decimal | None
    percentage: Decimal | None
    currency: str | None
    recurring_period: str | None
    tariff_id: str | None
    valid_from: datetime
    valid_to: datetime | None


def add_specification(
    conn: duckdb.DuckDBPyConnection, spec_id: str, name: str, description: str = ""
) -> None:
    """Create a product specification (idempotent for identical content)."""
    row = conn.execute(
        "SELECT name, description FROM product_specification WHERE id = ?", [spec_id]
    ).fetchone()
    if row is not None:
        if row != (name, description):
            raise ValidationError(f"specification {spec_id} exists with other content")
        return
    conn.execute("INSERT INTO product_specification VALUES (?, ?, ?)", [spec_id, name, description])


def get_specification(conn: duckdb.DuckDBPyConnection, spec_id: str) -> Specification:
    """A product specification by id."""
    row = conn.execute(
        "SELECT id, name, description FROM product_specification WHERE id = ?", [spec_id]
    ).fetchone()
    if row is None:
        raise NotFoundError(f"unknown product specification {spec_id}")
    return Specification(*row)


def add_offering(
    conn: duckdb.DuckDBPyConnection,
    offering_id: str,
    specification_id: str,
    name: str,
    *,
    valid_from: datetime,
    valid_to: datetime | None = None,
    lifecycle_status: str = "active",
) -> Offering:
    """Create a product offering."""
    if (
        conn.execute(
            "SELECT 1 FROM product_specification WHERE id = ?", [specification_id]
        ).fetchone()
        is None
    ):
        raise NotFoundError(f"offering {offering_id}: unknown specification {specification_id}")
    if lifecycle_status not in _LIFECYCLE:
        raise ValidationError(f"offering {offering_id}: unknown lifecycle {lifecycle_status!r}")
    if valid_to is not None and valid_to <= valid_from:
        raise ValidationError(f"offering {offering_id}: valid_to is not after valid_from")
    if conn.execute("SELECT 1 FROM product_offering WHERE id = ?", [offering_id]).fetchone():
        raise ValidationError(f"offering {offering_id} exists already")
    with transaction(conn):
        conn.execute(
            "INSERT INTO product_offering VALUES (?, ?, ?, ?, ?, ?)",
            [offering_id, specification_id, name, lifecycle_status, valid_from, valid_to],
        )
        record_transition(conn, "product_offering", offering_id, None, lifecycle_status, "created")
    return get_offering(conn, offering_id)


def get_offering(conn: duckdb.DuckDBPyConnection, offering_id: str) -> Offering:
    """An offering by id."""
    row = conn.execute(
        "SELECT id, specification_id, name, lifecycle_status, valid_from, valid_to "
        "FROM product_offering WHERE id = ?",
        [offering_id],
    ).fetchone()
    if row is None:
        raise NotFoundError(f"unknown product offering {offering_id}")
    return Offering(*row)


def list_offerings(conn: duckdb.DuckDBPyConnection) -> list[Offering]:
    """All offerings, by id."""
    rows = conn.execute(
        "SELECT id, specification_id, name, lifecycle_status, valid_from, valid_to "
        "FROM product_offering ORDER BY id"
    ).fetchall()
    return [Offering(*row) for row in rows]


def set_offering_status(
    conn: duckdb.DuckDBPyConnection, offering_id: str, status: str, reason: str = ""
) -> Offering:
    """Move an offering along inDesign -> active -> retired."""
    offering = get_offering(conn, offering_id)
    if status not in _LIFECYCLE.get(offering.lifecycle_status, set()):
        raise IllegalTransitionError(
            f"offering {offering_id}: cannot go from {offering.lifecycle_status} to {status}"
        )
    with transaction(conn):
        conn.execute(
            "UPDATE product_offering SET lifecycle_status = ? WHERE id = ?", [status, offering_id]
        )
        record_transition(
            conn, "product_offering", offering_id, offering.lifecycle_status, status, reason
        )
    return get_offering(conn, offering_id)


def _decimal(value: str | None, what: str) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise ValidationError(f"{what}: {value!r} is not a decimal number") from exc
    if not number.is_finite():
        raise ValidationError(f"{what}: {value!r} is not a finite number")
    if abs(number) > MAX_AMOUNT:
        raise ValidationError(
            f"{what}: {value} does not fit DECIMAL(18,6) (at most 12 digits before the point)"
        )
    if number != number.quantize(Decimal("0.000001")):
        raise ValidationError(f"{what}: {value} has more than 6 decimals")
    return number


def add_price(
    conn: duckdb.DuckDBPyConnection,
    price_id: str,
    offering_id: str,
    name: str,
    price_type: str,
    *,
    valid_from: datetime,
    valid_to: datetime | None = None,
    amount: str | None = None,
    currency: str | None = None,
    percentage: str | None = None,
    tariff_id: str | None = None,
) -> Price:
    """Add a price to an offering; amounts are decimal strings, never floats."""
    what = f"price {price_id} of offering {offering_id}"
    get_offering(conn, offering_id)
    if price_type not in PRICE_TYPES:
        raise ValidationError(f"{what}: price_type {price_type!r} not one of {PRICE_TYPES}")
    value = _decimal(amount, f"{what}: amount")
    share = _decimal(percentage, f"{what}: percentage")
    if price_type in ("oneTime", "recurring"):
        if value is None or value < 0:
            raise ValidationError(f"{what}: a {price_type} price needs a non-negative amount")
        if not currency:
            raise ValidationError(f"{what}: a {price_type} price needs a currency")
    if currency is not None and not is_currency(currency):
        raise ValidationError(f"{what}: currency {currency!r} is not an ISO 4217 code")
    if price_type == "usage" and not tariff_id:
        raise ValidationError(f"{what}: a usage price needs a tariff_id")
    if price_type == "discount" and (share is None or not (0 < share <= 1)):
        raise ValidationError(f"{what}: a discount needs a percentage in (0, 1]")
    if valid_to is not None and valid_to <= valid_from:
        raise ValidationError(f"{what}: valid_to is not after valid_from")
    overlap = conn.execute(
        "SELECT id FROM product_offering_price WHERE offering_id = ? AND price_type = ? "
        "AND name = ? AND (valid_to IS NULL OR valid_to > ?) "
        "AND (CAST(? AS TIMESTAMPTZ) IS NULL OR valid_from < ?)",
        [offering_id, price_type, name, valid_from, valid_to, valid_to],
    ).fetchone()
    if overlap is not None:
        raise ValidationError(f"{what}: validity overlaps price {overlap[0]}")
    if conn.execute("SELECT 1 FROM product_offering_price WHERE id = ?", [price_id]).fetchone():
        raise ValidationError(f"{what}: exists already")
    conn.execute(
        "INSERT INTO product_offering_price VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            price_id,
            offering_id,
            name,
            price_type,
            None if value is None else str(value),
            None if share is None else str(share),
            currency,
            "month" if price_type == "recurring" else None,
            tariff_id,
            valid_from,
            valid_to,
        ],
    )
    return next(p for p in list_prices(conn, offering_id) if p.id == price_id)


def list_prices(conn: duckdb.DuckDBPyConnection, offering_id: str | None = None) -> list[Price]:
    """Prices of one offering, or of all, by offering and id."""
    sql = (
        "SELECT id, offering_id, name, price_type, amount, percentage, currency, "
        "recurring_period, tariff_id, valid_from, valid_to FROM product_offering_price"
    )
    params: list[object] = []
    if offering_id is not None:
        sql += " WHERE offering_id = ?"
        params.append(offering_id)
    rows = conn.execute(sql + " ORDER BY offering_id, id", params).fetchall()
    return [Price(*row) for row in rows]
