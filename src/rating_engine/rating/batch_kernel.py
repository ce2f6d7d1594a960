"""Rate a whole usage batch in parallel chunks with the per-record kernel."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rating_engine.kernel_threads import guided_chunks, run_chunks
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


# the batch pass's index and ledger arguments: unused (no index, no allowance drawn), shared
_NO_INDEX = np.zeros(0, np.int64)
_NO_LEDGER = np.zeros((1, 3), np.int64)


def _rate_chunk(
    rec: tuple, subs: tuple, plan: tuple, out: tuple, lo: int, hi: int
) -> tuple[int, int]:
    """Rate records ``lo..hi-1``; returns (rejected, rated without a prefix) of the chunk,
    so the caller needs no pass over the outputs for them.

    Plain Python around the compiled kernel, not a compiled wrapper: a compiled caller
    links and optimises the whole rating kernel once more (half of a first bill's compile
    time, measured), while this call is the very specialisation the allowance pass uses.
    The kernel releases the GIL, so the pool's threads rate at once."""
    none, led = _NO_INDEX, _NO_LEDGER
    svc_c = text_code(rec[4], rec[5], rec[15], lo, hi, True)
    kt_c = text_code(rec[6], rec[7], rec[16], lo, hi, False)
    rate_records(none, lo, hi, False, none, none, none, led, rec, subs, plan, out, svc_c, kt_c)
    ok = out[0][lo:hi] == OK
    return hi - lo - int(np.count_nonzero(ok)), int(np.count_nonzero(ok & (out[5][lo:hi] < 0)))


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
    if not n:
        return out, 0, 0
    # chunks shrinking from a quarter of the batch to >= 8,192 records (~16 for a million):
    # few enough that the per-call cost (~40 us: argument unboxing, text codes) stays small,
    # and the last ones small enough to even out the threads, handed out one at a time (a
    # descheduled thread holds no static share)
    counts = run_chunks(_rate_chunk, (rec, subs, plan, out), guided_chunks(n))
    return out, sum(r for r, _ in counts), sum(p for _, p in counts)
