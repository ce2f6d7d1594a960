"""Parts of a pass: written per day through temporary names, found and removed by tag."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from collectors.dataset import dataset_files
from rating_engine.errors import RatingError
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


def test_rated_parts_keep_statistics_of_time_and_ids(tmp_path: Path) -> None:
    # min/max for what parts are looked up by (time, integer ids), dictionaries for text
    label = pa.dictionary(pa.int32(), pa.string())
    schema = pa.schema([("record_id", pa.int64()), ("t", SCHEMA.field("t").type),
                        ("label", label), ("cost", pa.int64())])  # fmt: skip
    table = pa.table({"record_id": [5, 3], "t": _table([20_400, 20_400]).column("t"),
                      "label": pa.array(["a", "b"]).dictionary_encode(), "cost": [7, 9]},
                     schema=schema)  # fmt: skip
    with DayPartWriter(tmp_path, "run-x", schema, "t") as writer:
        writer.write(table)
    (path,) = files_by_day(tmp_path)[20_400]
    meta = pa.parquet.read_metadata(path).row_group(0)
    stats = {meta.column(i).path_in_schema: meta.column(i).statistics for i in range(4)}
    assert (stats["record_id"].min, stats["record_id"].max) == (3, 5)
    assert stats["t"].has_min_max
    assert stats["cost"] is None
    assert "RLE_DICTIONARY" in meta.column(2).encodings
    assert "RLE_DICTIONARY" not in meta.column(0).encodings
    assert pa.parquet.read_table(path).equals(table)


def test_ordered_writer_publishes_a_day_once_a_write_passes_it(tmp_path: Path) -> None:
    writer = DayPartWriter(tmp_path, "run-x", SCHEMA, "t", ordered=True)
    with writer:
        writer.write(_table([20_400, 20_400]))
        writer.write(_table([20_400, 20_401]))  # the same day again: still open
        assert dataset_files(tmp_path) == []
        writer.write(_table([20_402]))  # past 20_400 and 20_401: both are whole
        assert sorted(files_by_day(tmp_path)) == [20_400, 20_401]
        assert pa.parquet.read_table(files_by_day(tmp_path)[20_400][0]).num_rows == 3
        with pytest.raises(RatingError, match="out of day order"):
            writer.write(_table([20_401]))  # would write over a published part
    assert sorted(files_by_day(tmp_path)) == [20_400, 20_401, 20_402]
    assert pa.parquet.read_table(files_by_day(tmp_path)[20_401][0]).num_rows == 1


def test_a_failed_ordered_task_keeps_only_whole_days(tmp_path: Path) -> None:
    writer = DayPartWriter(tmp_path, "run-x", SCHEMA, "t", ordered=True)

    def task() -> None:
        with writer:
            writer.write(_table([20_400]))
            writer.write(_table([20_401]))
            raise RuntimeError("the task died")

    with pytest.raises(RuntimeError):
        task()
    assert sorted(files_by_day(tmp_path)) == [20_400]  # 20_401 was not whole: removed
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
