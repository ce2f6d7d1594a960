"""Streaming: batch by batch equals one call, with allowances carried across batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from package_data import TARIFFS
from reference_rater import subscriptions_table, usage_table

from rating_engine.rating.rate import (
    RATING_COLUMNS,
    compile_plan,
    load_tariffs,
    rate_stream,
    rate_usage,
)
from rating_engine.tariff.allowances import AllowanceState

DATA = TARIFFS


def test_stream_equals_one_call() -> None:
    tariffs = load_tariffs(DATA)
    plan = compile_plan({"mobile-classic": tariffs["mobile-classic"]}, years=(2026, 2026))
    start = datetime(2026, 3, 2, 6, tzinfo=UTC)
    dests = ["4930123", "4915112", "4412345", "999", "4990012"]
    rows = [
        {
            "service": "voice",
            "start_time": start + timedelta(minutes=7 * i),
            "duration_ms": 1000 * (17 * i % 400),
            "destination": dests[i % len(dests)],
            "subscriber_key": "491700000001" if i % 3 else "491700000002",
        }
        for i in range(300)
    ]
    table = usage_table(rows)
    subs = subscriptions_table(
        [{"tariff_id": "mobile-classic"}, {"key": "491700000002", "subscription_id": 101,
                                          "tariff_id": "mobile-classic"}]
    )  # fmt: skip
    whole_state = AllowanceState()
    whole = rate_usage(table, subs, plan, allowances=whole_state)
    stream_state = AllowanceState()
    parts = list(rate_stream(iter(table.to_batches(max_chunksize=37)), subs, plan,
                             allowances=stream_state))  # fmt: skip
    assert len(parts) == 9
    rated = pa.concat_tables([p.rated for p in parts])
    assert rated.equals(whole.rated)
    ledger = pa.concat_tables([p.allowance_ledger for p in parts])
    # same consumptions; one call lists them per subscription, a stream per batch
    order = [("record_id", "ascending"), ("allowance_id", "ascending")]
    assert ledger.sort_by(order).equals(whole.allowance_ledger.sort_by(order))
    assert ledger.num_rows > 0
    assert stream_state.remaining == whole_state.remaining
    rejected = pa.concat_tables([p.rejected for p in parts])
    assert rejected["record_id"].to_pylist() == whole.rejected["record_id"].to_pylist()
    assert rated.num_rows + rejected.num_rows == len(rows)
    # the national minutes are used up in the period: 6000 s
    assert stream_state.units_left(plan, 100, "mobile-classic:national_minutes") == 0


def test_empty_input() -> None:
    tariffs = load_tariffs(DATA)
    plan = compile_plan({"mobile-flex": tariffs["mobile-flex"]}, years=(2026, 2026))
    empty = usage_table([]).slice(0, 0)
    result = rate_usage(empty, subscriptions_table([{"tariff_id": "mobile-flex"}]), plan)
    assert result.rated.num_rows == 0
    assert result.rejected.num_rows == 0


def test_rating_reads_only_its_columns() -> None:
    # the record key, origin and location are not read: usage without them rates the same
    tariffs = load_tariffs(DATA)
    plan = compile_plan({"mobile-classic": tariffs["mobile-classic"]}, years=(2026, 2026))
    start = datetime(2026, 3, 2, 6, tzinfo=UTC)
    table = usage_table([
        {"service": "voice", "start_time": start + timedelta(minutes=i), "duration_ms": 61_000,
         "destination": "4930123", "subscriber_key": "491700000001" if i % 4 else "4917999"}
        for i in range(40)
    ])  # fmt: skip
    subs = subscriptions_table([{"tariff_id": "mobile-classic"}])
    whole = rate_usage(table, subs, plan)
    lean = rate_usage(table.select(list(RATING_COLUMNS)), subs, plan)
    assert lean.rated.equals(whole.rated)
    assert lean.rejected.drop_columns("rejected_at").equals(
        whole.rejected.drop_columns("rejected_at"))  # fmt: skip
    assert whole.rejected.num_rows == 10
    assert set(RATING_COLUMNS) < set(table.column_names)
