"""The threads the kernels run on: one pool per process over serial ``nogil`` kernels.

Rating, attribution and the traffic aggregations cut their rows into chunks and run a
compiled kernel per chunk on these threads (the kernels release the interpreter lock). A
Numba parfor did the same but took seconds to a minute per kernel to compile on a cold
cache (issue #22). One pool for all of them: threads are not started per call, and the
count is Numba's configured one (``NUMBA_NUM_THREADS``, or ``numba.set_num_threads``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba as nb

__all__ = ["guided_chunks", "n_threads", "row_chunks", "run_chunks"]


def n_threads() -> int:
    """Worker threads for the kernels: Numba's configured thread count."""
    return max(1, min(nb.get_num_threads(), os.cpu_count() or 1))


_POOL: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    # a forked child has none of the parent's threads: it starts its own pool
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def run_chunks(kernel: Callable[..., Any], args: tuple, chunks: Sequence[tuple]) -> list:
    """``kernel(*args, *chunk)`` for each chunk (e.g. a row range ``(lo, hi)``), on
    :func:`n_threads` threads; the results come back in ``chunks`` order.

    The kernels are serial ``nogil`` Numba functions: a thread pool over them replaces a
    Numba parfor, whose compile took seconds per kernel on a cold cache (issue #22).
    Chunks are handed out one at a time, so a thread descheduled on a shared machine
    does not hold a fixed share of the rows. The calling thread is one of the workers,
    and each worker takes its next chunk itself: one hand-over per thread, not a future
    per chunk (rating measured ~40 us of Python a chunk: 64 chunks were ~6 % of a batch,
    hence also its fewer, guided chunks).
    """
    global _POOL
    threads = min(n_threads(), len(chunks))
    if threads <= 1:
        return [kernel(*args, *chunk) for chunk in chunks]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(n_threads(), thread_name_prefix="kernel")
    results: list[Any] = [None] * len(chunks)
    todo = iter(range(len(chunks)))  # next() on it is atomic under the interpreter lock
    failed: list[BaseException] = []

    def work() -> None:
        for c in todo:
            if failed:  # another worker failed: leave the rest undone
                return
            try:
                results[c] = kernel(*args, *chunks[c])
            except BaseException as exc:
                failed.append(exc)
                return

    helpers = [_POOL.submit(work) for _ in range(threads - 1)]
    work()
    for f in helpers:
        # a helper not started yet (the pool busy with another caller's chunks) has nothing
        # left to do: cancelled, not waited for; a started one finishes its chunk before
        # the caller reads (or frees) the outputs
        if not f.cancel():
            f.result()
    if failed:
        raise failed[0]
    return results


def guided_chunks(n: int, min_rows: int = 8192) -> list[tuple[int, int]]:
    """Row ranges for :func:`run_chunks` that shrink as the rows run out: each takes a
    ``2 x threads``-th of the rows left (at least ``min_rows``), so a few big chunks pay
    the per-call cost and the small ones at the end even out the threads' finish."""
    parts = 2 * n_threads()
    chunks = []
    lo = 0
    while lo < n:
        hi = min(n, lo + max(min_rows, (n - lo) // parts))
        chunks.append((lo, hi))
        lo = hi
    return chunks


def row_chunks(n: int, min_rows: int = 1 << 16) -> list[tuple[int, int]]:
    """Up to four row ranges per thread, each of at least ``min_rows`` rows (one if fewer)."""
    k = max(1, min(4 * n_threads(), n // min_rows))
    return [(c * n // k, (c + 1) * n // k) for c in range(k)]
