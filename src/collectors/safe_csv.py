"""CSV for people's spreadsheets: cells that a spreadsheet would run as a formula are defused.

A name such as ``=HYPERLINK("http://x","y")`` in the catalog or a customer record would
otherwise become a live formula when the exported CSV is opened (CSV injection). OWASP's
rule: a cell beginning with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a
leading apostrophe, which spreadsheets show as text. A cell that is a plain number
(``-5.90``, ``+3``, ``1e-3``) stays as it is, so amounts remain numbers. Every CSV the
project writes goes through :func:`csv_bytes` (it sits in the lowest layer, so every package
can): RFC 4180 line ends (CRLF), so a cell holding
a line break of either kind is quoted and cannot split its row.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["FORMULA_PREFIXES", "csv_bytes", "spreadsheet_safe"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_safe(value: Any) -> str:
    """``value`` as CSV cell text that no spreadsheet evaluates (None -> empty)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_bytes(rows: Iterable[Iterable[Any]]) -> bytes:
    """UTF-8 CSV (CRLF line ends, minimal quoting) of ``rows``, every cell defused."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([spreadsheet_safe(v) for v in row])
    return out.getvalue().encode()
