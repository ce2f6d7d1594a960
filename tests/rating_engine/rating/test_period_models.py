"""Period pricing models (flat fee per tier, volume, packages, free events and units, the
units / events / cost measures) against the Decimal twin, with the records split over
partitions and chunks in any order and combined as the streaming and Dask billing paths do."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from period_reference import reference_period_charge
from reference_rater import tariff_from_toml

from rating_engine.errors import TariffError
from rating_engine.rating.period_pricing import (
    QUANTITY_SCHEMA,
    apply_period_pricing,
    combine_quantities,
    price_period,
    tier_charge,
)
from rating_engine.rating.rate import compile_plan
from rating_engine.scale.partials import RatePartial, combine_rate_partials, in_period_quantities
from rating_engine.schemas import RATED_SCHEMA
from rating_engine.tariff.model import PeriodPricing, Rounding, Tier

START = 1_790_000_000_000_000  # the period's start, us
BASE = """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "1"
active_from = 2026-01-01T00:00:00
[destinations]
a = ["49"]
b = ["33"]
[bands.all]
weekdays = [1, 2, 3, 4, 5, 6, 7]
[rates.zero]
groups = [{ start = 0, rate = "0", unit = 1, increment = 1 }]
[[pricing]]
service = "sms"
rate = "zero"
"""
PLAN = compile_plan({"t": tariff_from_toml(BASE)}, years=(2026, 2027))
SERVICES = ["voice", "sms", "data"]
CENT = 10_000  # micro-units


def _label(codes: list[int], names: list[str | None]) -> pa.DictionaryArray:
    mask = np.array([names[c] is None for c in codes], bool)
    return pa.DictionaryArray.from_arrays(
        pa.array(np.array(codes, np.int32), mask=mask), pa.array(names, pa.string())
    )


def rated_table(rows: list[dict[str, Any]]) -> pa.Table:
    """RATED_SCHEMA rows of tariff ``t`` (dicts: record_id, sub, svc, set, start,
    billed_units, allowance_units, cost)."""
    n = len(rows)
    get = lambda k: [r[k] for r in rows]  # noqa: E731
    return pa.table(
        [
            pa.array(get("record_id"), pa.int64()),
            pa.array(get("sub"), pa.int64()),
            pa.array([s // 2 for s in get("sub")], pa.int64()),
            _label(get("svc"), SERVICES),
            pa.array([START + s for s in get("start")], pa.timestamp("us", tz="UTC")),
            _label([0] * n, ["t"]),
            _label([0] * n, ["1"]),
            _label(get("set"), ["a", "b", None]),
            _label(get("set"), ["49", "33", None]),
            _label([0] * n, ["all"]),
            pa.array(get("billed_units"), pa.int64()),
            pa.array(get("allowance_units"), pa.int64()),
            pa.array(get("cost"), pa.int64()),
            _label([0] * n, ["EUR"]),
        ],
        schema=RATED_SCHEMA,
    )


def with_pricing(*pps: PeriodPricing) -> Any:
    tariff = dataclasses.replace(PLAN.tariffs["t"], period_pricing=tuple(pps))
    return dataclasses.replace(PLAN, tariffs={"t": tariff}, memo={})


@st.composite
def pricings(draw: st.DrawFn) -> PeriodPricing:
    mode = draw(st.sampled_from(["graduated", "volume", "package"]))
    measure = draw(st.sampled_from(["units", "events", "cost"]))
    if measure == "cost" and mode == "package":
        mode = "graduated"
    money = st.integers(0, 3000).map(lambda v: Decimal(v).scaleb(-3))
    tiers: list[Tier] = []
    if mode != "package":
        limits = sorted(draw(st.sets(st.integers(1, 60), max_size=3)))
        for upto in [*limits, None]:
            rate = Decimal(draw(st.integers(0, 999))).scaleb(-draw(st.integers(0, 4)))
            tiers.append(Tier(upto, rate, draw(st.sampled_from([Decimal(0), draw(money)]))))
    return PeriodPricing(
        name=draw(st.sampled_from(["p", "q"])),
        service=draw(st.sampled_from(SERVICES)),
        destinations=tuple(draw(st.sampled_from([[], ["a"], ["a", "b"]]))),
        mode=mode,
        # a cost measure is micro-units, its tiers' rates percent / 100 (as parsed)
        unit=1_000_000 if measure == "cost" else draw(st.sampled_from([1, 3, 10])),
        tiers=tuple(tiers),
        rounding=Rounding(
            draw(st.sampled_from(["up", "down", "half-up", "half-even"])), draw(st.integers(2, 6))
        ),
        measure=measure,
        free_units=0 if measure == "cost" else draw(st.sampled_from([0, 0, 1, 2, 5, 12])),
        free_events=draw(st.sampled_from([0, 0, 1, 2])),
        package_size=draw(st.integers(1, 9)) if mode == "package" else 0,
        package_price=draw(money.filter(bool)) if mode == "package" else Decimal(0),
    )


record = st.fixed_dictionaries(
    {
        "sub": st.integers(0, 1),
        "svc": st.integers(0, 5),  # 3..5: the pricing's service
        "set": st.integers(0, 2),
        "start": st.integers(0, 5),  # few instants: ties broken by record id
        "billed_units": st.integers(0, 9),
        "allowance_units": st.integers(0, 3),
        "cost": st.integers(0, 40),
    }
)


def _twin(pp: PeriodPricing, rows: list[dict[str, Any]]) -> dict[int, int]:
    by_sub: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if SERVICES[r["svc"]] != pp.service:
            continue
        if pp.destinations and (r["set"] == 2 or "ab"[r["set"]] not in pp.destinations):
            continue
        by_sub[r["sub"]].append({**r, "allowance_units": min(r["allowance_units"],
                                                             r["billed_units"])})  # fmt: skip
    step = CENT if pp.measure == "cost" else 1
    return {s: reference_period_charge(pp, recs, step) for s, recs in by_sub.items()}


@settings(max_examples=60, deadline=None)
@given(
    pp=pricings(),
    rows=st.lists(record, min_size=3, max_size=16),
    seed=st.integers(0, 2**32 - 1),
)
def test_period_models_match_the_twin_in_any_split_and_order(
    pp: PeriodPricing, rows: list[dict[str, Any]], seed: int
) -> None:
    if pp.measure == "cost":  # money in cents, as the limits are
        tiers = [dataclasses.replace(t, upto=t.upto and t.upto * CENT) for t in pp.tiers]
        pp = dataclasses.replace(pp, tiers=tuple(tiers))
    for i, r in enumerate(rows):
        r["cost"] *= CENT
        r["record_id"] = 1000 - 7 * i  # ids not in time order
        r["svc"] = SERVICES.index(pp.service) if r["svc"] > 2 else r["svc"]
        r["allowance_units"] = min(r["allowance_units"], r["billed_units"])
    plan = with_pricing(pp)
    whole = rated_table(rows)
    charges = apply_period_pricing(whole, plan)
    got = {r["subscription_id"]: r["charge"] for r in charges.to_pylist()}
    assert got == _twin(pp, rows)
    # the same records as partitions (days, buckets) of chunks in another order, combined
    # as the streaming run and the Dask tasks combine them
    rnd = random.Random(seed)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    cuts = sorted(rnd.sample(range(len(shuffled) + 1), k=min(3, len(shuffled) + 1)))
    chunks = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    partials = []
    for chunk in chunks:
        q = in_period_quantities(rated_table(chunk), plan, START)
        partials.append(RatePartial(quantities=q))
    rnd.shuffle(partials)
    middle = len(partials) // 2
    tree = combine_rate_partials(
        combine_rate_partials(*partials[:middle]), combine_rate_partials(*partials[middle:])
    )
    combined = tree.quantities
    assert combined.schema == QUANTITY_SCHEMA
    assert combined.equals(combine_quantities(*(p.quantities for p in partials[::-1])))
    assert price_period(combined, plan).equals(charges)


@settings(max_examples=200, deadline=None)
@given(pp=pricings(), quantity=st.integers(0, 70), near=st.booleans())
def test_pricing_of_a_total_matches_the_twin(pp: PeriodPricing, quantity: int, near: bool) -> None:
    if near and pp.tiers[:-1]:  # at, just below or just above a tier limit
        quantity = max(0, pp.tiers[quantity % (len(pp.tiers) - 1)].upto + quantity % 3 - 1)
    if near and pp.mode == "package":  # a whole number of packages, or one unit more
        quantity = pp.package_size * (quantity % 4) + quantity % 2
    pp = dataclasses.replace(pp, measure="units", free_units=0, free_events=0, unit=pp.unit % 999)
    one = {"start": 0, "record_id": 1, "billed_units": quantity, "allowance_units": 0}
    assert tier_charge(pp, quantity)[0] == reference_period_charge(pp, [one])


def pp(mode: str, **kw: Any) -> PeriodPricing:
    tiers = (Tier(10, Decimal(0), Decimal(5)), Tier(100, Decimal("0.5"), Decimal(10)),
             Tier(None, Decimal("0.25")))  # fmt: skip
    return PeriodPricing("gb", "data", (), mode, 1, tiers, Rounding("half-up", 2), **kw)


@pytest.mark.parametrize(
    ("quantity", "graduated", "volume"),
    [
        (0, 0, 0),  # nothing used: no flat fee
        (1, 5_000_000, 5_000_000),  # tier 1 reached: its flat fee
        (10, 5_000_000, 5_000_000),  # the limit belongs to tier 1
        (11, 15_500_000, 15_500_000),  # + 10 flat + 1 x 0.5; volume: 10 + 11 x 0.5
        (100, 60_000_000, 60_000_000),  # 5 + 10 + 90 x 0.5; volume 10 + 100 x 0.5
        (101, 60_250_000, 25_250_000),  # + 1 x 0.25; volume 101 x 0.25
    ],
)
def test_flat_fee_per_tier(quantity: int, graduated: int, volume: int) -> None:
    assert tier_charge(pp("graduated"), quantity)[0] == graduated
    assert tier_charge(pp("volume"), quantity)[0] == volume


def test_packages_count_the_period_not_the_record() -> None:
    # 3 records of 1 SMS in packages of 10 cost one package, not three (issue #25)
    package = PeriodPricing(
        "sms", "sms", (), "package", 1, (), Rounding("half-up", 2),
        measure="events", package_size=10, package_price=Decimal(10),
    )  # fmt: skip
    rows = [{"record_id": i, "sub": 0, "svc": 1, "set": 2, "start": i, "billed_units": 1,
             "allowance_units": 0, "cost": 0} for i in range(3)]  # fmt: skip
    charges = apply_period_pricing(rated_table(rows), with_pricing(package))
    assert charges.column("charge").to_pylist() == [10_000_000]
    # free units come off before rounding up to blocks: 12 SMS, 2 free -> one package
    free = dataclasses.replace(package, free_units=2)
    rows12 = [{**rows[0], "record_id": i, "start": i} for i in range(12)]
    assert apply_period_pricing(rated_table(rows12), with_pricing(free))["charge"][0].as_py() == (
        10_000_000
    )
    assert apply_period_pricing(rated_table(rows12), with_pricing(package))["charge"][
        0
    ].as_py() == (20_000_000)


def test_free_events_are_the_earliest_records() -> None:
    # the first 2 records of the period are free whatever their size, the rest cost units
    free = PeriodPricing("p", "data", (), "graduated", 1, (Tier(None, Decimal("0.01")),),
                         Rounding("half-up", 6), free_events=2)  # fmt: skip
    sizes = {5: 700, 3: 100, 9: 50, 1: 9}  # start -> units
    rows = [{"record_id": 40 - s, "sub": 0, "svc": 2, "set": 2, "start": s, "billed_units": u,
             "allowance_units": 0, "cost": 0} for s, u in sizes.items()]  # fmt: skip
    charges = apply_period_pricing(rated_table(rows), with_pricing(free)).to_pylist()
    # starts 1 and 3 are free: 700 + 50 = 750 units at 0.01
    assert charges[0]["charge"] == 7_500_000
    assert charges[0]["quantity"] == 859
    assert "first 2 events free (109)" in charges[0]["detail"]


def test_quantities_of_nothing_combine_to_nothing() -> None:
    assert combine_quantities().equals(QUANTITY_SCHEMA.empty_table())
    assert combine_quantities(QUANTITY_SCHEMA.empty_table()).num_rows == 0


BAD = [
    # an overlapping tier that has both a flat fee and a rate
    ('tiers = [{ upto = 10, flat = "5" }, { upto = 10, rate = "0.5", flat = "10" }, '
     '{ rate = "0.1" }]', "period_pricing.p.tiers[1].upto", "overlaps the tier before"),
    ('mode = "package"\npackage_size = 0\npackage_price = "10"', "period_pricing.p.package_size",
     "not 0"),
    ('tiers = [{ upto = 10 }, { rate = "1" }]', "period_pricing.p.tiers[0]", "a rate, a flat"),
    ('measure = "cost"\ntiers = [{ rate = "1" }]', "period_pricing.p.tiers[0].rate",
     "unknown field"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field", "message"), BAD)
def test_bad_period_pricing_names_file_tariff_and_field(
    body: str, field: str, message: str
) -> None:
    text = BASE + '[period_pricing.p]\nservice = "sms"\n'
    text += body if "mode" in body else 'mode = "graduated"\n' + body
    with pytest.raises(TariffError) as err:
        tariff_from_toml(text, "plans/t.toml")
    assert f"(file plans/t.toml, tariff t, field {field})" in str(err.value)
    assert message in str(err.value)
