"""CDR price columns (issue #25): parsed exactly (Decimal twin), bad prices rejected naming
file, record and field, and files without a price column written as before."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.cdr.ingest import ingest_cdr_files
from collectors.cdr.mapping import parse_mapping
from collectors.cdr.transforms import parse_price
from collectors.dataset import read_dataset
from collectors.errors import IngestError
from collectors.schemas import REJECT_SCHEMA, USAGE_PRICED_SCHEMA, USAGE_SCHEMA
from collectors.workspace import WorkspacePaths

MAPPING = {
    "mapping": {"name": "priced"},
    "fields": {
        "record_key": {"columns": ["id"]},
        "subscriber": {"column": "msisdn", "normalise": "digits"},
        "service": {"constant": "sms"},
        "start_time": {"column": "start"},
        "destination": {"column": "to", "normalise": "digits"},
        "price": {"column": "charge"},
    },
}


def _twin(text: str, unit: str) -> int | None:
    """Micro-units of a price text, Decimal; None when it is not a price of ``unit``."""
    body = text.lstrip("+-")
    whole, _, frac = body.partition(".")
    if unit == "micro":
        ok = whole.isdigit() and whole.isascii() and len(whole) <= 18 and "." not in body
    else:
        ok = (whole.isascii() and whole.isdigit() and len(whole) <= 12
              and (frac == "" or (frac.isascii() and frac.isdigit()))
              and len(frac.rstrip("0")) <= 6)  # fmt: skip
    if not ok or len(text) - len(body) > 1:
        return None
    value = Decimal(text) * (1 if unit == "micro" else 1_000_000)
    assert value == value.to_integral_value()
    return int(value)


_DIGITS = st.text("0123456789", min_size=1, max_size=20)
_PRICES = st.one_of(
    st.builds(
        lambda s, w, f: f"{s}{w}.{f}" if f is not None else f"{s}{w}",
        st.sampled_from(["", "-", "+", "--"]),
        _DIGITS,
        st.none() | st.text("0123456789", max_size=9),
    ),
    st.text("0123456789.-+e ", max_size=8).filter(bool),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_PRICES, min_size=1, max_size=12), st.sampled_from(["currency", "micro"]))
def test_prices_parse_exactly_like_decimal(texts: list[str], unit: str) -> None:
    got = parse_price(pa.array(texts, pa.string()), unit).to_pylist()
    assert got == [_twin(t, unit) for t in texts]


def test_mapping_price_field_is_checked() -> None:
    priced = parse_mapping(MAPPING)
    assert (priced.price.column, priced.price.unit) == ("charge", "currency")
    assert "charge" in priced.used_columns()
    bad = {**MAPPING, "fields": {**MAPPING["fields"], "price": {"column": "c", "unit": "cents"}}}
    with pytest.raises(IngestError, match=r"fields\.price\.unit: 'cents' is not one of"):
        parse_mapping(bad, source="m.toml")


def test_price_column_through_ingest(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "ws").ensure()
    cdr = tmp_path / "premium.csv"
    cdr.write_text(
        "id,msisdn,start,to,charge\n"
        "a,4915110000001,2026-10-05T10:00:00Z,49900123,1.990000\n"
        "b,4915110000001,2026-10-05T11:00:00Z,49900123,0.1234567\n"  # 7 decimals
        "c,4915110000001,2026-10-05T12:00:00Z,49900123,\n"  # none: null
        "d,4915110000001,2026-10-05T13:00:00Z,49900123,1e3\n"  # a float's text
        "e,4915110000001,2026-10-05T14:00:00Z,49900123,-0.5\n",  # the rating refuses it
        encoding="utf-8",
    )
    plain = tmp_path / "plain.csv"
    plain.write_text("id,msisdn,start,to\nf,4915110000001,2026-10-06T10:00:00Z,4930\n")
    summary = ingest_cdr_files([cdr], parse_mapping(MAPPING), ws)
    unpriced = {**MAPPING, "fields": {k: v for k, v in MAPPING["fields"].items() if k != "price"}}
    summary2 = ingest_cdr_files([plain], parse_mapping(unpriced), ws)
    assert (summary.ingested, summary2.ingested) == (3, 1)
    usage = read_dataset(ws.usage, USAGE_PRICED_SCHEMA).sort_by("source_line")
    prices = {
        (r["source_file"], r["record_key"]): r["price"]
        for r in usage.select(["source_file", "record_key", "price"]).to_pylist()
    }
    assert prices == {
        ("premium.csv", "a"): 1_990_000, ("premium.csv", "c"): None,
        ("premium.csv", "e"): -500_000, ("plain.csv", "f"): None,
    }  # fmt: skip
    rejects = read_dataset(ws.rejected, REJECT_SCHEMA)
    rows = rejects.filter(pc.equal(rejects.column("reason"), "bad_price")).to_pylist()
    assert sorted((r["source_file"], r["record_no"], r["field"]) for r in rows) == [
        ("premium.csv", 3, "price"), ("premium.csv", 5, "price"),
    ]  # fmt: skip
    assert all("price (column charge): not a decimal price" in r["message"] for r in rows)
    # the unpriced file's part keeps the usage layout exactly: no price column
    part = next(p for p in ws.usage.rglob("*.parquet") if "2026-10-06" in str(p))
    assert pa.parquet.read_schema(part).names == USAGE_SCHEMA.names
