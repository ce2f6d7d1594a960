"""Product orders (TMF622) and the products (TMF637 subscriptions) they create.

An order is ``acknowledged`` when created. Completing it (``process_order``) runs it
through ``inProgress`` and applies its items: ``add`` creates a product bound to service
identifiers (``msisdn:<E.164 digits>``, ``imsi:<digits>``, ``ip:<CIDR>``), ``modify``
moves a product to another offering (the old product ends, a new one starts, so
recurring charges prorate on both sides), ``delete`` terminates a product, ``suspend`` and
``resume`` set its status (dunning). All items applied -> ``completed``; some ->
``partial``; none -> ``failed``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from bss.catalog import get_offering
from bss.customers import get_account
from bss.db import record_transition, transaction, utc_now
from bss.errors import BssError, IllegalTransitionError, NotFoundError, ValidationError

__all__ = [
    "ITEM_ACTIONS",
    "ORDER_TRANSITIONS",
    "Order",
    "OrderItem",
    "Product",
    "create_order",
    "get_order",
    "get_product",
    "list_products",
    "parse_service_id",
    "process_order",
    "transition_order",
]

#: What an order item does; ``suspend`` / ``resume`` change a product's status only
#: (dunning suspends an account's products for non-payment, and resumes them).
ITEM_ACTIONS = ("add", "modify", "delete", "suspend", "resume")

# TMF622 order lifecycle; states with no entry are final.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "acknowledged": frozenset({"inProgress", "pending", "rejected"}),
    "pending": frozenset({"inProgress", "assessingCancellation"}),
    "inProgress": frozenset(
        {"completed", "partial", "failed", "held", "pending", "assessingCancellation"}
    ),
    "held": frozenset({"inProgress", "assessingCancellation", "cancelled"}),
    "assessingCancellation": frozenset({"pendingCancellation", "inProgress", "held"}),
    "pendingCancellation": frozenset({"cancelled"}),
}


@dataclass(frozen=True)
class OrderItem:
    action: str
    offering_id: str | None = None
    product_id: int | None = None
    service_ids: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Order:
    id: int
    external_id: str
    account_id: int
    state: str
    requested_start: datetime
    items: tuple[OrderItem, ...]


@dataclass(frozen=True)
class Product:
    id: int
    account_id: int
    offering_id: str
    status: str
    start_date: datetime
    termination_date: datetime | None
    service_ids: tuple[str, ...]


def parse_service_id(text: str) -> tuple[str, str]:
    """``'msisdn:4915112345678'`` -> ``('msisdn', '4915112345678')``, validated."""
    kind, _, value = text.partition(":")
    if kind == "msisdn":
        if not (value.isdigit() and 5 <= len(value) <= 15):
            raise ValidationError(f"service id {text!r}: an MSISDN is 5-15 E.164 digits, no '+'")
        return kind, value
    if kind == "imsi":
        if not (value.isdigit() and 14 <= len(value) <= 15):
            raise ValidationError(f"service id {text!r}: an IMSI is 14-15 digits")
        return kind, value
    if kind == "ip":
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValidationError(f"service id {text!r}: {exc}") from exc
        # One canonical text per binding: a single address without its /32 or /128.
        return kind, str(net.network_address) if net.num_addresses == 1 else str(net)
    raise ValidationError(f"service id {text!r}: kind must be msisdn, imsi or ip")


def _validate_item(
    conn: duckdb.DuckDBPyConnection, item: OrderItem, account_id: int, at: datetime
) -> None:
    if item.action not in ITEM_ACTIONS:
        raise ValidationError(f"order item action {item.action!r} not {'/'.join(ITEM_ACTIONS)}")
    for sid in item.service_ids:
        parse_service_id(sid)
    if item.action == "add" and item.offering_id is None:
        raise ValidationError("an add item needs an offering")
    if item.action != "add":
        if item.product_id is None:
            raise ValidationError(f"a {item.action} item needs a product")
        product = get_product(conn, item.product_id)
        if product.account_id != account_id:
            raise ValidationError(f"product {product.id} belongs to another account")
        if product.status == "terminated":
            raise ValidationError(f"product {product.id} is terminated")
        wanted = {"suspend": "active", "resume": "suspended"}.get(item.action)
        if wanted is not None and product.status != wanted:
            raise ValidationError(f"product {product.id} is {product.status}, not {wanted}")
    if item.offering_id is not None:
        offering = get_offering(conn, item.offering_id)
        if offering.lifecycle_status != "active":
            raise ValidationError(
                f"offering {offering.id} is {offering.lifecycle_status}, not orderable"
            )
        if at < offering.valid_from or (offering.valid_to is not None and at >= offering.valid_to):
            raise ValidationError(f"offering {offering.id} is not valid at {at.isoformat()}")


def create_order(
    conn: duckdb.DuckDBPyConnection,
    external_id: str,
    account: str | int,
    items: list[OrderItem],
    *,
    requested_start: datetime,
) -> Order:
    """Validate and store an order in state ``acknowledged``; nothing is written on error."""
    acct = get_account(conn, account)
    if acct.status != "active":
        raise ValidationError(f"order {external_id}: account {acct.external_id} is {acct.status}")
    if not items:
        raise ValidationError(f"order {external_id}: no items")
    if conn.execute("SELECT 1 FROM product_order WHERE external_id = ?", [external_id]).fetchone():
        raise ValidationError(f"order {external_id} exists already")
    for number, item in enumerate(items, 1):
        try:
            _validate_item(conn, item, acct.id, requested_start)
        except BssError as exc:
            raise type(exc)(f"order {external_id} item {number}: {exc}") from exc
    with transaction(conn):
        row = conn.execute(
            "INSERT INTO product_order (external_id, account_id, state, requested_start, "
            "created_at) VALUES (?, ?, 'acknowledged', ?, ?) RETURNING id",
            [external_id, acct.id, requested_start, utc_now()],
        ).fetchone()
        assert row is not None
        for number, item in enumerate(items, 1):
            conn.execute(
                "INSERT INTO product_order_item (order_id, item_no, action, offering_id, "
                "product_id, service_ids) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    row[0],
                    number,
                    item.action,
                    item.offering_id,
                    item.product_id,
                    list(item.service_ids),
                ],
            )
        record_transition(conn, "product_order", row[0], None, "acknowledged", "created")
    return get_order(conn, external_id)


def get_order(conn: duckdb.DuckDBPyConnection, key: str | int) -> Order:
    """An order with its items, by id or external id."""
    column = "id" if isinstance(key, int) else "external_id"
    row = conn.execute(
        "SELECT id, external_id, account_id, state, requested_start FROM product_order "
        f"WHERE {column} = ?",
        [key],
    ).fetchone()
    if row is None:
        raise NotFoundError(f"unknown product order {key}")
    items = conn.execute(
        "SELECT action, offering_id, product_id, service_ids FROM product_order_item "
        "WHERE order_id = ? ORDER BY item_no",
        [row[0]],
    ).fetchall()
    return Order(
        id=row[0],
        external_id=row[1],
        account_id=row[2],
        state=row[3],
        requested_start=row[4],
        items=tuple(OrderItem(a, o, p, tuple(s)) for a, o, p, s in items),
    )


def transition_order(
    conn: duckdb.DuckDBPyConnection, key: str | int, to_state: str, reason: str = ""
) -> Order:
    """Move an order along the TMF622 lifecycle; illegal moves raise."""
    order = get_order(conn, key)
    _check_transition(order, to_state)
    with transaction(conn):
        _set_state(conn, order, to_state, reason)
    return get_order(conn, order.id)


def _check_transition(order: Order, to_state: str) -> None:
    if to_state not in ORDER_TRANSITIONS.get(order.state, frozenset()):
        raise IllegalTransitionError(
            f"order {order.external_id}: cannot go from {order.state} to {to_state}"
        )


def _set_state(conn: duckdb.DuckDBPyConnection, order: Order, to_state: str, reason: str) -> None:
    final = to_state in ("completed", "partial", "failed", "cancelled", "rejected")
    conn.execute(
        "UPDATE product_order SET state = ?, completed_at = ? WHERE id = ?",
        [to_state, utc_now() if final else None, order.id],
    )
    record_transition(conn, "product_order", order.id, order.state, to_state, reason)


def process_order(conn: duckdb.DuckDBPyConnection, key: str | int) -> Order:
    """Run an acknowledged (or held/pending) order to completion, applying its items atomically."""
    order = get_order(conn, key)
    if order.state != "inProgress":
        _check_transition(order, "inProgress")
    at = order.requested_start
    with transaction(conn):
        if order.state != "inProgress":
            _set_state(conn, order, "inProgress", "processing")
            order = Order(
                order.id,
                order.external_id,
                order.account_id,
                "inProgress",
                order.requested_start,
                order.items,
            )
        done = 0
        for number, item in enumerate(order.items, 1):
            try:
                _validate_item(conn, item, order.account_id, at)
                _apply_item(conn, order, item, at)
                state, done = "completed", done + 1
            except BssError as exc:
                state = "failed"
                record_transition(
                    conn,
                    "product_order_item",
                    f"{order.id}/{number}",
                    "acknowledged",
                    "failed",
                    str(exc),
                )
            conn.execute(
                "UPDATE product_order_item SET state = ? WHERE order_id = ? AND item_no = ?",
                [state, order.id, number],
            )
        outcome = "completed" if done == len(order.items) else "partial" if done else "failed"
        _set_state(conn, order, outcome, f"{done} of {len(order.items)} items applied")
    return get_order(conn, order.id)


def _apply_item(
    conn: duckdb.DuckDBPyConnection, order: Order, item: OrderItem, at: datetime
) -> None:
    if item.action in ("suspend", "resume"):  # the product keeps running, barred or not
        assert item.product_id is not None
        old = get_product(conn, item.product_id)
        status = "suspended" if item.action == "suspend" else "active"
        conn.execute("UPDATE product SET status = ? WHERE id = ?", [status, old.id])
        record_transition(conn, "product", old.id, old.status, status,
                          f"order {order.external_id} {item.action}")  # fmt: skip
        return
    if item.action in ("modify", "delete"):
        assert item.product_id is not None
        old = get_product(conn, item.product_id)
        _terminate(conn, old, at, f"order {order.external_id} {item.action}")
        if item.action == "delete":
            return
        service_ids = item.service_ids or old.service_ids
        offering_id = item.offering_id or old.offering_id
    else:
        assert item.offering_id is not None
        service_ids, offering_id = item.service_ids, item.offering_id
    parsed = [parse_service_id(s) for s in service_ids]
    for kind, value in parsed:
        clash = conn.execute(
            "SELECT product_id FROM service_identifier WHERE key_type = ? AND key = ? "
            "AND (active_to IS NULL OR active_to > ?)",
            [kind, value, at],
        ).fetchone()
        if clash is not None:
            raise ValidationError(f"{kind}:{value} is in use by product {clash[0]}")
    row = conn.execute(
        "INSERT INTO product (account_id, offering_id, status, start_date) "
        "VALUES (?, ?, 'active', ?) RETURNING id",
        [order.account_id, offering_id, at],
    ).fetchone()
    assert row is not None
    for kind, value in parsed:
        conn.execute(
            "INSERT INTO service_identifier VALUES (?, ?, ?, ?, NULL)", [row[0], kind, value, at]
        )
    record_transition(conn, "product", row[0], None, "active", f"order {order.external_id}")


def _terminate(
    conn: duckdb.DuckDBPyConnection, product: Product, at: datetime, reason: str
) -> None:
    if at < product.start_date:
        raise ValidationError(f"product {product.id} cannot end before it starts")
    conn.execute(
        "UPDATE product SET status = 'terminated', termination_date = ? WHERE id = ?",
        [at, product.id],
    )
    conn.execute(
        "UPDATE service_identifier SET active_to = ? WHERE product_id = ? AND active_to IS NULL",
        [at, product.id],
    )
    record_transition(conn, "product", product.id, product.status, "terminated", reason)


def get_product(conn: duckdb.DuckDBPyConnection, product_id: int) -> Product:
    """A product (subscription) with its service identifiers."""
    row = conn.execute(
        "SELECT id, account_id, offering_id, status, start_date, termination_date "
        "FROM product WHERE id = ?",
        [product_id],
    ).fetchone()
    if row is None:
        raise NotFoundError(f"unknown product {product_id}")
    ids = conn.execute(
        "SELECT key_type || ':' || key FROM service_identifier WHERE product_id = ? "
        "ORDER BY key_type, key",
        [product_id],
    ).fetchall()
    return Product(
        id=row[0],
        account_id=row[1],
        offering_id=row[2],
        status=row[3],
        start_date=row[4],
        termination_date=row[5],
        service_ids=tuple(i[0] for i in ids),
    )


def list_products(
    conn: duckdb.DuckDBPyConnection, account: str | int | None = None
) -> list[Product]:
    """Products of one account or of all, by id."""
    if account is None:
        rows = conn.execute("SELECT id FROM product ORDER BY id").fetchall()
    else:
        acct = get_account(conn, account)
        rows = conn.execute(
            "SELECT id FROM product WHERE account_id = ? ORDER BY id", [acct.id]
        ).fetchall()
    return [get_product(conn, r[0]) for r in rows]
