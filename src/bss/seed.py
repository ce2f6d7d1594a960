"""Load business data from a TOML file: tax rates, customers, accounts, catalog, orders.

Used by the demo and by ``rating-engine load``. Applying a file is idempotent: entities
whose key exists with the same values are left as they are, and the whole file applies in
one transaction, so an interrupted load leaves nothing half-done. An entity the file
describes differently from the workspace is refused with every difference listed
(:mod:`bss.seed_changes`) - except ending an open price at a date no issued bill reaches
past, which is how a price changes: end the old price and add a new one (its own id)
valid from that date. Money is written as decimal strings (``"19.99"``), never floats.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from bss import catalog, customers, orders
from bss.db import record_transition, transaction
from bss.errors import BssError, ValidationError
from bss.invoice.settings import InvoiceSettings, put_settings
from bss.receivables.sla_terms import apply_sla_entry
from bss.seed_changes import differences, issued_until, stored

__all__ = ["SeedSummary", "apply_seed", "load_seed_file"]

_MAX_LISTED = 20  # differences shown in one refusal
# [invoice] (bss.invoice.settings): its text fields, and the valid_from of a version that
# gives none (it then applies to every bill)
_INVOICE_TEXT = ("seller_address", "seller_vat_id", "seller_email", "payment_details",
                 "rounding", "tax_basis")  # fmt: skip
_SETTINGS_FROM = "1970-01-01T00:00:00+00:00"


@dataclass(frozen=True)
class SeedSummary:
    created: dict[str, int]
    existing: dict[str, int]
    updated: dict[str, int] = field(default_factory=dict)


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


def _money(entry: dict[str, Any], key: str, where: str) -> str | None:
    """A decimal as text: TOML strings and integers; a float is refused (binary, inexact)."""
    if key not in entry:
        return None
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(
            f'{where}: {key} = {value!r}: write decimals as strings ("19.99"); '
            "a TOML float is binary and not exact"
        )
    return str(value)


def _text(entry: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        raise ValidationError(f"{where}: {key} must be text, got {value!r}")
    return value


def _int(entry: dict[str, Any], key: str, where: str, default: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{where}: {key} must be a whole number, got {value!r}")
    return value


def load_seed_file(path: Path) -> dict[str, Any]:
    """Parse a seed TOML file (errors name the file)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"{path}: {exc}") from exc


class _Loader:
    """One file's application: counts, and the differences found so far."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.created: dict[str, int] = {}
        self.existing: dict[str, int] = {}
        self.updated: dict[str, int] = {}
        self.changes: list[str] = []
        self.where = ""  # the entry being applied, for errors raised below

    def count(self, kind: str, target: dict[str, int]) -> None:
        target[kind] = target.get(kind, 0) + 1

    def existing_same(self, kind: str, key: str, want: dict[str, Any], where: str) -> bool:
        """True when ``key`` exists; its differences from ``want`` are collected."""
        have = stored(self.conn, kind, key)
        if have is None:
            return False
        found = differences(have, want)
        if found:
            self.changes.append(f"{where} ({kind} {key}): " + "; ".join(found))
        self.count(kind, self.existing)
        return True

    def tax_rate(self, tax: dict[str, Any], where: str) -> None:
        self.where = where
        jurisdiction = _text(tax, "jurisdiction", where)
        want: dict[str, Any] = {
            "name": _text(tax, "name", where),
            "rate": _money(tax, "rate", where),
        }
        if not self.existing_same("tax_rate", jurisdiction, want, where):
            customers.set_tax_rate(self.conn, jurisdiction, want["name"], str(want["rate"]))
            self.count("tax_rate", self.created)

    def specification(self, spec: dict[str, Any], where: str) -> None:
        self.where = where
        key = _text(spec, "id", where)
        want = {
            "name": _text(spec, "name", where),
            "description": _text(spec, "description", where, ""),
        }
        if not self.existing_same("specification", key, want, where):
            catalog.add_specification(self.conn, key, want["name"], want["description"])

    def offering(self, off: dict[str, Any], where: str) -> None:
        self.where = where
        key = _text(off, "id", where)
        want: dict[str, Any] = {
            "specification_id": _text(off, "specification", where),
            "name": _text(off, "name", where),
            "valid_from": _time(off["valid_from"], f"{where}.valid_from"),
            "valid_to": _time(off["valid_to"], f"{where}.valid_to") if "valid_to" in off else None,
        }
        if "status" in off:  # compared only when the file says it (`catalog status` moves it)
            want["lifecycle_status"] = _text(off, "status", where)
        if not self.existing_same("offering", key, want, where):
            catalog.add_offering(
                self.conn, key, want["specification_id"], want["name"],
                valid_from=want["valid_from"], valid_to=want["valid_to"],
                lifecycle_status=off.get("status", "active"),
            )  # fmt: skip
            self.count("offering", self.created)
        if "sla" in off:  # availability target and credit tiers (bss.receivables.sla_terms)
            apply_sla_entry(self.conn, key, off["sla"], f"{where}.sla")
        prices = off.get("price", [])
        # Existing prices first: ending one must come before the price that follows it.
        order = sorted(
            enumerate(prices), key=lambda p: stored(self.conn, "price", str(p[1].get("id"))) is None
        )
        for j, price in order:
            self.price(price, key, off, f"{where}.price[{j}]")

    def price(self, price: dict[str, Any], offering: str, off: dict[str, Any], where: str) -> None:
        self.where = where
        key = _text(price, "id", where)
        want: dict[str, Any] = {
            "offering_id": offering,
            "name": _text(price, "name", where),
            "price_type": _text(price, "type", where),
            "amount": _money(price, "amount", where),
            "currency": price.get("currency"),
            "percentage": _money(price, "percentage", where),
            "tariff_id": price.get("tariff"),
            "valid_from": _time(price.get("valid_from", off["valid_from"]), f"{where}.valid_from"),
            "valid_to": _time(price["valid_to"], f"{where}.valid_to")
            if "valid_to" in price
            else None,
        }
        have = stored(self.conn, "price", key)
        ends = have is not None and have["valid_to"] is None and want["valid_to"] is not None
        if have is not None and ends and not differences(have, {**want, "valid_to": None}):
            self.end_price(key, want["valid_to"], have["valid_from"], where)
            return
        if not self.existing_same("price", key, want, where):
            catalog.add_price(
                self.conn, key, offering, want["name"], want["price_type"],
                valid_from=want["valid_from"], valid_to=want["valid_to"], amount=want["amount"],
                currency=want["currency"], percentage=want["percentage"],
                tariff_id=want["tariff_id"],
            )  # fmt: skip
            self.count("price", self.created)

    def end_price(self, key: str, valid_to: datetime, valid_from: datetime, where: str) -> None:
        """Close an open price (a new price version takes over from ``valid_to``)."""
        if valid_to <= valid_from:
            raise ValidationError(f"{where} (price {key}): valid_to is not after valid_from")
        billed = issued_until(self.conn)
        if billed is not None and valid_to < billed:
            raise ValidationError(
                f"{where} (price {key}): cannot end it at {valid_to.isoformat()}: bills up to "
                f"{billed.isoformat()} were issued with it; end it at or after that date"
            )
        self.conn.execute(
            "UPDATE product_offering_price SET valid_to = ? WHERE id = ?", [valid_to, key]
        )
        record_transition(
            self.conn, "product_offering_price", key, "open", "ended",
            f"valid_to {valid_to.isoformat()} (load)",
        )  # fmt: skip
        self.count("price", self.updated)

    def invoice(self, entry: dict[str, Any], where: str) -> None:
        """A version of the invoice settings (seller, rounding policy)."""
        self.where = where
        fields = {k: _text(entry, k, where, "") for k in _INVOICE_TEXT if k in entry}
        settings = InvoiceSettings(
            valid_from=_time(entry.get("valid_from", _SETTINGS_FROM), f"{where}.valid_from"),
            seller_name=_text(entry, "seller_name", where),
            **fields,
        )
        if put_settings(self.conn, settings):
            self.count("invoice", self.created)
        else:
            self.count("invoice", self.existing)

    def customer(self, cust: dict[str, Any], where: str) -> None:
        self.where = where
        key = _text(cust, "id", where)
        want = {"name": _text(cust, "name", where)}
        if not self.existing_same("customer", key, want, where):
            customers.create_customer(self.conn, key, want["name"])
            self.count("customer", self.created)
        for k, acct in enumerate(cust.get("account", [])):
            self.account(acct, key, f"{where}.account[{k}]")

    def account(self, acct: dict[str, Any], customer: str, where: str) -> None:
        self.where = where
        key = _text(acct, "id", where)
        want: dict[str, Any] = {
            "customer": customer,
            "name": _text(acct, "name", where),
            "currency": _text(acct, "currency", where),
            "tax_jurisdiction": _text(acct, "tax_jurisdiction", where),
            "payment_terms_days": _int(acct, "payment_terms_days", where, 14),
        }
        # the invoice's buyer block: compared only when the file gives them
        for optional in ("address", "vat_id"):
            if optional in acct:
                want[optional] = _text(acct, optional, where)
        if not self.existing_same("account", key, want, where):
            customers.create_account(
                self.conn, key, customer, want["name"], currency=want["currency"],
                tax_jurisdiction=want["tax_jurisdiction"],
                payment_terms_days=want["payment_terms_days"],
                address=want.get("address", ""), vat_id=want.get("vat_id", ""),
            )  # fmt: skip
            self.count("account", self.created)

    def order(self, order: dict[str, Any], where: str) -> None:
        self.where = where
        key = _text(order, "id", where)
        items = [
            orders.OrderItem(
                action=item.get("action", "add"),
                offering_id=item.get("offering"),
                product_id=item.get("product"),
                service_ids=tuple(item.get("service_ids", [])),
            )
            for item in order["item"]
        ]
        want: dict[str, Any] = {
            "account": _text(order, "account", where),
            "requested_start": _time(order["requested_start"], f"{where}.requested_start"),
            "items": [
                [i.action, i.offering_id, None if i.product_id is None else str(i.product_id),
                 " ".join(i.service_ids)]
                for i in items
            ],
        }  # fmt: skip
        if self.existing_same("order", key, want, where):
            return
        orders.create_order(
            self.conn, key, want["account"], items, requested_start=want["requested_start"]
        )
        if order.get("process", True):
            done = orders.process_order(self.conn, key)
            if done.state != "completed":
                raise ValidationError(f"{where}: order ended {done.state}")
        self.count("order", self.created)


def apply_seed(conn: duckdb.DuckDBPyConnection, data: dict[str, Any], source: str) -> SeedSummary:
    """Create what ``data`` describes and is not there yet; all or nothing.

    Raises :class:`ValidationError` naming the file, the entry and the field for a bad
    value, and listing every difference when the file changes an existing entity.
    """
    load = _Loader(conn)
    where = source
    try:
        with transaction(conn):
            invoice = data.get("invoice", [])
            for i, entry in enumerate([invoice] if isinstance(invoice, dict) else invoice):
                where = f"{source}: invoice[{i}]"
                load.invoice(entry, where)
            for i, tax in enumerate(data.get("tax_rate", [])):
                where = f"{source}: tax_rate[{i}]"
                load.tax_rate(tax, where)
            for i, spec in enumerate(data.get("specification", [])):
                where = f"{source}: specification[{i}]"
                load.specification(spec, where)
            for i, off in enumerate(data.get("offering", [])):
                where = f"{source}: offering[{i}]"
                load.offering(off, where)
            for i, cust in enumerate(data.get("customer", [])):
                where = f"{source}: customer[{i}]"
                load.customer(cust, where)
            for i, order in enumerate(data.get("order", [])):
                where = f"{source}: order[{i}]"
                load.order(order, where)
            if load.changes:
                shown = load.changes[:_MAX_LISTED]
                more = len(load.changes) - len(shown)
                raise ValidationError(
                    f"{source}: {len(load.changes)} "
                    + ("entry differs" if len(load.changes) == 1 else "entries differ")
                    + " from the workspace; nothing was loaded. A price changes by ending it "
                    "(valid_to) and adding a new price with its own id valid from that date; "
                    "other entities are changed with their commands.\n  "
                    + "\n  ".join(shown)
                    + (f"\n  ... and {more} more" if more else "")
                )
    except KeyError as exc:
        raise ValidationError(f"{load.where or where}: missing key {exc}") from exc
    except (TypeError, AttributeError) as exc:  # a value of the wrong shape (table vs list)
        raise ValidationError(f"{load.where or where}: malformed entry ({exc})") from exc
    except (
        duckdb.ConstraintException,
        duckdb.ConversionException,
        duckdb.OutOfRangeException,
    ) as exc:  # a value the schema refuses that no check above caught
        raise ValidationError(f"{load.where or where}: refused by the database: {exc}") from exc
    except BssError as exc:
        if str(exc).startswith(source):
            raise
        raise type(exc)(f"{load.where or where}: {exc}") from exc
    return SeedSummary(load.created, load.existing, load.updated)
