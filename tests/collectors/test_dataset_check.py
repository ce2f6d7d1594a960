"""Broken Parquet parts: named on read, found by the check, moved aside with what they held."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.cdr.ledger import QUARANTINED, IngestLedger, LedgerEntry
from collectors.dataset import (
    atomic_write_table,
    broken_parts,
    dataset_files,
    naming_path,
    read_dataset,
    verify_part,
)
from collectors.dataset_check import check_parts, quarantine_parts, workspace_parts
from collectors.errors import CorruptFileError
from collectors.workspace import WorkspacePaths

SCHEMA = pa.schema([("record_id", pa.int64()), ("value", pa.string())])


def _part(path: Path, ids: range, *, row_group_size: int = 1000) -> Path:
    table = pa.table(
        {"record_id": pa.array(ids, pa.int64()), "value": [f"v{i}" * 20 for i in ids]},
        schema=SCHEMA,
    )
    return atomic_write_table(table, path, row_group_size=row_group_size)


def _damage(path: Path, at: float) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i : i + 8] = bytes(b ^ 0xA5 for b in data[i : i + 8])
    path.write_bytes(bytes(data))


def test_a_sound_part_verifies(tmp_path: Path) -> None:
    part = _part(tmp_path / "d" / "part-a.parquet", range(100))
    assert verify_part(part) is None
    assert broken_parts([part]) == []


@pytest.mark.parametrize("how", ["truncated", "page", "empty"])
def test_reading_names_the_broken_part(tmp_path: Path, how: str) -> None:
    root = tmp_path / "d"
    good = _part(root / "date=2026-10-01" / "part-a.parquet", range(0, 100))
    bad = _part(root / "date=2026-10-02" / "part-b.parquet", range(100, 3000))
    if how == "truncated":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    elif how == "page":
        _damage(bad, 0.3)  # inside a data page: its CRC no longer matches
    else:
        bad.write_bytes(b"")
    assert verify_part(good) is None
    assert verify_part(bad) is not None
    with pytest.raises(CorruptFileError) as caught:
        read_dataset(root, SCHEMA)
    assert caught.value.path == str(bad)
    assert str(bad) in str(caught.value)
    assert "rating-engine check" in str(caught.value)
    assert "\n" not in str(caught.value)  # Arrow's multi-line text is flattened


def test_naming_path_gives_a_nameless_oserror_its_file(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="No space") as caught, naming_path(tmp_path / "x.parquet"):
        raise OSError(errno.ENOSPC, "Error writing bytes to file")
    assert caught.value.filename == str(tmp_path / "x.parquet")
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.strerror == "No space left on device"
    with pytest.raises(FileNotFoundError) as named, naming_path(tmp_path / "y"):
        raise FileNotFoundError(errno.ENOENT, "gone", "/elsewhere")
    assert named.value.filename == "/elsewhere"  # a name it had is kept


def test_check_salvages_ids_and_quarantine_moves_with_a_manifest(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "ws").ensure()
    sha = "ab" * 32
    source = tmp_path / "calls.csv"
    ledger = IngestLedger(ws)
    ledger.put(LedgerEntry(sha, "calls.csv", str(source), "generic", 3000, 3000, 0))
    ok = _part(ws.usage / "date=2026-10-01" / f"part-cdr-{sha[:16]}-00000.parquet", range(50))
    bad = _part(
        ws.usage / "date=2026-10-02" / f"part-cdr-{sha[:16]}-00000.parquet",
        range(1000, 4000),
        row_group_size=1000,
    )
    # damage the middle row group's pages only: the other groups' ids stay readable
    chunk = pq.read_metadata(bad).row_group(1).column(1)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    data = bytearray(bad.read_bytes())
    data[start + 30 : start + 38] = bytes(b ^ 0xA5 for b in data[start + 30 : start + 38])
    bad.write_bytes(bytes(data))
    checked, found = check_parts(ws)
    assert checked == 2
    (part,) = found
    assert part.path == str(bad.relative_to(ws.root))
    assert part.dataset == "usage"
    assert part.rows == 3000
    assert part.source_files == [str(source)]
    assert len(part.record_ids) + (part.unidentified_rows or 0) == 3000
    assert set(part.record_ids) <= set(range(1000, 4000))
    assert len(part.record_ids) >= 2000  # two of three groups still name their records
    moved, manifest = quarantine_parts(ws, found)
    assert manifest is not None
    assert not bad.exists()
    assert ok.exists()
    (done,) = moved
    assert done.moved_to is not None
    assert (ws.root / done.moved_to).exists()
    assert done.moved_to.startswith("broken/")
    doc = json.loads(manifest.read_text())
    assert doc["parts"][0]["record_ids"] == part.record_ids
    assert IngestLedger(ws).get(sha).status == QUARANTINED  # type: ignore[union-attr]
    assert check_parts(ws) == (1, [])
    assert workspace_parts(ws) == dataset_files(ws.usage)  # W/broken is not checked again


def test_quarantine_of_nothing_writes_nothing(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "ws").ensure()
    assert quarantine_parts(ws, []) == ([], None)
    assert not ws.broken.exists()
