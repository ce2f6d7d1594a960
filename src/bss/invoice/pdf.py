"""An invoice as a PDF (A4), with fpdf2.

fpdf2 is pure Python (its dependencies, Pillow and fontTools, are already ours through
matplotlib), actively maintained, embeds a subset of a TrueType font, and writes the same
bytes for the same invoice: the document date is the bill date, not the moment of
rendering. The font is DejaVu Sans, which matplotlib (a runtime dependency) ships, found
without importing matplotlib: Latin, Greek and Cyrillic names print (Café, Łódź, Ελλάς);
CJK glyphs are not in it (fpdf2 warns and leaves them out).
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from bss.errors import BssError
from bss.invoice.document import Invoice, Party
from bss.invoice.html import statement_rows, total_rows

if TYPE_CHECKING:
    from fpdf import FPDF

__all__ = ["render_pdf"]

_FONT = "DejaVu"


@cache
def _font_folder() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise BssError("the PDF font (DejaVu Sans, shipped by matplotlib) was not found")
    folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    if not (folder / "DejaVuSans.ttf").is_file():
        raise BssError(f"the PDF font DejaVuSans.ttf is missing from {folder}")
    return folder


def _party(pdf: FPDF, x: float, title: str, party: Party | None) -> float:
    pdf.set_xy(x, 32)
    pdf.set_font(_FONT, "B", 9)
    pdf.cell(85, 5, title, new_x="LEFT", new_y="NEXT")
    pdf.set_font(_FONT, "", 10)
    lines = ["not configured"] if party is None else [party.name, *party.address]
    if party is not None and party.vat_id:
        lines.append(f"VAT id {party.vat_id}")
    if party is not None and party.email:
        lines.append(party.email)
    for i, text in enumerate(lines):
        pdf.set_font(_FONT, "B" if i == 0 and party is not None else "", 10)
        pdf.multi_cell(85, 5, text, new_x="LEFT", new_y="NEXT")
    return pdf.get_y()


def render_pdf(invoice: Invoice) -> bytes:
    """The invoice as PDF bytes: the same content as :func:`~bss.invoice.html.render_html`."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    # fontTools reports every subsetting step at INFO: not news for the CLI's log
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    bill = invoice.bill
    pdf = FPDF(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, 15)
    folder = _font_folder()
    pdf.add_font(_FONT, "", str(folder / "DejaVuSans.ttf"))
    pdf.add_font(_FONT, "B", str(folder / "DejaVuSans-Bold.ttf"))
    issued = date.fromisoformat(str(bill["bill_date"]))
    pdf.set_creation_date(datetime(issued.year, issued.month, issued.day, tzinfo=UTC))
    pdf.set_title(invoice.title)
    pdf.set_author(invoice.seller.name if invoice.seller else "rating-engine")
    pdf.add_page()
    pdf.set_font(_FONT, "B", 16)
    pdf.cell(0, 10, invoice.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(_FONT, "", 9)
    pdf.multi_cell(
        0,
        5,
        f"Account {bill['account']} · period {bill['period']} · invoice date "
        f"{bill['bill_date']} · due {bill['due_date']}",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    bottom = max(
        _party(pdf, 15, "Seller", invoice.seller), _party(pdf, 110, "Bill to", invoice.buyer)
    )
    pdf.set_xy(15, bottom + 6)
    head = FontFace(emphasis="BOLD")

    def section(title: str) -> None:
        pdf.set_font(_FONT, "B", 12)
        pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(_FONT, "", 9)

    section("Charges")
    with pdf.table(
        col_widths=(8, 110, 30, 32),
        text_align=("RIGHT", "LEFT", "RIGHT", "RIGHT"),
        headings_style=head,
        line_height=5,
    ) as table:
        table.row(["#", "description", "quantity", "amount"])
        for ln in invoice.lines:
            table.row([str(ln.line_no), ln.description, ln.quantity_text, invoice.money(ln.amount)])
    totals = total_rows(invoice)
    statement = statement_rows(invoice)
    for rows, title in ((totals, None), (statement, "Account statement")):
        if not rows:
            continue
        if title:
            section(title)
        with pdf.table(
            col_widths=(130, 50),
            text_align=("LEFT", "RIGHT"),
            first_row_as_headings=False,
            line_height=5,
        ) as table:
            for label, amount in rows:
                table.row([label, amount])
    section("Usage summary")
    if invoice.usage:
        with pdf.table(
            col_widths=(70, 30, 40, 40),
            text_align=("LEFT", "LEFT", "RIGHT", "RIGHT"),
            headings_style=head,
            line_height=5,
        ) as table:
            table.row(["subscriber", "service", "quantity", "amount"])
            for u in invoice.usage:
                table.row([u.subscriber, u.service, u.quantity_text, invoice.money(u.amount)])
    else:
        pdf.cell(0, 6, "no usage", new_x="LMARGIN", new_y="NEXT")
    if invoice.payment_details:
        section("Payment")
        pdf.multi_cell(0, 5, invoice.payment_details, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font(_FONT, "", 7)
    pdf.multi_cell(
        0,
        4,
        f"Amounts in {invoice.currency}; each line is rounded to the "
        f"currency's minor unit ({invoice.rounding}).",
    )
    return bytes(pdf.output())
