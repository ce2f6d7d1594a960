"""Bills out of the database: canonical JSON (and its SHA-256), CSV and a readable HTML page."""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import uuid
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from typing import Any

import duckdb

from bss.billing.money import minor_units
from bss.receivables.statements import add_statements
from collectors.dataset import atomic_write_bytes, naming_path
from collectors.safe_csv import csv_bytes

__all__ = [
    "bills_for_period",
    "bills_sha256",
    "canonical_json",
    "export_bills",
    "render_html",
    "sha256_of",
]

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


def _money(amount: str, currency: str) -> str:
    # Decimal formatting rounds half-even, never through a float.
    return f"{Decimal(amount):,.{max(minor_units(currency), 2)}f} {currency}"


def render_html(bill: dict[str, Any]) -> str:
    """A self-contained HTML bill: header, lines, totals, usage summary."""
    cur = bill["currency"]
    rows = "\n".join(
        f"<tr><td>{ln['line_no']}</td><td>{html.escape(ln['line_type'])}</td>"
        f"<td>{html.escape(ln['description'])}</td><td class=n>{ln['quantity']} "
        f"{html.escape(ln['unit'])}</td><td class=n>{_money(ln['amount'], cur)}</td></tr>"
        for ln in bill["lines"]
    )
    usage = [ln for ln in bill["lines"] if ln["line_type"] == "usage"]
    usage_rows = "\n".join(
        f"<li>{html.escape(ln['description'])}: {ln['quantity']} {html.escape(ln['unit'])}</li>"
        for ln in usage
    )
    e = html.escape
    title = "Supplementary bill" if bill.get("kind") == "supplementary" else "Bill"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bill {e(bill["bill_no"])}</title>
<style>body{{font-family:sans-serif;max-width:56rem;margin:2rem auto}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ccc;padding:.3rem}}
.n{{text-align:right}}</style></head><body>
<h1>{title} {e(bill["bill_no"])}</h1>
<p>Account {e(bill["account"])} ({e(bill["account_name"])}) &middot; period {e(bill["period"])}
&middot; bill date {e(bill["bill_date"])} &middot; due {e(bill["due_date"])}</p>
<table><tr><th>#</th><th>type</th><th>description</th><th class=n>quantity</th>
<th class=n>amount</th></tr>
{rows}
<tr><td></td><td></td><th>Total excl. tax</th><td></td>
<td class=n>{_money(bill["amount_excl_tax"], cur)}</td></tr>
<tr><td></td><td></td><th>Tax ({e(bill["tax_rate"])})</th><td></td>
<td class=n>{_money(bill["tax_amount"], cur)}</td></tr>
<tr><td></td><td></td><th>Total incl. tax</th><td></td>
<td class=n>{_money(bill["amount_incl_tax"], cur)}</td></tr>
<tr><td></td><td></td><th>Amount due</th><td></td>
<td class=n><b>{_money(bill["amount_due"], cur)}</b></td></tr></table>
<h2>Usage summary</h2><ul>{usage_rows or "<li>no usage</li>"}</ul>
</body></html>
"""


def _csv(bill: dict[str, Any]) -> bytes:
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
) -> list[Path]:
    """Write each bill of the period as JSON, CSV and HTML under ``folder``; returns the files.

    All or nothing: a new folder is filled under a hidden temporary name and renamed into
    place; into an existing folder, every file is written under a temporary name first and
    renamed only when all were written. So a full disk never leaves half an export that a
    rerun would take for a finished one.
    """
    files: dict[str, bytes] = {}
    for bill in bills if bills is not None else bills_for_period(conn, period):
        stem = bill["bill_no"]
        text = json.dumps(bill, sort_keys=True, indent=2, ensure_ascii=False)
        files[f"{stem}.json"] = text.encode()
        files[f"{stem}.csv"] = _csv(bill)
        files[f"{stem}.html"] = render_html(bill).encode()
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
