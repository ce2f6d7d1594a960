"""Re-price, in time order, the records an allowance may cover, drawing its free units."""

from __future__ import annotations

import numpy as np

from rating_engine.rating.batch_kernel import outputs
from rating_engine.rating.kernel import rate_records
from rating_engine.rating.record_text import MIXED

__all__ = ["apply_allowances"]


def apply_allowances(
    order: np.ndarray,
    slot_ptr: np.ndarray,
    slot_ix: np.ndarray,
    remaining: np.ndarray,
    rec: tuple,
    subs: tuple,
    plan: tuple,
    out: tuple,
) -> np.ndarray:
    """Re-price ``order``'s records in that order, drawing free units from ``remaining``.

    ``slot_ptr``/``slot_ix`` (CSR, parallel to ``order``) list each record's allowance slots
    in consumption order. Updates ``remaining`` and ``out``'s cost/used in place; returns the
    ledger rows (record index, slot, units).
    """
    ledger = np.zeros((len(slot_ix) + 1, 3), np.int64)
    scratch = outputs(len(rec[0]))
    # cost and used land in the batch's outputs; the rest of the re-run goes to scratch
    target = (*scratch[:8], out[8], out[9], *scratch[10:])
    rate_records(
        order, 0, len(order), True, slot_ptr, slot_ix, remaining, ledger, rec, subs, plan,
        target, MIXED, MIXED,
    )  # fmt: skip
    return ledger[1 : ledger[0, 0] + 1]
