"""Hand-computed rating cases: each expected cost is worked out in the comment beside it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from reference_rater import reference_rate, subscriptions_table, tariff_from_toml, usage_table

from rating_engine.rating.rate import RatingResult, compile_plan, rate_usage
from rating_engine.schemas import RATED_SCHEMA
from rating_engine.tariff.allowances import AllowanceState
from rating_engine.tariff.model import Tariff

YEARS = (2025, 2027)

BASE = """
[tariff]
id = "t"
currency = "EUR"
timezone = "Europe/Berlin"
version = "v1"
active_from = 2026-01-01T00:00:00
rounding_decimals = 6
{head}

[destinations]
national = ["49"]
mobile = ["4917"]

[bands.offpeak]
weekdays = [1, 2, 3, 4, 5, 6, 7]
weight = 0

{bands}

[rates.r]
{rate}

{rates}

[[pricing]]
service = "voice"
rate = "r"

[[pricing]]
service = "sms"
rate = "r"

[[pricing]]
service = "data"
rate = "r"

{pricing}
{extra}
"""


def tariff(
    rate: str,
    *,
    head: str = "",
    bands: str = "",
    rates: str = "",
    pricing: str = "",
    extra: str = "",
) -> Tariff:
    text = BASE.format(head=head, bands=bands, rate=rate, rates=rates, pricing=pricing, extra=extra)
    return tariff_from_toml(text)


def rate(
    t: Tariff, rows: list[dict[str, Any]], state: AllowanceState | None = None
) -> RatingResult:
    plan = compile_plan({t.id: t}, years=YEARS)
    result = rate_usage(usage_table(rows), subscriptions_table([{}]), plan, allowances=state)
    assert result.rated.schema == RATED_SCHEMA
    assert result.rated.num_rows + result.rejected.num_rows == len(rows)
    # the reference twin agrees on every record
    ref = reference_rate(usage_table(rows), subscriptions_table([{}]), {t.id: t}, years=YEARS)
    got = {r["record_id"]: r for r in result.rated.to_pylist()}
    assert {k: v["cost"] for k, v in got.items()} == {k: v["cost"] for k, v in ref.rated.items()}
    return result


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def voice(start: datetime, ms: int, dest: str = "4930123456") -> dict[str, Any]:
    return {"service": "voice", "start_time": start, "duration_ms": ms, "destination": dest}


WINTER = utc(2026, 2, 3, 10, 0, 0)  # Tuesday 11:00 in Berlin


def costs(result: RatingResult) -> list[int]:
    return result.rated.column("cost").to_pylist()


def test_60_60() -> None:
    t = tariff('groups = [{ start = 0, rate = "0.60", unit = 60, increment = 60 }]')
    r = rate(t, [voice(WINTER, 61_000), voice(WINTER, 60_000), voice(WINTER, 1)])
    # 61 s -> 2 x 60 s = 1.20; 60 s -> 0.60; 1 ms -> one whole minute 0.60
    assert costs(r) == [1_200_000, 600_000, 600_000]
    assert r.rated.column("billed_units").to_pylist() == [120, 60, 60]


def test_30_6() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 30 },'
        ' { start = 30, rate = "0.60", unit = 60, increment = 6 }]'
    )
    r = rate(t, [voice(WINTER, 10_000), voice(WINTER, 31_000), voice(WINTER, 66_500)])
    # 10 s -> 30 s = 0.30; 31 s -> 30 + 6 = 36 s = 0.36; 66.5 s -> 30 + 42 = 72 s = 0.72
    assert costs(r) == [300_000, 360_000, 720_000]
    assert r.rated.column("billed_units").to_pylist() == [30, 36, 72]


def test_1_1_and_first_minute_then_per_second() -> None:
    t = tariff('groups = [{ start = 0, rate = "0.60", unit = 60, increment = 1 }]')
    assert costs(rate(t, [voice(WINTER, 61_200)])) == [620_000]  # 62 s x 0.01
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 60 },'
        ' { start = 60, rate = "0.30", unit = 60, increment = 1 }]'
    )
    # 10 s -> first minute 0.60; 75 s -> 0.60 + 15 s x 0.005 = 0.675
    assert costs(rate(t, [voice(WINTER, 10_000), voice(WINTER, 75_000)])) == [600_000, 675_000]


def test_connect_fee_and_zero_duration() -> None:
    t = tariff(
        'connect_fee = "0.05"\ngroups = [{ start = 0, rate = "0.60", unit = 60, increment = 1 }]'
    )
    # 10 s = 0.10 + 0.05; a zero-length call pays the connect fee alone
    assert costs(rate(t, [voice(WINTER, 10_000), voice(WINTER, 0)])) == [150_000, 50_000]


BANDS_DAY = """
[bands.day]
weekdays = [1, 2, 3, 4, 5, 6, 7]
start = "08:00"
weight = 10
"""
RATES_DAY = """
[rates.dayrate]
groups = [{ start = 0, rate = "1.20", unit = 60, increment = 60 }]
"""
PRICING_DAY = """
[[pricing]]
service = "voice"
band = "day"
rate = "dayrate"
"""


def test_band_split_across_midnight() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 60 }]',
        bands=BANDS_DAY,
        rates=RATES_DAY,
        pricing=PRICING_DAY,
    )
    # 23:59:30 Berlin (22:59:30 UTC), 90 s, 60/60: first increment starts in "day" (1.20),
    # the second starts at 00:00:30 in offpeak (0.60) -> 1.80, band reported "day"
    r = rate(t, [voice(utc(2026, 2, 3, 22, 59, 30), 90_000)])
    assert costs(r) == [1_800_000]
    assert r.rated.column("band").to_pylist() == ["day"]
    assert r.rated.column("billed_units").to_pylist() == [120]


MORNING = """
[bands.morning]
weekdays = [1, 2, 3, 4, 5, 6, 7]
start = "02:30"
end = "03:30"
weight = 10
"""
MORNING_PRICING = """
[[pricing]]
service = "voice"
band = "morning"
rate = "high"
"""
HIGH = """
[rates.high]
groups = [{ start = 0, rate = "1.20", unit = 60, increment = 1 }]
"""


def test_band_split_across_dst_changes() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 1 }]',
        bands=MORNING,
        rates=HIGH,
        pricing=MORNING_PRICING,
    )
    rows = [
        # 29 March 2026: 02:00 CET jumps to 03:00 CEST at 01:00 UTC. A call at 00:59 UTC
        # (01:59 CET) for 120 s: 60 s offpeak (0.60) then local 03:00, inside "morning"
        # 02:30-03:30 (1.20) -> 1.80. A naive wall clock would stay offpeak (1.20).
        voice(utc(2026, 3, 29, 0, 59), 120_000),
        # 25 October 2026: 03:00 CEST falls back to 02:00 CET at 01:00 UTC. 00:59 UTC is
        # 02:59 CEST (morning, 1.20), a minute later it is 02:00 CET (offpeak, 0.60) -> 1.80
        voice(utc(2026, 10, 25, 0, 59), 120_000),
        # ... and 01:29 UTC (02:29 CET) + 120 s: 60 s offpeak, then 02:30 CET again -> 1.80
        voice(utc(2026, 10, 25, 1, 29), 120_000),
        # an ordinary summer day: 00:29 UTC is 02:29 CEST: 60 s offpeak + 60 s morning
        voice(utc(2026, 7, 1, 0, 29), 120_000),
    ]
    r = rate(t, rows)
    assert costs(r) == [1_800_000] * 4
    assert r.rated.column("band").to_pylist() == ["offpeak", "morning", "offpeak", "offpeak"]


HOLIDAY = """
[bands.peak]
weekdays = [1, 2, 3, 4, 5]
start = "08:00"
end = "20:00"
weight = 10

[bands.xmas]
dates = ["*-12-25", "2026-12-31"]
weight = {w}
"""
HOLIDAY_RATES = """
[rates.peakrate]
groups = [{ start = 0, rate = "1.20", unit = 60, increment = 60 }]

[rates.free]
groups = [{ start = 0, rate = "0", unit = 60, increment = 60 }]
"""
HOLIDAY_PRICING = """
[[pricing]]
service = "voice"
band = "peak"
rate = "peakrate"

[[pricing]]
service = "voice"
band = "xmas"
rate = "free"
"""


@pytest.mark.parametrize(("weight", "expected"), [(20, "xmas"), (5, "peak")])
def test_holiday_beats_weekday_by_weight(weight: int, expected: str) -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 60 }]',
        bands=HOLIDAY.format(w=weight),
        rates=HOLIDAY_RATES,
        pricing=HOLIDAY_PRICING,
    )
    # Friday 25 December 2026, 10:00 Berlin; Thursday 31 December (year-specific date)
    r = rate(t, [voice(utc(2026, 12, 25, 9), 30_000), voice(utc(2026, 12, 31, 9), 30_000)])
    assert r.rated.column("band").to_pylist() == [expected] * 2
    assert costs(r) == ([0, 0] if expected == "xmas" else [1_200_000, 1_200_000])


ALLOW = """
[allowances.mins]
service = "voice"
destinations = ["national", "mobile"]
units = 100
"""


def test_allowance_spans_records_and_calls() -> None:
    t = tariff('groups = [{ start = 0, rate = "0.60", unit = 60, increment = 1 }]', extra=ALLOW)
    state = AllowanceState("2026-02")
    # 70 s free; then 50 s: 30 s free + 20 s priced (0.20); then in a later call 10 s priced
    first = rate(t, [voice(WINTER, 50_000), voice(utc(2026, 2, 3, 9), 70_000)], state)
    by_id = {r["record_id"]: r for r in first.rated.to_pylist()}
    assert (by_id[2]["cost"], by_id[2]["allowance_units"]) == (0, 70)
    assert (by_id[1]["cost"], by_id[1]["allowance_units"]) == (200_000, 30)
    assert first.allowance_ledger.to_pylist() == [
        {"subscription_id": 100, "record_id": 2, "allowance_id": "t:mins", "units": 70},
        {"subscription_id": 100, "record_id": 1, "allowance_id": "t:mins", "units": 30},
    ]
    plan = compile_plan({t.id: t}, years=YEARS)
    later = rate_usage(
        usage_table([voice(utc(2026, 2, 4, 9), 10_000)]),
        subscriptions_table([{}]),
        plan,
        allowances=state,
    )
    assert costs(later) == [100_000]
    assert later.allowance_ledger.num_rows == 0
    assert state.units_left(plan, 100, "t:mins") == 0


def test_allowance_stops_at_an_increment_that_does_not_fit() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 60 }]',
        extra=ALLOW.replace("units = 100", "units = 90"),
    )
    state = AllowanceState()
    # 61 s, 60/60: first minute free (60 of 90), the second does not fit in 30 -> 0.60;
    # the remaining 30 s stay for later; a 20 s call does not fit a 60 s increment either.
    r = rate(t, [voice(WINTER, 61_000), voice(utc(2026, 2, 3, 11), 20_000)], state)
    assert costs(r) == [600_000, 600_000]
    assert r.rated.column("allowance_units").to_pylist() == [60, 0]


def test_version_change_mid_period() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 60 }]',
        extra="""
[[versions]]
version = "v2"
active_from = 2026-07-01T00:00:00
rates.r = { groups = [{ start = 0, rate = "0.30", unit = 60, increment = 60 }] }
""",
    )
    rows = [
        voice(utc(2026, 6, 30, 21, 59), 120_000),  # 23:59 CEST on 30 June: v1 for all of it
        voice(utc(2026, 6, 30, 22, 0), 120_000),  # 00:00 CEST 1 July: v2
        voice(utc(2025, 12, 31, 22, 59), 60_000),  # 23:59 CET 31 Dec 2025: before v1
    ]
    plan = compile_plan({t.id: t}, years=YEARS)
    r = rate_usage(usage_table(rows), subscriptions_table([{}]), plan)
    assert costs(r) == [1_200_000, 600_000]
    assert r.rated.column("tariff_version").to_pylist() == ["v1", "v2"]
    assert r.rejected.column("reason").to_pylist() == ["no_tariff_version"]


def test_block_rounded_data_and_sms_events() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.01", unit = 1048576, increment = 1024 }]',
        rates='[rates.sms]\ngroups = [{ start = 0, rate = "0.09", unit = 1, increment = 1 }]',
        pricing='[[pricing]]\nservice = "sms"\ndestinations = "mobile"\nrate = "sms"',
    )
    rows = [
        # 5000 + 1_000_000 bytes -> 982 blocks of 1024 = 1_005_568 bytes
        # x 0.01 / 1_048_576 = 0.00958984375 -> 0.009590 (half-up, 6 decimals)
        {"service": "data", "start_time": WINTER, "volume_up": 5000, "volume_down": 1_000_000},
        {"service": "sms", "start_time": WINTER, "destination": "4917123"},  # 0.09
        {"service": "sms", "start_time": WINTER, "destination": "4930123"},  # base rate r
    ]
    r = rate(t, rows)
    assert r.rated.column("billed_units").to_pylist() == [1_005_568, 1, 1024]
    # the national SMS uses rate r (data rate): 1 event rounded to a 1024 block
    assert costs(r) == [9590, 90_000, 10]


def test_max_cost_and_min_charge() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "1.20", unit = 60, increment = 1 }]\nmax_cost = "5.00"\n'
        'min_charge = "0.50"'
    )
    # 10 min = 12.00 capped at 5.00; 10 s = 0.20 raised to 0.50
    assert costs(rate(t, [voice(WINTER, 600_000), voice(WINTER, 10_000)])) == [
        5_000_000,
        500_000,
    ]


def test_cgrates_compat_increment_rounding() -> None:
    exact = tariff('groups = [{ start = 0, rate = "0.0125", unit = 60, increment = 1 }]')
    compat = tariff(
        'groups = [{ start = 0, rate = "0.0125", unit = 60, increment = 1 }]',
        head='increment_decimals = 4\nincrement_rounding_method = "half-up"',
    )
    # exact: 61 x 0.0125 / 60 = 0.01270833.. -> 0.012708
    assert costs(rate(exact, [voice(WINTER, 61_000)])) == [12_708]
    # compat: each second 0.000208333 -> 0.0002, x 61 = 0.0122
    assert costs(rate(compat, [voice(WINTER, 61_000)])) == [12_200]


@pytest.mark.parametrize(
    ("method", "expected"),
    [("up", 130_000), ("down", 120_000), ("half-up", 130_000), ("half-even", 120_000)],
)
def test_rounding_methods_on_a_tie(method: str, expected: int) -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.75", unit = 60, increment = 1 }]\n'
        f'rounding_method = "{method}"\nrounding_decimals = 2'
    )
    # 10 s x 0.75 / 60 = 0.125 exactly: a tie at 2 decimals
    assert costs(rate(t, [voice(WINTER, 10_000)])) == [expected]


def test_rejections_each_reason_once() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 1 }]',
        pricing="",
    )
    t2 = tariff_from_toml(
        BASE.format(
            head="",
            bands="",
            rate='groups = [{ start = 0, rate = "1", unit = 1, increment = 1 }]',
            rates="",
            pricing="",
            extra="",
        ).replace('id = "t"', 'id = "t2"')
    )
    rows = [
        voice(WINTER, 1000) | {"subscriber_key": "999"},  # unknown_subscription
        voice(WINTER, 1000) | {"subscriber_key": "491700000002"},  # unknown_tariff
        voice(utc(2025, 6, 1), 1000),  # no_tariff_version
        voice(WINTER, -5),  # negative_duration
        voice(utc(2030, 1, 1), 1000),  # time_out_of_range
        {"service": "fax", "start_time": WINTER},  # unknown_service
        voice(WINTER, 1000) | {"subscriber_key_type": "email"},  # unknown_key_type
        {"service": "data", "start_time": WINTER, "volume_up": 2**63},  # volume_out_of_range
        voice(WINTER, 1000),  # rated
    ]
    plan = compile_plan({t.id: t, t2.id: t2}, years=YEARS)
    subs = subscriptions_table([{}, {"key": "491700000002", "tariff_id": "gone"}])
    r = rate_usage(usage_table(rows), subs, plan)
    assert r.rated.column("record_id").to_pylist() == [9]
    assert r.rejected.column("reason").to_pylist() == [
        "unknown_subscription",
        "unknown_tariff",
        "no_tariff_version",
        "negative_duration",
        "time_out_of_range",
        "unknown_service",
        "unknown_key_type",
        "volume_out_of_range",
    ]
    assert set(r.rejected.column("stage").to_pylist()) == {"rating"}
    assert "file test.csv, record 1, field subscriber_key" in r.rejected["message"][0].as_py()


def test_no_destination_no_rate_and_no_band() -> None:
    t = tariff_from_toml(
        """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "1"
active_from = 2026-01-01T00:00:00
[destinations]
mobile = ["4917"]
national = ["49"]
[bands.week]
weekdays = [1, 2, 3, 4, 5]
[rates.r]
groups = [{ start = 0, rate = "0.60", unit = 60, increment = 1 }]
[[pricing]]
service = "voice"
destinations = "mobile"
rate = "r"
"""
    )
    rows = [
        voice(WINTER, 1000, "4917555"),  # rated
        voice(WINTER, 1000, "3312345"),  # no prefix: no_destination
        voice(WINTER, 1000, "4930111"),  # national has no rule: no_rate
        voice(utc(2026, 2, 1, 10), 1000, "4917555"),  # a Sunday: no_band
        {"service": "voice", "start_time": WINTER, "duration_ms": 5},  # null destination
    ]
    plan = compile_plan({t.id: t}, years=YEARS)
    r = rate_usage(usage_table(rows), subscriptions_table([{}]), plan)
    assert r.rated.column("matched_prefix").to_pylist() == ["4917"]
    assert r.rejected.column("reason").to_pylist() == [
        "no_destination",
        "no_rate",
        "no_band",
        "no_destination",
    ]


def test_ip_keys_match_single_address_subscriptions() -> None:
    t = tariff('groups = [{ start = 0, rate = "0.01", unit = 1000, increment = 1 }]')
    subs = subscriptions_table(
        [
            {"key_type": "ip", "key": "10.0.0.1/32"},
            {"key_type": "ip", "key": "10.1.0.0/16", "subscription_id": 7},
        ]
    )
    rows = [
        {"service": "data", "start_time": WINTER, "volume_up": 1000,
         "subscriber_key": "10.0.0.1", "subscriber_key_type": "ip"},
        {"service": "data", "start_time": WINTER, "volume_up": 1000,
         "subscriber_key": "10.1.2.3", "subscriber_key_type": "ip"},
        {"service": "data", "start_time": WINTER, "volume_up": 2000,
         "subscriber_key": "10.1.0.0/16", "subscriber_key_type": "ip"},
    ]  # fmt: skip
    plan = compile_plan({t.id: t}, years=YEARS)
    r = rate_usage(usage_table(rows), subs, plan)
    # a single address matches its /32; a block's usage (from flow attribution) its text
    assert costs(r) == [10_000, 20_000]
    assert r.rated.column("subscription_id").to_pylist() == [100, 7]
    assert r.rejected.column("reason").to_pylist() == ["unknown_subscription"]


def test_subscription_binding_in_time_and_batches() -> None:
    t = tariff('groups = [{ start = 0, rate = "0.60", unit = 60, increment = 60 }]')
    subs = subscriptions_table(
        [
            {"active_to": utc(2026, 3, 1)},
            {"subscription_id": 200, "active_from": utc(2026, 3, 1)},
        ]
    )
    rows = [voice(WINTER, 1000), voice(utc(2026, 3, 2, 12), 1000)]
    plan = compile_plan({t.id: t}, years=YEARS)
    table = usage_table(rows)
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    r = rate_usage(chunked, subs, plan)
    assert r.rated.column("subscription_id").to_pylist() == [100, 200]


def test_increment_band_is_decided_at_the_microsecond() -> None:
    t = tariff(
        'groups = [{ start = 0, rate = "0.60", unit = 60, increment = 1 }]',
        bands=BANDS_DAY,
        rates=RATES_DAY.replace("increment = 60", "increment = 1"),
        pricing=PRICING_DAY,
    )
    # starts 60.0005 s before local midnight: the 61st second starts 500 µs before midnight,
    # so it is still "day": 61 x 0.02 = 1.22 (an off-by-one would give 60 x 0.02 + 0.01)
    start = datetime(2026, 2, 3, 22, 58, 59, 999_500, tzinfo=UTC)
    assert costs(rate(t, [voice(start, 61_000)])) == [1_220_000]
    assert costs(rate(t, [voice(start, 62_000)])) == [1_230_000]


def test_exact_slow_path_for_huge_products() -> None:
    # 1 nano-unit per 2^31 - 1 bytes: the common denominator is 2^31 - 1, so N = cost x Q
    # passes 2^62 and the kernel continues in the split W + R/Q form; the reference agrees
    t = tariff_from_toml(
        """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "1"
active_from = 2026-01-01T00:00:00
[bands.all]
weekdays = [1, 2, 3, 4, 5, 6, 7]
[rates.d]
connect_fee = "1"
groups = [{ start = 0, rate = "0.000000001", unit = 2147483647, increment = 1 }]
[[pricing]]
service = "data"
rate = "d"
"""
    )
    big = 3_000_000_000_000_000_000
    rows = [
        {"service": "data", "start_time": WINTER, "volume_up": big, "volume_down": big},
        {"service": "data", "start_time": WINTER, "volume_up": 4_500_000_000_000_000_000},
    ]
    # 6e18 / (2^31 - 1) nano = 2.793967724 -> + 1 = 3.793968; 4.5e18 / .. = 2.095475793 + 1
    assert costs(rate(t, rows)) == [3_793_968, 3_095_476]


def test_subscriber_keys_match_exactly_by_type_length_and_every_byte() -> None:
    t = tariff('groups = [{ start = 0, rate = "0.01", unit = 1000, increment = 1 }]')
    # keys up to 16 bytes compare as two words, longer ones byte by byte: cover both, keys
    # that differ only after byte 8 or in their last byte, and equal text under two types
    keys = [
        ("msisdn", "491701234567", 1),
        ("msisdn", "491701234568", 2),
        ("msisdn", "4917012345670", 3),
        ("imsi", "491701234567", 4),
        ("msisdn", "1234567890123456", 5),
        ("msisdn", "1234567890123457", 6),
        ("msisdn", "12345678901234567890", 7),
        ("msisdn", "12345678901234567891", 8),
        ("ip", "2001:db8::1:0:0:1", 9),
        ("ip", "2001:db8::1:0:0:2", 10),
    ]
    subs = subscriptions_table(
        [{"key_type": kt, "key": k, "subscription_id": sid} for kt, k, sid in keys]
    )

    def use(kt: str, key: str) -> dict[str, Any]:
        return {"service": "data", "start_time": WINTER, "volume_up": 1000,
                "subscriber_key": key, "subscriber_key_type": kt}  # fmt: skip

    rows = [use(kt, k) for kt, k, _ in reversed(keys)]
    rows += [use("msisdn", "491701234569"), use("imsi", "491701234568"),
             use("msisdn", "12345678901234567892"), use("ip", "2001:db8::1:0:0:3"),
             use("msisdn", "49170123456")]  # fmt: skip
    plan = compile_plan({t.id: t}, years=YEARS)
    r = rate_usage(usage_table(rows), subs, plan)
    assert r.rated.column("subscription_id").to_pylist() == [sid for _, _, sid in reversed(keys)]
    assert r.rejected.column("reason").to_pylist() == ["unknown_subscription"] * 5
