"""Ingest ledger and the stage / commit / publish protocol."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.cdr.ledger import (
    IngestLedger,
    LedgerEntry,
    committed_ids,
    file_sha256,
    ingest_lock,
    part_prefix,
    publish,
    recover,
    staging_dir,
)
from collectors.dataset import dataset_files
from collectors.errors import IngestError
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths


def _entry(sha: str, status: str = "done") -> LedgerEntry:
    return LedgerEntry(
        sha256=sha,
        file_name="a.csv",
        path="/x/a.csv",
        mapping="generic",
        rows_read=3,
        rows=2,
        duplicates=1,
        rejected={"bad_time": 0},
        ingested_at="2026-01-01T00:00:00+00:00",
        status=status,
    )


def _stage(ws: WorkspacePaths, sha: str, dataset: str, name: str) -> Path:
    path = staging_dir(ws, sha) / dataset / "date=2026-01-01" / f"part-{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PAR1 staged")
    return path


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path, chunk=1000) == hashlib.sha256(data).hexdigest()
    with pytest.raises(IngestError, match="cannot read"):
        file_sha256(tmp_path / "missing")


def test_ledger_round_trip(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path).ensure()
    ledger = IngestLedger(ws)
    assert ledger.get("aa") is None
    ledger.put(_entry("aa"))
    ledger.put(_entry("bb", status="committing"))
    again = IngestLedger(ws)
    assert again.get("aa") == _entry("aa")
    assert again.get("bb") == _entry("bb", status="committing")
    data = json.loads((ws.state / "cdr_ingest_ledger.json").read_text())
    assert sorted(data["files"]) == ["aa", "bb"]
    assert not list(ws.state.glob(".*.tmp"))  # no temp file left behind


def test_corrupt_ledger_is_an_error(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path).ensure()
    (ws.state / "cdr_ingest_ledger.json").write_text("{not json")
    with pytest.raises(IngestError, match="ledger"):
        IngestLedger(ws)


def test_part_prefix_is_stable() -> None:
    assert part_prefix("0123456789abcdef" + "f" * 48) == "cdr-0123456789abcdef"


def test_publish_moves_staged_parts(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path).ensure()
    _stage(ws, "s1", "usage", "cdr-s1-00000")
    _stage(ws, "s1", "rejected", "cdr-s1-r00000")
    assert publish(ws, "s1") == 2
    assert [p.name for p in dataset_files(ws.usage)] == ["part-cdr-s1-00000.parquet"]
    assert [p.name for p in dataset_files(ws.rejected)] == ["part-cdr-s1-r00000.parquet"]
    assert not staging_dir(ws, "s1").exists()


def test_recover_rolls_forward_committed_and_back_uncommitted(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path).ensure()
    ledger = IngestLedger(ws)
    # committed, one part already published before the interruption, one still staged
    ledger.put(_entry("done1", status="committing"))
    _stage(ws, "done1", "usage", "cdr-done1-00001")
    published = ws.usage / "date=2026-01-01" / "part-cdr-done1-00000.parquet"
    published.parent.mkdir(parents=True)
    published.write_bytes(b"PAR1 published")
    # never committed
    _stage(ws, "lost", "usage", "cdr-lost-00000")
    forward, back = recover(ws, ledger)
    assert (forward, back) == (1, 1)
    names = sorted(p.name for p in dataset_files(ws.usage))
    assert names == ["part-cdr-done1-00000.parquet", "part-cdr-done1-00001.parquet"]
    assert IngestLedger(ws).get("done1") == _entry("done1")  # status done now
    assert not (ws.state / "cdr_staging").exists() or not any((ws.state / "cdr_staging").iterdir())
    assert recover(ws, IngestLedger(ws)) == (0, 0)  # idempotent


def test_committed_ids(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path).ensure()
    assert len(committed_ids(ws)) == 0
    ids = [5, -7, 2**62]
    table = pa.table(
        {
            "record_id": pa.array(ids, pa.int64()),
            **{
                f.name: pa.array([0] * 3, f.type)
                if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)
                else pa.array(["x"] * 3, f.type)
                for f in USAGE_SCHEMA
                if f.name != "record_id"
            },
        }
    ).select(USAGE_SCHEMA.names)
    path = ws.usage / "date=1970-01-01" / "part-x.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table.cast(USAGE_SCHEMA), path)
    got = committed_ids(ws)
    assert len(got) == 3
    assert got.contains(np.array([5, -7, 2**62, 6])).tolist() == [True, True, True, False]


def test_ingest_lock_is_exclusive(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path).ensure()
    order: list[str] = []

    def other() -> None:
        with ingest_lock(ws):
            order.append("other")

    with ingest_lock(ws):
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.2)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "other"]
