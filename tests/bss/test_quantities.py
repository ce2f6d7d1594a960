"""Quantity-change CSV ingest (issue #25): good rows to W/quantities with ids from their
content and line, bad rows to W/rejected naming file, line and field, re-ingest adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from package_data import DEMO

from bss.quantities import ingest_quantity_files, parse_valid_from, quantity_record_id
from bss.seed import apply_seed, load_seed_file
from collectors.dataset import dataset_files, read_dataset
from collectors.schemas import REJECT_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.rating.prorated import MAX_CHANGE, QUANTITY_CHANGE_SCHEMA

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


@pytest.fixture
def seeded(
    workspace: WorkspacePaths, conn: duckdb.DuckDBPyConnection
) -> tuple[WorkspacePaths, duckdb.DuckDBPyConnection, list[int]]:
    apply_seed(conn, load_seed_file(DEMO / "bss.toml"), "demo")
    products = [int(r[0]) for r in conn.execute("SELECT id FROM product ORDER BY id").fetchall()]
    assert len(products) >= 2
    return workspace, conn, products


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_good_rows_written_bad_rows_kept_aside_and_reingest_adds_nothing(
    seeded: tuple[WorkspacePaths, duckdb.DuckDBPyConnection, list[int]], tmp_path: Path
) -> None:
    ws, conn, (p1, p2, *_) = seeded
    unknown = max(p1, p2) + 1000
    text = (
        "product,metric,valid_from,change,note\n"  # line 1; an extra column is ignored
        f"{p1},extra_lines,2026-10-17,+3,added\n"  # 2: a date alone is 00:00 UTC
        f"{p1},extra_lines,2026-10-27T12:30:00Z,-1,\n"  # 3
        "\n"  # 4: blank
        f" {p2} , seats ,2026-10-05T02:00:00+02:00,{MAX_CHANGE},\n"  # 5: offset, spaces
        f"{unknown},extra_lines,2026-10-01,1,\n"  # 6
        f"{p1},extra_lines,2026-10-01T00:00:00,1,\n"  # 7: no offset
        f"{p1},extra_lines,2026-13-01,1,\n"  # 8
        f"{p1},extra_lines,2026-10-01,1.5,\n"  # 9
        f"{p1},extra_lines,2026-10-01,{MAX_CHANGE + 1},\n"  # 10
        f"{p1},,2026-10-01,1,\n"  # 11
        f"P{p1},extra_lines,2026-10-01,1,\n"  # 12
        f"{p1},extra_lines,2026-10-01\n"  # 13: a field short
        f"{p1},extra_lines,2026-10-17,+3,same row again: another record\n"  # 14
    )
    first = _write(tmp_path / "q.csv", text)
    summary = ingest_quantity_files(conn, [first], ws)
    assert (summary.rows_read, summary.ingested, summary.duplicates) == (12, 4, 0)
    assert summary.rejected_by_reason() == {
        "bad_number": 2, "bad_row": 1, "bad_time": 2, "missing_field": 1,
        "quantity_out_of_range": 1, "unknown_product": 1,
    }  # fmt: skip
    expected = [
        (p1, "extra_lines", datetime(2026, 10, 17, tzinfo=UTC), 3, 2),
        (p1, "extra_lines", datetime(2026, 10, 27, 12, 30, tzinfo=UTC), -1, 3),
        (p2, "seats", datetime(2026, 10, 5, tzinfo=UTC), MAX_CHANGE, 5),
        (p1, "extra_lines", datetime(2026, 10, 17, tzinfo=UTC), 3, 14),
    ]
    want = sorted(
        ({"record_id": quantity_record_id(s, m, _us(t), c, line), "subscription_id": s,
          "metric": m, "valid_from": t, "change": c} for s, m, t, c, line in expected),
        key=lambda r: int(r["record_id"]),
    )  # fmt: skip
    got = read_dataset(ws.quantities, QUANTITY_CHANGE_SCHEMA).to_pylist()
    assert sorted(got, key=lambda r: r["record_id"]) == want
    assert len({r["record_id"] for r in got}) == 4  # the repeated row is its own record
    # partitioned by the day of valid_from
    assert {p.parent.name for p in dataset_files(ws.quantities)} == {
        "date=2026-10-05", "date=2026-10-17", "date=2026-10-27"
    }  # fmt: skip

    rejects = read_dataset(ws.rejected, REJECT_SCHEMA).to_pylist()
    named = {(r["record_no"], r["field"], r["reason"]) for r in rejects}
    assert named == {
        (6, "product", "unknown_product"), (7, "valid_from", "bad_time"),
        (8, "valid_from", "bad_time"), (9, "change", "bad_number"),
        (10, "change", "quantity_out_of_range"), (11, "metric", "missing_field"),
        (12, "product", "bad_number"), (13, None, "bad_row"),
    }  # fmt: skip
    assert all(r["stage"] == "ingest" and r["source_file"] == "q.csv" for r in rejects)
    by_line = {r["record_no"]: r for r in rejects}
    assert by_line[6]["message"] == f"q.csv line 6 field product: no product {unknown}"
    assert by_line[9]["raw"] == f"{p1},extra_lines,2026-10-01,1.5,".encode()
    assert "no UTC offset" in by_line[7]["message"]

    # the same content again, under another name: nothing added anywhere
    files_before = dataset_files(ws.quantities) + dataset_files(ws.rejected)
    again = ingest_quantity_files(conn, [_write(tmp_path / "renamed.csv", text)], ws)
    assert (again.ingested, again.duplicates) == (0, 4)
    assert again.rejected_by_reason() == summary.rejected_by_reason()  # counted, not re-kept
    assert dataset_files(ws.quantities) + dataset_files(ws.rejected) == files_before
    assert read_dataset(ws.quantities, QUANTITY_CHANGE_SCHEMA).num_rows == 4
    assert read_dataset(ws.rejected, REJECT_SCHEMA).num_rows == 8

    # the file grew by one row: only that row is added
    grown = _write(tmp_path / "grown.csv", text + f"{p2},seats,2026-10-20Z,-2,\n")
    # "2026-10-20Z" is not ISO 8601: rejected; a proper row after it is added
    grown = _write(grown, grown.read_text(encoding="utf-8") + f"{p2},seats,2026-10-20,-2,\n")
    third = ingest_quantity_files(conn, [grown], ws)
    assert (third.ingested, third.duplicates) == (1, 4)
    assert third.rejected_by_reason()["bad_time"] == 3
    rows = read_dataset(ws.quantities, QUANTITY_CHANGE_SCHEMA).to_pylist()
    assert [r for r in rows if r["change"] == -2] == [{
        "record_id": quantity_record_id(p2, "seats", _us(datetime(2026, 10, 20, tzinfo=UTC)),
                                        -2, 16),
        "subscription_id": p2, "metric": "seats",
        "valid_from": datetime(2026, 10, 20, tzinfo=UTC), "change": -2,
    }]  # fmt: skip


def test_files_refused_whole_write_nothing(
    seeded: tuple[WorkspacePaths, duckdb.DuckDBPyConnection, list[int]], tmp_path: Path
) -> None:
    ws, conn, (p1, *_) = seeded
    no_change = _write(tmp_path / "a.csv", f"product,metric,valid_from\n{p1},lines,2026-10-01\n")
    latin1 = tmp_path / "b.csv"
    latin1.write_bytes(f"product,metric,valid_from,change\n{p1},l\xe4nes,2026-10-01,1\n".encode(
        "latin-1"))  # fmt: skip
    empty = _write(tmp_path / "c.csv", "product,metric,valid_from,change\n\n")
    summary = ingest_quantity_files(conn, [no_change, latin1, tmp_path / "missing.csv", empty], ws)
    assert [(f.status, f.refused_reason) for f in summary.files] == [
        ("refused", "bad_header"), ("refused", "bad_encoding"), ("refused", "unreadable"),
        ("empty", None),
    ]  # fmt: skip
    assert "lacks column(s) change" in summary.files[0].message
    assert "a.csv" in summary.files[0].message
    assert dataset_files(ws.quantities) == []
    assert dataset_files(ws.rejected) == []
    data = summary.to_dict()
    assert data["refused"] == {str(no_change): "bad_header", str(latin1): "bad_encoding",
                               str(tmp_path / "missing.csv"): "unreadable"}  # fmt: skip
    assert "refused files 3" in summary.format_text()


@settings(max_examples=40, deadline=None)
@given(
    when=st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
        ),
    ),
    zulu=st.booleans(),
)
def test_parse_valid_from_round_trips_iso_8601(when: datetime, zulu: bool) -> None:
    text = when.isoformat()
    if zulu and when.utcoffset() == timedelta(0):
        text = text.replace("+00:00", "Z")
    parsed = parse_valid_from(text)
    assert parsed == when
    assert parsed.tzinfo == UTC
    assert parse_valid_from(when.date().isoformat()) == datetime.combine(
        when.date(), datetime.min.time(), UTC
    )
