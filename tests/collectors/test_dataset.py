from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.dataset import (
    atomic_write_bytes,
    dataset_files,
    read_dataset,
    remove_parts,
    write_partitioned,
)
from collectors.schemas import TIMESTAMP

SCHEMA = pa.schema([pa.field("t", TIMESTAMP, nullable=False), pa.field("v", pa.int64())])
EPOCH = datetime(2026, 3, 28, 22, tzinfo=UTC)


def _table(offsets_s: list[int]) -> pa.Table:
    times = [EPOCH + timedelta(seconds=s) for s in offsets_s]
    return pa.table({"t": pa.array(times, TIMESTAMP), "v": list(range(len(times)))}, SCHEMA)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4 * 86_400), min_size=1, max_size=200), st.booleans())
def test_partitions_hold_exactly_their_rows(
    tmp_path_factory: pytest.TempPathFactory, offsets: list[int], hourly: bool
) -> None:
    root = tmp_path_factory.mktemp("ds")
    table = _table(offsets)
    files = write_partitioned(table, root, time_column="t", part_name="x", hourly=hourly)
    seen = []
    for f in files:
        part = pq.read_table(f)
        rel = f.relative_to(root).parts
        for t in part.column("t").to_pylist():
            assert rel[0] == f"date={t:%Y-%m-%d}"
            if hourly:
                assert rel[1] == f"hour={t:%H}"
        values = part.column("v").to_pylist()
        assert values == sorted(values)  # order kept within a partition
        seen += values
    assert sorted(seen) == list(range(len(offsets)))
    back = read_dataset(root, SCHEMA)
    assert sorted(back.column("v").to_pylist()) == list(range(len(offsets)))


def test_same_part_name_replaces_instead_of_duplicating(tmp_path: Path) -> None:
    table = _table([0, 3_600, 90_000])
    write_partitioned(table, tmp_path, time_column="t", part_name="a")
    write_partitioned(table, tmp_path, time_column="t", part_name="a")
    assert read_dataset(tmp_path, SCHEMA).num_rows == 3
    write_partitioned(table, tmp_path, time_column="t", part_name="b")
    assert read_dataset(tmp_path, SCHEMA).num_rows == 6
    assert remove_parts(tmp_path, "b") == 2
    assert read_dataset(tmp_path, SCHEMA).num_rows == 3


def test_hidden_temporaries_are_not_data(tmp_path: Path) -> None:
    write_partitioned(_table([0]), tmp_path, time_column="t", part_name="a")
    (tmp_path / "date=2026-03-28" / ".part-b.parquet.123.tmp").write_bytes(b"half a file")
    assert [f.name for f in dataset_files(tmp_path)] == ["part-a.parquet"]
    assert read_dataset(tmp_path, SCHEMA).num_rows == 1


def test_missing_dataset_reads_empty(tmp_path: Path) -> None:
    empty = read_dataset(tmp_path / "nothing", SCHEMA)
    assert (empty.num_rows, empty.schema) == (0, SCHEMA)


def test_atomic_write_bytes(tmp_path: Path) -> None:
    target = atomic_write_bytes(tmp_path / "a" / "b.json", b"{}")
    assert target.read_bytes() == b"{}"
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]


def test_nulls_are_refused(tmp_path: Path) -> None:
    table = pa.table({"t": pa.array([None], TIMESTAMP), "v": [1]})
    with pytest.raises(ValueError, match="nulls"):
        write_partitioned(table, tmp_path, time_column="t", part_name="a")
