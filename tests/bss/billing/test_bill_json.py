"""The canonical bills JSON built in columns is ``json.dumps`` of the bills, byte for byte:
odd text (quotes, backslashes, control characters, non-ASCII) and supplementary bills
(which alone carry ``"kind"``) included."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bss.billing.bill_json import bills_digest, json_strings
from bss.billing.export import bills_for_period, canonical_json
from bss.db import connect
from collectors.workspace import WorkspacePaths

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(st.lists(st.one_of(st.none(), text), max_size=30))
def test_strings_as_json_dumps_writes_them(values: list[str | None]) -> None:
    got = json_strings(pa.array(values, pa.string())).to_pylist()
    assert got == [json.dumps(v, ensure_ascii=False) for v in values]


def _seed(
    conn: duckdb.DuckDBPyConnection, names: list[str], lines: list[list[tuple]], kinds: list[bool]
) -> None:
    conn.execute("INSERT INTO tax_rate VALUES ('DE', 'x', 0.19)")
    conn.execute("INSERT INTO customer VALUES (1, 'C1', 'c', 'active', ?)", [datetime.now(UTC)])
    for i, name in enumerate(names, start=1):
        conn.execute(
            "INSERT INTO billing_account (id, external_id, customer_id, name, currency, "
            "tax_jurisdiction, created_at) VALUES (?, ?, 1, ?, 'EUR', 'DE', ?)",
            [i, f"A{i}", name or "-", datetime.now(UTC)],
        )
        bill_no = f"B202610-{i:06d}"
        conn.execute(
            "INSERT INTO bill VALUES (?, ?, '2026-10', TIMESTAMPTZ '2026-10-01', "
            "TIMESTAMPTZ '2026-11-01', DATE '2026-11-01', DATE '2026-11-15', 'EUR', 1.5, 0.19, "
            "0.285, 1.785, 1.79, 'final', ?, ?)",
            [bill_no, i, "supplementary" if kinds[i - 1] else "regular", 2 if kinds[i - 1] else 1],
        )
        for no, (kind, product, description, quantity, unit, amount) in enumerate(
            lines[i - 1], start=1
        ):
            conn.execute(
                "INSERT INTO bill_line VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [bill_no, no, kind, product, description, quantity, unit, amount, amount / 3],
            )
        # the tax's name is user text too (odd characters included)
        conn.execute("INSERT INTO bill_tax VALUES (?, 0.19, ?, 1.5, 0.285)", [bill_no, name])


line = st.tuples(
    st.sampled_from(["recurring", "usage", "credit", "oneTime"]),
    st.one_of(st.none(), st.integers(1, 10**12)),
    text,
    st.integers(-(10**15), 10**15),
    text,
    st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False),
)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(text, st.lists(line, max_size=4), st.booleans()), max_size=6))
def test_digest_equals_the_dumped_bills(
    tmp_path_factory: pytest.TempPathFactory, bills: list
) -> None:
    ws = WorkspacePaths(tmp_path_factory.mktemp("json") / "ws").ensure()
    conn = connect(ws)
    try:
        _seed(conn, [b[0] for b in bills], [b[1] for b in bills], [b[2] for b in bills])
        reference = bills_for_period(conn, "2026-10")
        digest, count = bills_digest(conn, "2026-10")
    finally:
        conn.close()
    assert count == len(reference)
    assert digest == hashlib.sha256(canonical_json(reference)).hexdigest()
