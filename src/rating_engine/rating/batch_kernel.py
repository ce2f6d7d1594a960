"""Rate a whole usage batch in parallel chunks with the per-record kernel."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

# OpenMP threads that spin after each parallel region steal the second core from the serial
# steps between kernels (and from other processes); let them sleep unless told otherwise.
# Must be set before Numba's OpenMP layer starts, i.e. before the first parallel kernel runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pyarrow as pa
from numba import config

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


def _rate_chunk(
    rec: tuple, subs: tuple, plan: tuple, out: tuple, lo: int, hi: int, counts: np.ndarray, c: int
) -> None:
    """Rate records ``lo..hi-1``; ``counts[c]`` = (rejected, rated without a prefix) of the
    chunk: the caller needs no pass over the outputs for them.

    Plain Python around the compiled kernel, not a compiled wrapper: a compiled caller
    links and optimises the whole rating kernel once more (half of a first bill's compile
    time, measured), while this call is the very specialisation the allowance pass uses.
    The kernel releases the GIL, so the pool's threads rate at once."""
    none = np.zeros(0, np.int64)
    led = np.zeros((1, 3), np.int64)
    svc_c = text_code(rec[4], rec[5], rec[15], lo, hi, True)
    kt_c = text_code(rec[6], rec[7], rec[16], lo, hi, False)
    rate_records(none, lo, hi, False, none, none, none, led, rec, subs, plan, out, svc_c, kt_c)
    ok = out[0][lo:hi] == OK
    counts[c, 0] = hi - lo - int(np.count_nonzero(ok))
    counts[c, 1] = int(np.count_nonzero(ok & (out[5][lo:hi] < 0)))


def _threads() -> int:
    # NUMBA_NUM_THREADS (or the CPU count) bounds the threads, as it did for the parfor
    return max(1, int(getattr(config, "NUMBA_NUM_THREADS", os.cpu_count() or 1)))


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_threads(), thread_name_prefix="rate")
    return _POOL


def _forget_pool() -> None:
    # a forked child has none of the parent's threads: it starts its own pool
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


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
        # The chunks run on a thread pool over the GIL-free kernel, handed out one at a
        # time (on a shared machine a descheduled thread must not hold a static half of
        # the batch hostage). A Numba parfor did the same but took over a minute to compile
        # on a cold cache, as long as everything else a first bill compiles (issue #22).
        n_chunks = len(counts)
        bounds = [(c * n // n_chunks, (c + 1) * n // n_chunks) for c in range(n_chunks)]
        if n_chunks == 1 or _threads() == 1:
            for c, (lo, hi) in enumerate(bounds):
                _rate_chunk(rec, subs, plan, out, lo, hi, counts, c)
        else:
            done = [
                _pool().submit(_rate_chunk, rec, subs, plan, out, lo, hi, counts, c)
                for c, (lo, hi) in enumerate(bounds)
            ]
            for f in done:
                f.result()
    return out, int(counts[:, 0].sum()), int(counts[:, 1].sum())
