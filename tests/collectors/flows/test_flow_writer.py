"""RotatingWriter: rotation by size and time, hive date/hour partitions, no visible temp files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.dataset import dataset_files, read_dataset
from collectors.flows.writer import RotatingWriter, default_prefix
from collectors.retention.lock import LOCK_NAME
from collectors.schemas import TIMESTAMP

SCHEMA = pa.schema([pa.field("t", TIMESTAMP, nullable=False), pa.field("v", pa.int64())])
HOUR_US = 3_600_000_000
BASE_US = 1_764_115_200_000_000  # 2025-11-26T00:00:00Z


def batch(times: list[int], values: list[int]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(times, pa.int64()).cast(TIMESTAMP), pa.array(values, pa.int64())], schema=SCHEMA
    )


def test_partitions_by_date_and_hour(tmp_path: Path) -> None:
    w = RotatingWriter(tmp_path, SCHEMA, time_column="t", prefix="x")
    w.add(batch([BASE_US, BASE_US + HOUR_US, BASE_US + 24 * HOUR_US], [1, 2, 3]), now=0.0)
    assert w.buffered_rows == 3
    files = w.flush()
    rel = sorted(str(p.relative_to(tmp_path)) for p in files)
    assert rel == [
        "date=2025-11-26/hour=00/part-x-000001.parquet",
        "date=2025-11-26/hour=01/part-x-000001.parquet",
        "date=2025-11-27/hour=00/part-x-000001.parquet",
    ]
    assert w.buffered_rows == 0
    assert w.flush() == []
    assert sorted(read_dataset(tmp_path, SCHEMA).column("v").to_pylist()) == [1, 2, 3]


def test_rotates_by_time(tmp_path: Path) -> None:
    w = RotatingWriter(tmp_path, SCHEMA, time_column="t", prefix="x", rotate_seconds=10)
    assert w.add(batch([BASE_US], [1]), now=100.0) == []
    assert w.maybe_rotate(now=109.0) == []
    assert len(w.maybe_rotate(now=110.0)) == 1
    assert w.maybe_rotate(now=1000.0) == []  # nothing buffered, nothing written
    w.add(batch([BASE_US], [2]), now=1000.0)
    assert w.maybe_rotate(now=1005.0) == []
    assert len(w.flush()) == 1
    assert w.stats.rotations == 2
    assert len(dataset_files(tmp_path)) == 2


def test_rotates_by_size(tmp_path: Path) -> None:
    one = batch([BASE_US] * 100, list(range(100)))
    w = RotatingWriter(
        tmp_path, SCHEMA, time_column="t", prefix="x", rotate_bytes=2 * one.nbytes + 1
    )
    written = [len(w.add(one, now=0.0)) for _ in range(6)]
    assert written == [0, 0, 1, 0, 0, 1]
    assert w.stats.rows == 600


def test_no_temporary_files_left(tmp_path: Path) -> None:
    w = RotatingWriter(tmp_path, SCHEMA, time_column="t", prefix=default_prefix("t"))
    w.add(batch([BASE_US], [1]))
    w.flush()
    hidden = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert hidden == [tmp_path / LOCK_NAME]  # only the maintenance lock, no temporary file


def test_rejects_bad_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        RotatingWriter(tmp_path, SCHEMA, time_column="t", prefix="x", rotate_bytes=0)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 72 * HOUR_US), st.integers(-100, 100)), max_size=60),
    cuts=st.lists(st.integers(1, 10), min_size=1, max_size=8),
)
def test_every_row_lands_once(tmp_path_factory: pytest.TempPathFactory, rows, cuts) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("w")
    w = RotatingWriter(root, SCHEMA, time_column="t", prefix="p", rotate_bytes=400)
    pos, k = 0, 0
    while pos < len(rows):
        part = rows[pos : pos + cuts[k % len(cuts)]]
        w.add(batch([BASE_US + t for t, _ in part], [v for _, v in part]), now=float(k))
        pos += len(part)
        k += 1
    w.flush()
    got = read_dataset(root, SCHEMA)
    assert sorted(got.column("v").to_pylist()) == sorted(v for _, v in rows)
    for path in dataset_files(root):
        table = read_dataset(path.parent, SCHEMA)
        hours = {t.strftime("date=%Y-%m-%d/hour=%H") for t in table.column("t").to_pylist()}
        assert hours == {f"{path.parent.parent.name}/{path.parent.name}"}
