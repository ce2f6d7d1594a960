"""Destinations that are not digits (``voicemail``, ``+49...``) and, with per-destination band
selection, destination sets without rules that let shorter prefixes match (CGRateS)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from reference_rater import reference_rate, subscriptions_table, tariff_from_toml, usage_table

from rating_engine.errors import TariffError
from rating_engine.rating.rate import compile_plan, rate_usage

YEARS = (2025, 2027)
NOON = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)

TARIFF = """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "v1"
active_from = 2025-01-01T00:00:00
{head}

[destinations]
voicemail = ["voicemail"]
vm_short = ["vm"]
plus_de = ["+49"]
de = ["49"]
de_mobile = ["4915"]

[bands.all]
weekdays = [1, 2, 3, 4, 5, 6, 7]

[rates.free]
groups = [{{ start = 0, rate = "0", unit = 1, increment = 1 }}]

[rates.one]
groups = [{{ start = 0, rate = "1", unit = 60, increment = 60 }}]

[rates.two]
groups = [{{ start = 0, rate = "2", unit = 60, increment = 60 }}]

[[pricing]]
service = "voice"
destinations = "voicemail"
rate = "free"

[[pricing]]
service = "voice"
destinations = "vm_short"
rate = "two"

[[pricing]]
service = "voice"
destinations = "plus_de"
rate = "two"

[[pricing]]
service = "voice"
destinations = "de"
rate = "one"
"""


def rate(head: str, destinations: list[str]) -> tuple[list[Any], dict[int, str]]:
    tariff = tariff_from_toml(TARIFF.format(head=head))
    plan = compile_plan({"t": tariff}, years=YEARS)
    subs = subscriptions_table([{}])
    usage = usage_table(
        [{"start_time": NOON, "duration_ms": 60_000, "destination": d} for d in destinations]
    )
    result = rate_usage(usage, subs, plan)
    ref = reference_rate(usage, subs, {"t": tariff}, years=YEARS)
    got = {r["record_id"]: r for r in result.rated.to_pylist()}
    rejected = dict(
        zip(result.rejected["record_id"].to_pylist(), result.rejected["reason"].to_pylist(),
            strict=True)
    )  # fmt: skip
    assert rejected == ref.rejected
    assert got == {rid: {**got[rid], **row} for rid, row in ref.rated.items()}
    rows = [
        (got[i + 1]["destination_set"], got[i + 1]["matched_prefix"], got[i + 1]["cost"])
        if i + 1 in got
        else None
        for i in range(len(destinations))
    ]
    return rows, rejected


def test_text_prefixes_match_longest_first() -> None:
    rows, rejected = rate(
        "",
        ["voicemail", "voicemail123", "vm7", "+4930123", "4930123", "v", "49151234"],
    )
    assert rows[:5] == [
        ("voicemail", "voicemail", 0),
        ("voicemail", "voicemail", 0),
        ("vm_short", "vm", 2_000_000),
        ("plus_de", "+49", 2_000_000),
        ("de", "49", 1_000_000),
    ]
    # 'v' matches no prefix; 4915... is de_mobile, which has no rule (global: no_rate)
    assert rejected == {6: "no_destination", 7: "no_rate"}


def test_a_set_without_rules_lets_a_shorter_prefix_match_per_destination() -> None:
    rows, rejected = rate('band_selection = "per-destination"', ["49151234", "4930"])
    # de_mobile has no rule: invisible, so 4915... matches 49 (de), as CGRateS does
    assert rows == [("de", "49", 1_000_000), ("de", "49", 1_000_000)]
    assert rejected == {}


@pytest.mark.parametrize("prefix", ["49a", "", "a b", "x" * 25])
def test_prefixes_that_cannot_be_matched_are_refused(prefix: str) -> None:
    toml = TARIFF.format(head="").replace('vm_short = ["vm"]', f'vm_short = ["{prefix}"]')
    with pytest.raises(TariffError, match="prefixes are 1-24 digits") as err:
        tariff_from_toml(toml)
    assert "field destinations.vm_short" in str(err.value)


SHARED = """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "v1"
active_from = 2025-01-01T00:00:00
band_selection = "per-destination"

[destinations]
a_light = ["49", "4930"]
b_heavy = ["49"]
c_any = ["49"]

[bands.all]
weekdays = [1, 2, 3, 4, 5, 6, 7]
weight = 10

[bands.also]
weekdays = [1, 2, 3, 4, 5, 6, 7]
weight = {heavy}

[rates.one]
groups = [{{ start = 0, rate = "1", unit = 60, increment = 60 }}]

[rates.two]
groups = [{{ start = 0, rate = "2", unit = 60, increment = 60 }}]

[[pricing]]
service = "voice"
destinations = "a_light"
band = "all"
rate = "one"

[[pricing]]
service = "voice"
destinations = "b_heavy"
band = "also"
rate = "two"

[[pricing]]
service = "voice"
destinations = "c_any"
rate = "one"
"""


@pytest.mark.parametrize(("heavy", "owner"), [(20, "b_heavy"), (10, "a_light"), (5, "a_light")])
def test_a_prefix_in_several_sets_goes_to_the_heaviest(heavy: int, owner: str) -> None:
    # 49 is in three sets: the one whose rules' bands weigh most wins (equal: the name first
    # in order; a set with a rule for any band only weighs least); 4930 is a_light's alone
    tariff = tariff_from_toml(SHARED.format(heavy=heavy))
    plan = compile_plan({"t": tariff}, years=YEARS)
    subs = subscriptions_table([{}])
    usage = usage_table(
        [{"start_time": NOON, "duration_ms": 60_000, "destination": d} for d in ("4989", "4930")]
    )
    rated = {r["record_id"]: r for r in rate_usage(usage, subs, plan).rated.to_pylist()}
    ref = reference_rate(usage, subs, {"t": tariff}, years=YEARS)
    assert {i: r["destination_set"] for i, r in ref.rated.items()} == {1: owner, 2: "a_light"}
    assert [rated[i]["destination_set"] for i in (1, 2)] == [owner, "a_light"]


def test_a_prefix_in_several_sets_is_refused_with_global_selection() -> None:
    toml = SHARED.format(heavy=20).replace('band_selection = "per-destination"\n', "")
    with pytest.raises(TariffError, match="already in set") as err:
        tariff_from_toml(toml)
    assert "field destinations.b_heavy" in str(err.value)
