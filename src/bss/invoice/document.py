"""An invoice: one bill with everything a person reads on it, gathered from the database.

A bill (the canonical dict of :func:`bss.billing.export.bills_for_period`) knows its lines
and totals; the invoice adds the seller (the invoice settings in force on the bill date),
the buyer (account name, postal address, VAT id), the tax per rate with its name, each
line's quantity humanised (:mod:`bss.invoice.units`, data in the unit its tariff prices
it in), a usage summary per subscriber and service and, when the receivables ledger has
it (table ``bill_statement``), the previous balance, the payments received and the
balance with this bill. Renderers (HTML, PDF, TMF678) take :class:`Invoice` only, so they
agree with each other by construction. Everything is read in a few bulk queries for any
number of bills.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb

from bss.currencies import minor_units
from bss.invoice.settings import InvoiceSettings, settings_on
from bss.invoice.units import DECIMAL, data_base, quantity_text
from collectors.errors import RatingEngineError
from collectors.workspace import WorkspacePaths
from rating_engine.tariff.model import Tariff

__all__ = [
    "Invoice",
    "InvoiceLine",
    "Party",
    "Statement",
    "TaxLine",
    "UsageRow",
    "invoices_for",
    "money_text",
]

#: the allowance note bss.billing.lines writes into a usage line's description
_ALLOWANCE = re.compile(r", (-?\d+) (s|event|B) from allowance")
#: the statement as a bill's JSON carries it (bss.receivables), in Statement's order
_STATEMENT_KEYS = ("previous_balance", "payments_received", "other_credits", "balance_due")
#: a usage line's unit -> its service (bss.billing.lines gives each service one unit)
_SERVICE_OF_UNIT = {"s": "voice", "event": "sms", "B": "data"}


@dataclass(frozen=True)
class Party:
    """Seller or buyer: name, postal address lines, VAT id, contact."""

    name: str
    address: tuple[str, ...] = ()
    vat_id: str = ""
    email: str = ""


@dataclass(frozen=True)
class TaxLine:
    name: str
    rate: Decimal  # 0.2 = 20 %
    taxable: Decimal
    tax: Decimal


@dataclass(frozen=True)
class InvoiceLine:
    line_no: int
    line_type: str
    description: str
    quantity: int
    unit: str
    quantity_text: str
    amount: Decimal  # rounded to the minor unit
    amount_exact: Decimal  # as rated (micro-units)
    product_id: int | None


@dataclass(frozen=True)
class UsageRow:
    """A subscriber's use of one service on the bill."""

    subscriber: str
    service: str
    quantity_text: str
    amount: Decimal


@dataclass(frozen=True)
class Statement:
    """The account beyond this bill (receivables): all in the bill's currency."""

    previous_balance: Decimal
    payments_received: Decimal
    other_credits: Decimal
    balance_due: Decimal


@dataclass(frozen=True)
class Invoice:
    bill: dict[str, Any]
    seller: Party | None
    payment_details: str
    buyer: Party
    taxes: tuple[TaxLine, ...]
    lines: tuple[InvoiceLine, ...]
    usage: tuple[UsageRow, ...]
    statement: Statement | None
    rounding: str  # "half-even, tax per rate group"

    @property
    def currency(self) -> str:
        return str(self.bill["currency"])

    @property
    def title(self) -> str:
        kind = "Supplementary invoice" if self.bill.get("kind") == "supplementary" else "Invoice"
        return f"{kind} {self.bill['bill_no']}"

    def money(self, amount: Decimal | str) -> str:
        return money_text(amount, self.currency)


def money_text(amount: Decimal | str, currency: str) -> str:
    """``1234.5`` EUR -> ``1,234.50 EUR`` (the currency's minor unit; exact, no float)."""
    return f"{Decimal(amount):,.{minor_units(currency)}f} {currency}"


def _description(text: str, base: int) -> str:
    """A line's description with its allowance note humanised like its quantity."""
    return _ALLOWANCE.sub(
        lambda m: f", {quantity_text(int(m.group(1)), m.group(2), base)} from allowance", text
    )


def _lines_of(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.splitlines() if part.strip())


# key lists travel as one list parameter (any number of bills, one statement)
_IN = "IN (SELECT unnest(?))"


def _buyers(conn: duckdb.DuckDBPyConnection, accounts: list[int]) -> dict[int, Party]:
    rows = conn.execute(
        "SELECT id, name, coalesce(address, ''), coalesce(vat_id, '') FROM billing_account "
        f"WHERE id {_IN}",
        [accounts],
    ).fetchall()
    return {r[0]: Party(r[1], _lines_of(r[2]), r[3]) for r in rows}


def _taxes(conn: duckdb.DuckDBPyConnection, bills: list[str]) -> dict[str, list[TaxLine]]:
    out: dict[str, list[TaxLine]] = defaultdict(list)
    rows = conn.execute(
        "SELECT bill_no, name, rate, taxable_amount, tax_amount FROM bill_tax "
        f"WHERE bill_no {_IN} ORDER BY bill_no, rate",
        [bills],
    ).fetchall()
    for bill_no, name, rate, taxable, tax in rows:
        out[bill_no].append(TaxLine(name, Decimal(rate), Decimal(taxable), Decimal(tax)))
    return out


def _has_table(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    # fetchall: a result left unfinished (fetchone) makes DuckDB 2 refuse the next conn.sql
    (row,) = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()
    return bool(row[0])


def _statements(
    conn: duckdb.DuckDBPyConnection, bills: list[str], currency: dict[str, str]
) -> dict[str, Statement]:
    """The receivables statement of each bill that has one (amounts in minor units)."""
    if not _has_table(conn, "bill_statement"):
        return {}
    rows = conn.execute(
        "SELECT bill_no, previous_balance_minor, payments_received_minor, other_credits_minor, "
        f"balance_due_minor FROM bill_statement WHERE bill_no {_IN}",
        [bills],
    ).fetchall()
    out = {}
    for bill_no, *amounts in rows:
        exp = -minor_units(currency[bill_no])
        out[bill_no] = Statement(*(Decimal(int(v)).scaleb(exp) for v in amounts))
    return out


def _labels(conn: duckdb.DuckDBPyConnection, products: list[int]) -> dict[int, str]:
    rows = conn.execute(
        "SELECT product_id, string_agg(key, ' ' ORDER BY key_type, key) FROM service_identifier "
        f"WHERE product_id {_IN} GROUP BY product_id",
        [products],
    ).fetchall()
    return dict(rows)


def _data_bases(
    conn: duckdb.DuckDBPyConnection, products: list[int], workspace: WorkspacePaths | None
) -> dict[int, int]:
    """Each product's data base (1024 or 1000), from the tariff of its usage price."""
    if workspace is None or not products or not workspace.tariffs.is_dir():
        return {}
    rows = conn.execute(
        "SELECT p.id, max(pr.tariff_id) FROM product p JOIN product_offering_price pr "
        "ON pr.offering_id = p.offering_id AND pr.price_type = 'usage' "
        f"WHERE p.id {_IN} GROUP BY p.id",
        [products],
    ).fetchall()
    if not rows:
        return {}
    from rating_engine.tariff.load import load_tariff_file  # only when data is on the bills

    wanted = {tariff for _, tariff in rows}
    tariffs: dict[str, Tariff] = {}
    for path in sorted(workspace.tariffs.glob("*.toml")):
        try:
            tariff = load_tariff_file(path)
        except (RatingEngineError, OSError):  # `tariffs validate` reports it; shown in bytes
            continue
        if tariff.id in wanted:
            tariffs[tariff.id] = tariff
    return {product: data_base(tariffs.get(tariff)) for product, tariff in rows}


def _usage(
    lines: list[InvoiceLine], labels: dict[int, str], bases: dict[int, int]
) -> tuple[UsageRow, ...]:
    """Per subscriber (product) and service: the usage lines' quantities and amounts."""
    sums: dict[tuple[int, str], list[int | Decimal]] = {}
    for ln in lines:
        service = _SERVICE_OF_UNIT.get(ln.unit)
        if ln.line_type != "usage" or ln.product_id is None or service is None:
            continue
        acc = sums.setdefault((ln.product_id, ln.unit), [0, Decimal(0)])
        acc[0] = int(acc[0]) + ln.quantity
        acc[1] = Decimal(acc[1]) + ln.amount
    return tuple(
        UsageRow(
            labels.get(product, f"product {product}"),
            _SERVICE_OF_UNIT[unit],
            quantity_text(int(q), unit, bases.get(product, DECIMAL)),
            Decimal(amount),
        )
        for (product, unit), (q, amount) in sums.items()
    )


def _policy_text(settings: InvoiceSettings | None) -> str:
    if settings is None:
        return "half-even, tax per rate group (default)"
    basis = "tax per rate group" if settings.tax_basis == "rate-group" else "tax per line"
    return f"{settings.rounding}, {basis}"


def invoices_for(
    conn: duckdb.DuckDBPyConnection,
    bills: list[dict[str, Any]],
    workspace: WorkspacePaths | None = None,
) -> list[Invoice]:
    """The invoice of each bill (``workspace``: where the tariffs are, for data units)."""
    if not bills:
        return []
    numbers = [b["bill_no"] for b in bills]
    buyers = _buyers(conn, sorted({int(b["account_id"]) for b in bills}))
    taxes = _taxes(conn, numbers)
    statements = _statements(conn, numbers, {b["bill_no"]: b["currency"] for b in bills})
    for b in bills:  # a bill that carries its statement (receivables' JSON) is its own source
        if all(k in b for k in _STATEMENT_KEYS):
            statements[b["bill_no"]] = Statement(*(Decimal(b[k]) for k in _STATEMENT_KEYS))
    products = sorted(
        {int(ln["product_id"]) for b in bills for ln in b["lines"] if ln["product_id"] is not None}
    )
    labels = _labels(conn, products)
    data_products = sorted(
        {
            int(ln["product_id"])
            for b in bills
            for ln in b["lines"]
            if ln["product_id"] is not None and ln["unit"] == "B"
        }
    )
    bases = _data_bases(conn, data_products, workspace)
    settings: dict[str, InvoiceSettings | None] = {}
    out = []
    for bill in bills:
        day = str(bill["bill_date"])
        if day not in settings:
            settings[day] = settings_on(conn, date.fromisoformat(day))
        found = settings[day]
        seller = (
            None
            if found is None
            else Party(
                found.seller_name,
                _lines_of(found.seller_address),
                found.seller_vat_id,
                found.seller_email,
            )
        )
        lines = [
            InvoiceLine(
                int(ln["line_no"]),
                ln["line_type"],
                _description(ln["description"], bases.get(ln["product_id"] or 0, DECIMAL)),
                int(ln["quantity"]),
                ln["unit"],
                quantity_text(
                    int(ln["quantity"]), ln["unit"], bases.get(ln["product_id"] or 0, DECIMAL)
                ),
                Decimal(ln["amount"]),
                Decimal(ln.get("amount_exact") or ln["amount"]),
                ln["product_id"],
            )
            for ln in bill["lines"]
        ]
        tax = taxes.get(bill["bill_no"]) or [
            TaxLine(
                str(bill.get("tax_name") or "Tax"),
                Decimal(bill["tax_rate"]),
                Decimal(bill["amount_excl_tax"]),
                Decimal(bill["tax_amount"]),
            )
        ]
        out.append(
            Invoice(
                bill=bill,
                seller=seller,
                payment_details="" if found is None else found.payment_details,
                buyer=buyers[int(bill["account_id"])],
                taxes=tuple(tax),
                lines=tuple(lines),
                usage=_usage(lines, labels, bases),
                statement=statements.get(bill["bill_no"]),
                rounding=_policy_text(found),
            )
        )
    return out
