"""Re-price, in time order, the records an allowance may cover, drawing its free units."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numba import njit

from rating_engine.kernel_threads import run_chunks
from rating_engine.rating.batch_kernel import outputs
from rating_engine.rating.kernel import rate_records
from rating_engine.rating.record_text import MIXED

__all__ = ["allowance_slots", "apply_allowances", "time_order"]

#: Runs at most this long are ordered by insertion (longer ones by a merge sort).
_SHORT = 32


@njit(cache=True, nogil=True)
def _by_key(order: np.ndarray, lo: int, hi: int, key: np.ndarray) -> None:
    """Order ``order[lo:hi]`` by ``key`` of its values, stably, in place."""
    if hi - lo <= _SHORT:
        for i in range(lo + 1, hi):
            v = order[i]
            j = i - 1
            while j >= lo and key[order[j]] > key[v]:
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = v
        return
    run = order[lo:hi].copy()
    order[lo:hi] = run[np.argsort(key[run], kind="mergesort")]


@njit(cache=True, nogil=True)
def time_order(sub: np.ndarray, start: np.ndarray, rid: np.ndarray, s_lo: int,
               n_sub: int) -> np.ndarray:  # fmt: skip
    """``np.lexsort((rid, start, sub))`` for subscription ids in ``s_lo .. s_lo + n_sub``:
    the records counted into their subscriptions (one pass, no sort), then each
    subscription's few records ordered by start time and the equal times by record id."""
    n = sub.shape[0]
    first = np.zeros(n_sub + 1, np.int64)
    for i in range(n):
        first[sub[i] - s_lo + 1] += 1
    for s in range(n_sub):
        first[s + 1] += first[s]
    at = first[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):  # ascending i: ties on all three keys keep their input order
        s = sub[i] - s_lo
        order[at[s]] = i
        at[s] += 1
    for s in range(n_sub):
        lo, hi = first[s], first[s + 1]
        if hi - lo < 2:
            continue
        _by_key(order, lo, hi, start)
        k = lo
        while k < hi:  # runs of equal start times: by record id
            e = k + 1
            while e < hi and start[order[e]] == start[order[k]]:
                e += 1
            if e - k > 1:
                _by_key(order, k, e, rid)
            k = e
    return order


@njit(cache=True, nogil=True)
def allowance_slots(
    order: np.ndarray,
    sub_id: np.ndarray,
    elig: np.ndarray,
    elig_ptr: np.ndarray,
    elig_allow: np.ndarray,
    n_allow: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The allowance slots - one per (subscription, allowance) - of ``order``'s records,
    which come subscription by subscription: (slot_ptr, slot_ix) as :func:`apply_allowances`
    takes them, and each slot's subscription and allowance. A record's slots are its
    eligibility entry's allowances (``elig[i] - 1`` indexes ``elig_ptr``), in that order;
    slots are numbered as they first appear, so a subscription's are consecutive and each
    allowance's have ascending subscriptions. One pass, no sort."""
    n = order.shape[0]
    total = 0
    for o in range(n):
        e = elig[order[o]] - 1
        total += elig_ptr[e + 1] - elig_ptr[e]
    slot_ptr = np.zeros(n + 1, np.int64)
    slot_ix = np.empty(total, np.int64)
    slot_sub = np.empty(total, np.int64)
    slot_allow = np.empty(total, np.int64)
    mine = np.full(n_allow, -1, np.int64)  # each allowance's latest slot
    first = n_slots = k = 0  # slots from ``first`` on are the current subscription's
    for o in range(n):
        i = order[o]
        if o > 0 and sub_id[i] != sub_id[order[o - 1]]:
            first = n_slots
        e = elig[i] - 1
        for j in range(elig_ptr[e], elig_ptr[e + 1]):
            a = elig_allow[j]
            if mine[a] < first:  # the subscription's first record with this allowance
                mine[a] = n_slots
                slot_sub[n_slots] = sub_id[i]
                slot_allow[n_slots] = a
                n_slots += 1
            slot_ix[k] = mine[a]
            k += 1
        slot_ptr[o + 1] = k
    return slot_ptr, slot_ix, slot_sub[:n_slots], slot_allow[:n_slots]


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
    # The re-run reads the batch's service, eligibility (its set column) and tariff and
    # writes cost and used into the batch's outputs; what else it writes goes to scratch.
    target = (scratch[0], out[1], *scratch[2:8], out[8], out[9], out[10], *scratch[11:13],
              out[13])  # fmt: skip
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
