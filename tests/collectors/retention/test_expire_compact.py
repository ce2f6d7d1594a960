"""Retention: expiry by age and size (oldest first, protected and open partitions kept, safe
beside a writer) and compaction (every row exactly once, readers see old or new, never both)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.dataset import dataset_files, read_dataset, write_partitioned
from collectors.flows.writer import RotatingWriter
from collectors.retention.compact import compact_dataset
from collectors.retention.expire import apply_expiry, plan_expiry
from collectors.retention.partitions import list_partitions, parse_duration, parse_size
from collectors.schemas import FLOW_SCHEMA

HOUR = 3_600_000_000
T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
NOW = T0 + 10 * 24 * HOUR  # 2026-01-11T00:00Z


def flows(start_us: int, n: int, seed: int, *, old_schema: bool = False) -> pa.Table:
    """``n`` flows in the hour of ``start_us`` with distinct byte counts (rows identifiable)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for f in FLOW_SCHEMA:
        if f.name in ("flow_start", "flow_end"):
            arrays.append(pa.array(start_us + rng.integers(0, 60_000_000, n)).cast(f.type))
        elif f.name == "bytes":
            arrays.append(pa.array(seed * 1_000_000 + np.arange(n), f.type))
        elif f.name == "source_format":
            arrays.append(pa.array(["netflow_v5"] * n, f.type))
        elif f.type == pa.binary(16):
            arrays.append(
                pa.array([bytes(10) + b"\xff\xff" + bytes([10, 0, 0, seed % 250])] * n, f.type)
            )
        elif f.nullable:
            arrays.append(pa.nulls(n, f.type))
        else:
            arrays.append(pa.array(rng.integers(0, 200, n), f.type))
    table = pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)
    if old_schema:  # a part written before the enrichment columns existed
        table = table.select(
            [n for n in FLOW_SCHEMA.names if not n.endswith(("_country", "_if_name", "_if_speed"))]
        )
    return table


def write_part(root: Path, table: pa.Table, name: str) -> None:
    write_partitioned(table, root, time_column="flow_start", part_name=name, hourly=True)


def rows_of(root: Path) -> Counter[tuple]:
    table = read_dataset(root, FLOW_SCHEMA)
    return Counter(tuple(r.values()) for r in table.to_pylist())


def test_durations_and_sizes() -> None:
    assert parse_duration("90d") == 90 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("2w") == 14 * 86400
    assert parse_size("50G") == 50 << 30
    assert parse_size("1.5M") == 3 << 19
    assert parse_size("1024") == 1024
    for bad in ("90", "d", "-1d", "0d", "1y"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    for bad in ("G", "50X", "0"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


def test_expire_by_age_keeps_what_has_not_ended_and_what_is_protected(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    for day in range(10):
        write_part(root, flows(T0 + day * 24 * HOUR + 5 * HOUR, 10, day), f"udp-{day}")
    write_part(root, flows(NOW - HOUR // 4, 10, 99), "udp-last")  # ended just now: not old
    protected_day = (T0 + 2 * 24 * HOUR) // (24 * HOUR)
    plan = plan_expiry(
        root,
        older_than_s=parse_duration("5d"),
        now_us=NOW,
        protect=lambda p: "billed" if p.day == protected_day else None,
    )
    assert [p.name for p in plan.remove] == [f"date=2026-01-0{d}/hour=05" for d in (1, 2, 4, 5)]
    assert [(p.name, why) for p, why in plan.protected] == [("date=2026-01-03/hour=05", "billed")]
    apply_expiry(plan)
    left = sorted(p.name for p in list_partitions(root))
    assert left == ["date=2026-01-03/hour=05"] + [
        f"date=2026-01-{d:02d}/hour=05" for d in range(6, 11)
    ] + ["date=2026-01-10/hour=23"]
    assert not (root / "date=2026-01-01").exists()  # emptied folders go too
    assert plan.removed_files == 4


def test_expire_by_size_removes_oldest_first_until_it_fits(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    for day in range(6):
        write_part(root, flows(T0 + day * 24 * HOUR, 200, day), f"udp-{day}")
    parts = list_partitions(root)
    total = sum(p.size for p in parts)
    write_part(root, flows(NOW + 60_000_000, 5, 99), "udp-open")  # the hour being written
    open_size = list_partitions(root)[-1].size
    total += open_size
    limit = total - parts[0].size - parts[1].size // 2  # two oldest must go
    plan = apply_expiry(plan_expiry(root, max_bytes=limit, now_us=NOW))
    assert [p.name for p in plan.remove] == [parts[0].name, parts[1].name]
    assert plan.size_limit_met
    assert sum(p.size for p in list_partitions(root)) <= limit
    # everything protected: nothing goes, and the plan says the limit was not met
    kept = plan_expiry(root, max_bytes=1, now_us=NOW, protect=lambda p: "kept")
    assert not kept.remove
    assert not kept.size_limit_met
    assert len(kept.protected) == 4  # the open hour is not even asked about
    everything = apply_expiry(plan_expiry(root, max_bytes=1, now_us=NOW))
    assert len(everything.remove) == 4
    assert [p.name for p in list_partitions(root)] == ["date=2026-01-11/hour=00"]


def test_expire_beside_a_writer_never_breaks_it(tmp_path: Path) -> None:
    """A writer keeps writing late flows into an old hour while expiry removes that hour."""
    root = tmp_path / "flows"
    writer = RotatingWriter(root, FLOW_SCHEMA, time_column="flow_start", prefix="udp-late")
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(150):
                writer.add(flows(T0, 3, i).to_batches()[0])
                writer.flush()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        rounds = 0
        while not done.is_set() and rounds < 2000:
            apply_expiry(plan_expiry(root, older_than_s=3600, now_us=NOW))
            rounds += 1
    finally:
        thread.join(60)
    assert not thread.is_alive()
    assert errors == []
    assert writer.stats.files == 150


def test_compaction_keeps_every_row_once_and_leaves_ingest_parts(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    hour = T0 + 3 * HOUR
    for i in range(12):  # a collector's rotations, some from before the enrichment columns
        write_part(root, flows(hour, 50 + i, i, old_schema=i < 4), f"udp-20260101-1-{i:06d}")
    write_part(root, flows(hour, 7, 500), "flowexport-0123456789abcdef")  # from ingest
    write_part(root, flows(T0 + 5 * 24 * HOUR, 5, 600), "udp-b-000001")  # one part: as is
    write_part(root, flows(NOW - HOUR // 2, 5, 700), "udp-c-000001")  # not settled yet
    write_part(root, flows(NOW - HOUR // 2, 5, 701), "udp-c-000002")
    before = rows_of(root)
    files_before = set(dataset_files(root))
    result = compact_dataset(root, target_bytes=64 << 20, min_age_s=3600, now_us=NOW)
    assert result.partitions == ["date=2026-01-01/hour=03"]
    assert (result.parts_before, result.parts_after) == (12, 1)
    assert result.rows == sum(50 + i for i in range(12))
    assert rows_of(root) == before  # the row multiset, nulls for the missing columns
    folder = root / "date=2026-01-01" / "hour=03"
    names = sorted(p.name for p in folder.iterdir())
    assert names[0].startswith("part-compact-")
    assert len(names) == 2
    assert names[1] == "part-flowexport-0123456789abcdef.parquet"
    untouched = {p for p in files_before if "hour=03" not in str(p)}
    assert untouched <= set(dataset_files(root))
    assert not (tmp_path / ".flows.compact").exists()
    # again: nothing left to merge
    assert compact_dataset(root, min_age_s=3600, now_us=NOW).partitions == []


def test_compaction_splits_into_parts_of_the_target_size(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    for i in range(8):
        write_part(root, flows(T0, 4000, i), f"udp-x-{i:06d}")
    size = sum(p.stat().st_size for p in dataset_files(root))
    before = rows_of(root)
    result = compact_dataset(root, target_bytes=size // 2 + 1, min_age_s=0, now_us=NOW)
    assert result.parts_before == 8
    assert result.parts_after == 2
    assert rows_of(root) == before


def test_readers_never_see_both_or_neither(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    expected: dict[Path, int] = {}
    for h in range(12):
        folder = root / "date=2026-01-01" / f"hour={h:02d}"
        expected[folder] = 0
        for i in range(6):
            table = flows(T0 + h * HOUR, 20 + i, h * 10 + i)
            write_part(root, table, f"udp-r-{h:02d}{i:04d}")
            expected[folder] += table.num_rows
    seen: list[tuple[Path, int]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for folder, want in expected.items():
                try:
                    names = [p for p in folder.glob("*.parquet") if not p.name.startswith(".")]
                    count = sum(pq.read_metadata(p).num_rows for p in names)
                except FileNotFoundError:
                    continue  # listed before the swap, opened after: a reader retries
                seen.append((folder, count - want))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = compact_dataset(root, target_bytes=64 << 20, min_age_s=0, now_us=NOW)
    finally:
        stop.set()
        reader.join(30)
    assert not reader.is_alive()
    assert len(result.partitions) == 12
    assert seen, "the reader never ran"
    assert {delta for _, delta in seen} == {0}


def test_a_damaged_part_leaves_its_partition_as_it_is(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    for h in (1, 2):
        for i in range(3):
            write_part(root, flows(T0 + h * HOUR, 20, h * 10 + i), f"udp-d-{h}{i:05d}")
    victim = sorted((root / "date=2026-01-01" / "hour=01").glob("*.parquet"))[1]
    data = bytearray(victim.read_bytes())
    data[100:400] = bytes(300)  # a damaged page inside a valid footer
    victim.write_bytes(bytes(data))
    before = sorted(p.name for p in (root / "date=2026-01-01" / "hour=01").iterdir())
    result = compact_dataset(root, min_age_s=0, now_us=NOW)
    assert result.partitions == ["date=2026-01-01/hour=02"]
    assert [name for name, _ in result.skipped] == ["date=2026-01-01/hour=01"]
    assert "rating-engine check" in result.skipped[0][1]
    assert sorted(p.name for p in (root / "date=2026-01-01" / "hour=01").iterdir()) == before
