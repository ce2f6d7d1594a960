"""collectors.usage_table: usage records from minimal tables, ids derived deterministically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import USAGE_SCHEMA, usage_table
from collectors.cdr.kernels import record_id_reference
from collectors.errors import IngestError

ROWS: list[dict[str, Any]] = [
    {"subscriber": "+491701234567", "service": "voice", "start": datetime(2026, 3, 3, 9),
     "duration": 61, "destination": "+4915112345678"},
    {"subscriber": "491701234567", "service": "sms", "start": datetime(2026, 3, 3, 9, 5),
     "destination": "4915112345678"},
    {"subscriber": "2001:DB8::7", "service": "data", "start": datetime(2026, 3, 3, 10),
     "volume": 5_000_000},
]  # fmt: skip


def test_list_of_dicts_pyarrow_and_polars_give_the_same_records() -> None:
    from_dicts = usage_table(ROWS)
    names = list(dict.fromkeys(k for r in ROWS for k in r))  # from_pylist reads row 1's keys
    from_arrow = usage_table(pa.table({k: [r.get(k) for r in ROWS] for k in names}))
    from_polars = usage_table(pl.DataFrame(ROWS))
    assert from_dicts.schema.equals(USAGE_SCHEMA, check_metadata=True)
    assert from_dicts.equals(from_arrow)
    assert from_dicts.equals(from_polars)
    rows = from_dicts.to_pylist()
    assert [r["subscriber_key"] for r in rows] == ["491701234567", "491701234567", "2001:db8::7"]
    assert [r["subscriber_key_type"] for r in rows] == ["msisdn", "msisdn", "ip"]
    assert [r["duration_ms"] for r in rows] == [61_000, 0, 0]
    assert [(r["volume_up"], r["volume_down"]) for r in rows] == [(0, 0), (0, 0), (0, 5_000_000)]
    assert [r["destination"] for r in rows] == ["4915112345678", "4915112345678", None]
    assert rows[0]["start_time"] == datetime(2026, 3, 3, 9, tzinfo=UTC)  # naive is UTC
    assert [(r["source_file"], r["source_line"]) for r in rows] == [
        ("memory", i) for i in (1, 2, 3)
    ]
    assert all(r["record_id"] == record_id_reference(r["record_key"]) for r in rows)


def test_ids_are_deterministic_and_repeats_are_told_apart() -> None:
    twice = usage_table([ROWS[1], ROWS[1], ROWS[0]], source="batch-7")
    keys = twice.column("record_key").to_pylist()
    assert keys[1] == keys[0] + "#2"
    assert keys[2] == usage_table(ROWS).column("record_key")[0].as_py()  # content, not position
    assert len(set(twice.column("record_id").to_pylist())) == 3
    assert usage_table([ROWS[1], ROWS[1], ROWS[0]], source="batch-7").equals(twice)
    assert set(twice.column("source_file").to_pylist()) == {"batch-7"}


def test_given_columns_are_kept() -> None:
    table = usage_table([{
        "subscriber_key": "262011234567890", "subscriber_key_type": "imsi", "service": "voice",
        "start_time": "2026-03-03T10:00:00+01:00", "duration_ms": 1500, "volume_up": 7,
        "volume_down": 9, "origin": "4930111", "location": "cell-42", "record_key": "cdr-1",
    }])  # fmt: skip
    (row,) = table.to_pylist()
    assert (row["record_key"], row["record_id"]) == ("cdr-1", record_id_reference("cdr-1"))
    assert (row["subscriber_key_type"], row["duration_ms"]) == ("imsi", 1500)
    assert (row["volume_up"], row["volume_down"], row["origin"], row["location"]) == (
        7, 9, "4930111", "cell-42"
    )  # fmt: skip
    assert row["start_time"] == datetime(2026, 3, 3, 9, tzinfo=UTC)


def test_durations_as_timedelta_and_ip_keys_canonical() -> None:
    table = usage_table([
        {"subscriber": "::ffff:192.0.2.1", "service": "data", "start": "2026-03-03",
         "duration": timedelta(minutes=5), "volume": 1},
        {"subscriber": "198.51.100.0/28", "service": "data", "start": "2026-03-03",
         "duration": timedelta(seconds=1, milliseconds=250), "volume": 2},
    ])  # fmt: skip
    assert table.column("subscriber_key").to_pylist() == ["192.0.2.1", "198.51.100.0/28"]
    assert table.column("duration_ms").to_pylist() == [300_000, 1250]
    assert usage_table([]).equals(USAGE_SCHEMA.empty_table())


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{**ROWS[0], "service": "call"}], r"memory: row 1, field service: 'call' is not voice"),
        ([ROWS[0], {**ROWS[1], "subscriber": "0151 x"}],
         r"row 2, field subscriber_key: '0151 x' is not a number in E\.164 digits"),
        ([{**ROWS[2], "subscriber": "198.51.100.1/28"}], r"row 1, field subscriber_key: .*host"),
        ([{**ROWS[0], "start": "yesterday"}], r"row 1, field start_time: 'yesterday' is not"),
        ([{**ROWS[2], "volume": -5}], r"row 1, field volume_down: -5 is negative"),
        ([{**ROWS[0], "destination": "030-123"}], r"row 1, field destination: '030-123'"),
        ([{**ROWS[0], "subscriber_key_type": "sip"}], r"field subscriber_key_type: 'sip'"),
        ([{**ROWS[0], "colour": "red"}], r"memory: unknown column 'colour'"),
        ([{"service": "sms", "start": "2026-03-03"}], r"column 'subscriber' .* is required"),
        ([ROWS[0], {**ROWS[1], "subscriber": None}], r"row 2, field subscriber_key: empty"),
        ([{**ROWS[0], "duration": 1.5}], r"column duration: whole seconds or a timedelta"),
        ([{**ROWS[0], "subscriber_key": "49170"}], r"columns 'subscriber' and 'subscriber_key'"),
    ],
)  # fmt: skip
def test_bad_values_name_the_row_and_field(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(IngestError, match=message):
        usage_table(rows)


def test_not_a_table_is_refused() -> None:
    with pytest.raises(IngestError, match="expected a pyarrow Table, a polars DataFrame"):
        usage_table("subscriber,service")


minimal_rows = st.lists(
    st.fixed_dictionaries(
        {
            "subscriber": st.from_regex(r"\+?[1-9][0-9]{4,14}", fullmatch=True),
            "service": st.sampled_from(["voice", "sms", "data"]),
            "start": st.datetimes(
                datetime(2000, 1, 1), datetime(2099, 1, 1), timezones=st.just(UTC)
            ),
            "duration": st.integers(0, 10**6),
            "volume": st.integers(0, 2**40),
            "destination": st.none() | st.from_regex(r"[0-9]{3,15}", fullmatch=True),
        }
    ),
    max_size=30,
)


@settings(max_examples=80, deadline=None)
@given(rows=minimal_rows)
def test_every_row_becomes_its_record(rows: list[dict[str, Any]]) -> None:
    table = usage_table(rows)
    assert table.num_rows == len(rows)
    out = table.to_pylist()
    for given_row, row in zip(rows, out, strict=True):
        assert row["subscriber_key"] == given_row["subscriber"].removeprefix("+")
        assert row["service"] == given_row["service"]
        assert row["start_time"] == given_row["start"]
        assert row["duration_ms"] == given_row["duration"] * 1000
        assert row["volume_down"] == given_row["volume"]
        assert row["destination"] == given_row["destination"]
        assert row["record_id"] == record_id_reference(row["record_key"])
    assert len({r["record_key"] for r in out}) == len(out)
    assert usage_table(rows).equals(table)  # the same table always gets the same ids
