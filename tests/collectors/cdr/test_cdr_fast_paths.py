"""CDR ingest fast paths equal the plain ones: BLAKE2b lanes, runs of equal times, number
normalisation writing digits in place."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from package_data import MAPPINGS

from collectors.cdr.csv_files import CdrRefusedError, RawLines, ScanPoints
from collectors.cdr.ingest import _MIN_SPLIT, ingest_cdr_files
from collectors.cdr.kernels import record_id_reference, record_ids
from collectors.cdr.ledger import IngestLedger, LedgerEntry
from collectors.cdr.mapping import NumberRules, TimeSpec, load_mapping
from collectors.cdr.reader import read_cdr_file
from collectors.cdr.transforms import normalise_numbers, normalise_numbers_reference, parse_times
from collectors.dataset import dataset_files, read_dataset
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths

GENERIC = load_mapping(MAPPINGS / "generic.toml")


def test_record_ids_in_lane_groups_with_long_keys_between() -> None:
    # short keys are hashed 16 at a time: full groups, a partial last group, and keys longer
    # than one block (hashed alone) between them must each get their own digest
    for n in (1, 15, 16, 17, 33, 50):
        keys = [f"c{i}" if i % 7 else "k" * (120 + i) for i in range(n)]
        assert record_ids(pa.array(keys)).tolist() == [record_id_reference(k) for k in keys]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["", "a", "ab", "ba", "é", "x" * 129, "x" * 128]), max_size=60))
def test_record_ids_of_repeated_keys(keys: list[str]) -> None:
    assert record_ids(pa.array(keys, pa.string())).tolist() == [
        record_id_reference(k) for k in keys
    ]


_TIMES = [
    None,
    "2026-03-29 01:59:59",
    "2026-03-29 02:30:00",  # spring-forward gap in Berlin: null
    "2026-03-29 03:00:00",
    "2026-10-25 02:30:00",  # the repeated autumn hour
    "2026-10-25T02:30:00+02:00",
    "2026-07-01T12:00:00Z",
    "2026-07-01T12:00:00.250",
    "2026-02-30 10:00:00",  # no such day
    "later",
]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_TIMES), st.integers(1, 6)), min_size=1, max_size=25),
    st.sampled_from(["earliest", "latest", "reject"]),
)
def test_times_parsed_once_per_run_equal_each_parsed_alone(
    runs: list[tuple[str | None, int]], ambiguous: str
) -> None:
    values = [v for v, k in runs for _ in range(k)]
    spec = TimeSpec(column="t", format="iso8601", zone="Europe/Berlin", ambiguous=ambiguous)
    got = parse_times(pa.array(values, pa.string()), spec).to_pylist()
    alone = [parse_times(pa.array([v], pa.string()), spec).to_pylist()[0] for v in values]
    assert got == alone
    if "2026-07-01T12:00:00Z" in values:
        assert dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC) in got


def test_times_in_file_order_are_parsed_per_run() -> None:
    # 10 CDRs a second for a minute: the same values as 600 parses one at a time
    seconds = np.repeat(np.arange(60), 10)
    values = [f"2026-03-29 01:59:{s:02d}" for s in seconds]
    spec = TimeSpec(column="t", format="iso8601", zone="Europe/Berlin")
    arr = pa.array(values)
    expected = [dt.datetime(2026, 3, 29, 0, 59, int(s), tzinfo=dt.UTC) for s in seconds]
    assert parse_times(arr, spec).to_pylist() == expected


# wall-clock times a few days either side of a transition: 30-minute DST (Lord Howe), the
# day Samoa skipped (2011-12-30), a half-hour zone, and plain European DST
_NEAR_TRANSITIONS = [
    ("Europe/Berlin", dt.datetime(2026, 3, 29, 2, 0)),
    ("Europe/Berlin", dt.datetime(2026, 10, 25, 2, 0)),
    ("Australia/Lord_Howe", dt.datetime(2026, 4, 5, 1, 30)),
    ("Pacific/Apia", dt.datetime(2011, 12, 30, 0, 0)),
    ("America/St_Johns", dt.datetime(2026, 11, 1, 1, 0)),
]


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(_NEAR_TRANSITIONS),
    st.lists(st.integers(-5 * 86_400, 5 * 86_400), min_size=2, max_size=30),
    st.integers(0, 7_200),
    st.sampled_from(["earliest", "latest", "reject"]),
)
def test_times_with_one_offset_equal_the_zone_rules(
    near: tuple[str, dt.datetime], seconds: list[int], spread: int, ambiguous: str
) -> None:
    # a batch is either far from a transition (one offset for all: subtracted) or near one
    # (the rules); either way each value is what the zone's rules give it alone
    zone, at = near
    base = seconds[0]
    values = [at + dt.timedelta(seconds=base + (s % (spread + 1))) for s in sorted(seconds)]
    spec = TimeSpec(column="t", format="iso8601", zone=zone, ambiguous=ambiguous)
    text = pa.array([v.isoformat(sep=" ") for v in values])
    alone = [parse_times(text.slice(i, 1), spec).to_pylist()[0] for i in range(len(values))]
    assert parse_times(text, spec).to_pylist() == alone


def test_a_null_beside_the_epoch_is_its_own_run() -> None:
    values = ["1970-01-01 01:00:00", None, None, "1970-01-01 01:00:00", "1970-01-01 01:00:00"]
    spec = TimeSpec(column="t", format="iso8601", zone="Europe/Berlin")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert parse_times(pa.array(values), spec).to_pylist() == [epoch, None, None, epoch, epoch]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.none() | st.text(alphabet="0123456789+ -()/é\t", max_size=14), max_size=40),
    st.sampled_from([NumberRules("", "0", "00"), NumberRules("7", "8", "810")]),
)
def test_e164_with_odd_rules_matches_reference(
    values: list[str | None], rules: NumberRules
) -> None:
    # an empty country code turns a lone trunk prefix into nothing: null, as in the reference
    got = normalise_numbers(pa.array(values, pa.string()), "e164", rules).to_pylist()
    assert got == [normalise_numbers_reference(v, "e164", rules) for v in values]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.from_regex(r"\A(\+|00|0)?[0-9]{0,19}([a/ ][0-9]{0,3})?\Z", fullmatch=True), max_size=30
    ),
    st.sampled_from(["e164", "digits"]),
)
def test_numbers_copied_as_words_match_reference(values: list[str], mode: str) -> None:
    # values of up to 16 digits are checked and copied two words at a time, reading past
    # their end into the next value (or the buffer's end: byte by byte there); a non-digit
    # at any place in either word sends a value to the general path
    rules = NumberRules("49", "0", "00")
    got = normalise_numbers(pa.array(values, pa.string()), mode, rules).to_pylist()
    assert got == [normalise_numbers_reference(v, mode, rules) for v in values]


@pytest.mark.parametrize(
    "rules", [NumberRules("49", "0", "00"), NumberRules("7", "8", "810"), NumberRules("", "0", "")]
)
def test_prefixes_told_from_a_word_match_reference(rules: NumberRules) -> None:
    # values that are a prefix and no more, a prefix cut short, or a prefix's first byte;
    # each followed by others, so its first word reaches into the next value
    tricky = ["00", "0", "+", "000", "0049", "8", "81", "810", "8101", "+0", "0+1", "00 1", "09"]
    values = [v for t in tricky for v in (t, "1234567890123")]
    got = normalise_numbers(pa.array(values, pa.string()), "e164", rules).to_pylist()
    assert got == [normalise_numbers_reference(v, "e164", rules) for v in values]


# --- the file's hash beside the parse ----------------------------------------------------

HEADER = "id,msisdn,service,start,duration,bytes_up,bytes_down,destination,origin,cell"


def _rows(n: int, prefix: str = "k") -> list[str]:
    return [
        f"{prefix}{i},0170{i},voice,2026-01-05 10:00:{i % 60:02d},60,,,030{i},0170{i},c"
        for i in range(n)
    ]


def test_a_file_ingested_before_is_refused_and_leaves_nothing_staged(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    path = tmp_path / "a.csv"
    path.write_text("\n".join([HEADER, *_rows(3000)]) + "\n")
    first = ingest_cdr_files([path], GENERIC, ws, rows_per_part=500, block_size=4096)
    assert first.ingested == 3000
    parts = dataset_files(ws.usage)
    again = ingest_cdr_files([path], GENERIC, ws, rows_per_part=500, block_size=4096)
    assert [f.refused_reason for f in again.files] == ["already_ingested"]
    assert dataset_files(ws.usage) == parts
    assert not any((ws.state / "cdr_staging").glob("*/*"))


def test_bad_text_is_refused_even_when_the_reader_fails_first(tmp_path: Path) -> None:
    # undecodable bytes early, then a record longer than any read block tried (the reader's
    # own failure): the hash's refusal wins, as when the hash was taken before reading
    path = tmp_path / "b.csv"
    body = "\n".join([HEADER, *_rows(50)]).encode()
    path.write_bytes(body + b"\nx1,\xff\xfe,voice\n" + b'x2,"' + b"9" * 70_000 + b'",sms\n')
    ws = WorkspacePaths(tmp_path / "w")
    summary = ingest_cdr_files([path], GENERIC, ws, block_size=4096)
    assert [f.refused_reason for f in summary.files] == ["bad_encoding"]
    assert dataset_files(ws.usage) == []
    assert dataset_files(ws.rejected) == []
    assert IngestLedger(ws).entries == {}


def test_last_rows_written_as_two_parts(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    path = tmp_path / "c.csv"
    n = 2 * _MIN_SPLIT + 10
    path.write_text("\n".join([HEADER, *_rows(n)]) + "\n")
    summary = ingest_cdr_files([path], GENERIC, ws)
    assert summary.ingested == n
    assert len(dataset_files(ws.usage)) == 2  # one day, the file's rows in two halves
    usage = read_dataset(ws.usage, USAGE_SCHEMA, columns=["source_line"])
    assert sorted(usage.column("source_line").to_pylist()) == list(range(2, n + 2))


def test_ledger_sizes_decide_whether_the_hash_is_awaited(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("\n".join([HEADER, *_rows(40)]) + "\n")
    b.write_text("\n".join([HEADER, *_rows(41, prefix="m")]) + "\n")
    assert ingest_cdr_files([a], GENERIC, ws).ingested == 40
    (entry,) = IngestLedger(ws).entries.values()
    assert entry.size == a.stat().st_size
    assert ingest_cdr_files([b], GENERIC, ws).ingested == 41  # another size: read while hashed
    # an entry written before sizes were recorded: the same content is still refused
    ledger = IngestLedger(ws)
    ledger.put(LedgerEntry(**{**asdict(entry), "size": None}))
    again = ingest_cdr_files([a], GENERIC, ws)
    assert [f.refused_reason for f in again.files] == ["already_ingested"]
    assert read_dataset(ws.usage, USAGE_SCHEMA, columns=["record_id"]).num_rows == 81


def test_raw_lines_scanners_share_where_records_start(tmp_path: Path) -> None:
    # two scanners of one file: the second starts where the first got, and either may still
    # go back to an earlier record; the bytes are the file's lines either way
    lines = [HEADER, *_rows(30), 'q1,"a\nb",voice', *_rows(5, prefix="z")]
    path = tmp_path / "r.csv"
    path.write_bytes(("\r\n".join(lines) + "\n").encode())
    points = ScanPoints()
    first, second = RawLines(path, GENERIC, points), RawLines(path, GENERIC, points)
    assert first.fetch(np.array([20])) == [lines[19].encode()]
    assert second.fetch(np.array([33, 32])) == [lines[32].encode(), lines[31].encode()]
    assert second.fetch(np.array([2])) == [lines[1].encode()]
    assert first.fetch(np.array([36, 25])) == [lines[35].encode(), lines[24].encode()]


# --- blocks, and a file that changes while read ------------------------------------


def test_rows_read_in_small_blocks_with_records_across_blocks(tmp_path: Path) -> None:
    # 300 records in 256-byte blocks: most records straddle two blocks, some three
    path = tmp_path / "cdr.csv"
    path.write_text("\n".join([HEADER, *_rows(300)]) + "\n")
    chunks = list(read_cdr_file(path, GENERIC, block_size=256))
    usage = pa.concat_tables([c.usage for c in chunks])
    assert usage.column("record_key").to_pylist() == [f"k{i}" for i in range(300)]
    assert usage.column("source_line").to_pylist() == list(range(2, 302))


def test_a_file_that_shrinks_while_read_is_refused_by_name(tmp_path: Path) -> None:
    # its rows would be of neither version, and the ledger's hash of the other one
    path = tmp_path / "cdr.csv"
    path.write_text("\n".join([HEADER, *_rows(3000)]) + "\n")
    chunks = read_cdr_file(path, GENERIC, block_size=4096)
    next(chunks)
    with open(path, "r+b") as fh:
        fh.truncate(5000)
    with pytest.raises(CdrRefusedError, match=r"cdr\.csv: the file changed while") as refused:
        list(chunks)
    assert refused.value.reason == "changed"
