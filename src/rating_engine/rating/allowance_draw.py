"""Drawing a record's allowance units from its slots, and the ledger rows that records."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["draw_allowances"]


@njit(cache=True, nogil=True)
def draw_allowances(
    record: int,
    used: int,
    slots: np.ndarray,
    remaining: np.ndarray,
    ledger: np.ndarray,
) -> None:
    """Take ``used`` base units from the allowance slots ``slots`` in order, each row of
    ``ledger`` (record, slot, units; row 0 column 0 counts rows) recording one draw."""
    left = used
    for slot in slots:
        if left == 0:
            break
        take = min(left, remaining[slot])
        if take > 0:
            remaining[slot] -= take
            left -= take
            n_led = ledger[0, 0] + 1
            ledger[0, 0] = n_led
            ledger[n_led, 0] = record
            ledger[n_led, 1] = slot
            ledger[n_led, 2] = take
