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

__all__ = ["n_threads", "row_chunks", "run_chunks"]


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
    does not hold a fixed share of the rows.
    """
    global _POOL
    if len(chunks) <= 1 or n_threads() == 1:
        return [kernel(*args, *chunk) for chunk in chunks]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(n_threads(), thread_name_prefix="kernel")
    futures = [_POOL.submit(kernel, *args, *chunk) for chunk in chunks]
    return [f.result() for f in futures]


def row_chunks(n: int, min_rows: int = 1 << 16) -> list[tuple[int, int]]:
    """Up to four row ranges per thread, each of at least ``min_rows`` rows (one if fewer)."""
    k = max(1, min(4 * n_threads(), n // min_rows))
    return [(c * n // k, (c + 1) * n // k) for c in range(k)]
