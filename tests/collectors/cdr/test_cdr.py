"""CDR reading: kernels and transforms against reference twins, and the streaming reader."""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
import zoneinfo
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from package_data import DATA, MAPPINGS

from collectors.cdr.kernels import IdSet, record_id_reference, record_ids, record_spans
from collectors.cdr.ledger import file_digest
from collectors.cdr.mapping import CdrMapping, NumberRules, TimeSpec, load_mapping, parse_mapping
from collectors.cdr.reader import CdrRefusedError, read_cdr_file
from collectors.cdr.transforms import (
    cast_or_null,
    compose_key,
    map_values,
    none_if_empty,
    normalise_numbers,
    normalise_numbers_reference,
    parse_duration_ms,
    parse_scaled,
    parse_times,
)

UTC = dt.UTC
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


# --- record ids ---------------------------------------------------------------------------


@settings(deadline=None)
@given(st.lists(st.text(max_size=300), max_size=40))
def test_record_ids_equal_hashlib_blake2b(keys: list[str]) -> None:
    got = record_ids(pa.array(keys, pa.string()))
    assert got.dtype == np.int64
    assert got.tolist() == [record_id_reference(k) for k in keys]


def test_record_id_is_documented_blake2b_prefix() -> None:
    digest = hashlib.blake2b(b"c-0001").digest()
    assert record_id_reference("c-0001") == int.from_bytes(digest[:8], "little", signed=True)
    # the value is part of the data's identity: it must never change between versions
    assert record_ids(pa.array(["c-0001"]))[0] == record_id_reference("c-0001")


def test_record_ids_across_blake2b_block_boundaries() -> None:
    # one 128-byte block, exactly one, one byte more, several; multi-byte UTF-8 too
    keys = ["x" * n for n in (0, 1, 7, 8, 9, 127, 128, 129, 255, 256, 257, 1000)] + ["é" * 64]
    assert record_ids(pa.array(keys)).tolist() == [record_id_reference(k) for k in keys]


def test_record_ids_of_a_sliced_array() -> None:
    arr = pa.array(["a", "bb", "ccc", "dddd"]).slice(1, 2)
    assert record_ids(arr).tolist() == [record_id_reference("bb"), record_id_reference("ccc")]


# --- id set -------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 5), max_size=60)))
def test_idset_matches_python_set(batches: list[list[int]]) -> None:
    ids = IdSet(capacity=4)
    ref: set[int] = set()
    for batch in batches:
        arr = np.array(batch, dtype=np.int64)
        assert ids.contains(arr).tolist() == [v in ref for v in batch]
        seen = ids.add(arr)
        expected = []
        for v in batch:
            expected.append(v in ref)
            ref.add(v)
        assert seen.tolist() == expected
        assert len(ids) == len(ref)
    assert sorted(ids.keys().tolist()) == sorted(ref)


def test_idset_keeps_the_id_equal_to_its_empty_marker() -> None:
    low = -(2**63)
    ids = IdSet(capacity=2)
    assert ids.add(np.array([low, 0, low], dtype=np.int64)).tolist() == [False, False, True]
    assert ids.contains(np.array([low, 1], dtype=np.int64)).tolist() == [True, False]
    ids.add(np.arange(100, dtype=np.int64))  # grows: the marker id survives the rehash
    assert len(ids) == 101
    assert sorted(ids.keys().tolist()) == [low, *range(100)]


def test_idset_take_mask_skips_rows() -> None:
    ids = IdSet()
    seen = ids.add(np.array([1, 1, 2]), take=np.array([False, True, True]))
    assert seen.tolist() == [False, False, False]
    assert len(ids) == 2


# --- raw record spans ---------------------------------------------------------------------


def test_record_spans_follow_csv_records() -> None:
    text = b'h1,h2\r\n1,"a\nb"\n\n2,3\r4,"x""\ny",5\n6,ab"c\n7'
    buf = np.frombuffer(text, dtype=np.uint8)
    starts, ends, pos, record = record_spans(buf, np.array([2, 3, 4, 5, 6, 7]))
    got = [bytes(buf[a:b]) for a, b in zip(starts, ends, strict=True)]
    assert got == [b'1,"a\nb"', b"", b"2,3", b'4,"x""\ny",5', b'6,ab"c', b"7"]
    # resuming from the returned position continues the numbering
    starts, ends, _, _ = record_spans(buf[:0], np.array([9]), pos=0, record=9)
    assert starts.tolist() == [-1]
    assert record >= 7
    assert pos <= len(text)


# --- number normalisation -----------------------------------------------------------------

RULES = NumberRules("49", "0", "00")


@settings(deadline=None)
@given(
    st.lists(st.none() | st.text(alphabet="0123456789+ -()/x\t٣", max_size=18), max_size=50),
    st.sampled_from(["none", "digits", "e164"]),
    st.sampled_from([RULES, NumberRules("1", "1", "011"), NumberRules("44", "", "00")]),
)
def test_normalise_numbers_matches_reference(
    values: list[str | None], mode: str, rules: NumberRules
) -> None:
    got = normalise_numbers(pa.array(values, pa.string()), mode, rules).to_pylist()
    assert got == [normalise_numbers_reference(v, mode, rules) for v in values]


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+49 170 1234567", "491701234567"),
        ("0170 1234567", "491701234567"),
        ("0049-170-1234567", "491701234567"),
        ("+44 (20) 7946 0018", "442079460018"),
        ("00442079460018", "442079460018"),
        ("1001", "1001"),
        ("anonymous", None),
        ("", None),
    ],
)
def test_e164_examples(raw: str, e164: str | None) -> None:
    assert normalise_numbers(pa.array([raw]), "e164", RULES).to_pylist() == [e164]


# --- times --------------------------------------------------------------------------------


def _zoneinfo_utc(naive: dt.datetime, zone: str) -> dt.datetime | None:
    """Reference: fold=0 (earliest) for repeated times, None for times in a DST gap."""
    tz = zoneinfo.ZoneInfo(zone)
    aware = naive.replace(tzinfo=tz, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return utc


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.datetimes(min_value=dt.datetime(1995, 1, 1), max_value=dt.datetime(2037, 12, 31)),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(ZONES),
)
def test_local_times_match_zoneinfo(values: list[dt.datetime], zone: str) -> None:
    values = [v.replace(microsecond=0) for v in values]
    text = pa.array([v.strftime("%Y-%m-%d %H:%M:%S") for v in values])
    got = parse_times(text, TimeSpec(column="t", format="iso8601", zone=zone)).to_pylist()
    assert got == [_zoneinfo_utc(v, zone) for v in values]
    strp = TimeSpec(column="t", format="%Y-%m-%d %H:%M:%S", zone=zone)
    assert parse_times(text, strp).to_pylist() == got


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-29 02:30:00", None),  # spring-forward gap in Berlin
        ("2026-03-29 01:59:59", dt.datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)),
        ("2026-03-29 03:00:00", dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        ("2026-10-25 02:30:00", dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # earliest
        ("2026-07-01T12:00:00.250+05:30", dt.datetime(2026, 7, 1, 6, 30, 0, 250000, tzinfo=UTC)),
        ("2026-07-01T12:00:00Z", dt.datetime(2026, 7, 1, 12, tzinfo=UTC)),
        ("2026-02-30 10:00:00", None),
        ("yesterday", None),
    ],
)
def test_iso8601_examples(text: str, expected: dt.datetime | None) -> None:
    spec = TimeSpec(column="t", format="iso8601", zone="Europe/Berlin")
    assert parse_times(pa.array([text]), spec).to_pylist() == [expected]


def test_iso8601_mixed_batch() -> None:
    spec = TimeSpec(column="t", format="iso8601", zone="Europe/Berlin")
    got = parse_times(
        pa.array(["2026-01-01 10:00:00", "2026-01-01T10:00:00+00:00", "bad", None]), spec
    ).to_pylist()
    assert got == [
        dt.datetime(2026, 1, 1, 9, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 10, tzinfo=UTC),
        None,
        None,
    ]


def test_ambiguous_choices() -> None:
    text = pa.array(["2026-10-25 02:30:00", "2026-10-25 12:00:00"])
    latest = TimeSpec(column="t", zone="Europe/Berlin", ambiguous="latest")
    reject = TimeSpec(column="t", zone="Europe/Berlin", ambiguous="reject")
    assert parse_times(text, latest).to_pylist()[0] == dt.datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert parse_times(text, reject).to_pylist() == [
        None,
        dt.datetime(2026, 10, 25, 11, tzinfo=UTC),
    ]


def test_epoch_formats() -> None:
    base = dt.datetime(2026, 3, 1, tzinfo=UTC)
    secs = int(base.timestamp())
    cases = {
        "epoch_s": ([str(secs), f"{secs}.123456", "x"], [0, 123456, None]),
        "epoch_ms": ([str(secs * 1000 + 5)], [5000]),
        "epoch_us": ([str(secs * 1_000_000 + 7)], [7]),
    }
    for fmt, (texts, extra_us) in cases.items():
        got = parse_times(pa.array(texts), TimeSpec(column="t", format=fmt)).to_pylist()
        assert got == [None if e is None else base + dt.timedelta(microseconds=e) for e in extra_us]


# --- numbers and durations ----------------------------------------------------------------


@settings(deadline=None)
@given(st.lists(st.integers(-(10**9), 10**9) | st.none(), max_size=30), st.integers(0, 6))
def test_parse_scaled_is_exact(values: list[int | None], digits: int) -> None:
    # value / 10**digits written as decimal text parses back to the integer exactly
    def text(v: int) -> str:
        sign = "-" if v < 0 else ""
        whole, frac = divmod(abs(v), 10**digits)
        return f"{sign}{whole}" + (f".{frac:0{digits}d}" if digits else "")

    arr = pa.array([None if v is None else text(v) for v in values], pa.string())
    assert parse_scaled(arr, digits).to_pylist() == values


def test_durations() -> None:
    s = pa.array(["0", "65", "12.5", "1.23456", "-5", "abc", None])
    assert parse_duration_ms(s, "s").to_pylist() == [0, 65000, 12500, 1234, -5000, None, None]
    # a fraction below the unit is truncated, as documented
    assert parse_duration_ms(pa.array(["250", "1.5"]), "ms").to_pylist() == [250, 1]
    hms = pa.array(["0:00:05", "01:02:03", "100:00:00", "1:60:00", "5"])
    assert parse_duration_ms(hms, "hms").to_pylist() == [5000, 3723000, 360000000, None, None]


def test_cast_or_null_isolates_bad_values() -> None:
    values = [str(i) for i in range(1000)]
    values[3] = "x"
    values[777] = "-"
    got = cast_or_null(pa.array(values), pa.int64()).to_pylist()
    assert got[3] is None
    assert got[777] is None
    assert sum(v is None for v in got) == 2


def test_map_values_and_compose_key() -> None:
    lookup = {"voice": "voice", "gprs": "data"}
    assert map_values(pa.array([" Voice", "GPRS", "fax", None]), lookup).to_pylist() == [
        "voice",
        "data",
        None,
        None,
    ]
    key = compose_key([pa.array(["a|b", "a"]), pa.array(["c", "b|c"])], "p:")
    assert key.to_pylist() == ["p:a\\|b|c", "p:a|b\\|c"]  # no collision
    assert compose_key([pa.array(["x", None])], "").to_pylist() == ["x", None]


# --- the streaming reader -----------------------------------------------------------------

GENERIC = load_mapping(MAPPINGS / "generic.toml")
HEADER = "id,msisdn,service,start,duration,bytes_up,bytes_down,destination,origin,cell"


def _read(path: Path, mapping: CdrMapping = GENERIC, **kw: int) -> tuple[pa.Table, pa.Table, int]:
    chunks = list(read_cdr_file(path, mapping, **kw))  # type: ignore[arg-type]
    usage = pa.concat_tables([c.usage for c in chunks]) if chunks else None
    rejects = pa.concat_tables([c.rejects for c in chunks]) if chunks else None
    read = sum(c.rows_read for c in chunks)
    return usage, rejects, read  # type: ignore[return-value]


def test_bom_crlf_quotes_and_embedded_newline(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + HEADER.encode()
        + b"\r\n"
        + b'c1,0170 1,voice,2026-01-05 10:00:00,60,,,030 1,0170 1,"cell, ""north"""\r\n'
        + b'c2,0170 2,sms,2026-01-05 10:01:00,,,,030 2,0170 2,"multi\r\nline"\r\n'
        + b"\r\n"
        + b"c3,0170 3,data,2026-01-05T10:02:00Z,30,10,20,,,c\r\n"
    )
    usage, rejects, read = _read(path)
    assert read == 3
    assert rejects.num_rows == 0
    rows = usage.to_pylist()
    # record numbers: c2 spans two physical lines but is one record; the blank line is
    # record 4 (counted, not rejected), so c3 is record 5
    assert [r["source_line"] for r in rows] == [2, 3, 5]
    assert rows[0]["location"] == 'cell, "north"'
    assert rows[1]["location"] == "multi\r\nline"
    assert rows[0]["subscriber_key"] == "491701"
    assert rows[0]["start_time"] == dt.datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert rows[2]["volume_down"] == 20
    assert rows[2]["destination"] is None
    assert rows[0]["record_id"] == record_id_reference("c1")


def test_bad_rows_rejected_with_line_reason_and_raw_bytes(tmp_path: Path) -> None:
    lines = [
        HEADER,
        "c1,01701,voice,2026-01-05 10:00:00,60,,,0301,01701,x",
        "c2,01702,voice,2026-01-05 10:00:00",  # malformed
        "c3,01703,voice,not a time,60,,,0301,01703,x",
        "c4,01704,voice,2026-01-05 10:00:00,-1,,,0301,01704,x",
        "c5,,voice,2026-01-05 10:00:00,60,,,0301,,x",
        "c6,01706,fax,2026-01-05 10:00:00,60,,,0301,01706,x",
        "c7,01707,data,2026-01-05 10:00:00,60,1e5,7,,,x",
        "c8,01708,voice,2026-01-05 10:00:00,60,,,0301,01708,x",
        "c9,0170x,voice,2026-01-05 10:00:00,60,,,0301,01708,x,extra",  # malformed
    ]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    usage, rejects, read = _read(path)
    assert read == 9
    assert usage.column("source_line").to_pylist() == [2, 9]
    got = sorted((r["record_no"], r["reason"], r["field"], r["raw"]) for r in rejects.to_pylist())
    assert got == [
        (3, "malformed_row", None, lines[2].encode()),
        (4, "bad_time", "start_time", lines[3].encode()),
        (5, "negative_duration", "duration", lines[4].encode()),
        (6, "missing_field", "subscriber", lines[5].encode()),
        (7, "bad_service", "service", lines[6].encode()),
        (8, "bad_number", "volume_up", lines[7].encode()),
        (10, "malformed_row", None, lines[9].encode()),
    ]
    messages = {r["record_no"]: r["message"] for r in rejects.to_pylist()}
    assert "not a time" in messages[4]
    assert "expected 10 columns, found 4" in messages[3]


def test_line_numbers_across_small_blocks(tmp_path: Path) -> None:
    rows = [HEADER]
    bad = {5, 37, 38, 120, 399}
    for i in range(2, 402):
        if i in bad:
            rows.append(f"b{i},broken")
        else:
            rows.append(f"c{i},0170{i},sms,2026-01-05 10:00:00,,,,,,cell-{i}")
    path = tmp_path / "many.csv"
    path.write_text("\n".join(rows))
    usage, rejects, read = _read(path, block_size=512)
    assert read == 400
    lines = usage.column("source_line").to_pylist()
    assert lines == [i for i in range(2, 402) if i not in bad]
    assert usage.column("location").to_pylist() == [f"cell-{i}" for i in lines]
    assert sorted(rejects.column("record_no").to_pylist()) == sorted(bad)


def test_empty_and_header_only_files_yield_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header = tmp_path / "header.csv"
    header.write_text(HEADER + "\r\n")
    for path in (empty, header):
        assert [c.usage.num_rows for c in read_cdr_file(path, GENERIC)] in ([], [0])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not_csv"),
        (b"name,age\nbob,3\n", "header_mismatch"),
        (b"Hello, this is a letter.\nRegards\n", "header_mismatch"),
        (HEADER.encode() + b"\nc1,\xff\xfe,voice\n", "bad_encoding"),
    ],
)
def test_files_that_are_not_this_csv_are_refused(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(CdrRefusedError) as info:
        list(read_cdr_file(path, GENERIC))
    assert info.value.reason == reason
    assert str(path) in str(info.value)


def test_asterisk_sample() -> None:
    mapping = load_mapping(MAPPINGS / "asterisk.toml")
    usage, rejects, read = _read(DATA / "samples" / "asterisk_Master.csv", mapping)
    assert read == 8
    rows = usage.to_pylist()
    assert [r["source_line"] for r in rows] == [1, 2, 5, 6]
    assert rows[0]["duration_ms"] == 120_000  # billsec, not duration
    assert rows[0]["start_time"] == dt.datetime(2026, 3, 29, 10, 0, 5, tzinfo=UTC)  # answer
    assert rows[0]["destination"] == "491701234567"
    assert rows[1]["subscriber_key"] == "491715550100"
    assert all(r["service"] == "voice" for r in rows)
    reasons = sorted((r["record_no"], r["reason"]) for r in rejects.to_pylist())
    assert reasons == [
        (3, "not_answered"),
        (4, "not_answered"),
        (7, "not_answered"),
        (8, "malformed_row"),
    ]


def test_asterisk_non_csv_is_refused(tmp_path: Path) -> None:
    mapping = load_mapping(MAPPINGS / "asterisk.toml")
    path = tmp_path / "Master.csv"
    path.write_text("just some text\nwith two lines\n")
    with pytest.raises(CdrRefusedError, match="18 columns"):
        list(read_cdr_file(path, mapping))


def test_skip_filter_counts_without_rejecting(tmp_path: Path) -> None:
    text = (MAPPINGS / "asterisk.toml").read_text().replace('action = "reject"', 'action = "skip"')
    mapping = parse_mapping(tomllib.loads(text), source="skip.toml")
    chunks = list(read_cdr_file(DATA / "samples" / "asterisk_Master.csv", mapping))
    assert sum(c.skipped.get("not_answered", 0) for c in chunks) == 3
    assert sum(c.rejects.num_rows for c in chunks) == 1  # the malformed one


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(["+", "00", "0", ""]), min_size=1, max_size=20))
def test_subscriber_spellings_agree(tmp_path: Path, prefixes: list[str]) -> None:
    path = tmp_path / "s.csv"
    body = [HEADER] + [
        f"k{i},{p}{'49' if p in ('+', '00') else ''}1701234567,sms,2026-01-01 00:00:00,,,,,,"
        for i, p in enumerate(prefixes)
    ]
    path.write_text("\n".join(body) + "\n")
    usage, _, _ = _read(path)
    expected = ["491701234567" if p else "1701234567" for p in prefixes]
    assert usage.column("subscriber_key").to_pylist() == expected


CUSTOM = """
[mapping]
name = "custom"
[csv]
header = true
delimiter = ";"
encoding = "latin-1"
[fields]
record_key = { columns = ["imsi", "ts"], prefix = "sw1:" }
subscriber = { column = "imsi", type = "imsi", normalise = "digits" }
service = { column = "kind", values = { voice = ["MOC"], sms = ["SMS-MO"] } }
start_time = { column = "ts", format = "epoch_ms" }
duration = { column = "dur", unit = "hms" }
location = { constant = "site-7" }
destination = { column = "called", normalise = "digits" }
"""


def test_custom_dialect_latin1_epoch_ms_hms_imsi(tmp_path: Path) -> None:
    mapping = parse_mapping(tomllib.loads(CUSTOM), source="custom.toml")
    path = tmp_path / "sw1.csv"
    rows = [
        "imsi;ts;kind;dur;called;note",
        "262011234567890;1767225600000;MOC;0:01:05;+49 30 1;café",
        "262011234567891;1767225600500;sms-mo;0:00:00;030 2;naïve",
        "262011234567892;1767225601000;MOC;1:99:00;030 3;déjà",
    ]
    path.write_bytes("\r\n".join(rows).encode("latin-1") + b"\r\n")
    usage, rejects, read = _read(path, mapping)
    assert read == 3
    got = usage.to_pylist()
    assert [r["subscriber_key"] for r in got] == ["262011234567890", "262011234567891"]
    assert [r["subscriber_key_type"] for r in got] == ["imsi", "imsi"]
    assert [r["service"] for r in got] == ["voice", "sms"]
    assert [r["duration_ms"] for r in got] == [65_000, 0]
    assert got[1]["start_time"] == dt.datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    assert [r["location"] for r in got] == ["site-7", "site-7"]
    assert got[0]["destination"] == "49301"
    assert got[0]["record_key"] == "sw1:262011234567890|1767225600000"
    (bad,) = rejects.to_pylist()
    assert (bad["record_no"], bad["reason"], bad["field"]) == (4, "bad_number", "duration")
    assert bad["raw"] == rows[3].encode("latin-1")  # the file's own bytes


# --- empty and whitespace values, content digest --------------------------------------------

_WS = " \t\n\v\f\r"


@settings(deadline=None, max_examples=60)
@given(
    st.lists(st.none() | st.text(alphabet=st.sampled_from("ab é" + _WS), max_size=6), max_size=30),
    st.integers(0, 3),
)
def test_none_if_empty_trims_and_nulls_like_python(values: list[str | None], cut: int) -> None:
    arr = pa.array(values, pa.string()).slice(min(cut, len(values)))
    expected = [None if v is None or not v.strip(_WS) else v.strip(_WS) for v in values]
    assert none_if_empty(arr).to_pylist() == expected[min(cut, len(values)) :]


def test_none_if_empty_without_whitespace_shares_the_buffers() -> None:
    arr = pa.array(["a", "", "bc", ""], pa.string())
    out = none_if_empty(arr)
    assert out.to_pylist() == ["a", None, "bc", None]
    assert out.buffers()[2].address == arr.buffers()[2].address  # no copy
    assert none_if_empty(pa.array(["a", "b"])).to_pylist() == ["a", "b"]


def test_file_digest_reads_characters_cut_by_its_blocks(tmp_path: Path) -> None:
    text = ("a" * 7 + "é€") * 50  # multi-byte characters across every 8-byte block edge
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode())
    assert file_digest(path, encoding="utf-8", chunk=8) == (
        hashlib.sha256(text.encode()).hexdigest(),
        None,
    )
    path.write_bytes(b"a" * 20 + b"\xff" + b"b" * 20)  # ASCII blocks skip decoding, not checking
    assert file_digest(path, encoding="utf-8", chunk=8)[1] == 20
    path.write_bytes(b"a" * 15 + "é".encode()[:1])  # cut inside a character at the end
    assert file_digest(path, encoding="utf-8", chunk=8)[1] == 16
