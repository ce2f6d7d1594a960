"""Rate a whole usage batch in parallel chunks with the per-record kernel."""

from __future__ import annotations

import os

# OpenMP threads that spin after each parallel region steal the second core from the serial
# steps between kernels (and from other processes); let them sleep unless told otherwise.
# Must be set before Numba's OpenMP layer starts, i.e. before the first parallel kernel runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pyarrow as pa
from numba import njit, parallel_chunksize, prange

from rating_engine.rating.kernel import rate_records
from rating_engine.rating.reasons import OK
from rating_engine.rating.record_text import text_code

__all__ = ["outputs", "rate_batch"]


def _empty(n: int, dtype: type) -> np.ndarray:
    """An uninitialised array from Arrow's memory pool (mimalloc or jemalloc): it keeps
    freed buffers for the next batch, where numpy's large allocations are fresh pages the
    OS must fault in and zero - measured, that cost a third as much as rating itself."""
    size = np.dtype(dtype).itemsize
    return np.frombuffer(pa.allocate_buffer(n * size), dtype=dtype)


def outputs(n: int) -> tuple:
    """The kernel's output arrays for ``n`` records, uninitialised (see :func:`rate_batch`)."""
    # rate_records writes each field of every record it rates (status, subscription,
    # account and allowance eligibility of every record it visits)
    return (
        _empty(n, np.int8),  # status
        _empty(n, np.int32),  # service
        _empty(n, np.int32),  # version label
        _empty(n, np.int32),  # currency label
        _empty(n, np.int32),  # set label
        _empty(n, np.int32),  # prefix label
        _empty(n, np.int32),  # band label
        _empty(n, np.int64),  # billed units
        _empty(n, np.int64),  # cost
        _empty(n, np.int64),  # allowance units
        _empty(n, np.int32),  # allowance-eligible: entry in elig_ptr + 1, 0 if none
        _empty(n, np.int64),  # subscription id
        _empty(n, np.int64),  # account id
        _empty(n, np.int32),  # tariff index
    )


@njit(cache=True, nogil=True, parallel=True)
def _rate_chunks(
    rec: tuple, subs: tuple, plan: tuple, out: tuple, n: int, counts: np.ndarray
) -> None:
    """Rate records ``0..n-1`` in ``len(counts)`` chunks; ``counts[c]`` = (rejected, rated
    without a prefix) of chunk ``c``: the caller needs no pass over the outputs for them."""
    none = np.zeros(0, np.int64)
    led = np.zeros((1, 3), np.int64)
    n_chunks = len(counts)
    status, prefix = out[0], out[5]
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        svc_c = text_code(rec[4], rec[5], rec[15], lo, hi, True)
        kt_c = text_code(rec[6], rec[7], rec[16], lo, hi, False)
        rate_records(none, lo, hi, False, none, none, none, led, rec, subs, plan, out, svc_c, kt_c)
        rejected = 0
        no_prefix = 0
        for i in range(np.uint64(lo), np.uint64(hi)):  # just written: in cache
            rejected += status[i] != OK
            no_prefix += (status[i] == OK) & (prefix[i] < 0)
        counts[c, 0] = rejected
        counts[c, 1] = no_prefix


def rate_batch(rec: tuple, subs: tuple, plan: tuple) -> tuple[tuple, int, int]:
    """Rate every record of a batch in parallel (allowances applied later, see
    :mod:`rating_engine.rating.allowance_kernel`).

    ``rec`` = (start µs, duration ms, volume up, volume down, then offsets/data of service,
    key type, subscriber key, destination, destination validity bitmap and bit offset, then
    the subscriber key, service, key type and destination data viewed as aligned uint64
    words, or empty).
    Returns arrays: status, service, then the labels (codes among the distinct texts, see
    tariff.plan) of version, currency, set, prefix, band; billed units, cost, allowance
    units, allowance eligibility (the record's entry in the plan's ``elig_ptr`` + 1, 0 when
    no allowance applies), subscription id, account id, tariff index. Billed and allowance
    units are seconds for voice, events, bytes. A rejected record (status > 0) has only
    its status, subscription and account id set; its other fields are undefined. Also
    returns the numbers of rejected records and of rated records without a prefix.
    """
    n = len(rec[0])
    out = outputs(n)
    # up to 64 chunks of >= 8,192 records: enough to balance the threads, few enough that
    # each chunk's set-up (its block buffers) stays negligible
    counts = np.zeros((max(1, min(64, n // 8192)), 2), np.int64)
    if n:
        # chunks handed out one at a time: on a shared machine a descheduled thread must not
        # hold a static half of the batch hostage
        with parallel_chunksize(1):
            _rate_chunks(rec, subs, plan, out, n, counts)
    return out, int(counts[:, 0].sum()), int(counts[:, 1].sum())
