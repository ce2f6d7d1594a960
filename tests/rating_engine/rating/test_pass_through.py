"""Pass-through rates: records priced by the amount they carry, marked up, rounded and
limited, against a Decimal twin; bad prices and bad markups are named."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_rater import reference_rate, subscriptions_table, tariff_from_toml, usage_table

from rating_engine.errors import TariffError
from rating_engine.rating.rate import compile_plan, rate_usage

TARIFF = """
[tariff]
id = "t"
currency = "EUR"
timezone = "Europe/Berlin"
version = "1"
active_from = 2026-01-01T00:00:00
[destinations]
premium = ["4990"]
national = ["49"]
[bands.peak]
weekdays = [1, 2, 3, 4, 5]
start = "08:00"
end = "20:00"
weight = 10
[bands.offpeak]
weekdays = [1, 2, 3, 4, 5, 6, 7]
[rates.normal]
connect_fee = "0.05"
groups = [{ start = 0, rate = "0.12", unit = 60, increment = 1 }]
[rates.content]
pass_through = true
{content}
[[pricing]]
service = "voice"
rate = "normal"
[[pricing]]
service = "voice"
destinations = "premium"
band = "peak"
rate = "content"
[[pricing]]
service = "sms"
rate = "content"
[allowances.minutes]
service = "voice"
units = 120
"""
BIG = 2**62 - 1  # the largest price that is marked up exactly, by at most 0 %
MONDAY = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 12:00 in Berlin: peak
_MODES = {"up": ROUND_UP, "down": ROUND_DOWN, "half-up": ROUND_HALF_UP,
          "half-even": ROUND_HALF_EVEN}  # fmt: skip


def _twin_cost(price: int, content: dict[str, Any]) -> int:
    """Micro-units of a marked-up price, Decimal: the exact value rounded, then limited."""
    exact = Decimal(price) * (100 + Decimal(content["markup_percent"])) / 100
    exact += Decimal(content["markup_fixed"]) * 1_000_000
    step = Decimal(10) ** (6 - content["rounding_decimals"])
    mode = _MODES[content["rounding_method"]]
    if exact < 0:  # rounded on the way down to the limit; the sign never survives it
        mode = ROUND_FLOOR
    cost = int((exact / step).quantize(Decimal(1), rounding=mode) * step)
    if "min_charge" in content:
        cost = max(cost, int(Decimal(content["min_charge"]) * 1_000_000))
    if "max_cost" in content:
        cost = min(cost, int(Decimal(content["max_cost"]) * 1_000_000))
    return cost


def _toml(content: dict[str, Any]) -> str:
    lines = [f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in content.items()]
    return TARIFF.replace("{content}", "\n".join(lines))


@st.composite
def contents(draw: st.DrawFn) -> dict[str, Any]:
    content: dict[str, Any] = {
        "markup_percent": f"{draw(st.integers(-1_000_000, 2_000_000)) / 10_000:.4f}",
        "markup_fixed": f"{draw(st.integers(-2_000_000, 2_000_000)) / 1_000_000:.6f}",
        "rounding_method": draw(st.sampled_from(["up", "down", "half-up", "half-even"])),
        "rounding_decimals": draw(st.integers(0, 6)),
    }
    if content["markup_fixed"].startswith("-") or draw(st.booleans()):
        content["min_charge"] = f"{draw(st.integers(0, 3_000_000)) / 1_000_000:.6f}"
    if draw(st.booleans()):
        low = int(Decimal(content.get("min_charge", "0")) * 1_000_000)
        content["max_cost"] = f"{draw(st.integers(low, 9_000_000)) / 1_000_000:.6f}"
    return content


record = st.fixed_dictionaries(
    {
        "service": st.sampled_from(["voice", "sms"]),
        "destination": st.sampled_from(["4990123", "4930123", "4990"]),
        "hours": st.sampled_from([0, 10, 30]),  # peak, off-peak, the weekend
        "seconds": st.integers(0, 200),
        "price": st.one_of(st.none(), st.integers(-5, 5), st.integers(0, 10**9), st.just(10**18)),
    }
)


@settings(max_examples=40, deadline=None)
@given(content=contents(), records=st.lists(record, min_size=1, max_size=12))
def test_pass_through_matches_the_twin(content: dict[str, Any], records: list[dict]) -> None:
    tariff = tariff_from_toml(_toml(content))
    plan = compile_plan({"t": tariff}, years=(2026, 2026))
    rows = [
        {"service": r["service"], "destination": r["destination"], "price": r["price"],
         "start_time": MONDAY + timedelta(hours=r["hours"], minutes=i),
         "duration_ms": r["seconds"] * 1000 if r["service"] == "voice" else 0}
        for i, r in enumerate(records)
    ]  # fmt: skip
    usage = usage_table([{k: v for k, v in r.items() if k != "price"} for r in rows])
    usage = usage.append_column("price", pa.array([r["price"] for r in rows], pa.int64()))
    subs = subscriptions_table([{}])
    got = rate_usage(usage, subs, plan)
    rated = {r["record_id"]: r for r in got.rated.to_pylist()}
    rejected = {r["record_id"]: r for r in got.rejected.to_pylist()}
    # the twin: the records a pass-through rate prices (premium at peak, every SMS) cost
    # their marked-up price and draw on no allowance; the others are rated as ever
    bare = reference_rate(
        usage.drop_columns(["price"]), subs, {"t": dataclasses.replace(tariff, allowances=())}
    )
    passing = {
        rid for rid, row in bare.rated.items()
        if row["service"] == "sms" or (row["destination_set"], row["band"]) == ("premium", "peak")
    }  # fmt: skip
    others = usage.filter(pa.array([i + 1 not in passing for i in range(len(rows))]))
    ref = reference_rate(others.drop_columns(["price"]), subs, {"t": tariff})
    assert set(rated) | set(rejected) == {i + 1 for i in range(len(rows))}
    for rid in passing:
        price = rows[rid - 1]["price"]
        if price is None or price < 0:
            assert rejected[rid]["reason"] == ("no_price" if price is None else "negative_price")
            assert rejected[rid]["field"] == "price"
            assert "(file test.csv, record" in rejected[rid]["message"]
        elif price == BIG and Decimal(content["markup_percent"]) > 0:  # above 2^62
            assert rejected[rid]["reason"] == "cost_overflow"
        else:
            assert rated[rid]["cost"] == _twin_cost(price, content), rid
            assert rated[rid]["allowance_units"] == 0
    for rid, row in ref.rated.items():
        assert {k: rated[rid][k] for k in ("cost", "billed_units", "allowance_units")} == {
            k: row[k] for k in ("cost", "billed_units", "allowance_units")
        }
    assert {rid: r for rid, r in ref.rejected.items()} == {
        rid: rejected[rid]["reason"] for rid in ref.rejected
    }


def test_no_price_column_rejects_what_passes_through_and_rates_the_rest() -> None:
    plan = compile_plan({"t": tariff_from_toml(_toml({}))}, years=(2026, 2026))
    usage = usage_table(
        [{"service": "sms", "start_time": MONDAY, "destination": "4930123"},
         {"service": "voice", "start_time": MONDAY, "duration_ms": 60_000,
          "destination": "4930123"}]
    )  # fmt: skip
    got = rate_usage(usage, subscriptions_table([{}]), plan)
    assert got.rejected.column("reason").to_pylist() == ["no_price"]
    assert got.rated.column("cost").to_pylist() == [0]  # 60 s inside the allowance


@pytest.mark.parametrize(
    ("price", "content", "cost"),
    [
        # a roaming charge of 1.234567 EUR plus 15 % plus 0.10, rounded half-up to cents:
        # 1.41975205 + 0.10 -> 1.52
        (1_234_567, {"markup_percent": "15", "markup_fixed": "0.10", "rounding_decimals": 2},
         1_520_000),
        # exactly half a cent: half-up rounds it up, half-even to the even cent, down down
        (1_005_000, {"rounding_decimals": 2, "rounding_method": "half-up"}, 1_010_000),
        (1_005_000, {"rounding_decimals": 2, "rounding_method": "half-even"}, 1_000_000),
        (1_015_000, {"rounding_decimals": 2, "rounding_method": "half-even"}, 1_020_000),
        (1_000_001, {"rounding_decimals": 2, "rounding_method": "up"}, 1_010_000),
        (1_009_999, {"rounding_decimals": 2, "rounding_method": "down"}, 1_000_000),
        # -100 % leaves the fixed part; a negative fixed part stops at the minimum
        (5_000_000, {"markup_percent": "-100", "markup_fixed": "0.25"}, 250_000),
        (100_000, {"markup_fixed": "-0.50", "min_charge": "0.01"}, 10_000),
        (9_000_000, {"max_cost": "5"}, 5_000_000),
    ],
)  # fmt: skip
def test_worked_numbers(price: int, content: dict[str, Any], cost: int) -> None:
    plan = compile_plan({"t": tariff_from_toml(_toml(content))}, years=(2026, 2026))
    usage = usage_table([{"service": "sms", "start_time": MONDAY, "destination": "33"}])
    usage = usage.append_column("price", pa.array([price], pa.int64()))
    got = rate_usage(usage, subscriptions_table([{}]), plan)
    assert got.rated.column("cost").to_pylist() == [cost]
    assert cost == _twin_cost(price, {"markup_percent": "0", "markup_fixed": "0",
                                      "rounding_method": "half-up", "rounding_decimals": 6,
                                      **content})  # fmt: skip


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        ({"markup_percent": "-150"}, "rates.content.markup_percent", "makes every price negative"),
        ({"markup_fixed": "-0.5"}, "rates.content.markup_fixed", "give a min_charge"),
        ({"groups": "x"}, "rates.content.groups", "priced by the record's price"),
        ({"markup_percent": "1.23456"}, "rates.content.markup_percent", "at most 4 decimals"),
    ],
)
def test_bad_markup_names_file_tariff_and_field(
    content: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(TariffError) as err:
        tariff_from_toml(_toml(content), "plans/t.toml")
    assert f"(file plans/t.toml, tariff t, field {field})" in str(err.value)
    assert message in str(err.value)
