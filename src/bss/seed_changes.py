"""What a seed file says differently about entities the workspace has already.

``rating-engine load`` creates what is new and leaves what is equal. An entity whose stored
values differ from the file is never kept silently: each difference is listed as
``field: <stored> in the workspace, <file> in the file`` and the load is refused. The one
change made in place is the versioning step of a price: ending an open price at a date
(``valid_to``) no issued bill reaches past, so a new price with its own id can take over
from that date while every bill already issued stays as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb

__all__ = ["differences", "issued_until", "stored"]

_TABLES = {
    "tax_rate": ("tax_rate", "jurisdiction", "name, rate"),
    "specification": ("product_specification", "id", "name, description"),
    "offering": (
        "product_offering",
        "id",
        "specification_id, name, lifecycle_status, valid_from, valid_to",
    ),
    "price": (
        "product_offering_price",
        "id",
        "offering_id, name, price_type, amount, currency, percentage, tariff_id, valid_from, "
        "valid_to",
    ),
    "customer": ("customer", "external_id", "name"),
    "account": (
        "billing_account a JOIN customer c ON c.id = a.customer_id",
        "a.external_id",
        "c.external_id AS customer, a.name, a.currency, a.tax_jurisdiction, a.payment_terms_days, "
        "a.address, a.vat_id",
    ),
    "order": (
        "product_order o JOIN billing_account a ON a.id = o.account_id",
        "o.external_id",
        "a.external_id AS account, o.requested_start, "
        "(SELECT list([i.action, i.offering_id, CAST(i.product_id AS VARCHAR), "
        "array_to_string(i.service_ids, ' ')] ORDER BY i.item_no) "
        "FROM product_order_item i WHERE i.order_id = o.id) AS items",
    ),
}


def stored(conn: duckdb.DuckDBPyConnection, kind: str, key: str) -> dict[str, Any] | None:
    """The stored values of one entity of ``kind`` (None when there is none)."""
    table, column, columns = _TABLES[kind]
    cursor = conn.execute(f"SELECT {columns} FROM {table} WHERE {column} = ?", [key])
    row = cursor.fetchone()
    if row is None:
        return None
    names = [d[0] for d in cursor.description or []]
    return dict(zip(names, row, strict=True))


def issued_until(conn: duckdb.DuckDBPyConnection) -> datetime | None:
    """The end of the latest period an issued bill covers (None before the first bill)."""
    row = conn.execute("SELECT max(period_end) FROM bill").fetchone()
    return None if row is None else row[0]


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def _same(have: Any, want: Any) -> bool:
    if have is None or want is None:
        return have is None and want is None
    if isinstance(have, Decimal):
        number = _number(want)
        return number is not None and number == have
    if isinstance(have, Sequence) and not isinstance(have, str):
        return isinstance(want, Sequence) and list(map(list, have)) == list(map(list, want))
    return bool(have == want)


def _show(value: Any, like: Any = None) -> str:
    if isinstance(like, Decimal) and _number(value) is not None:
        value = _number(value)  # a decimal string of the file shows as the number it is
    if value is None:
        return "(none)"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return repr(value) if isinstance(value, str) else str(value)


def differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """``field: <stored> in the workspace, <file> in the file`` for each field that differs
    (fields the file leaves out are not compared)."""
    return [
        f"{name}: {_show(have.get(name))} in the workspace, {_show(value, have.get(name))} "
        "in the file"
        for name, value in want.items()
        if not _same(have.get(name), value)
    ]
