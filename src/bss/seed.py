"""Load business data from a TOML file: tax rates, customers, accounts, catalog, orders.

Used by the demo and by ``rating-engine load``. Applying a file is idempotent: entities
whose key exists are left as they are, and the whole file applies in one transaction,
so an interrupted load leaves nothing half-done.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from bss import catalog, customers, orders
from bss.db import transaction
from bss.errors import BssError, ValidationError

__all__ = ["SeedSummary", "apply_seed", "load_seed_file"]


@dataclass(frozen=True)
class SeedSummary:
    created: dict[str, int]
    existing: dict[str, int]


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(f"{where}: {value!r} is not an ISO 8601 time") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValidationError(f"{where}: expected a date-time, got {value!r}")


def _exists(conn: duckdb.DuckDBPyConnection, table: str, column: str, key: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [key]).fetchone() is not None


def load_seed_file(path: Path) -> dict[str, Any]:
    """Parse a seed TOML file (errors name the file)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"{path}: {exc}") from exc


def apply_seed(conn: duckdb.DuckDBPyConnection, data: dict[str, Any], source: str) -> SeedSummary:
    """Create what ``data`` describes and is not there yet; all or nothing."""
    created: dict[str, int] = {}
    existing: dict[str, int] = {}

    def count(kind: str, new: bool) -> None:
        target = created if new else existing
        target[kind] = target.get(kind, 0) + 1

    try:
        with transaction(conn):
            for tax in data.get("tax_rate", []):
                new = not _exists(conn, "tax_rate", "jurisdiction", tax["jurisdiction"])
                if new:
                    customers.set_tax_rate(conn, tax["jurisdiction"], tax["name"], str(tax["rate"]))
                count("tax_rate", new)
            for spec in data.get("specification", []):
                catalog.add_specification(
                    conn, spec["id"], spec["name"], spec.get("description", "")
                )
            for i, off in enumerate(data.get("offering", [])):
                where = f"{source}: offering[{i}]"
                new = not _exists(conn, "product_offering", "id", off["id"])
                if new:
                    catalog.add_offering(
                        conn, off["id"], off["specification"], off["name"],
                        valid_from=_time(off["valid_from"], where),
                        valid_to=_time(off["valid_to"], where) if "valid_to" in off else None,
                        lifecycle_status=off.get("status", "active"),
                    )  # fmt: skip
                count("offering", new)
                for j, price in enumerate(off.get("price", [])):
                    pwhere = f"{where}.price[{j}]"
                    new = not _exists(conn, "product_offering_price", "id", price["id"])
                    if new:
                        catalog.add_price(
                            conn, price["id"], off["id"], price["name"], price["type"],
                            valid_from=_time(price.get("valid_from", off["valid_from"]), pwhere),
                            valid_to=_time(price["valid_to"], pwhere) if "valid_to" in price
                            else None,
                            amount=None if "amount" not in price else str(price["amount"]),
                            currency=price.get("currency"),
                            percentage=None if "percentage" not in price
                            else str(price["percentage"]),
                            tariff_id=price.get("tariff"),
                        )  # fmt: skip
                    count("price", new)
            for cust in data.get("customer", []):
                new = not _exists(conn, "customer", "external_id", cust["id"])
                if new:
                    customers.create_customer(conn, cust["id"], cust["name"])
                count("customer", new)
                for acct in cust.get("account", []):
                    new = not _exists(conn, "billing_account", "external_id", acct["id"])
                    if new:
                        customers.create_account(
                            conn, acct["id"], cust["id"], acct["name"],
                            currency=acct["currency"], tax_jurisdiction=acct["tax_jurisdiction"],
                            payment_terms_days=int(acct.get("payment_terms_days", 14)),
                        )  # fmt: skip
                    count("account", new)
            for i, order in enumerate(data.get("order", [])):
                where = f"{source}: order[{i}]"
                new = not _exists(conn, "product_order", "external_id", order["id"])
                if new:
                    items = [
                        orders.OrderItem(
                            action=item.get("action", "add"),
                            offering_id=item.get("offering"),
                            product_id=item.get("product"),
                            service_ids=tuple(item.get("service_ids", [])),
                        )
                        for item in order["item"]
                    ]
                    orders.create_order(
                        conn, order["id"], order["account"], items,
                        requested_start=_time(order["requested_start"], where),
                    )  # fmt: skip
                    if order.get("process", True):
                        done = orders.process_order(conn, order["id"])
                        if done.state != "completed":
                            raise ValidationError(f"{where}: order ended {done.state}")
                count("order", new)
    except KeyError as exc:
        raise ValidationError(f"{source}: missing key {exc}") from exc
    except BssError as exc:
        raise type(exc)(f"{source}: {exc}") from exc
    return SeedSummary(created, existing)
