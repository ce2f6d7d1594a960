"""Faults of the machine and of stored files: one clear message, a documented exit code,
nothing half-written, and a clean rerun once the fault is gone.

Disk full and read-only run on a small tmpfs (root only, as in CI; skipped elsewhere with
the reason). Corruption is made by hand: a damaged DuckDB file, a truncated Parquet part,
a flipped byte inside a page.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fault_cli import CLI, DEMO, PERIOD, cli, fill, last_json, no_traceback, remount_read_only

from collectors.dataset import dataset_files

EXIT_STORAGE = 8
EXIT_CORRUPT = 9


def _rows(root: Path, prefix: str = "part-") -> int:
    files = [f for f in dataset_files(root) if f.name.startswith(prefix)]
    return sum(pq.read_metadata(f).num_rows for f in files)


def _big_cdr_file(path: Path, rows: int) -> Path:
    """A CDR file of the demo's layout with ``rows`` distinct calls (random, so that the
    Parquet parts do not compress to nothing)."""
    rng = random.Random(rows)
    header = (DEMO / "cdrs.csv").read_text().splitlines()[0]
    with open(path, "w") as fh:
        fh.write(header + "\n")
        for _ in range(rows):
            fh.write(
                f"big-{rng.getrandbits(48):012x},49151{rng.randrange(10**8):08d},voice,"
                f"2026-10-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:"
                f"{rng.randrange(60):02d}:{rng.randrange(60):02d}+00:00,{rng.randrange(4000)},"
                f"0,0,+4930{rng.randrange(10**8):08d},4915110000001,cell-{rng.randrange(999)}\n"
            )
    return path


# -- disk full ------------------------------------------------------------------------------


def test_disk_full_during_cdr_ingest_then_recovery(
    small_disk: Callable[[str], Path], tmp_path: Path
) -> None:
    source = _big_cdr_file(tmp_path / "many.csv", 120_000)
    disk = small_disk("3m")
    ws = disk / "ws"
    full = cli(ws, "ingest", "cdr", str(source), "--mapping", "generic")
    assert full.returncode == EXIT_STORAGE, full.stderr[-2000:]
    no_traceback(full)
    message = full.stderr.strip().splitlines()[-1]
    assert message.startswith("error: no space left on the device holding ")
    assert str(ws) in message  # the path is named
    assert "run the same command again" in message
    # nothing half-written: no usage part visible, the file is not marked as ingested
    assert dataset_files(ws / "usage") == []
    ledger = ws / "state" / "cdr_ingest_ledger.json"
    assert not ledger.exists() or "many.csv" not in ledger.read_text()
    # under --json the same fault is one JSON object
    as_json = cli(ws, "--json", "ingest", "cdr", str(source), "--mapping", "generic")
    assert as_json.returncode == EXIT_STORAGE
    error = last_json(as_json)["error"]
    assert error["code"] == EXIT_STORAGE
    assert error["kind"] == "StorageError"
    # the same workspace on a disk with room: the rerun ingests every row exactly once
    roomy = tmp_path / "roomy"
    shutil.copytree(ws, roomy)
    again = cli(roomy, "--json", "ingest", "cdr", str(source), "--mapping", "generic")
    assert again.returncode == 0, again.stderr[-2000:]
    assert last_json(again)["ingested"] == 120_000
    assert _rows(roomy / "usage") == 120_000


@pytest.mark.parametrize("leave_kib", [16, 300, 900])
def test_disk_full_during_bill_then_recovery(
    small_disk: Callable[[str], Path],
    prebill: Path,
    billed: tuple[Path, str],
    leave_kib: int,
) -> None:
    _, reference = billed
    disk = small_disk("24m")
    ws = disk / "ws"
    shutil.copytree(prebill, ws)
    filler = fill(disk, leave_kib)
    run = cli(ws, "--json", "bill", "--period", PERIOD)
    no_traceback(run)
    if leave_kib > 16 and run.returncode == 0:  # room enough here: the bills are still right
        assert last_json(run)["bills_sha256"] == reference
        return
    assert run.returncode == EXIT_STORAGE, run.stderr[-2000:]
    run = cli(ws, "bill", "--period", PERIOD)
    assert run.returncode == EXIT_STORAGE, run.stderr[-2000:]
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith("error: no space left on the device holding ")
    assert str(ws) in message
    # nothing committed: the period is not billed
    shown = cli(ws, "bills", "show", PERIOD)
    assert shown.returncode == 3, shown.stderr
    assert "has not been billed" in shown.stderr
    # free the space, run the same command again: the bills of a clean run
    filler.unlink()
    again = cli(ws, "--json", "bill", "--period", PERIOD)
    assert again.returncode == 0, again.stderr[-2000:]
    assert last_json(again)["bills_sha256"] == reference


def test_disk_full_in_the_database(small_disk: Callable[[str], Path], prebill: Path) -> None:
    disk = small_disk("24m")
    ws = disk / "ws"
    shutil.copytree(prebill, ws)
    filler = fill(disk, 0)
    added = cli(ws, "--json", "customers", "add", "C-NEW", "x" * 50_000)
    assert added.returncode == EXIT_STORAGE, added.stderr[-2000:]
    no_traceback(added)
    error = last_json(added)["error"]
    assert error["code"] == EXIT_STORAGE
    assert str(ws / "bss.duckdb") in error["message"]  # the database (or its WAL) is named
    filler.unlink()
    assert cli(ws, "customers", "add", "C-NEW", "Nova").returncode == 0
    listed = last_json(cli(ws, "--json", "customers", "list"))
    assert len(listed["accounts"]) == 3  # the workspace is intact


# -- read-only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("ingest", "cdr", str(DEMO / "cdrs.csv"), "--mapping", "generic"),
        ("ingest", "pcap", str(DEMO / "traffic.pcap.gz")),
        ("bill", "--period", PERIOD),
        ("customers", "add", "C9", "Nine"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_read_only_workspace(
    small_disk: Callable[[str], Path], prebill: Path, command: tuple[str, ...]
) -> None:
    disk = small_disk("32m")
    ws = disk / "ws"
    shutil.copytree(prebill, ws)
    remount_read_only(disk)
    run = cli(ws, *command)
    assert run.returncode == EXIT_STORAGE, run.stderr[-2000:]
    no_traceback(run)
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: cannot write {ws}")
    assert "Read-only file system" in message
    assert "--workspace" in message  # what to do
    # reading still works on a read-only workspace
    assert cli(ws, "customers", "list").returncode == 0


# -- standard output ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("--help",), ("--json", "query", "top"), ("query", "top"), ("--json", "customers", "list")],
    ids=" ".join,
)
def test_output_to_a_full_disk(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Standard output on a full disk (``/dev/full``): the output is named, not the
    workspace, and no traceback - also when the error JSON itself cannot be written."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        run = subprocess.run(
            [*CLI, "-w", str(tmp_path / "ws"), *command],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert run.returncode == EXIT_STORAGE, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    message = run.stderr.strip().splitlines()[-1]
    assert message == "error: cannot write the output to standard output (No space left on device)"


def test_reader_gone_ends_quietly(tmp_path: Path) -> None:
    """A pipe whose reader left (``... | head``): exit 1, nothing on standard error."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        run = subprocess.run(
            [*CLI, "-w", str(tmp_path / "ws"), "--json", "--help"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert run.returncode == 1
    assert run.stderr == ""


# -- corrupt files --------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 4096], ids=["header", "block"])
def test_corrupt_database(
    billed: tuple[Path, str], copy_of: Callable[[Path], Path], offset: int
) -> None:
    ws = copy_of(billed[0])
    with open(ws / "bss.duckdb", "r+b") as fh:
        fh.seek(offset)
        fh.write(b"garbage!" * 128)
    shown = cli(ws, "bills", "show", PERIOD)
    assert shown.returncode == EXIT_CORRUPT, shown.stderr[-2000:]
    no_traceback(shown)
    message = shown.stderr.strip().splitlines()[-1]
    assert str(ws / "bss.duckdb") in message
    assert "backup" in message
    as_json = cli(ws, "--json", "bill", "--period", PERIOD)
    assert as_json.returncode == EXIT_CORRUPT
    assert last_json(as_json)["error"]["kind"] == "CorruptFileError"
    checked = cli(ws, "--json", "check")
    assert checked.returncode == EXIT_CORRUPT
    details = last_json(checked)["error"]["details"]
    assert details["database"] not in ("ok", "absent")
    assert details["broken"] == []  # the Parquet parts are fine


def test_truncated_part_is_named_quarantined_and_restored(
    prebill: Path, billed: tuple[Path, str], copy_of: Callable[[Path], Path]
) -> None:
    ws = copy_of(prebill)
    usage_before = _rows(ws / "usage", "part-cdr-")
    part = next(p for p in dataset_files(ws / "usage") if p.name.startswith("part-cdr-"))
    held = pq.read_metadata(part).num_rows
    rel = part.relative_to(ws)
    with open(part, "r+b") as fh:
        fh.truncate(part.stat().st_size // 2)
    run = cli(ws, "bill", "--period", PERIOD)
    assert run.returncode == EXIT_CORRUPT, run.stderr[-2000:]
    no_traceback(run)
    assert str(part) in run.stderr  # the part is named
    assert "rating-engine check" in run.stderr
    # check finds it; --quarantine moves it aside and reports what it held
    found = cli(ws, "--json", "check")
    assert found.returncode == EXIT_CORRUPT
    assert [b["path"] for b in last_json(found)["error"]["details"]["broken"]] == [str(rel)]
    moved = cli(ws, "--json", "check", "--quarantine")
    assert moved.returncode == EXIT_CORRUPT  # a repair is reported, never passed off as clean
    details = last_json(moved)["error"]["details"]
    assert details["quarantined"] is True
    (broken,) = details["broken"]
    assert broken["source_files"] == [str((DEMO / "cdrs.csv").absolute())]
    assert broken["moved_to"].startswith("broken/")
    assert (ws / broken["moved_to"]).exists()
    assert not part.exists()
    manifest = json.loads(Path(details["manifest"]).read_text())
    assert manifest["parts"][0]["path"] == str(rel)
    assert cli(ws, "check").returncode == 0  # what is left reads back
    assert _rows(ws / "usage", "part-cdr-") == usage_before - held
    # ingesting the source file again restores exactly the missing records
    again = cli(ws, "--json", "ingest", "cdr", str(DEMO / "cdrs.csv"), "--mapping", "generic")
    assert again.returncode == 0, again.stderr[-2000:]
    assert last_json(again)["ingested"] == held
    assert _rows(ws / "usage", "part-cdr-") == usage_before
    bill = cli(ws, "--json", "bill", "--period", PERIOD)
    assert bill.returncode == 0, bill.stderr[-2000:]
    assert last_json(bill)["bills_sha256"] == billed[1]


def test_damaged_page_is_found_by_its_checksum(
    prebill: Path, copy_of: Callable[[Path], Path]
) -> None:
    ws = copy_of(prebill)
    part = max(dataset_files(ws / "flows"), key=lambda p: p.stat().st_size)
    data = bytearray(part.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 16] = bytes(b ^ 0x5A for b in data[middle : middle + 16])
    part.write_bytes(bytes(data))
    run = cli(ws, "bill", "--period", PERIOD)
    assert run.returncode == EXIT_CORRUPT, run.stderr[-2000:]
    no_traceback(run)
    assert str(part) in run.stderr
    checked = cli(ws, "--json", "check")
    assert checked.returncode == EXIT_CORRUPT
    broken = last_json(checked)["error"]["details"]["broken"]
    assert [b["path"] for b in broken] == [str(part.relative_to(ws))]


def test_damaged_rated_detail_of_a_billed_period(
    billed: tuple[Path, str], copy_of: Callable[[Path], Path]
) -> None:
    ws, reference = copy_of(billed[0]), billed[1]
    part = max(dataset_files(ws / "rated"), key=lambda p: p.stat().st_size)
    meta = pq.read_metadata(part)
    cost = meta.schema.to_arrow_schema().get_field_index("cost")
    chunk = meta.row_group(0).column(cost)  # a column re-rating reads
    at = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    data = bytearray(part.read_bytes())
    data[at + 8 : at + 24] = bytes(b ^ 0x5A for b in data[at + 8 : at + 24])
    part.write_bytes(bytes(data))
    rerate = cli(ws, "rate", "--period", PERIOD, "--force")  # reads the billed detail
    assert rerate.returncode == EXIT_CORRUPT, rerate.stderr[-2000:]
    no_traceback(rerate)
    assert str(part) in rerate.stderr
    moved = cli(ws, "--json", "check", "--quarantine")
    assert moved.returncode == EXIT_CORRUPT
    details = last_json(moved)["error"]["details"]
    assert [b["dataset"] for b in details["broken"]] == ["rated"]
    assert details["usage_not_billable"] == 0  # the usage itself is intact
    # the bills stand as issued
    again = cli(ws, "--json", "bill", "--period", PERIOD)
    assert again.returncode == 0, again.stderr[-2000:]
    assert last_json(again)["bills_sha256"] == reference
