"""Bands as CGRateS timings: years, months and month days AND-ed with the days; and
per-destination band selection (each destination set picks among its own rules' bands,
equal weights going to the later start). Expected costs are worked out beside each case."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from reference_rater import reference_rate, subscriptions_table, tariff_from_toml, usage_table

from rating_engine.errors import TariffError
from rating_engine.rating.rate import compile_plan, rate_usage

YEARS = (2025, 2027)

# CGRateS's tutorial shape: peak 08:00 and off-peak 00:00 / 19:00 on weekdays, weekend
# off-peak, all of weight 10 (the latest start wins); a New Year timing above them; one
# destination priced the same at all times by a rule for any band.
PER_DESTINATION = """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "v1"
active_from = 2025-01-01T00:00:00
band_selection = "per-destination"

[destinations]
fs = ["10"]
special = ["1007"]
mobile = ["49151"]

[bands.peak]
weekdays = [1, 2, 3, 4, 5]
start = "08:00"
weight = 10

[bands.offpeak_morning]
weekdays = [1, 2, 3, 4, 5]
weight = 10

[bands.offpeak_evening]
weekdays = [1, 2, 3, 4, 5]
start = "19:00"
weight = 10

[bands.offpeak_weekend]
weekdays = [6, 7]
weight = 10

[bands.new_year]
months = [1]
month_days = [1]
weight = 20

[rates.peak]
groups = [{ start = 0, rate = "0.60", unit = 60, increment = 60 }]

[rates.offpeak]
groups = [{ start = 0, rate = "0.06", unit = 60, increment = 60 }]

[rates.flat]
groups = [{ start = 0, rate = "0.01", unit = 1, increment = 1 }]

[rates.holiday]
groups = [{ start = 0, rate = "0.30", unit = 60, increment = 60 }]

[[pricing]]
service = "voice"
destinations = "fs"
band = "peak"
rate = "peak"

[[pricing]]
service = "voice"
destinations = "fs"
band = "offpeak_morning"
rate = "offpeak"

[[pricing]]
service = "voice"
destinations = "fs"
band = "offpeak_evening"
rate = "offpeak"

[[pricing]]
service = "voice"
destinations = "fs"
band = "offpeak_weekend"
rate = "offpeak"

[[pricing]]
service = "voice"
destinations = "mobile"
band = "new_year"
rate = "holiday"

[[pricing]]
service = "voice"
destinations = "special"
rate = "flat"
"""


def rate(toml: str, rows: list[dict[str, Any]]) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
    """Rated rows and rejection reasons by record id, checked against the twin."""
    tariff = tariff_from_toml(toml)
    plan = compile_plan({"t": tariff}, years=YEARS)
    subs = subscriptions_table([{}])
    usage = usage_table(rows)
    result = rate_usage(usage, subs, plan)
    rated = {r["record_id"]: r for r in result.rated.to_pylist()}
    rejected = dict(
        zip(result.rejected["record_id"].to_pylist(), result.rejected["reason"].to_pylist(),
            strict=True)
    )  # fmt: skip
    ref = reference_rate(usage, subs, {"t": tariff}, years=YEARS)
    assert rejected == ref.rejected
    for rid, row in rated.items():
        assert row == ref.rated[rid]
    return rated, rejected


def call(start: datetime, seconds: int, destination: str) -> dict[str, Any]:
    return {"start_time": start, "duration_ms": seconds * 1000, "destination": destination}


def test_latest_start_wins_among_equal_weights() -> None:
    rated, _ = rate(
        PER_DESTINATION,
        [
            call(datetime(2026, 3, 4, 10, 0, tzinfo=UTC), 60, "1099"),  # Wed 10:00: peak
            call(datetime(2026, 3, 4, 7, 0, tzinfo=UTC), 60, "1099"),  # 07:00: morning
            call(datetime(2026, 3, 4, 20, 0, tzinfo=UTC), 60, "1099"),  # 20:00: evening
            call(datetime(2026, 3, 7, 10, 0, tzinfo=UTC), 60, "1099"),  # Saturday
            # 18:59:30 + 90 s: one minute at peak (0.60), the next starts 19:00:30 off-peak
            call(datetime(2026, 3, 4, 18, 59, 30, tzinfo=UTC), 90, "1099"),
        ],
    )
    assert [(rated[i]["band"], rated[i]["cost"]) for i in range(1, 6)] == [
        ("peak", 600_000),
        ("offpeak_morning", 60_000),
        ("offpeak_evening", 60_000),
        ("offpeak_weekend", 60_000),
        ("peak", 660_000),
    ]


def test_a_destination_with_one_any_band_rule_ignores_the_others_bands() -> None:
    # 'special' has only a rule for any band: 61 s x 0.01 = 0.61 at every hour; reported
    # under the band of highest priority in force
    rated, _ = rate(
        PER_DESTINATION,
        [
            call(datetime(2026, 3, 4, 10, 0, tzinfo=UTC), 61, "10071"),
            call(datetime(2026, 3, 7, 3, 0, tzinfo=UTC), 61, "10071"),
        ],
    )
    assert [(rated[i]["destination_set"], rated[i]["cost"]) for i in (1, 2)] == [
        ("special", 610_000),
        ("special", 610_000),
    ]
    assert rated[1]["band"] == "peak"


def test_new_year_timing_and_its_gaps() -> None:
    # 'mobile' is priced on New Year's Day only (months = [1] AND month_days = [1]):
    # 2026-01-01 is a Thursday; on 2026-01-02 and 2026-02-01 it has no rate
    rated, rejected = rate(
        PER_DESTINATION,
        [
            call(datetime(2026, 1, 1, 10, 0, tzinfo=UTC), 120, "4915100"),
            call(datetime(2026, 1, 2, 10, 0, tzinfo=UTC), 120, "4915100"),
            call(datetime(2026, 2, 1, 10, 0, tzinfo=UTC), 120, "4915100"),
            # fs on New Year: new_year outranks peak, but fs has no rule for it -> peak
            call(datetime(2026, 1, 1, 10, 0, tzinfo=UTC), 60, "1099"),
        ],
    )
    assert (rated[1]["band"], rated[1]["cost"]) == ("new_year", 600_000)
    assert rejected == {2: "no_rate", 3: "no_rate"}
    assert (rated[4]["band"], rated[4]["cost"]) == ("peak", 600_000)


def test_global_selection_still_refuses_equal_weights() -> None:
    toml = PER_DESTINATION.replace('band_selection = "per-destination"\n', "")
    with pytest.raises(TariffError, match="band_selection") as err:
        tariff_from_toml(toml)
    assert "field bands.offpeak_morning.weight" in str(err.value)


def test_years_and_weekdays_combine() -> None:
    toml = """
[tariff]
id = "t"
currency = "EUR"
timezone = "Europe/Berlin"
version = "v1"
active_from = 2025-01-01T00:00:00

[bands.base]
weekdays = [1, 2, 3, 4, 5, 6, 7]
weight = 0

[bands.weekend_2026]
years = [2026]
weekdays = [6, 7]
weight = 5

[rates.base]
groups = [{ start = 0, rate = "1", unit = 60, increment = 60 }]

[rates.cheap]
groups = [{ start = 0, rate = "0.5", unit = 60, increment = 60 }]

[[pricing]]
service = "voice"
rate = "base"

[[pricing]]
service = "voice"
band = "weekend_2026"
rate = "cheap"
"""
    rated, _ = rate(
        toml,
        [
            call(datetime(2026, 3, 7, 12, 0, tzinfo=UTC), 60, "49"),  # Saturday 2026
            call(datetime(2025, 3, 8, 12, 0, tzinfo=UTC), 60, "49"),  # Saturday 2025
            call(datetime(2026, 3, 9, 12, 0, tzinfo=UTC), 60, "49"),  # Monday 2026
        ],
    )
    assert [rated[i]["cost"] for i in (1, 2, 3)] == [500_000, 1_000_000, 1_000_000]
