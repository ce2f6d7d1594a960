"""Tiered (graduated) and volume pricing over a billing period.

A tariff's ``[period_pricing.NAME]`` tables price the period's total quantity of a service
(optionally only to some destination sets) per subscription. The quantity is the rated
records' ``billed_units - allowance_units`` (units left after allowances), so period pricing
adds a charge on top of the per-record costs; price a service only by period tiers by
giving it a zero per-record rate.

* ``graduated``: each tier prices the part of the total that falls inside it;
* ``volume``: the tier the total falls into prices the whole total.

Tiers are tariff-level (not versioned): the period is priced with the tariff's tiers as
loaded. Exact: the charge is a rational, rounded once with the tier table's rounding.

The work splits for a tree reduce: :func:`period_quantities` per partition (sums),
:func:`combine_quantities` associatively, :func:`price_period` once at the end;
:func:`apply_period_pricing` does all three in one go.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal, localcontext
from fractions import Fraction

import pyarrow as pa
import pyarrow.compute as pc

from rating_engine.tariff.model import PeriodPricing
from rating_engine.tariff.plan import RatingPlan

__all__ = [
    "PERIOD_CHARGE_SCHEMA",
    "QUANTITY_SCHEMA",
    "apply_period_pricing",
    "combine_quantities",
    "period_quantities",
    "price_period",
    "tier_charge",
]

QUANTITY_SCHEMA = pa.schema(
    [
        pa.field("subscription_id", pa.int64(), nullable=False),
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("tariff_id", pa.string(), nullable=False),
        pa.field("pricing", pa.string(), nullable=False),
        pa.field("quantity", pa.int64(), nullable=False),
    ]
)

PERIOD_CHARGE_SCHEMA = pa.schema(
    [
        pa.field("subscription_id", pa.int64(), nullable=False),
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("tariff_id", pa.string(), nullable=False),
        pa.field("pricing", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("quantity", pa.int64(), nullable=False),
        pa.field("charge", pa.int64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
    ]
)

_MODES = {
    "up": ROUND_UP,
    "down": ROUND_DOWN,
    "half-up": ROUND_HALF_UP,
    "half-even": ROUND_HALF_EVEN,
}


def tier_charge(pp: PeriodPricing, quantity: int) -> tuple[int, str]:
    """(charge in micro-units, explanation) of ``quantity`` units under ``pp``."""
    total = Fraction(0)
    parts: list[str] = []
    lower = 0
    for i, tier in enumerate(pp.tiers):
        upper = tier.upto
        if pp.mode == "volume":
            if upper is None or quantity <= upper:
                total = Fraction(tier.rate) * quantity / pp.unit
                parts.append(f"tier {i + 1}: {quantity} x {tier.rate}/{pp.unit}")
                break
            continue
        inside = (quantity if upper is None else min(quantity, upper)) - lower
        if inside <= 0:
            break
        total += Fraction(tier.rate) * inside / pp.unit
        parts.append(f"tier {i + 1}: {inside} x {tier.rate}/{pp.unit}")
        lower = upper if upper is not None else lower
    with localcontext() as ctx:
        ctx.prec = 80
        exact = Decimal(total.numerator) / Decimal(total.denominator)
        rounded = exact.quantize(
            Decimal(1).scaleb(-pp.rounding.decimals), rounding=_MODES[pp.rounding.method]
        )
    return int(rounded * 1_000_000), "; ".join(parts) or "no usage"


def period_quantities(rated: pa.Table, plan: RatingPlan) -> pa.Table:
    """Per (subscription, tariff, period pricing): summed units after allowances."""
    out = []
    net = pc.subtract(rated["billed_units"], rated["allowance_units"])
    base = rated.select(["subscription_id", "account_id", "tariff_id"]).append_column("net", net)
    for tid, tariff in plan.tariffs.items():
        for pp in tariff.period_pricing:
            mask = pc.and_(
                pc.equal(rated["tariff_id"], tid), pc.equal(rated["service"], pp.service)
            )
            if pp.destinations:
                mask = pc.and_(
                    mask,
                    pc.fill_null(
                        pc.is_in(rated["destination_set"], pa.array(pp.destinations)), False
                    ),
                )
            part = base.filter(mask)
            if part.num_rows == 0:
                continue
            g = part.group_by(["subscription_id", "account_id", "tariff_id"]).aggregate(
                [("net", "sum")]
            )
            out.append(
                pa.table(
                    {
                        "subscription_id": g["subscription_id"],
                        "account_id": g["account_id"],
                        "tariff_id": g["tariff_id"],
                        "pricing": pa.array([pp.name] * g.num_rows, pa.string()),
                        "quantity": g["net_sum"].cast(pa.int64()),
                    },
                    schema=QUANTITY_SCHEMA,
                )
            )
    return pa.concat_tables(out) if out else QUANTITY_SCHEMA.empty_table()


def combine_quantities(*parts: pa.Table) -> pa.Table:
    """Associative combine of :func:`period_quantities` results (e.g. per partition)."""
    table = pa.concat_tables(parts) if parts else QUANTITY_SCHEMA.empty_table()
    keys = ["subscription_id", "account_id", "tariff_id", "pricing"]
    g = table.group_by(keys).aggregate([("quantity", "sum")])
    return pa.table({**{k: g[k] for k in keys}, "quantity": g["quantity_sum"]}).cast(
        QUANTITY_SCHEMA
    )


def price_period(quantities: pa.Table, plan: RatingPlan) -> pa.Table:
    """Charges (PERIOD_CHARGE_SCHEMA) for the period's quantities, sorted by subscription."""
    rows = []
    for q in quantities.sort_by(
        [("subscription_id", "ascending"), ("pricing", "ascending")]
    ).to_pylist():
        tariff = plan.tariffs[q["tariff_id"]]
        pp = next(p for p in tariff.period_pricing if p.name == q["pricing"])
        charge, detail = tier_charge(pp, q["quantity"])
        rows.append(
            {
                **q,
                "service": pp.service,
                "mode": pp.mode,
                "charge": charge,
                "currency": tariff.currency,
                "detail": detail,
            }
        )
    return pa.Table.from_pylist(rows, schema=PERIOD_CHARGE_SCHEMA)


def apply_period_pricing(rated: pa.Table, plan: RatingPlan) -> pa.Table:
    """Period charges for a whole period's rated usage (RATED_SCHEMA)."""
    return price_period(combine_quantities(period_quantities(rated, plan)), plan)
