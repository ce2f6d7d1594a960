"""CSV cells that a spreadsheet would run as formulas are defused; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from collectors.safe_csv import FORMULA_PREFIXES, csv_bytes, spreadsheet_safe


def _cells(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_owasp_prefixes_are_defused() -> None:
    for text in ['=HYPERLINK("http://x","y")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                 "\t=1", "\r=1", "=1"]:  # fmt: skip
        assert spreadsheet_safe(text) == "'" + text


def test_numbers_and_plain_text_stay() -> None:
    for value in ["-5.90", "+3", "-0.000001", "1e-3", "-1E+6", "19.99", "Mobile Business M", ""]:
        assert spreadsheet_safe(value) == value
    assert spreadsheet_safe(Decimal("-5.90")) == "-5.90"
    assert spreadsheet_safe(-7) == "-7"
    assert spreadsheet_safe(None) == ""


@given(st.text())
def test_no_cell_can_start_a_formula(text: str) -> None:
    cell = spreadsheet_safe(text)
    if cell.startswith(FORMULA_PREFIXES):
        Decimal(cell)  # only a plain number may keep such a first character
    assert cell in (text, "'" + text)


@given(st.lists(st.lists(st.one_of(st.text(), st.integers(), st.none()), max_size=5), max_size=5))
def test_csv_round_trip(rows: list[list[object]]) -> None:
    back = _cells(csv_bytes(rows))
    expected = [[spreadsheet_safe(v) for v in row] for row in rows]
    # csv writes an empty row for []; the reader gives it back as []
    assert back == expected


def test_every_csv_writer_goes_through_safe_csv() -> None:
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    writers = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if "csv.writer(" in p.read_text() or "csv.DictWriter(" in p.read_text()
    ]
    assert writers == ["collectors/safe_csv.py"], "write CSV through collectors.safe_csv"
