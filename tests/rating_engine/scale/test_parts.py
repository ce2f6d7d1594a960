"""Parts of a pass: written per day through temporary names, found and removed by tag."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from collectors.dataset import dataset_files
from rating_engine.scale.parts import (
    DAY_US,
    DayPartWriter,
    files_by_day,
    is_part_of,
    part_name,
    remove_tag_parts,
)

SCHEMA = pa.schema([("t", pa.timestamp("us", tz="UTC")), ("x", pa.int64())])


def _table(days: list[int]) -> pa.Table:
    return pa.table({"t": pa.array([d * DAY_US + 7 for d in days], SCHEMA.field("t").type),
                     "x": list(range(len(days)))}, schema=SCHEMA)  # fmt: skip


def test_one_file_per_day_renamed_on_close(tmp_path: Path) -> None:
    with DayPartWriter(tmp_path, part_name("2026-10", 2, 4), SCHEMA, "t") as writer:
        writer.write(_table([20_400, 20_401, 20_400]))
        writer.write(_table([20_401]))
        assert dataset_files(tmp_path) == []  # nothing visible until the close
    days = files_by_day(tmp_path)
    assert sorted(days) == [20_400, 20_401]
    assert [p.name for p in days[20_400]] == ["part-run-2026-10-b002.parquet"]
    assert pa.parquet.read_table(days[20_401][0]).num_rows == 2


def test_a_failed_task_leaves_no_file(tmp_path: Path) -> None:
    writer = DayPartWriter(tmp_path, "run-x", SCHEMA, "t")

    def task() -> None:
        with writer:
            writer.write(_table([20_400]))
            raise RuntimeError("the task died")

    with pytest.raises(RuntimeError):
        task()
    assert not any(tmp_path.rglob("*.parquet*"))


def test_tags_name_their_parts_only(tmp_path: Path) -> None:
    assert is_part_of("part-run-2026-10.parquet", ["2026-10"])
    assert is_part_of("part-run-2026-10-b007.parquet", ["2026-10"])
    assert not is_part_of("part-run-2026-10-s2-b007.parquet", ["2026-10"])
    assert is_part_of("part-run-2026-10-s2-b007.parquet", ["2026-10-s2"])
    assert not is_part_of("part-run-2026-1.parquet", ["2026-10"])
    for name in ("run-2026-10", "run-2026-10-b001", "run-2026-11"):
        with DayPartWriter(tmp_path, name, SCHEMA, "t") as writer:
            writer.write(_table([20_400]))
    assert remove_tag_parts(tmp_path, "2026-10") == 2
    assert [p.name for p in dataset_files(tmp_path)] == ["part-run-2026-11.parquet"]


def test_a_file_outside_a_day_folder_is_named(tmp_path: Path) -> None:
    from rating_engine.errors import RatingError

    (tmp_path / "stray.parquet").write_bytes(b"")
    with pytest.raises(RatingError, match=r"stray\.parquet: not in a date=YYYY-MM-DD folder"):
        files_by_day(tmp_path)
