"""Reference twin of period pricing: plain Python, Decimal, unit by unit, slow.

It reads :class:`~rating_engine.tariff.model.PeriodPricing` directly and prices a
subscription's records of a period by walking the priced total one unit at a time (each
unit finds its tier; a tier's flat fee is paid by its first unit; a package by the first
unit of each block). Only for small totals; used only by the tests.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal, localcontext
from typing import Any

from rating_engine.tariff.model import PeriodPricing

__all__ = ["reference_period_charge"]

_MODES = {"up": ROUND_UP, "down": ROUND_DOWN, "half-up": ROUND_HALF_UP,
          "half-even": ROUND_HALF_EVEN}  # fmt: skip


def _tier_of(pp: PeriodPricing, unit_number: int) -> int:
    for i, tier in enumerate(pp.tiers):
        if tier.upto is None or unit_number <= tier.upto:
            return i
    raise AssertionError("the last tier is open")


def reference_period_charge(pp: PeriodPricing, records: list[dict[str, Any]], step: int = 1) -> int:
    """Micro-units ``pp`` charges for one subscription's ``records`` of the period (dicts
    with start, record_id, billed_units, allowance_units, cost). The walk goes ``step``
    units at a time: every value, limit and free amount must be a multiple of it."""
    ordered = sorted(records, key=lambda r: (r["start"], r["record_id"]))
    if pp.measure == "events":
        values = [1 for _ in ordered]
    elif pp.measure == "cost":
        values = [r["cost"] for r in ordered]
    else:
        values = [r["billed_units"] - r["allowance_units"] for r in ordered]
    quantity = sum(values[pp.free_events :])
    quantity = max(0, quantity - pp.free_units)
    with localcontext() as ctx:
        ctx.prec = 60
        total = per_unit = Decimal(0)
        assert quantity % step == 0
        if pp.mode == "package":
            assert step == 1
            for u in range(1, quantity + 1):
                if (u - 1) % pp.package_size == 0:
                    total += pp.package_price
        elif pp.mode == "graduated":
            reached: set[int] = set()
            for u in range(step, quantity + 1, step):
                i = _tier_of(pp, u)
                if i not in reached:
                    reached.add(i)
                    total += pp.tiers[i].flat
                per_unit += pp.tiers[i].rate * step
        elif quantity > 0:  # volume: every unit at the rate of the total's tier
            tier = pp.tiers[_tier_of(pp, quantity)]
            total = tier.flat
            per_unit = sum((tier.rate * step for _ in range(quantity // step)), Decimal(0))
        # one division at the end: the sum of the units' prices per unit is exact
        total += per_unit / pp.unit
        rounded = total.quantize(
            Decimal(1).scaleb(-pp.rounding.decimals), rounding=_MODES[pp.rounding.method]
        )
        return int(rounded * 1_000_000)
