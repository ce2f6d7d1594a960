"""Prices carried by CDRs through a billing run (issue #25): a CDR file with a price column,
billed with a pass-through rate, charges price + markup, however the work is cut; usage parts
without the column read as null prices."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest
from package_data import DEMO

from bss.billing.run import run_billing
from bss.db import connect
from bss.seed import apply_seed, load_seed_file
from collectors.cdr.ingest import ingest_cdr_files
from collectors.cdr.mapping import parse_mapping
from collectors.dataset import read_dataset
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.schemas import RATED_SCHEMA, decode_labels

NOW = datetime(2026, 12, 15, tzinfo=UTC)
# premium SMS content: the partner's price + 10 % + 0.05 EUR, to the tariff's 4 decimals
CONTENT = """
[rates.content]
pass_through = true
markup_percent = "10"
markup_fixed = "0.05"

[[pricing]]
service = "sms"
destinations = "premium"
rate = "content"
"""
MAPPING = {
    "fields": {
        "record_key": {"columns": ["id"]},
        "subscriber": {"column": "msisdn", "normalise": "digits"},
        "service": {"constant": "sms"},
        "start_time": {"column": "start"},
        "destination": {"column": "to", "normalise": "digits"},
        "price": {"column": "charge"},
    },
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = WorkspacePaths(tmp_path_factory.mktemp("prices") / "ws").ensure()
    shutil.copytree(DEMO / "tariffs", ws.tariffs, dirs_exist_ok=True)
    tariff = ws.tariffs / "mobile-2026.toml"
    text = tariff.read_text(encoding="utf-8")
    assert text.count('national = ["49"]\n') == 1
    text = text.replace('national = ["49"]\n', 'national = ["49"]\npremium = ["49900"]\n')
    tariff.write_text(text + CONTENT, encoding="utf-8")
    conn = connect(ws)
    try:
        apply_seed(conn, load_seed_file(DEMO / "bss.toml"), "demo")
    finally:
        conn.close()
    priced = ws.root.parent / "premium.csv"
    priced.write_text(
        "id,msisdn,start,to,charge\n"
        "p1,4915110000001,2026-10-05T10:00:00Z,49900123,1.99\n"
        "p2,4915110000001,2026-10-20T10:00:00Z,49900123,0.333333\n"
        "p3,4915110000002,2026-10-21T10:00:00Z,49900123,\n"  # no price: suspense
        "n1,4915110000001,2026-10-06T10:00:00Z,4930123,3.00\n",  # a plain SMS: its rate
        encoding="utf-8",
    )
    plain = ws.root.parent / "plain.csv"
    plain.write_text(
        "id,msisdn,start,to\n"
        "q1,4915110000002,2026-10-05T11:00:00Z,49900123\n"  # a part without prices
        "q2,4915110000002,2026-10-05T12:00:00Z,4930123\n",
        encoding="utf-8",
    )
    mapping = parse_mapping(MAPPING)
    unpriced = parse_mapping({"fields": {k: v for k, v in MAPPING["fields"].items()
                                         if k != "price"}})  # fmt: skip
    assert ingest_cdr_files([priced], mapping, ws).ingested == 4
    assert ingest_cdr_files([plain], unpriced, ws).ingested == 2
    return ws.root


def _bill(template: Path, target: Path, **cut: int) -> tuple[str, dict[str, int], dict]:
    shutil.copytree(template, target)
    ws = WorkspacePaths(target)
    conn = connect(ws)
    try:
        result = run_billing(conn, ws, "2026-10", now=NOW, export=False, **cut)
    finally:
        conn.close()
    rated = decode_labels(read_dataset(ws.rated, RATED_SCHEMA))
    sms = rated.filter(pc.equal(rated.column("service"), "sms"))
    keys = read_dataset(ws.usage, USAGE_SCHEMA, columns=["record_id", "record_key"])
    name = dict(zip(keys.column("record_id").to_pylist(), keys.column("record_key").to_pylist(),
                    strict=True))  # fmt: skip
    costs = {name[r]: c for r, c in zip(sms.column("record_id").to_pylist(),
                                        sms.column("cost").to_pylist(), strict=True)}  # fmt: skip
    return result.bills_sha256, costs, result.suspense_by_reason


def test_cdr_prices_are_billed_with_the_markup(template: Path, tmp_path: Path) -> None:
    sha, costs, suspense = _bill(template, tmp_path / "whole", chunk_rows=1 << 40, buckets=1)
    # 1.99 x 1.10 + 0.05 = 2.239; 0.333333 x 1.10 + 0.05 = 0.4166663 -> 0.4167 (half-even)
    assert costs["p1"] == 2_239_000
    assert costs["p2"] == 416_700
    # a plain SMS: its own rate, the price ignored - the SMS bundle covers it, while the
    # pass-through records above draw on no allowance
    assert costs["n1"] == 0
    assert "p3" not in costs
    assert "q1" not in costs
    assert suspense.get("no_price") == 2  # p3 (empty price) and q1 (a part without prices)
    # split into account buckets through scratch files: the same bills and costs
    cut = _bill(template, tmp_path / "cut", chunk_rows=1, buckets=3)
    assert cut == (sha, costs, suspense)
