"""Tariff TOML loading and validation: every error names file, tariff and field."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from package_data import TARIFFS
from reference_rater import tariff_from_toml

from rating_engine.errors import TariffError
from rating_engine.rating.rate import load_tariff, load_tariffs

DATA = TARIFFS

GOOD = """
[tariff]
id = "t1"
currency = "EUR"
timezone = "Europe/Berlin"
version = "v1"
active_from = 2026-01-01T00:00:00

[destinations]
national = ["49"]
mobile = ["4917"]

[bands.all]
weekdays = [1, 2, 3, 4, 5, 6, 7]

[bands.peak]
weekdays = [1, 2, 3, 4, 5]
start = "08:00"
end = "18:00"
weight = 10

[rates.r]
connect_fee = "0.05"
groups = [{ start = 0, rate = "0.0125", unit = 60, increment = 60 }]

[[pricing]]
service = "voice"
destinations = "national"
band = "peak"
rate = "r"

[allowances.mins]
service = "voice"
destinations = ["national"]
units = 600

[period_pricing.data]
service = "data"
mode = "graduated"
unit = 1024
tiers = [{ upto = 1000, rate = "0" }, { rate = "0.01" }]
"""


def test_examples_load() -> None:
    tariffs = load_tariffs(DATA)
    assert {"mobile-classic", "mobile-flex"} <= set(tariffs)
    classic = tariffs["mobile-classic"]
    assert classic.timezone == "Europe/Berlin"
    assert [v.version for v in classic.versions] == ["2026.1", "2026.7"]
    eu = {r.name: r for r in classic.versions[1].rates}["eu"]
    assert eu.groups[0].rate == Decimal("0.0100")
    # a version merges over the base: untouched rates are inherited
    assert {r.name for r in classic.versions[1].rates} == {
        r.name for r in classic.versions[0].rates
    }
    assert classic.allowances[0].units == 6000
    assert classic.period_pricing[0].tiers[-1].upto is None
    assert load_tariff(DATA / "mobile_flex.toml").id == "mobile-flex"


def test_good_tariff_fields() -> None:
    t = tariff_from_toml(GOOD)
    v = t.versions[0]
    # a local active_from is read in the tariff's zone: 2026-01-01 00:00 CET = 23:00 UTC
    assert v.active_from == int(datetime(2025, 12, 31, 23, tzinfo=UTC).timestamp()) * 1_000_000
    assert [b.name for b in v.bands] == ["peak", "all"]  # by descending weight
    assert v.bands[0].start == 8 * 3600
    assert v.bands[0].end == 18 * 3600
    assert v.rates[0].connect_fee == Decimal("0.05")
    assert v.rates[0].rounding.method == "half-up"
    assert v.rates[0].rounding.decimals == 6


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('currency = "EUR"', 'currency = "euro"', "tariff.currency"),
        ('currency = "EUR"\n', "", "tariff.currency"),
        ('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"', "tariff.timezone"),
        ('rate = "0.0125"', "rate = 0.0125", "rates.r.groups[0].rate"),
        ('rate = "0.0125"', 'rate = "0.0000000001"', "rates.r.groups[0].rate"),
        ('rate = "0.0125"', 'rate = "-1"', "rates.r.groups[0].rate"),
        ("{ start = 0, rate", "{ start = 5, rate", "rates.r.groups[0].start"),
        ("increment = 60 }]", "increment = 0 }]", "rates.r.groups[0].increment"),
        ('band = "peak"', 'band = "night"', "pricing[0].band"),
        ('rate = "r"', 'rate = "nope"', "pricing[0].rate"),
        ('mobile = ["4917"]', 'mobile = ["49"]', "destinations.mobile"),
        ('mobile = ["4917"]', 'mobile = ["49x17"]', "destinations.mobile"),
        ("weight = 10", "weight = 0", "bands.peak.weight"),
        ("weekdays = [1, 2, 3, 4, 5]", "weekdays = [0, 1]", "bands.peak.weekdays"),
        ('end = "18:00"', 'end = "07:00"', "bands.peak.end"),
        ('start = "08:00"', 'start = "8 am"', "bands.peak.start"),
        ("[bands.peak]", '[bands.peak]\ndates = ["2026-02-30"]', "bands.peak.dates"),
        ('connect_fee = "0.05"', 'connect_fee = "0.05"\ncolour = "red"', "rates.r.colour"),
        ('destinations = ["national"]', 'destinations = ["moon"]', "allowances.mins.destinations"),
        ("units = 600", "units = 0", "allowances.mins.units"),
        ('mode = "graduated"', 'mode = "stepped"', "period_pricing.data.mode"),
        ('{ rate = "0.01" }', '{ upto = 10, rate = "0.01" }', "period_pricing.data.tiers[1].upto"),
        ('connect_fee = "0.05"', 'rounding_method = "nearest"', "rates.r.rounding_method"),
        ('connect_fee = "0.05"', "rounding_decimals = 7", "rates.r.rounding_decimals"),
        (
            'connect_fee = "0.05"',
            'min_charge = "2"\nmax_cost = "1"',
            "rates.r.min_charge",
        ),
    ],
)
def test_invalid_fields_are_named(old: str, new: str, field: str) -> None:
    assert old in GOOD
    with pytest.raises(TariffError) as err:
        tariff_from_toml(GOOD.replace(old, new, 1), "plans/t1.toml")
    message = str(err.value)
    assert "file plans/t1.toml" in message
    assert "tariff t1" in message
    assert f"field {field}" in message


def test_versions_must_ascend_and_be_unique() -> None:
    v2 = '\n[[versions]]\nversion = "{v}"\nactive_from = {at}\n'
    with pytest.raises(TariffError, match=r"field versions\[0\].active_from"):
        tariff_from_toml(GOOD + v2.format(v="v2", at="2025-01-01T00:00:00"))
    with pytest.raises(TariffError, match=r"field versions\[0\].version"):
        tariff_from_toml(GOOD + v2.format(v="v1", at="2027-01-01T00:00:00"))
    t = tariff_from_toml(GOOD + v2.format(v="v2", at="2027-01-01T00:00:00Z"))
    assert t.versions[1].active_from == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) * 10**6


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[tariff\nid=")
    with pytest.raises(TariffError, match=r"broken\.toml"):
        load_tariff(bad)
    with pytest.raises(TariffError, match=r"missing\.toml"):
        load_tariff(tmp_path / "missing.toml")
    (tmp_path / "a.toml").write_text(GOOD)
    (tmp_path / "b.toml").write_text(GOOD)
    with pytest.raises(TariffError, match="defined twice"):
        load_tariffs(tmp_path)
