"""CGRateS's increment rounding (``increment_decimals``): a call is split into timespans -
at rate-group starts, where its own rate or band changes, and at local midnight - and each
of a timespan's n increments costs round(round(n x exact) / n). Worked out beside each case;
the twin must agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from reference_rater import reference_rate, subscriptions_table, tariff_from_toml, usage_table

from rating_engine.rating.rate import compile_plan, rate_usage

YEARS = (2025, 2027)

TARIFF = """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "v1"
active_from = 2025-01-01T00:00:00
band_selection = "per-destination"
increment_decimals = 5
increment_rounding_method = "half-up"
rounding_method = "up"
rounding_decimals = 6

[destinations]
fs = ["10"]
other = ["20"]

[bands.always]
weekdays = [1, 2, 3, 4, 5, 6, 7]
weight = 10

[bands.peak]
weekdays = [1, 2, 3, 4, 5]
start = "08:00"
weight = 20

# CGRateS's tutorial RT_10CNT: 0.20 to connect, 0.10 per minute for the first minute, then
# 0.05 per minute by the second
[rates.rt_10cnt]
connect_fee = "0.2"
groups = [{ start = 0, rate = "0.1", unit = 60, increment = 60 },
          { start = 60, rate = "0.05", unit = 60, increment = 1 }]

[rates.per_second]
groups = [{ start = 0, rate = "0.05", unit = 60, increment = 1 }]

[rates.peak]
groups = [{ start = 0, rate = "1", unit = 60, increment = 60 }]

[[pricing]]
service = "voice"
destinations = "fs"
band = "always"
rate = "rt_10cnt"

[[pricing]]
service = "voice"
destinations = "other"
band = "always"
rate = "per_second"

[[pricing]]
service = "voice"
destinations = "other"
band = "peak"
rate = "peak"
"""


def costs(rows: list[dict[str, Any]], toml: str = TARIFF) -> list[int]:
    tariff = tariff_from_toml(toml)
    plan = compile_plan({"t": tariff}, years=YEARS)
    subs = subscriptions_table([{}])
    usage = usage_table(rows)
    result = rate_usage(usage, subs, plan)
    ref = reference_rate(usage, subs, {"t": tariff}, years=YEARS)
    assert result.rejected.num_rows == 0
    got = {r["record_id"]: r for r in result.rated.to_pylist()}
    assert got == {rid: {**got[rid], **row} for rid, row in ref.rated.items()}
    return [got[i + 1]["cost"] for i in range(len(rows))]


def call(start: datetime, seconds: int, destination: str) -> dict[str, Any]:
    return {"start_time": start, "duration_ms": seconds * 1000, "destination": destination}


SUNDAY_NOON = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


def test_a_timespan_of_two_increments_rounds_as_cgrates_does() -> None:
    # 62 s: 0.2 + 0.1 for the first minute; then one timespan of n = 2 seconds at
    # 0.05/60: 2 x 0.000833.. = 0.0016667 -> 0.00167; / 2 = 0.000835 -> 0.00084 each,
    # 0.00168 (rounding each second alone would give 0.00083 x 2 = 0.00166)
    assert costs([call(SUNDAY_NOON, 62, "1099")]) == [301_680]


def test_a_long_timespan_rounds_its_total_first() -> None:
    # 61 s at 0.05/60 per second: n = 61, 61 x 0.000833.. = 0.0508333 -> 0.05083;
    # / 61 = 0.00083328 -> 0.00083; x 61 = 0.05063
    assert costs([call(SUNDAY_NOON, 61, "2099")]) == [50_630]


def test_midnight_ends_a_timespan() -> None:
    # 23:59:59 + 3 s: one second before midnight (0.00083) and two after (0.00084 each,
    # as above): 0.00251; without the split n = 3 would give 3 x 0.00083 = 0.00249
    start = datetime(2026, 3, 7, 23, 59, 59, tzinfo=UTC)
    assert costs([call(start, 3, "2099")]) == [2_510]


def test_another_destinations_band_does_not_split_a_timespan() -> None:
    # Monday 07:59:59 + 3 s to 'fs' - peak starts at 08:00 but 'fs' has no peak rule, so
    # its rate interval runs on: 0.2 + one 60 s increment at 0.1 = 0.3
    start = datetime(2026, 3, 9, 7, 59, 59, tzinfo=UTC)
    assert costs([call(start, 3, "1099")]) == [300_000]
    # ... while 'other' switches to its peak rate at 08:00: 0.00083 + one minute at 1.00
    assert costs([call(start, 3, "2099")]) == [1_000_830]


def test_connect_fee_is_rounded_with_the_increments() -> None:
    # CGRateS sums the connect fee into the first timespan and rounds that to 5 decimals:
    # 0.000004 -> 0.00000; 0.000006 -> 0.00001
    low = TARIFF.replace('connect_fee = "0.2"', 'connect_fee = "0.000004"')
    high = TARIFF.replace('connect_fee = "0.2"', 'connect_fee = "0.000006"')
    assert costs([call(SUNDAY_NOON, 60, "1099")], low) == [100_000]
    assert costs([call(SUNDAY_NOON, 60, "1099")], high) == [100_010]


def test_no_usage_costs_nothing_when_the_tariff_says_so() -> None:
    # a call of 0 s pays the connect fee (0.2) by default; CGRateS charges it nothing
    assert costs([call(SUNDAY_NOON, 0, "1099")]) == [200_000]
    selection = 'band_selection = "per-destination"\n'
    free = TARIFF.replace(selection, selection + "charge_zero_usage = false\n")
    assert costs([call(SUNDAY_NOON, 0, "1099"), call(SUNDAY_NOON, 1, "1099")], free) == [
        0,
        300_000,
    ]


def test_a_continuation_leg_pays_no_connect_fee() -> None:
    # CGRateS's LoopIndex: the second leg of a call (leg 1) is rated without its 0.2 fee
    tariff = tariff_from_toml(TARIFF)
    plan = compile_plan({"t": tariff}, years=YEARS)
    subs = subscriptions_table([{}])
    usage = usage_table([call(SUNDAY_NOON, 60, "1099"), call(SUNDAY_NOON, 60, "1099")])
    usage = usage.append_column("leg", pa.array([0, 1], pa.int64()))
    result = rate_usage(usage, subs, plan)
    assert result.rated["cost"].to_pylist() == [300_000, 100_000]
    ref = reference_rate(usage, subs, {"t": tariff}, years=YEARS)
    assert [ref.rated[i]["cost"] for i in (1, 2)] == [300_000, 100_000]
