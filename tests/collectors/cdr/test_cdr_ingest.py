"""CDR ingest end to end: counts, de-duplication, refusals, exactly-once after interruption."""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from package_data import DATA, MAPPINGS

from collectors.cdr import ledger as ingest_ledger
from collectors.cdr.ingest import ingest_cdr_files, recover_cdr_ingest, write_by_day
from collectors.cdr.kernels import record_id_reference
from collectors.cdr.ledger import IngestLedger
from collectors.cdr.mapping import load_mapping
from collectors.dataset import dataset_files, read_dataset
from collectors.schemas import REJECT_SCHEMA, USAGE_SCHEMA
from collectors.workspace import WorkspacePaths

DATA = DATA
GENERIC = load_mapping(MAPPINGS / "generic.toml")
ASTERISK = load_mapping(MAPPINGS / "asterisk.toml")
SAMPLE = DATA / "samples" / "cdr_generic_sample.csv"
HEADER = "id,msisdn,service,start,duration,bytes_up,bytes_down,destination,origin,cell"


def _usage(ws: WorkspacePaths) -> pa.Table:
    return read_dataset(ws.usage, USAGE_SCHEMA)


def _rejected(ws: WorkspacePaths) -> pa.Table:
    return read_dataset(ws.rejected, REJECT_SCHEMA)


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _row(key: str, n: int = 1, *, start: str = "2026-01-05 10:00:00") -> str:
    return f"{key},0170{n},voice,{start},60,,,030{n},0170{n},cell"


def test_generic_sample(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    summary = ingest_cdr_files([SAMPLE], GENERIC, ws)
    (result,) = summary.files
    assert result.status == "ingested"
    assert result.rows_read == 16
    assert result.ingested == 8
    assert result.duplicates == 1
    assert result.rejected == {
        "bad_number": 1,
        "bad_service": 1,
        "bad_time": 2,
        "malformed_row": 1,
        "missing_field": 1,
        "negative_duration": 1,
    }
    assert result.rows_read == result.ingested + result.duplicates + sum(result.rejected.values())
    usage = _usage(ws)
    assert usage.num_rows == 8
    assert set(usage.column("service").to_pylist()) == {"voice", "sms", "data"}
    rejected = _rejected(ws)
    assert rejected.num_rows == 8
    assert set(rejected.column("stage").to_pylist()) == {"ingest"}
    assert set(rejected.column("source_file").to_pylist()) == {SAMPLE.name}
    dup = rejected.filter(pa.compute.equal(rejected.column("reason"), "duplicate")).to_pylist()
    assert dup[0]["record_no"] == 16
    assert dup[0]["record_id"] == record_id_reference("c-0001")
    assert summary.rejected_by_reason()["duplicate"] == 1
    text = summary.format_text()
    assert "ingested 8" in text
    assert "negative_duration 1" in text
    assert summary.to_dict()["ingested"] == 8


def test_same_file_twice_adds_nothing_also_under_another_name(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    first = ingest_cdr_files([SAMPLE], GENERIC, ws)
    usage_files = dataset_files(ws.usage)
    rejected_files = dataset_files(ws.rejected)
    renamed = tmp_path / "renamed.csv"
    shutil.copy(SAMPLE, renamed)
    for again in ([SAMPLE], [renamed], [renamed, SAMPLE]):
        summary = ingest_cdr_files(again, GENERIC, ws)
        assert summary.ingested == 0
        assert all(f.refused_reason == "already_ingested" for f in summary.files)
        assert SAMPLE.name in summary.files[0].message
    assert _usage(ws).num_rows == first.ingested
    assert dataset_files(ws.usage) == usage_files
    assert dataset_files(ws.rejected) == rejected_files
    # the same content twice in one call: the second is refused
    ws2 = WorkspacePaths(tmp_path / "w2")
    both = ingest_cdr_files([SAMPLE, renamed], GENERIC, ws2)
    assert [f.status for f in both.files] == ["ingested", "refused"]
    assert _usage(ws2).num_rows == first.ingested


def test_duplicates_across_files_are_kept_out(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    a = _write(tmp_path / "a.csv", [_row("k1", 1), _row("k2", 2)])
    b = _write(tmp_path / "b.csv", [_row("k2", 2), _row("k3", 3), _row("k3", 3)])
    first = ingest_cdr_files([a], GENERIC, ws)
    second = ingest_cdr_files([b], GENERIC, ws)
    assert (first.ingested, second.ingested, second.duplicates) == (2, 1, 2)
    assert sorted(_usage(ws).column("record_key").to_pylist()) == ["k1", "k2", "k3"]
    dups = _rejected(ws).to_pylist()
    assert sorted((r["source_file"], r["record_no"]) for r in dups) == [("b.csv", 2), ("b.csv", 4)]


def test_interrupted_before_commit_then_rerun_is_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    real_put = IngestLedger.put

    def crash(self: IngestLedger, entry: ingest_ledger.LedgerEntry) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(IngestLedger, "put", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest_cdr_files([SAMPLE], GENERIC, ws)
    assert _usage(ws).num_rows == 0  # nothing visible
    assert _rejected(ws).num_rows == 0
    monkeypatch.setattr(IngestLedger, "put", real_put)
    summary = ingest_cdr_files([SAMPLE], GENERIC, ws)
    assert summary.ingested == 8
    assert _usage(ws).num_rows == 8
    assert _rejected(ws).num_rows == 8
    assert ingest_cdr_files([SAMPLE], GENERIC, ws).ingested == 0


@pytest.mark.parametrize("use_recover", [False, True])
def test_interrupted_while_publishing_is_rolled_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_recover: bool
) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    real_replace = ingest_ledger.os.replace
    calls = itertools.count()

    def replace_then_crash(src: str, dst: str) -> None:
        if "cdr_staging" in str(src) and next(calls) == 1:
            raise RuntimeError("killed while publishing")
        real_replace(src, dst)

    # many small parts so publishing has several renames
    rows = [_row(f"k{i}", i, start=f"2026-01-{1 + i % 9:02d} 10:00:00") for i in range(40)]
    path = _write(tmp_path / "p.csv", rows)
    monkeypatch.setattr(ingest_ledger.os, "replace", replace_then_crash)
    with pytest.raises(RuntimeError, match="killed"):
        ingest_cdr_files([path], GENERIC, ws, rows_per_part=10)
    partially = _usage(ws).num_rows
    assert 0 < partially < 40
    monkeypatch.setattr(ingest_ledger.os, "replace", real_replace)
    if use_recover:
        assert recover_cdr_ingest(ws) == (1, 0)
        assert _usage(ws).num_rows == 40
    summary = ingest_cdr_files([path], GENERIC, ws)
    assert summary.rolled_forward == (0 if use_recover else 1)
    assert summary.files[0].refused_reason == "already_ingested"
    usage = _usage(ws)
    assert usage.num_rows == 40
    assert sorted(usage.column("record_key").to_pylist()) == sorted(f"k{i}" for i in range(40))


def test_refused_files_write_nothing(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    binary = tmp_path / "image.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    wrong = _write(tmp_path / "wrong.csv", [])
    wrong.write_text("a,b\n1,2\n")
    # valid start, undecodable bytes far beyond the sniffed prefix
    late = tmp_path / "late.csv"
    late.write_bytes(
        ("\n".join([HEADER] + [_row(f"z{i}", i) for i in range(3000)]) + "\n").encode()
        + b"zz,\xff\xfe,voice\n"
    )
    missing = tmp_path / "missing.csv"
    summary = ingest_cdr_files([binary, wrong, late, missing], GENERIC, ws, block_size=4096)
    reasons = [f.refused_reason for f in summary.files]
    assert reasons == ["not_csv", "header_mismatch", "bad_encoding", "unreadable"]
    assert summary.ingested == 0
    assert dataset_files(ws.usage) == []
    assert dataset_files(ws.rejected) == []
    assert IngestLedger(ws).entries == {}
    assert "REFUSED (not_csv)" in summary.format_text()


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header = _write(tmp_path / "header.csv", [])
    blank = tmp_path / "blank.csv"
    blank.write_text(HEADER + "\n\n\n")
    summary = ingest_cdr_files([empty, header, blank], GENERIC, ws)
    assert [f.status for f in summary.files] == ["empty", "empty", "empty"]
    assert summary.files[2].blank_lines == 2
    assert dataset_files(ws.usage) == []
    assert IngestLedger(ws).entries == {}


def test_asterisk_sample(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    summary = ingest_cdr_files([DATA / "samples" / "asterisk_Master.csv"], ASTERISK, ws)
    (result,) = summary.files
    assert (result.rows_read, result.ingested) == (8, 4)
    assert result.rejected == {"malformed_row": 1, "not_answered": 3}
    assert sum(_usage(ws).column("duration_ms").to_pylist()) == (120 + 1800 + 45 + 300) * 1000


def test_write_by_day_layout(tmp_path: Path) -> None:
    times = [dt.datetime(2026, 1, d, 23, 59, tzinfo=dt.UTC) for d in (2, 1, 2, 3)]
    table = pa.table({"t": pa.array(times, pa.timestamp("us", tz="UTC")), "v": [0, 1, 2, 3]})
    written = write_by_day(table, tmp_path, time_column="t", part_name="x")
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "date=2026-01-01/part-x.parquet",
        "date=2026-01-02/part-x.parquet",
        "date=2026-01-03/part-x.parquet",
    ]


# --- random files with injected faults ----------------------------------------------------

FAULTS = {
    "malformed_row": lambda k, n: f"{k},0170{n},voice",
    "bad_time": lambda k, n: f"{k},0170{n},voice,2026-02-31 10:00:00,60,,,0301,0170{n},c",
    "negative_duration": lambda k, n: f"{k},0170{n},voice,2026-01-05 10:00:00,-3,,,0301,,c",
    "missing_field": lambda k, n: f"{k},,voice,2026-01-05 10:00:00,60,,,0301,,c",
    "bad_service": lambda k, n: f"{k},0170{n},telex,2026-01-05 10:00:00,60,,,0301,,c",
    "bad_number": lambda k, n: f"{k},0170{n},data,2026-01-05 10:00:00,60,-1,5,,,c",
}

row_kinds = st.sampled_from(["good"] * 4 + ["dup"] + sorted(FAULTS))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=st.lists(st.lists(row_kinds, max_size=40), min_size=1, max_size=3), crlf=st.booleans())
def test_random_files_with_faults(tmp_path: Path, files: list[list[str]], crlf: bool) -> None:
    root = tmp_path / f"case-{next(_case)}"
    root.mkdir()
    ws = WorkspacePaths(root / "w")
    expected_good: dict[str, tuple[str, int]] = {}  # key -> (file, line)
    expected_bad: set[tuple[str, int, str]] = set()
    paths = []
    fresh = itertools.count()
    for f, kinds in enumerate(files):
        name = f"f{f}.csv"
        lines = [HEADER]
        for kind in kinds:
            line_no = len(lines) + 1
            if kind == "dup" and expected_good:
                key = sorted(expected_good)[line_no % len(expected_good)]
                lines.append(_row(key, 7))
                expected_bad.add((name, line_no, "duplicate"))
                continue
            key = f"k{next(fresh)}"
            if kind in FAULTS:
                lines.append(FAULTS[kind](key, line_no))
                expected_bad.add((name, line_no, kind))
            else:
                row = _row(key, line_no, start=f"2026-01-{1 + line_no % 28:02d} 08:00:00")
                # quoted values with a delimiter or a line break must not shift record numbers
                cell = ["cell", '"c,ell"', '"multi\nline"'][line_no % 3]
                lines.append(row.removesuffix(",cell") + "," + cell)
                expected_good[key] = (name, line_no)
        path = root / name
        path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode() + b"\n")
        paths.append(path)
    summary = ingest_cdr_files(paths, GENERIC, ws, block_size=256, rows_per_part=7)
    usage = _usage(ws).to_pylist()
    got_good = {r["record_key"]: (r["source_file"], r["source_line"]) for r in usage}
    assert len(usage) == len(got_good)  # each good row exactly once
    assert got_good == expected_good
    got_bad = {(r["source_file"], r["record_no"], r["reason"]) for r in _rejected(ws).to_pylist()}
    assert got_bad == expected_bad
    assert summary.ingested == len(expected_good)
    per_reason: dict[str, int] = {}
    for _, _, reason in expected_bad:
        per_reason[reason] = per_reason.get(reason, 0) + 1
    assert summary.rejected_by_reason() == dict(sorted(per_reason.items()))
    # and a second run adds nothing
    assert ingest_cdr_files(paths, GENERIC, ws).ingested == 0
    assert len(_usage(ws)) == len(expected_good)


_case = itertools.count()
