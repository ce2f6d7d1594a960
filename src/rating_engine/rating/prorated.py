"""Prorated metered quantities: a quantity that lives over the period, priced by tier on the
time it was active.

Active lines, IP blocks, seats or committed bandwidth arrive as quantity-change records
(:data:`QUANTITY_CHANGE_SCHEMA`): from ``valid_from`` on, the subscription's ``metric``
changes by ``change`` (signed: +3 lines added, -1 removed), as Lago's add/remove events or a
provisioning system's changes do. The level before a subscription's first record is 0.

A tariff prices a metric with ``[period_pricing.NAME] measure = "prorated"``, ``metric =
"..."`` and the usual tiers or packages. The charge is the tiers applied to the period's
*time-weighted average level*: each change counts for the share of the period it was in
force, by the second (a change takes effect at the start of its second; changes before the
period count for all of it, changes at or after its end for none)::

    average = sum(change x seconds in force within the period) / seconds in the period

Chosen over pricing each constant-level segment by its own tier and weighting the charges
because (1) it is Lago's prorated model (prorated units, then the charge model) and what a
customer checks on a bill - "12.5 lines on average, 10 at 2.00 and 2.5 at 1.50" - and (2)
its partial is one integer sum per subscription (unit-seconds), so the records may arrive in
any order, split over files or partitions, and combine exactly (:func:`~rating_engine.rating.
period_pricing.combine_quantities`); segment pricing would need every record in one place.
The average is an exact fraction; the charge is rounded once, with the pricing's rounding
(:func:`~rating_engine.rating.period_pricing.prorated_charge`).

Records are rejected (returned, with the reason, never dropped silently): no subscription
with that id in force in the period (``unknown_subscription``), a metric the subscription's
tariff does not price (``unpriced_metric``), a change beyond +-10^9 units
(``quantity_out_of_range``: unit-seconds must stay exact in int64).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors.schemas import TIMESTAMP
from rating_engine.rating.period_pricing import QUANTITY_SCHEMA, combine_quantities
from rating_engine.tariff.plan import RatingPlan

__all__ = ["MAX_CHANGE", "QUANTITY_CHANGE_SCHEMA", "ProratedQuantities", "prorated_quantities"]

#: Largest change of one record: 10^9 units x a year's seconds stays far inside int64.
MAX_CHANGE = 10**9
_US = 1_000_000

QUANTITY_CHANGE_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.int64(), nullable=False),
        pa.field("subscription_id", pa.int64(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("valid_from", TIMESTAMP, nullable=False),
        pa.field("change", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class ProratedQuantities:
    """The period's prorated quantities (``QUANTITY_SCHEMA``: ``quantity`` in unit-seconds,
    ``events`` the records counted) and the records put aside: record id -> (reason,
    message naming the field)."""

    quantities: pa.Table
    rejected: dict[int, tuple[str, str]]


def _bindings(subscriptions: pa.Table, start_us: int, end_us: int) -> dict[int, tuple[int, str]]:
    """subscription id -> (account, tariff) of its binding in force latest in the period."""
    out: dict[int, tuple[int, str, int]] = {}
    for row in subscriptions.select(
        ["subscription_id", "account_id", "tariff_id", "active_from", "active_to"]
    ).to_pylist():
        begin = _micros(row["active_from"])
        finish = None if row["active_to"] is None else _micros(row["active_to"])
        if begin >= end_us or (finish is not None and finish <= start_us):
            continue
        sid = int(row["subscription_id"])
        if sid not in out or begin > out[sid][2]:
            out[sid] = (int(row["account_id"]), str(row["tariff_id"]), begin)
    return {sid: (acc, tid) for sid, (acc, tid, _) in out.items()}


def _micros(value: object) -> int:
    return int(pa.scalar(value, TIMESTAMP).cast(pa.int64()).as_py())


def prorated_quantities(
    changes: pa.Table,
    subscriptions: pa.Table,
    plan: RatingPlan,
    period_start_us: int,
    period_end_us: int,
) -> ProratedQuantities:
    """Per (subscription, tariff, prorated pricing): the sum of change x seconds in force
    within ``[period_start_us, period_end_us)`` (whole seconds), for the records
    (:data:`QUANTITY_CHANGE_SCHEMA`) that took effect before the period's end. The tariff
    and account are those of the subscription's binding in force latest in the period."""
    changes = changes.select(QUANTITY_CHANGE_SCHEMA.names).cast(QUANTITY_CHANGE_SCHEMA)
    start_s, end_s = -(-period_start_us // _US), period_end_us // _US
    valid_s = np.asarray(pc.cast(changes["valid_from"], pa.int64()).to_numpy(), np.int64) // _US
    counted = valid_s < end_s
    changes = changes.filter(pa.array(counted))
    seconds = end_s - np.maximum(valid_s[counted], start_s)
    bindings = _bindings(subscriptions, period_start_us, period_end_us)
    pricings = {
        (tid, pp.metric): pp.name
        for tid, tariff in plan.tariffs.items()
        for pp in tariff.period_pricing
        if pp.measure == "prorated"
    }
    sums: dict[tuple[int, int, str, str], list[int]] = defaultdict(lambda: [0, 0])
    rejected: dict[int, tuple[str, str]] = {}
    cols = changes.select(["record_id", "subscription_id", "metric", "change"]).to_pydict()
    for rid, sid, metric, change, secs in zip(
        cols["record_id"], cols["subscription_id"], cols["metric"], cols["change"],
        seconds.tolist(), strict=True,
    ):  # fmt: skip
        bound = bindings.get(sid)
        if bound is None:
            rejected[rid] = ("unknown_subscription",
                             f"subscription_id: {sid} is not in force in the period")  # fmt: skip
            continue
        pricing = pricings.get((bound[1], metric))
        if pricing is None:
            rejected[rid] = ("unpriced_metric",
                             f"metric: tariff {bound[1]} prices no {metric!r}")  # fmt: skip
            continue
        if abs(change) > MAX_CHANGE:
            rejected[rid] = ("quantity_out_of_range", f"change: {change} is beyond +-10^9")
            continue
        entry = sums[(sid, bound[0], bound[1], pricing)]
        entry[0] += change * secs
        entry[1] += 1
    keys = sorted(sums)
    table = pa.table(
        [
            pa.array([k[0] for k in keys], pa.int64()),
            pa.array([k[1] for k in keys], pa.int64()),
            pa.array([k[2] for k in keys], pa.string()),
            pa.array([k[3] for k in keys], pa.string()),
            pa.array([sums[k][0] for k in keys], pa.int64()),
            pa.array([sums[k][1] for k in keys], pa.int64()),
            pa.array([[] for _ in keys], QUANTITY_SCHEMA.field("head").type),
            pa.array(np.zeros(len(keys), np.int64)),
        ],
        schema=QUANTITY_SCHEMA,
    )
    return ProratedQuantities(combine_quantities(table), rejected)
