"""Tiered (graduated) and volume pricing over a billing period, and what-if re-rating."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from package_data import TARIFFS
from reference_rater import subscriptions_table, tariff_from_toml, usage_table

from rating_engine.rating.period_pricing import (
    PERIOD_CHARGE_SCHEMA,
    apply_period_pricing,
    combine_quantities,
    period_quantities,
    price_period,
    tier_charge,
)
from rating_engine.rating.rate import compile_plan, load_tariffs, rate_usage
from rating_engine.rating.what_if import WHAT_IF_SCHEMA, what_if, what_if_by_tariff
from rating_engine.tariff.model import PeriodPricing, Rounding, Tier

DATA = TARIFFS


def pp(mode: str) -> PeriodPricing:
    from decimal import Decimal

    tiers = (Tier(100, Decimal("0")), Tier(500, Decimal("0.10")), Tier(None, Decimal("0.05")))
    return PeriodPricing("p", "data", (), mode, 10, tiers, Rounding("half-up", 2))


@pytest.mark.parametrize(
    ("quantity", "graduated", "volume"),
    [
        (0, 0, 0),
        (100, 0, 0),  # the boundary belongs to the lower tier
        (101, 10_000, 1_010_000),  # 1 unit in tier 2: 1 x 0.10/10 = 0.01; volume: 101 x 0.01
        (500, 4_000_000, 5_000_000),  # 400 x 0.01 = 4.00; volume 500 x 0.01
        (501, 4_010_000, 2_510_000),  # + 1 x 0.005 = 0.005 -> 4.01 (half-up); 501 x 0.005
        (1000, 6_500_000, 5_000_000),  # 4.00 + 500 x 0.005 = 6.50; volume 1000 x 0.005
    ],
)
def test_tier_boundaries(quantity: int, graduated: int, volume: int) -> None:
    assert tier_charge(pp("graduated"), quantity)[0] == graduated
    assert tier_charge(pp("volume"), quantity)[0] == volume


TARIFF = """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "1"
active_from = 2026-01-01T00:00:00
[destinations]
national = ["49"]
[bands.all]
weekdays = [1, 2, 3, 4, 5, 6, 7]
[rates.zero]
groups = [{ start = 0, rate = "0", unit = 1, increment = 1000 }]
[[pricing]]
service = "data"
rate = "zero"
[[pricing]]
service = "voice"
rate = "zero"
[allowances.free]
service = "data"
units = 2000
[period_pricing.data]
service = "data"
mode = "graduated"
unit = 1000
tiers = [{ upto = 3000, rate = "1" }, { rate = "0.5" }]
rounding_decimals = 2
"""


def test_apply_period_pricing_after_allowances_and_by_partition() -> None:
    t = tariff_from_toml(TARIFF)
    plan = compile_plan({"t": t}, years=(2026, 2026))
    day = datetime(2026, 2, 1, tzinfo=UTC)
    rows = [
        {"service": "data", "start_time": day, "volume_up": 2500},  # 3000 billed, 2000 free
        {"service": "data", "start_time": day, "volume_up": 3000, "subscriber_key": "2"},
        {"service": "data", "start_time": day, "volume_down": 3500},  # 4000 billed
        {"service": "voice", "start_time": day, "duration_ms": 5000},  # not data: ignored
    ]
    subs = subscriptions_table([{}, {"key": "2", "subscription_id": 7, "account_id": 9}])
    rated = rate_usage(usage_table(rows), subs, plan).rated
    charges = apply_period_pricing(rated, plan)
    assert charges.schema == PERIOD_CHARGE_SCHEMA
    by_sub = {r["subscription_id"]: r for r in charges.to_pylist()}
    # sub 100: 3000 + 4000 - 2000 free = 5000: 3000 x 1/1000 + 2000 x 0.5/1000 = 4.00
    assert (by_sub[100]["quantity"], by_sub[100]["charge"]) == (5000, 4_000_000)
    # sub 7: 3000 - 2000 free = 1000 -> 1.00
    assert (by_sub[7]["quantity"], by_sub[7]["charge"]) == (1000, 1_000_000)
    assert "tier 2: 2000 x 0.5/1000" in by_sub[100]["detail"]
    # partition-wise quantities combine to the same charges (tree reduce)
    parts = [period_quantities(rated.slice(i, 1), plan) for i in range(rated.num_rows)]
    assert price_period(combine_quantities(*parts), plan).equals(charges)


def test_what_if_side_by_side() -> None:
    tariffs = load_tariffs(DATA)
    plan_a = compile_plan({"mobile-classic": tariffs["mobile-classic"]}, years=(2026, 2026))
    plan_b = compile_plan({"mobile-flex": tariffs["mobile-flex"]}, years=(2026, 2026))
    day = datetime(2026, 3, 3, 9, tzinfo=UTC)  # Tuesday 10:00 Berlin: peak
    rows = [
        {"service": "voice", "start_time": day, "duration_ms": 90_000, "destination": "4412345"},
        {"service": "sms", "start_time": day, "destination": "4930111"},
        {"service": "voice", "start_time": day, "duration_ms": 30_000, "destination": "4990012",
         "subscriber_key": "2"},
    ]  # fmt: skip
    subs = subscriptions_table(
        [
            {"tariff_id": "mobile-classic"},
            {"key": "2", "subscription_id": 7, "tariff_id": "mobile-classic"},
        ]
    )
    table = what_if(usage_table(rows), subs, plan_a, plan_b)
    assert table.schema == WHAT_IF_SCHEMA
    got = {r["subscription_id"]: r for r in table.to_pylist()}
    # classic: world 60/60 at 0.89 -> 2 min = 1.78; SMS in the bundle -> 0
    # flex: world 0.15 + 90 s x 0.69/60 = 1.185 -> 1.18 (half-even, 2 decimals); SMS 0.05
    assert got[100]["revenue_a"] == 1_780_000
    assert got[100]["revenue_b"] == 1_230_000
    assert got[100]["difference"] == -550_000
    # premium 49900 exists only in classic: 60/60 at 1.99 + 0.10 = 2.09; in flex it is a
    # national call, inside the 300-minute bundle: 0
    assert (got[7]["revenue_a"], got[7]["revenue_b"]) == (2_090_000, 0)
    rollup = what_if_by_tariff(table).to_pylist()
    assert rollup == [
        {
            "tariff_a": "mobile-classic",
            "tariff_b": "mobile-flex",
            "currency": "EUR",
            "subscriptions": 2,
            "revenue_a": 3_870_000,
            "revenue_b": 1_230_000,
            "difference": -2_640_000,
        }
    ]


def test_what_if_counts_rejections() -> None:
    tariffs = load_tariffs(DATA)
    plan_a = compile_plan({"mobile-classic": tariffs["mobile-classic"]}, years=(2026, 2026))
    plan_b = compile_plan({"mobile-flex": tariffs["mobile-flex"]}, years=(2026, 2026))
    day = datetime(2026, 3, 3, 9, tzinfo=UTC)
    # 33 (France) is EU in both; 7 (Russia) world in both; 999 nowhere: rejected by both
    rows = [{"service": "voice", "start_time": day, "duration_ms": 1000, "destination": "999"}]
    subs = subscriptions_table([{"tariff_id": "mobile-classic"}])
    got = what_if(usage_table(rows), subs, plan_a, plan_b).to_pylist()
    assert got[0]["rejected_a"] == got[0]["rejected_b"] == 1
    assert got[0]["revenue_a"] == got[0]["revenue_b"] == 0
    assert isinstance(what_if_by_tariff(pa.Table.from_pylist([], schema=WHAT_IF_SCHEMA)), pa.Table)
