"""The billed-usage ledger of a pass: filled part by part while the pass rates."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from bss.billing.ledger import BilledUsageFeed, check_repeats, repeated_ids, unrecord_accounts
from bss.billing.period import parse_period
from bss.db import transaction
from bss.errors import BillingError
from collectors.workspace import WorkspacePaths
from rating_engine.scale.parts import DAY_US, DayPartWriter
from rating_engine.schemas import RATED_SCHEMA

PERIOD = parse_period("2026-10")
DAY = 20_362  # 2026-10-01


def _filler(kind: pa.DataType, n: int) -> pa.Array:
    if pa.types.is_integer(kind) or pa.types.is_timestamp(kind):
        return pa.array([0] * n, pa.int64()).cast(kind)
    return pa.array(["x"] * n, pa.string()).cast(kind)


def _rated(ids: list[int], accounts: list[int], day: int) -> pa.Table:
    n = len(ids)
    columns = {f.name: pa.nulls(n, f.type) if f.nullable else _filler(f.type, n)
               for f in RATED_SCHEMA}  # fmt: skip
    columns.update(record_id=pa.array(ids, pa.int64()), account_id=pa.array(accounts, pa.int64()),
                   subscription_id=pa.array(accounts, pa.int64()),
                   start_time=pa.array([day * DAY_US + i for i in range(n)],
                                       RATED_SCHEMA.field("start_time").type),
                   cost=pa.array([1_250_000 * (i + 1) for i in range(n)], pa.int64()))  # fmt: skip
    return pa.table(columns).cast(RATED_SCHEMA)


def _writer(workspace: WorkspacePaths, name: str) -> DayPartWriter:
    return DayPartWriter(workspace.rated, name, RATED_SCHEMA, "start_time", ordered=True)


def _ledger(conn: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT record_id, account_id, period, cost::VARCHAR FROM billed_usage "
                        "ORDER BY record_id").fetchall()  # fmt: skip


def test_parts_are_recorded_while_later_days_are_written(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths
) -> None:
    taken_early = False
    feed = BilledUsageFeed(conn, workspace.rated, "2026-10", PERIOD)
    feed.POLL = 0.01
    with transaction(conn), feed, _writer(workspace, "run-2026-10") as out:
        out.write(_rated([1, 2], [7, 8], DAY))
        out.write(_rated([3], [7], DAY + 1))  # publishes day 1
        done = threading.Event()
        for _ in range(500):  # the thread takes day 1 while day 2 is still being written
            if feed.files:
                taken_early = True
                break
            done.wait(0.01)
        out.write(_rated([4], [8], DAY + 2))
    assert taken_early
    assert len(feed.files) == 3
    assert _ledger(conn) == [
        (1, 7, "2026-10", "1.250000"),
        (2, 8, "2026-10", "2.500000"),
        (3, 7, "2026-10", "1.250000"),
        (4, 8, "2026-10", "1.250000"),
    ]


def test_a_failed_rating_leaves_no_ledger_row(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths
) -> None:
    def run() -> None:
        with transaction(conn), BilledUsageFeed(conn, workspace.rated, "2026-10", PERIOD):
            with _writer(workspace, "run-2026-10") as out:
                out.write(_rated([1], [7], DAY))
                out.write(_rated([2], [7], DAY + 1))
            raise RuntimeError("rating died")

    with pytest.raises(RuntimeError, match="rating died"):
        run()
    assert _ledger(conn) == []


def test_an_unreadable_part_is_raised_on_leaving(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths
) -> None:
    folder = workspace.rated / "date=2026-10-01"
    folder.mkdir(parents=True)
    (folder / "part-run-2026-10.parquet").write_bytes(b"not parquet")

    def run() -> None:
        with transaction(conn), BilledUsageFeed(conn, workspace.rated, "2026-10", PERIOD):
            pass

    with pytest.raises(duckdb.Error):
        run()
    assert _ledger(conn) == []


def test_accounts_set_aside_leave_the_ledger_with_this_pass_only(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths
) -> None:
    # account 7 has a record billed by an earlier pass of the period
    conn.execute("INSERT INTO billed_usage VALUES (99, 7, '2026-10', 1)")
    with transaction(conn):
        feed = BilledUsageFeed(conn, workspace.rated, "2026-10-s2", PERIOD)
        with feed, _writer(workspace, "run-2026-10-s2") as out:
            out.write(_rated([1, 2, 3], [7, 8, 7], DAY))
        unrecord_accounts(conn, feed.files, PERIOD, np.array([7], np.int64))
    assert [r[:2] for r in _ledger(conn)] == [(2, 8), (99, 7)]


def test_a_repeated_id_is_refused(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    for name, ids in (("a", [1, 2]), ("b", [3, 2])):
        pa.parquet.write_table(_rated(ids, [7, 7], DAY), tmp_path / f"{name}.parquet")
    files = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    with pytest.raises(BillingError, match="1 rated records repeat a record_id"):
        check_repeats(conn, files, PERIOD)
    check_repeats(conn, files[:1], PERIOD)


def test_unwatched_parts_are_recorded_on_leaving(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths
) -> None:
    feed = BilledUsageFeed(conn, workspace.rated, "2026-10", PERIOD, watch=False)
    with transaction(conn), feed, _writer(workspace, "run-2026-10") as out:
        out.write(_rated([1, 2], [7, 8], DAY))
        out.write(_rated([3], [7], DAY + 1))
        assert feed.files == []  # nothing is taken while the rating runs
    assert len(feed.files) == 2
    assert [r[:2] for r in _ledger(conn)] == [(1, 7), (2, 8), (3, 7)]


def test_a_deferred_feed_takes_the_last_parts_when_finished(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths
) -> None:
    feed = BilledUsageFeed(conn, workspace.rated, "2026-10", PERIOD, watch=False, defer=True)
    with transaction(conn):
        with feed, _writer(workspace, "run-2026-10") as out:
            out.write(_rated([1, 2], [7, 8], DAY))
        assert feed.files == []  # left, nothing taken yet
        assert _ledger(conn) == []
        files = feed.finish()
    assert len(files) == 1
    assert [r[:2] for r in _ledger(conn)] == [(1, 7), (2, 8)]
    assert repeated_ids(conn, files) == 0
    assert repeated_ids(conn, files + files) == 2  # the same part twice: both ids repeat
