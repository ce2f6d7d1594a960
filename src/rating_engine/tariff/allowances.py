"""Allowance state for one billing period: free units left per subscription and allowance.

The caller creates one :class:`AllowanceState` per billing period and passes it to every
``rate_usage`` / ``rate_stream`` call of that period; consumption is recorded in the
returned ledger. Allowances are consumed in time order per subscription: within one call
records are sorted by (subscription, start_time, record_id); across calls the order is the
order of the calls, so feed a period's batches in start_time order for the consumption
order to be exact.

Units are the tariff's (seconds, events, bytes); internally voice is held in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from rating_engine.rating.allowance_kernel import apply_allowances
from rating_engine.tariff.plan import SVC_VOICE, RatingPlan

__all__ = ["LEDGER_SCHEMA", "AllowanceState", "consume_allowances"]

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("subscription_id", pa.int64(), nullable=False),
        pa.field("record_id", pa.int64(), nullable=False),
        pa.field("allowance_id", pa.string(), nullable=False),
        pa.field("units", pa.int64(), nullable=False),
    ]
)


@dataclass
class AllowanceState:
    """Free units left in a period, keyed by (subscription_id, allowance id "tariff:name")."""

    period: str = ""
    #: base units left (voice in ms); absent means untouched (the full allowance)
    remaining: dict[tuple[int, str], int] = field(default_factory=dict)

    def units_left(self, plan: RatingPlan, subscription_id: int, allowance_id: str) -> int:
        """Units (seconds, events, bytes) left for ``subscription_id`` in ``allowance_id``."""
        ai = plan.allowance_ids.index(allowance_id)
        scale = 1000 if int(plan.arrays["allow_svc"][ai]) == SVC_VOICE else 1
        full = plan.allowance_units[ai] * scale
        return self.remaining.get((subscription_id, allowance_id), full) // scale


def consume_allowances(
    plan: RatingPlan,
    state: AllowanceState,
    rec: tuple,
    subs: tuple,
    out: tuple,
    sub_id: np.ndarray,
    record_id: np.ndarray,
) -> pa.Table:
    """Re-price a batch's allowance-eligible records drawing on ``state``.

    ``rec``/``subs``/``out`` are the kernel's inputs and outputs for the batch (see
    :func:`rating_engine.rating.batch_kernel.rate_batch`); ``out``'s cost and allowance units are
    updated in place. ``sub_id`` is each record's subscription id. Returns the ledger.
    """
    a = plan.arrays
    start_us = rec[0]
    elig = out[10]  # the record's entry in elig_ptr + 1, 0 if none
    idx = np.flatnonzero(elig)
    if len(idx) == 0 or len(plan.allowance_ids) == 0:
        return LEDGER_SCHEMA.empty_table()
    order = idx[np.lexsort((record_id[idx], start_us[idx], sub_id[idx]))]
    e = elig[order].astype(np.int64) - 1
    lo = a["elig_ptr"][e]
    counts = a["elig_ptr"][e + 1] - lo
    slot_ptr = np.zeros(len(order) + 1, np.int64)
    np.cumsum(counts, out=slot_ptr[1:])
    within = np.arange(slot_ptr[-1], dtype=np.int64) - np.repeat(slot_ptr[:-1], counts)
    allow = a["elig"][np.repeat(lo, counts) + within]
    subs_of = np.repeat(sub_id[order], counts)
    pairs = np.stack([subs_of, allow], axis=1)
    uniq, slot_ix = np.unique(pairs, axis=0, return_inverse=True)
    slot_ix = slot_ix.reshape(-1).astype(np.int64)
    remaining = np.empty(len(uniq), np.int64)
    for s, (sid, ai) in enumerate(uniq.tolist()):
        scale = 1000 if int(a["allow_svc"][ai]) == SVC_VOICE else 1
        full = plan.allowance_units[ai] * scale
        remaining[s] = state.remaining.get((sid, plan.allowance_ids[ai]), full)
    ledger = apply_allowances(
        order, slot_ptr, slot_ix, remaining, rec, subs, plan.kernel_args(), out
    )
    for s, (sid, ai) in enumerate(uniq.tolist()):
        state.remaining[(sid, plan.allowance_ids[ai])] = int(remaining[s])
    led_allow = uniq[ledger[:, 1], 1]
    led_scale = np.where(a["allow_svc"][led_allow] == SVC_VOICE, 1000, 1)
    return pa.table(
        {
            "subscription_id": pa.array(uniq[ledger[:, 1], 0], pa.int64()),
            "record_id": pa.array(record_id[ledger[:, 0]], pa.int64()),
            "allowance_id": pa.array(
                [plan.allowance_ids[i] for i in led_allow.tolist()], pa.string()
            ),
            "units": pa.array(ledger[:, 2] // led_scale, pa.int64()),
        },
        schema=LEDGER_SCHEMA,
    )
