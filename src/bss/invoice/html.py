"""An invoice as one self-contained HTML page (every text escaped: names are user input)."""

from __future__ import annotations

import html
from decimal import Decimal

from bss.invoice.document import Invoice, Party

__all__ = ["percent_text", "render_html", "statement_rows", "total_rows"]

_STYLE = """body{font-family:sans-serif;max-width:56rem;margin:2rem auto;color:#222}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.2rem}
td,th{border-bottom:1px solid #ccc;padding:.3rem;text-align:left;vertical-align:top}
.n{text-align:right;white-space:nowrap}.parties{display:flex;gap:2rem}
.parties div{flex:1}.due{font-size:1.15rem}.note{color:#666;font-size:.85rem}"""


def percent_text(rate: Decimal) -> str:
    """``0.2`` -> ``20 %``, ``0.055`` -> ``5.5 %``."""
    return f"{(rate * 100).normalize():f} %"


def total_rows(invoice: Invoice) -> list[tuple[str, str]]:
    """(label, amount) of the totals block: net, tax per rate, total, amount due."""
    bill = invoice.bill
    rows = [("Total excluding tax", invoice.money(bill["amount_excl_tax"]))]
    for tax in invoice.taxes:
        rows.append(
            (
                f"{tax.name} ({percent_text(tax.rate)} of {invoice.money(tax.taxable)})",
                invoice.money(tax.tax),
            )
        )
    rows.append(("Total including tax", invoice.money(bill["amount_incl_tax"])))
    rows.append(("Amount due", invoice.money(bill["amount_due"])))
    return rows


def statement_rows(invoice: Invoice) -> list[tuple[str, str]]:
    """(label, amount) of the account statement, when the receivables ledger has one."""
    st = invoice.statement
    if st is None:
        return []
    rows = [
        ("Previous balance", invoice.money(st.previous_balance)),
        ("Payments received", invoice.money(-st.payments_received)),
    ]
    if st.other_credits:
        rows.append(("Credit notes and adjustments", invoice.money(-st.other_credits)))
    rows += [
        ("This invoice", invoice.money(invoice.bill["amount_due"])),
        ("Balance due", invoice.money(st.balance_due)),
    ]
    return rows


def _party(title: str, party: Party | None) -> str:
    e = html.escape
    if party is None:
        return f"<div><h3>{title}</h3><p class=note>not configured</p></div>"
    lines = [f"<b>{e(party.name)}</b>", *(e(a) for a in party.address)]
    if party.vat_id:
        lines.append(f"VAT id {e(party.vat_id)}")
    if party.email:
        lines.append(e(party.email))
    return f"<div><h3>{title}</h3><p>{'<br>'.join(lines)}</p></div>"


def _table(head: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    e = html.escape
    cls = [" class=n" if i in numeric else "" for i in range(len(head))]
    top = "".join(f"<th{c}>{e(h)}</th>" for h, c in zip(head, cls, strict=True))
    body = "\n".join(
        "<tr>" + "".join(f"<td{c}>{e(v)}</td>" for v, c in zip(row, cls, strict=True)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{top}</tr>\n{body}</table>"


def _pairs(rows: list[tuple[str, str]], strong_last: bool) -> str:
    e = html.escape
    out = []
    for i, (label, amount) in enumerate(rows):
        last = strong_last and i == len(rows) - 1
        cell = f"<b>{e(amount)}</b>" if last else e(amount)
        out.append(
            f"<tr{' class=due' if last else ''}><th>{e(label)}</th><td class=n>{cell}</td></tr>"
        )
    return "<table>" + "\n".join(out) + "</table>"


def render_html(invoice: Invoice) -> str:
    """The invoice as a page: parties, dates, lines, totals with tax per rate, the account
    statement (if any), the usage summary, payment details and the rounding policy."""
    e = html.escape
    bill = invoice.bill
    lines = [
        [str(ln.line_no), ln.description, ln.quantity_text, invoice.money(ln.amount)]
        for ln in invoice.lines
    ]
    usage = [
        [u.subscriber, u.service, u.quantity_text, invoice.money(u.amount)] for u in invoice.usage
    ]
    statement = statement_rows(invoice)
    parts = [
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(invoice.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(invoice.title)}</h1>",
        f"<section class=parties>{_party('Seller', invoice.seller)}"
        f"{_party('Bill to', invoice.buyer)}</section>",
        f"<p>Account {e(bill['account'])} &middot; period {e(bill['period'])} "
        f"({e(bill['period_start'][:10])} to {e(bill['period_end'][:10])}, end exclusive) "
        f"&middot; invoice date {e(bill['bill_date'])} &middot; due {e(bill['due_date'])}</p>",
        "<h2>Charges</h2>",
        _table(["#", "description", "quantity", "amount"], lines, {2, 3}),
        _pairs(total_rows(invoice), strong_last=not statement),
    ]
    if statement:
        parts += ["<h2>Account statement</h2>", _pairs(statement, strong_last=True)]
    parts += [
        "<h2>Usage summary</h2>",
        _table(["subscriber", "service", "quantity", "amount"], usage, {2, 3})
        if usage
        else "<p>no usage</p>",
    ]
    if invoice.payment_details:
        details = "<br>".join(e(x) for x in invoice.payment_details.splitlines())
        parts.append(f"<h2>Payment</h2><p>{details}</p>")
    parts.append(
        f"<p class=note>Amounts in {e(invoice.currency)}; each line is rounded to "
        f"the currency's minor unit ({e(invoice.rounding)}).</p></body></html>\n"
    )
    return "\n".join(parts)
