"""Re-price, in time order, the records an allowance may cover, drawing its free units."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from rating_engine.kernel_threads import run_chunks
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
    parts: Sequence[int] = (),
) -> np.ndarray:
    """Re-price ``order``'s records in that order, drawing free units from ``remaining``.

    ``slot_ptr``/``slot_ix`` (CSR, parallel to ``order``) list each record's allowance slots
    in consumption order. Updates ``remaining`` and ``out``'s cost/used in place; returns the
    ledger rows (record index, slot, units).

    ``parts``: positions in ``order`` where it may be cut because no allowance slot is
    shared across them (subscription boundaries); the pieces are re-priced on threads at
    once (the kernel releases the GIL), each into its own ledger, and the ledgers joined in
    order - the same rows as one pass.
    """
    scratch = outputs(len(rec[0]))
    # cost and used land in the batch's outputs; the rest of the re-run goes to scratch
    target = (*scratch[:8], out[8], out[9], *scratch[10:])
    bounds = [0, *parts, len(order)]

    def piece(lo: int, hi: int) -> np.ndarray:
        ledger = np.zeros((int(slot_ptr[hi] - slot_ptr[lo]) + 1, 3), np.int64)
        rate_records(
            order, lo, hi, True, slot_ptr, slot_ix, remaining, ledger, rec, subs, plan,
            target, MIXED, MIXED,
        )  # fmt: skip
        return ledger[1 : ledger[0, 0] + 1]

    if len(bounds) == 2:
        return piece(0, len(order))
    return np.concatenate(run_chunks(piece, (), list(itertools.pairwise(bounds))))
