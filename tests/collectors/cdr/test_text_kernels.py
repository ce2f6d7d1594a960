"""The one-pass text readers equal the Arrow path on what they accept and give up otherwise;
a batch read with them equals the batch read by the Arrow path alone; numbers past int64 are
bad values, not a failed ingest."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from package_data import MAPPINGS

from collectors.cdr import batch as batch_module
from collectors.cdr.batch import BatchTransformer
from collectors.cdr.ingest import ingest_cdr_files
from collectors.cdr.mapping import load_mapping
from collectors.cdr.text_kernels import longest_value, read_digits, read_lookup
from collectors.cdr.transforms import (
    map_values,
    none_if_empty,
    parse_duration_ms,
    parse_scaled,
    parse_unsigned,
)
from collectors.dataset import read_dataset
from collectors.schemas import REJECT_SCHEMA
from collectors.workspace import WorkspacePaths

GENERIC = load_mapping(MAPPINGS / "generic.toml")
_ASCII_SPACE = " \t\n\v\f\r"

_NUMBER_TEXT = st.one_of(
    st.from_regex(r"\A[ \t]?-?[0-9]{0,21}(\.[0-9]{0,5})?[ ]?\Z", fullmatch=True),
    st.sampled_from(["", " ", "+5", "0x1f", "1e3", "-", ".5", "5.", "--1", "1.2.3", "١٢"]),
)


def _arrow_values(parsed: pa.Array) -> list[int]:
    return [0 if v is None else v for v in parsed.to_pylist()]


@settings(max_examples=60, deadline=None)
@given(st.lists(_NUMBER_TEXT, max_size=12), st.sampled_from(["s", "ms"]))
def test_durations_read_as_the_arrow_path_or_left_to_it(values: list[str], unit: str) -> None:
    arr = pa.array(values, pa.string())
    fast = read_digits(arr, scale=3 if unit == "s" else 0, signed=True)
    try:
        slow = parse_duration_ms(none_if_empty(arr), unit)
    except pa.ArrowInvalid:  # overflow in the checked arithmetic: never a fast batch
        assert fast is None
        return
    plain = [v.strip(_ASCII_SPACE) for v in values]
    accepted = all(not p or re.fullmatch(r"-?[0-9]{1,15}(\.[0-9]*)?", p) for p in plain)
    assert (fast is not None) == accepted  # given up exactly where a value is spelled otherwise
    if fast is None:
        return
    millis, present = fast
    assert present.tolist() == [bool(p) for p in plain]
    assert millis.dtype == np.int64
    assert slow.null_count == len(values) - int(present.sum())  # every present value read
    assert millis.tolist() == _arrow_values(slow)


@settings(max_examples=60, deadline=None)
@given(st.lists(_NUMBER_TEXT, max_size=12))
def test_byte_counts_read_as_the_arrow_path_or_left_to_it(values: list[str]) -> None:
    arr = pa.array(values, pa.string())
    fast = read_digits(arr, scale=0, signed=False)
    slow = parse_unsigned(none_if_empty(arr))
    plain = [v.strip(_ASCII_SPACE) for v in values]
    assert (fast is not None) == all(not p or re.fullmatch(r"[0-9]{1,19}", p) for p in plain)
    if fast is None:
        return
    counts, present = fast
    assert counts.dtype == np.uint64
    assert present.tolist() == [bool(p) for p in plain]
    assert counts.tolist() == _arrow_values(slow)


def test_digit_limits() -> None:
    assert read_digits(pa.array(["9" * 19]), scale=0, signed=False)[0].tolist() == [  # type: ignore[index]
        int("9" * 19)
    ]
    assert read_digits(pa.array(["1" * 20]), scale=0, signed=False) is None
    assert read_digits(pa.array(["-1" + "0" * 14 + ".9999"]), scale=3, signed=True)[0].tolist() == [  # type: ignore[index]
        -(10**17) - 999
    ]
    assert read_digits(pa.array(["1" * 16]), scale=3, signed=True) is None
    assert read_digits(pa.array(["1", None]), scale=0, signed=False) is None  # nulls: Arrow path
    assert read_digits(pa.array([], pa.string()), scale=0, signed=False)[0].size == 0  # type: ignore[index]


_SERVICE_TEXT = st.sampled_from(
    ["voice", "sms", "data", "call", "gprs", "", " sms ", "Voice", "SMS", "fax", "mo_sms", "é"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_SERVICE_TEXT, max_size=12))
def test_services_read_as_the_arrow_path_or_left_to_it(values: list[str]) -> None:
    arr = pa.array(values, pa.string())
    lookup = GENERIC.service.values
    fast = read_lookup(arr, lookup)
    slow = map_values(none_if_empty(arr), lookup)
    plain = [v.strip(_ASCII_SPACE) for v in values]
    assert (fast is not None) == all(not p or p in lookup for p in plain)
    if fast is None:
        return
    services, present = fast
    assert present.tolist() == [bool(p) for p in plain]
    assert services.equals(slow)


def test_lookup_keys_that_are_not_their_folded_form_are_never_matched_as_spelled() -> None:
    # a key with upper case can never match after folding: the fast path must not match it
    assert read_lookup(pa.array(["MOC"]), {"MOC": "voice", "sms": "sms"}) is None
    assert read_lookup(pa.array(["sms"]), {"MOC": "voice", "sms": "sms"}) is not None


def _batch(rows: list[list[str]]) -> pa.RecordBatch:
    names = GENERIC.used_columns()
    header = ["id", "msisdn", "service", "start", "duration", "bytes_up", "bytes_down",
              "destination", "origin", "cell"]  # fmt: skip
    cols = {name: [r[header.index(name)] for r in rows] for name in names}
    return pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in cols.items()})


_ROWS = [
    ["c1", "+491701", "voice", "2026-03-20T10:00:00", "65.5", "", "", "0301", "+491701", "c-1"],
    ["c2", "01701", "SMS", "2026-03-20T10:00:01", "", "", "", "0049301", "01701", "c-2"],
    ["c3", "491701", "data", "2026-03-20T10:00:02", "900", "1048576", "+7", "", "", "c-3"],
    ["c4", "491702", "fax", "2026-03-20T10:00:03", "-5", "12", "13", "", "", "c-4"],
    ["c5", "491703", "sms", "2026-03-20T10:00:04", "x", " 7 ", "8", "", "", "c-5"],
]


@pytest.mark.parametrize("rows", [[0], [0, 2], [0, 1, 2, 3, 4], [3], [4], [2, 4]])
def test_a_batch_reads_the_same_with_and_without_the_text_kernels(
    rows: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch([_ROWS[i] for i in rows])
    lines = np.arange(2, 2 + len(rows), dtype=np.int64)
    fast_table, fast_checks = BatchTransformer(GENERIC, "f.csv").run(batch, lines)
    monkeypatch.setattr(batch_module, "read_digits", lambda *a, **k: None)
    monkeypatch.setattr(batch_module, "read_lookup", lambda *a, **k: None)
    slow_table, slow_checks = BatchTransformer(GENERIC, "f.csv").run(batch, lines)
    assert fast_table.equals(slow_table)
    assert [(c.field, c.column, c.reason, c.what, c.skip) for c in fast_checks] == [
        (c.field, c.column, c.reason, c.what, c.skip) for c in slow_checks
    ]
    for fast, slow in zip(fast_checks, slow_checks, strict=True):
        assert fast.mask.tolist() == slow.mask.tolist(), fast.reason


@settings(max_examples=60, deadline=None)
@given(
    st.integers(-(10**20), 10**20),
    st.one_of(st.none(), st.from_regex(r"\A[0-9]{0,8}\Z", fullmatch=True)),
    st.sampled_from([3, 6]),
)
def test_scaled_values_past_int64_are_null_not_an_error(
    whole: int, fraction: str | None, digits: int
) -> None:
    # the checked arithmetic raised for these, which ended the whole ingest with a traceback
    text = f"{'-' if whole < 0 else ''}{abs(whole)}" + ("" if fraction is None else f".{fraction}")
    scaled = abs(whole) * 10**digits + int(((fraction or "") + "0" * digits)[:digits])
    exact = -scaled if whole < 0 else scaled
    got = parse_scaled(pa.array([text]), digits).to_pylist()
    assert got == [exact if abs(exact) <= 2**63 - 1 else None]


def test_durations_past_int64_are_rejected_by_record_and_field(tmp_path: Path) -> None:
    lines = [
        "id,msisdn,service,start,duration,bytes_up,bytes_down,destination,origin,cell",
        "a,01701,voice,2026-03-20T10:00:00,99999999999999999,,,030,01701,c1",
        "b,01701,voice,2026-03-20T10:00:01,65,,,030,01701,c1",
    ]
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    summary = ingest_cdr_files([path], GENERIC, WorkspacePaths(tmp_path / "ws"))
    assert summary.ingested == 1
    assert summary.rejected_by_reason() == {"bad_number": 1}
    rejected = read_dataset(tmp_path / "ws" / "rejected", REJECT_SCHEMA).to_pylist()
    assert [(r["record_no"], r["field"], r["source_file"]) for r in rejected] == [
        (2, "duration", "big.csv")
    ]
    hms = parse_duration_ms(pa.array(["2562047788015:12:55", "2562047788015:12:56"]), "hms")
    assert hms.to_pylist() == [2**63 - 1 - 807, None]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=10), st.integers(0, 3))
def test_longest_value_is_the_longest_in_bytes(values: list[str], cut: int) -> None:
    arr = pa.array(values, pa.string()).slice(min(cut, len(values)))
    expected = max((len(v.encode()) for v in values[min(cut, len(values)) :]), default=0)
    assert longest_value(arr) == expected
    assert longest_value(pa.array([*values, None], pa.string())) is None  # nulls: Arrow path
