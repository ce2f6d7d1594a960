"""Pricing of a billing period's total: tiers with flat fees, volume, packages, free events.

A tariff's ``[period_pricing.NAME]`` tables price the period's total per subscription of a
service (optionally only to some destination sets). The ``measure`` summed is

* ``units``: the rated records' ``billed_units - allowance_units`` (units left after
  allowances), so period pricing adds a charge on top of the per-record costs; price a
  service only by period pricing by giving it a zero per-record rate;
* ``events``: the number of rated records;
* ``cost``: the records' cost in micro-units (priced by percentage tiers, e.g. a fee on
  pass-through amounts).

From the total, the ``free_events`` earliest records (by start time, then record id) and
then ``free_units`` are taken off; what remains is priced by the mode:

* ``graduated``: each tier prices the part of the total that falls inside it and adds its
  flat fee once the total reaches it (exceeds the tier's lower limit);
* ``volume``: the tier the total falls into prices the whole total, plus its flat fee;
* ``package``: ``package_price`` per started block of ``package_size``.

A total of 0 costs nothing (no flat fee). Tiers are tariff-level (not versioned). Exact:
the charge is a rational, rounded once with the table's rounding.

The work splits for a tree reduce: :func:`period_quantities` per partition (sums, counts
and each subscription's ``free_events`` earliest records), :func:`combine_quantities`
(associative and commutative: any split and order of the records gives the same table),
:func:`price_period` once at the end; :func:`apply_period_pricing` does all three.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal, localcontext
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rating_engine.tariff.model import PeriodPricing, Tier
from rating_engine.tariff.plan import RatingPlan

__all__ = [
    "HEAD_ENTRY",
    "PERIOD_CHARGE_SCHEMA",
    "QUANTITY_SCHEMA",
    "apply_period_pricing",
    "combine_quantities",
    "period_charge",
    "period_quantities",
    "price_period",
    "prorated_charge",
    "tier_charge",
]

#: One of a subscription's earliest records (the candidates for its free events).
HEAD_ENTRY = pa.struct(
    [
        pa.field("start_time", pa.int64(), nullable=False),
        pa.field("record_id", pa.int64(), nullable=False),
        pa.field("quantity", pa.int64(), nullable=False),
    ]
)

QUANTITY_SCHEMA = pa.schema(
    [
        pa.field("subscription_id", pa.int64(), nullable=False),
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("tariff_id", pa.string(), nullable=False),
        pa.field("pricing", pa.string(), nullable=False),
        pa.field("quantity", pa.int64(), nullable=False),
        pa.field("events", pa.int64(), nullable=False),
        # the ``keep`` earliest records (start time, record id), ascending; empty unless the
        # pricing has free events on units or cost
        pa.field("head", pa.list_(HEAD_ENTRY), nullable=False),
        pa.field("keep", pa.int64(), nullable=False),
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

_KEYS = ["subscription_id", "account_id", "tariff_id", "pricing"]
_MODES = {
    "up": ROUND_UP,
    "down": ROUND_DOWN,
    "half-up": ROUND_HALF_UP,
    "half-even": ROUND_HALF_EVEN,
}


def _num(value: Decimal) -> str:
    """A decimal without trailing zeros or an exponent: 0.17, 5, 2.5."""
    return f"{value.normalize():f}"


def _amount(pp: PeriodPricing, quantity: int | Fraction) -> str:
    """A quantity as the detail shows it: money for a cost measure, else units (an average
    of a prorated measure to 6 decimals, ``~`` when it has more)."""
    if isinstance(quantity, Fraction) and quantity.denominator != 1:
        with localcontext() as ctx:
            ctx.prec = 40
            exact = Decimal(quantity.numerator) / Decimal(quantity.denominator)
            shown = exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
        return ("" if shown == exact else "~") + _num(shown)
    return _num(Decimal(int(quantity)).scaleb(-6)) if pp.measure == "cost" else str(quantity)


def _priced(pp: PeriodPricing, amount: int | Fraction, tier: Tier) -> str:
    """``amount x rate`` (a percent for a cost measure) and the tier's flat fee."""
    flat = f"{tier.flat} flat"
    if not tier.rate and tier.flat:
        return flat
    rate = f"{_num(tier.rate * 100)}%" if pp.measure == "cost" else f"{tier.rate}/{pp.unit}"
    return f"{_amount(pp, amount)} x {rate}" + (f" + {flat}" if tier.flat else "")


def tier_charge(pp: PeriodPricing, quantity: int | Fraction) -> tuple[int, str]:
    """(charge in micro-units, explanation) of ``quantity`` priced units under ``pp``
    (after free events and units; a prorated measure's average is a fraction)."""
    total = Fraction(0)
    parts: list[str] = []
    if quantity > 0 and pp.mode == "package":
        blocks = -(-quantity // pp.package_size)
        total = Fraction(pp.package_price) * blocks
        parts.append(f"{blocks} x {pp.package_price} per started {pp.package_size}")
    lower = 0
    for i, tier in enumerate(pp.tiers if quantity > 0 and pp.mode != "package" else ()):
        upper = tier.upto
        if pp.mode == "volume":
            if upper is None or quantity <= upper:
                total = Fraction(tier.rate) * quantity / pp.unit + Fraction(tier.flat)
                parts.append(f"tier {i + 1}: {_priced(pp, quantity, tier)}")
                break
            continue
        if quantity <= lower:  # graduated: this tier is not reached
            break
        inside = (quantity if upper is None else min(quantity, upper)) - lower
        total += Fraction(tier.rate) * inside / pp.unit + Fraction(tier.flat)
        parts.append(f"tier {i + 1}: {_priced(pp, inside, tier)}")
        lower = upper if upper is not None else lower
    with localcontext() as ctx:
        ctx.prec = 80
        exact = Decimal(total.numerator) / Decimal(total.denominator)
        rounded = exact.quantize(
            Decimal(1).scaleb(-pp.rounding.decimals), rounding=_MODES[pp.rounding.method]
        )
    return int(rounded * 1_000_000), "; ".join(parts) or "no usage"


def period_charge(pp: PeriodPricing, row: dict[str, object]) -> tuple[int, str]:
    """(charge, explanation) of one :data:`QUANTITY_SCHEMA` row (as a dict) under ``pp``:
    free events and free units taken off, the rest priced by :func:`tier_charge`."""
    quantity, events = int(row["quantity"]), int(row["events"])  # type: ignore[call-overload]
    notes = []
    if pp.measure == "events":
        quantity = events
    if pp.free_events:
        if pp.measure == "events":
            free = min(pp.free_events, events)
        else:
            head = row["head"]
            assert isinstance(head, list)
            free = sum(int(e["quantity"]) for e in head[: pp.free_events])
        quantity -= free
        notes.append(f"first {min(pp.free_events, events)} events free ({_amount(pp, free)})")
    if pp.free_units:
        notes.append(f"{min(pp.free_units, quantity)} free units")
        quantity -= min(pp.free_units, quantity)
    charge, detail = tier_charge(pp, quantity)
    return charge, "; ".join([*notes, detail])


def prorated_charge(
    pp: PeriodPricing, row: dict[str, object], period_seconds: int
) -> tuple[int, str]:
    """(charge, explanation) of a ``prorated`` measure's :data:`QUANTITY_SCHEMA` row: its
    quantity is unit-seconds, so the average level over the period is quantity / period
    seconds (exact, a fraction); ``free_units`` come off the average, which the tiers price."""
    seconds = int(row["quantity"])  # type: ignore[call-overload]
    average = Fraction(seconds, period_seconds)
    head = f"average {_amount(pp, average)} {pp.metric} ({row['events']} changes)"
    if average < 0:  # more removed than added: bad input, priced as nothing
        return 0, f"{head}: below zero (more removed than added), nothing charged"
    notes = [head]
    if pp.free_units:
        free = min(Fraction(pp.free_units), average)
        notes.append(f"{_amount(pp, free)} free units")
        average -= free
    charge, detail = tier_charge(pp, average)
    return charge, "; ".join([*notes, detail])


def _measured(rated: pa.Table, pp: PeriodPricing) -> pa.Array | pa.ChunkedArray:
    """Each rated row's contribution to ``pp``'s total."""
    if pp.measure == "cost":
        return rated["cost"]
    if pp.measure == "events":
        return pa.array(np.ones(rated.num_rows, np.int64))
    return pc.subtract(rated["billed_units"], rated["allowance_units"])


def period_quantities(rated: pa.Table, plan: RatingPlan) -> pa.Table:
    """Per (subscription, tariff, period pricing): the measure's sum, the number of
    records and the earliest ``free_events`` records (:data:`QUANTITY_SCHEMA`)."""
    out = []
    for tid, tariff in plan.tariffs.items():
        for pp in tariff.period_pricing:
            if pp.measure == "prorated":  # from quantity changes (rating.prorated)
                continue
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
            part = rated.filter(mask)
            if part.num_rows == 0:
                continue
            n = part.num_rows
            value = pc.cast(_measured(part, pp), pa.int64())
            keep = pp.free_events if pp.measure != "events" else 0
            if not keep:  # sums and counts per subscription: one hash aggregation
                g = pa.table(
                    {"subscription_id": part["subscription_id"],
                     "account_id": part["account_id"], "value": value}
                ).group_by(["subscription_id", "account_id"], use_threads=False).aggregate(
                    [("value", "sum"), ("value", "count")]
                )  # fmt: skip
                m = g.num_rows
                out.append(
                    pa.table(
                        [
                            g["subscription_id"],
                            g["account_id"],
                            pa.repeat(pa.scalar(tid), m),
                            pa.repeat(pa.scalar(pp.name), m),
                            g["value_sum"],
                            g["value_count"],
                            _empty_heads(m),
                            pa.array(np.zeros(m, np.int64)),
                        ],
                        schema=QUANTITY_SCHEMA,
                    )
                )
                continue
            # each record with itself as its head: the combine keeps the earliest
            start = pc.cast(part["start_time"], pa.int64())
            entries = pa.StructArray.from_arrays(
                [start.combine_chunks(), part["record_id"].combine_chunks(),
                 value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value],
                fields=list(HEAD_ENTRY),
            )  # fmt: skip
            head = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), entries)
            rows = pa.table(
                [part["subscription_id"], part["account_id"],
                 pa.repeat(pa.scalar(tid), n), pa.repeat(pa.scalar(pp.name), n), value,
                 pa.array(np.ones(n, np.int64)), head, pa.array(np.full(n, keep, np.int64))],
                schema=QUANTITY_SCHEMA,
            )  # fmt: skip
            out.append(combine_quantities(rows))
    return combine_quantities(*out) if out else QUANTITY_SCHEMA.empty_table()


def _empty_heads(n: int) -> pa.Array:
    return pa.ListArray.from_arrays(
        pa.array(np.zeros(n + 1, np.int32)), pa.array([], HEAD_ENTRY)
    ).cast(pa.list_(HEAD_ENTRY))


def combine_quantities(*parts: pa.Table) -> pa.Table:
    """Associative, commutative combine of :func:`period_quantities` results (e.g. per
    partition): sums and counts add up, each group keeps its ``keep`` earliest records.
    The result is sorted by subscription, account, tariff and pricing."""
    table = pa.concat_tables(parts) if parts else QUANTITY_SCHEMA.empty_table()
    g = table.group_by(_KEYS, use_threads=False).aggregate(
        [("quantity", "sum"), ("events", "sum"), ("keep", "max")]
    )
    g = pa.table(
        {**{k: g[k] for k in _KEYS}, "quantity": g["quantity_sum"], "events": g["events_sum"],
         "keep": g["keep_max"]}
    ).sort_by([(k, "ascending") for k in _KEYS])  # fmt: skip
    heads = _empty_heads(g.num_rows)
    if table.num_rows and int(pc.sum(pc.list_value_length(table["head"])).as_py() or 0):
        heads = _earliest(table, g)
    return pa.table(
        [*(g[k] for k in _KEYS), g["quantity"], g["events"], heads, g["keep"]],
        schema=QUANTITY_SCHEMA,
    )


def _earliest(table: pa.Table, groups: pa.Table) -> pa.Array:
    """Per row of ``groups`` (sorted by the keys): the ``keep`` earliest head entries of
    its rows in ``table``, ascending by (start time, record id)."""
    head = table["head"].combine_chunks()
    parent = pc.list_parent_indices(head)
    flat = pc.list_flatten(head)
    entries = pa.table(
        {**{k: table[k].combine_chunks().take(parent) for k in _KEYS},
         **{f.name: flat.field(f.name) for f in HEAD_ENTRY}},
    ).sort_by([(k, "ascending") for k in [*_KEYS, "start_time", "record_id"]])  # fmt: skip
    # each entry's group: its keys' row in ``groups`` (both sorted by the keys)
    gid = np.zeros(entries.num_rows, np.int64)
    if entries.num_rows > 1:
        new = np.zeros(entries.num_rows - 1, bool)
        for k in _KEYS:
            col = entries[k]
            new |= pc.not_equal(col.slice(1), col.slice(0, entries.num_rows - 1)).to_numpy()
        gid[1:] = np.cumsum(new)
    first_keys = entries.filter(pa.array(np.r_[True, gid[1:] != gid[:-1]])).select(_KEYS)
    found = first_keys.append_column("seq", pa.array(np.arange(first_keys.num_rows))).join(
        groups.select(_KEYS).append_column("row", pa.array(np.arange(groups.num_rows))), _KEYS
    )
    index = np.empty(first_keys.num_rows, np.int64)
    index[found["seq"].to_numpy()] = found["row"].to_numpy()
    group_of = index[gid]
    first = np.r_[0, np.flatnonzero(gid[1:] != gid[:-1]) + 1]
    rank = np.arange(entries.num_rows) - first[gid]
    keep = groups["keep"].to_numpy()[group_of]
    kept = rank < keep
    counts = np.bincount(group_of[kept], minlength=groups.num_rows)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    picked = entries.filter(pa.array(kept))
    values = pa.StructArray.from_arrays(
        [picked[f.name].combine_chunks() for f in HEAD_ENTRY], fields=list(HEAD_ENTRY)
    )
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def price_period(
    quantities: pa.Table, plan: RatingPlan, *, period_seconds: int | None = None
) -> pa.Table:
    """Charges (PERIOD_CHARGE_SCHEMA) for the period's quantities, sorted by subscription;
    ``period_seconds`` (the period's length) prices prorated measures. A prorated row's
    ``quantity`` is its average level rounded half-even (the detail shows it exactly)."""
    rows = []
    for q in quantities.sort_by(
        [("subscription_id", "ascending"), ("pricing", "ascending")]
    ).to_pylist():
        tariff = plan.tariffs[q["tariff_id"]]
        pp = next(p for p in tariff.period_pricing if p.name == q["pricing"])
        shown = q["events"] if pp.measure == "events" else q["quantity"]
        if pp.measure == "prorated":
            if not period_seconds:
                raise ValueError("price_period: prorated measures need period_seconds")
            charge, detail = prorated_charge(pp, q, period_seconds)
            shown = round(Fraction(q["quantity"], period_seconds))
        else:
            charge, detail = period_charge(pp, q)
        rows.append(
            {
                "subscription_id": q["subscription_id"],
                "account_id": q["account_id"],
                "tariff_id": q["tariff_id"],
                "pricing": q["pricing"],
                "service": pp.service or pp.metric,  # a prorated measure: its metric
                "mode": pp.mode,
                "quantity": shown,
                "charge": charge,
                "currency": tariff.currency,
                "detail": detail,
            }
        )
    return pa.Table.from_pylist(rows, schema=PERIOD_CHARGE_SCHEMA)


def apply_period_pricing(rated: pa.Table, plan: RatingPlan) -> pa.Table:
    """Period charges for a whole period's rated usage (RATED_SCHEMA)."""
    return price_period(combine_quantities(period_quantities(rated, plan)), plan)
