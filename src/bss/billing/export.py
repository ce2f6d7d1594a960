"""Bills out of the database: canonical JSON (and its SHA-256), CSV, and the invoices a
person reads (HTML, PDF) or a system takes (TMF678 JSON), rendered by :mod:`bss.invoice`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from typing import Any

import duckdb

from bss.errors import ValidationError
from bss.invoice.document import invoices_for
from bss.invoice.html import render_html
from bss.invoice.pdf import render_pdf
from bss.invoice.tmf678 import applied_rates, customer_bill, tmf678_json
from bss.receivables.statements import add_statements
from collectors.dataset import atomic_write_bytes, naming_path
from collectors.safe_csv import csv_bytes
from collectors.workspace import WorkspacePaths

__all__ = [
    "EXPORT_FORMATS",
    "bill_csv",
    "bills_for_period",
    "bills_sha256",
    "canonical_json",
    "export_bills",
    "sha256_of",
]

#: what ``export_bills`` can write per bill (``<bill_no>.<suffix>``)
EXPORT_FORMATS = {"json": "json", "csv": "csv", "html": "html", "pdf": "pdf",
                  "tmf678": "tmf678.json"}  # fmt: skip
_RUN_FORMATS = ("json", "csv", "html")

# Values come out of DuckDB already as text (decimals exact, dates ISO 8601), so the
# canonical export needs no per-value conversion in Python.
_BILL_COLUMNS = (
    "bill_no, b.account_id, a.external_id, a.name, period, "
    "strftime(period_start, '%Y-%m-%dT%H:%M:%S+00:00'), "
    "strftime(period_end, '%Y-%m-%dT%H:%M:%S+00:00'), bill_date::VARCHAR, due_date::VARCHAR, "
    "b.currency, amount_excl_tax::VARCHAR, tax_rate::VARCHAR, tax_amount::VARCHAR, "
    "amount_incl_tax::VARCHAR, amount_due::VARCHAR, b.state, "
    "(SELECT string_agg(name, ' / ' ORDER BY rate) FROM bill_tax t "
    "WHERE t.bill_no = b.bill_no), b.kind"
)
_BILL_KEYS = (
    "bill_no", "account_id", "account", "account_name", "period", "period_start", "period_end",
    "bill_date", "due_date", "currency", "amount_excl_tax", "tax_rate", "tax_amount",
    "amount_incl_tax", "amount_due", "state", "tax_name",
)  # fmt: skip
_LINE_KEYS = ("line_no", "line_type", "product_id", "description", "quantity", "unit", "amount",
              "amount_exact")  # fmt: skip


def bills_for_period(
    conn: duckdb.DuckDBPyConnection, period: str, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """The period's bills with their lines, as plain JSON-ready dicts in canonical order
    (the first ``limit`` of them, if given)."""
    rows = conn.execute(
        f"SELECT {_BILL_COLUMNS} FROM bill b JOIN billing_account a ON a.id = b.account_id "
        "WHERE period = ? ORDER BY bill_no" + ("" if limit is None else f" LIMIT {int(limit)}"),
        [period],
    ).fetchall()
    last = rows[-1][0] if rows and limit is not None else None
    lines = conn.execute(
        "SELECT l.bill_no, line_no, line_type, product_id, description, quantity, unit, "
        "amount::VARCHAR, amount_exact::VARCHAR "
        "FROM bill_line l JOIN bill b ON b.bill_no = l.bill_no "
        "WHERE b.period = ? AND (? IS NULL OR l.bill_no <= ?) ORDER BY l.bill_no, line_no",
        [period, last, last],
    ).fetchall()
    by_bill: dict[str, list[dict[str, Any]]] = {}
    for bill_no, group in groupby(lines, key=lambda ln: ln[0]):
        by_bill[bill_no] = [dict(zip(_LINE_KEYS, ln[1:], strict=True)) for ln in group]
    bills = []
    for row in rows:
        bill = dict(zip(_BILL_KEYS, row[:-1], strict=True))
        if row[-1] == "supplementary":  # regular bills keep the JSON they always had
            bill["kind"] = "supplementary"
        bill["lines"] = by_bill.get(bill["bill_no"], [])
        bills.append(bill)
    add_statements(conn, period, bills)  # previous balance, payments (#23)
    return bills


def canonical_json(bills: list[dict[str, Any]]) -> bytes:
    """Sorted keys, no spaces, UTF-8: equal bills give equal bytes."""
    return json.dumps(bills, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def bills_sha256(conn: duckdb.DuckDBPyConnection, period: str) -> str:
    """SHA-256 over the canonical JSON export of a period's bills."""
    return sha256_of(bills_for_period(conn, period))


def sha256_of(bills: list[dict[str, Any]]) -> str:
    """SHA-256 over the canonical JSON of already exported bills."""
    return hashlib.sha256(canonical_json(bills)).hexdigest()


def bill_csv(bill: dict[str, Any]) -> bytes:
    """A bill's lines and totals as CSV, with each line's exact amount and rounding."""
    # Names (offerings, customers) are user text: csv_bytes defuses formula cells.
    # the rounding column: each line's rounded minus exact amount (the invoice policy's)
    rows: list[list[Any]] = [["bill_no", *_LINE_KEYS, "rounding"]]
    rows += [[bill["bill_no"], *(ln[k] for k in _LINE_KEYS),
              f"{Decimal(ln['amount']) - Decimal(ln['amount_exact']):f}"]
             for ln in bill["lines"]]  # fmt: skip
    rows += [
        [bill["bill_no"], "", "total", "", key, "", "", bill[key], "", ""]
        for key in ("amount_excl_tax", "tax_amount", "amount_incl_tax", "amount_due")
    ]
    return csv_bytes(rows)


def export_bills(
    conn: duckdb.DuckDBPyConnection,
    period: str,
    folder: Path,
    bills: list[dict[str, Any]] | None = None,
    *,
    workspace: WorkspacePaths | None = None,
    formats: tuple[str, ...] = _RUN_FORMATS,
) -> list[Path]:
    """Write each bill of the period in ``formats`` (:data:`EXPORT_FORMATS`; by default
    JSON, CSV and the HTML invoice) under ``folder``; returns the files. ``workspace``
    gives the tariffs that tell the invoices' data units.

    All or nothing: a new folder is filled under a hidden temporary name and renamed into
    place; into an existing folder, every file is written under a temporary name first and
    renamed only when all were written. So a full disk never leaves half an export that a
    rerun would take for a finished one.
    """
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValidationError(f"export format {unknown[0]!r}: expected one of "
                              f"{', '.join(EXPORT_FORMATS)}")  # fmt: skip
    listed = bills if bills is not None else bills_for_period(conn, period)
    readable = {"html", "pdf", "tmf678"} & set(formats)
    invoices = invoices_for(conn, listed, workspace) if readable else [None] * len(listed)
    files: dict[str, bytes] = {}
    for bill, invoice in zip(listed, invoices, strict=True):
        stem = bill["bill_no"]
        for fmt in formats:
            name = f"{stem}.{EXPORT_FORMATS[fmt]}"
            if fmt == "json":
                files[name] = json.dumps(bill, sort_keys=True, indent=2,
                                         ensure_ascii=False).encode()  # fmt: skip
            elif fmt == "csv":
                files[name] = bill_csv(bill)
            elif invoice is None:
                continue
            elif fmt == "html":
                files[name] = render_html(invoice).encode()
            elif fmt == "pdf":
                files[name] = render_pdf(invoice)
            else:
                document = {"customerBill": customer_bill(invoice),
                            "appliedCustomerBillingRate": applied_rates(invoice)}  # fmt: skip
                files[name] = tmf678_json(document).encode()
    if not folder.exists():
        staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
        try:
            for name, payload in files.items():
                atomic_write_bytes(staging / name, payload)
            with naming_path(folder):
                staging.mkdir(parents=True, exist_ok=True)  # an empty export is a folder too
                os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return [folder / name for name in files]
    temps = {name: folder / f".{name}.{uuid.uuid4().hex}.tmp" for name in files}
    try:
        for name, payload in files.items():
            atomic_write_bytes(temps[name], payload)
        with naming_path(folder):
            for name, tmp in temps.items():
                os.replace(tmp, folder / name)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return [folder / name for name in files]
