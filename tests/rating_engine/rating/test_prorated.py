"""Prorated metered quantities (issue #25): the tiers on the period's time-weighted average
level, against a Decimal twin that walks the constant-level segments; the same for any split
and order of the quantity-change records; bad records and tariffs named."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, ROUND_UP, Decimal, localcontext
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_rater import subscriptions_table, tariff_from_toml

from rating_engine.errors import TariffError
from rating_engine.rating.period_pricing import combine_quantities, price_period
from rating_engine.rating.prorated import QUANTITY_CHANGE_SCHEMA, prorated_quantities
from rating_engine.rating.rate import compile_plan

START = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()) * 1_000_000
END = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp()) * 1_000_000
DAY = 86_400_000_000
TARIFF = """
[tariff]
id = "t"
currency = "EUR"
timezone = "UTC"
version = "1"
active_from = 2026-01-01T00:00:00
[bands.all]
weekdays = [1, 2, 3, 4, 5, 6, 7]
[rates.zero]
groups = [{ start = 0, rate = "0", unit = 1, increment = 1 }]
[[pricing]]
service = "sms"
rate = "zero"
[period_pricing.blocks]
measure = "prorated"
metric = "ip_blocks"
rounding_method = "half-up"
rounding_decimals = 2
"""
MODES = {
    "graduated": 'mode = "graduated"\ntiers = [{ upto = 10, rate = "2.00" }, '
    '{ upto = 20, rate = "1.50", flat = "5.00" }, { rate = "0.999" }]\n',
    "volume": 'mode = "volume"\ntiers = [{ upto = 10, rate = "2.00", flat = "1.00" }, '
    '{ rate = "1.25" }]\n',
    "package": 'mode = "package"\npackage_size = 4\npackage_price = "7.00"\n',
}


def _plan(mode: str, extra: str = "") -> Any:
    return compile_plan({"t": tariff_from_toml(TARIFF + MODES[mode] + extra)}, years=(2026, 2026))


PLANS = {m: _plan(m) for m in MODES}
FREE = _plan("graduated", "free_units = 3\n")
SUBS = subscriptions_table([{}, {}])  # subscriptions 100 and 101


def _changes(rows: list[tuple[int, int, int]]) -> pa.Table:
    """(subscription, valid_from us, change) -> QUANTITY_CHANGE_SCHEMA rows."""
    return pa.table(
        {
            "record_id": pa.array(range(len(rows)), pa.int64()),
            "subscription_id": pa.array([r[0] for r in rows], pa.int64()),
            "metric": pa.array(["ip_blocks"] * len(rows)),
            "valid_from": pa.array([r[1] for r in rows], pa.int64()).cast(
                QUANTITY_CHANGE_SCHEMA.field("valid_from").type
            ),
            "change": pa.array([r[2] for r in rows], pa.int64()),
        }
    )


def _twin(pp: Any, rows: list[tuple[int, int]]) -> int:
    """Decimal: walk the segments of constant level in time order, average their levels by
    length, price the average by the tiers directly."""
    cuts = sorted({START, END, *(max(START, t // 1_000_000 * 1_000_000) for t, _ in rows
                                 if t < END)})  # fmt: skip
    with localcontext() as ctx:
        ctx.prec = 60
        weighted = Decimal(0)
        for lo, hi in itertools.pairwise(cuts):
            level = sum(c for t, c in rows if t // 1_000_000 * 1_000_000 <= lo)
            weighted += Decimal(level) * (hi - lo)
        q = weighted / (END - START)
        if q < 0:
            return 0
        q = max(Decimal(0), q - pp.free_units)
        total = Decimal(0)
        if q > 0 and pp.mode == "package":
            total = pp.package_price * (q / pp.package_size).to_integral_value(ROUND_UP)
        elif q > 0 and pp.mode == "volume":
            tier = next(t for t in pp.tiers if t.upto is None or q <= t.upto)
            total = tier.rate * q / pp.unit + tier.flat
        elif q > 0:
            lower = Decimal(0)
            for tier in pp.tiers:
                if q <= lower:
                    break
                top = q if tier.upto is None else min(q, Decimal(tier.upto))
                total += tier.rate * (top - lower) / pp.unit + tier.flat
                lower = Decimal(tier.upto or 0)
        step = Decimal(1).scaleb(-pp.rounding.decimals)
        mode = ROUND_HALF_EVEN if pp.rounding.method == "half-even" else None
        rounded = total.quantize(step, rounding=mode or "ROUND_HALF_UP")
        return int(rounded * 1_000_000)


def _charges(plan: Any, table: pa.Table) -> dict[int, int]:
    q = prorated_quantities(table, SUBS, plan, START, END)
    assert not q.rejected
    charged = price_period(q.quantities, plan, period_seconds=(END - START) // 1_000_000)
    return dict(zip(charged["subscription_id"].to_pylist(), charged["charge"].to_pylist(),
                    strict=True))  # fmt: skip


_ROWS = st.lists(
    st.tuples(
        st.sampled_from([100, 101]),
        st.integers(START - 5 * DAY, END + DAY),
        st.integers(-3, 12),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=50, deadline=None)
@given(_ROWS, st.sampled_from([*MODES, "free"]), st.randoms(use_true_random=False))
def test_prorated_twin_and_any_split(
    rows: list[tuple[int, int, int]], mode: str, rnd: random.Random
) -> None:
    plan = FREE if mode == "free" else PLANS[mode]
    pp = plan.tariffs["t"].period_pricing[0]
    whole = _charges(plan, _changes(rows))
    for sub in (100, 101):
        mine = [(t, c) for s, t, c in rows if s == sub]
        if any(t < END for t, _ in mine):
            assert whole[sub] == _twin(pp, mine), sub
        else:
            assert sub not in whole
    # shuffled and split into parts, combined in another order: the same quantities
    table = _changes(rows)
    order = list(range(len(rows)))
    rnd.shuffle(order)
    cuts = sorted(rnd.sample(range(len(rows) + 1), min(3, len(rows) + 1)))
    parts = [table.take(pa.array(order[a:b], pa.int64())) for a, b in
             zip([0, *cuts], [*cuts, len(rows)], strict=True)]  # fmt: skip
    partials = [prorated_quantities(p, SUBS, plan, START, END).quantities for p in parts]
    rnd.shuffle(partials)
    combined = combine_quantities(*partials)
    assert combined.equals(prorated_quantities(table, SUBS, plan, START, END).quantities)


def test_worked_example_and_detail() -> None:
    """10 blocks all June, +6 from the 16th, -3 from the 26th: 10 + 6 x 15/30 - 3 x 5/30 =
    12.5 on average; graduated: 10 x 2.00 + 2.5 x 1.50 + 5.00 flat = 28.75."""
    table = _changes([(100, START - DAY, 10), (100, START + 15 * DAY, 6),
                      (100, START + 25 * DAY, -3)])  # fmt: skip
    plan = PLANS["graduated"]
    q = prorated_quantities(table, SUBS, plan, START, END)
    row = price_period(q.quantities, plan, period_seconds=30 * 86_400).to_pylist()[0]
    assert (row["charge"], row["quantity"]) == (28_750_000, 12)
    assert row["detail"] == (
        "average 12.5 ip_blocks (3 changes); tier 1: 10 x 2.00/1; tier 2: 2.5 x 1.50/1 + 5.00 flat"
    )


def test_bad_records_are_set_aside() -> None:
    table = _changes([(100, START, 2), (999, START, 1), (101, START, 10**10)])
    other = table.set_column(2, "metric", pa.array(["ip_blocks", "ip_blocks", "seats"]))
    q = prorated_quantities(other, SUBS, PLANS["volume"], START, END)
    assert q.rejected == {
        1: ("unknown_subscription", "subscription_id: 999 is not in force in the period"),
        2: ("unpriced_metric", "metric: tariff t prices no 'seats'"),
    }
    q = prorated_quantities(table, SUBS, PLANS["volume"], START, END)
    assert q.rejected[2][0] == "quantity_out_of_range"
    # more removed than added: nothing charged, and the detail says why
    neg = prorated_quantities(_changes([(100, START, -1)]), SUBS, PLANS["volume"], START, END)
    row = price_period(neg.quantities, PLANS["volume"], period_seconds=30 * 86_400).to_pylist()
    assert row[0]["charge"] == 0
    assert "below zero" in row[0]["detail"]


@pytest.mark.parametrize(
    ("extra", "field", "problem"),
    [
        ('service = "sms"\n', "period_pricing.blocks.service", "not for measure"),
        ("free_events = 2\n", "period_pricing.blocks.free_events", "not for measure"),
        ("", "period_pricing.blocks.package_size", "not 0"),
    ],
)
def test_bad_prorated_tariffs_name_the_field(extra: str, field: str, problem: str) -> None:
    text = TARIFF + MODES["graduated"] + extra
    if not extra:
        text = TARIFF + MODES["package"].replace("= 4", "= 0")
    with pytest.raises(TariffError, match=rf"{problem}.*file test.toml, tariff t, field {field}"):
        tariff_from_toml(text)
    no_metric = TARIFF.replace('metric = "ip_blocks"\n', "") + MODES["volume"]
    with pytest.raises(TariffError, match=r"period_pricing\.blocks\.metric"):
        tariff_from_toml(no_metric)
