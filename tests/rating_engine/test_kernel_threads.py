"""The kernels' thread pool: chunk order, failures, nesting, and the guided chunk sizes."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating_engine import kernel_threads as kt


def test_results_come_back_in_chunk_order_from_every_thread() -> None:
    names: set[str] = set()
    gate = threading.Barrier(2, timeout=10)

    def kernel(base: int, lo: int, hi: int) -> int:
        names.add(threading.current_thread().name)
        if lo in (0, 1) and kt.n_threads() > 1:  # the first two chunks meet: both threads
            gate.wait()  # work at once
        return base + lo * 100 + hi

    chunks = [(i, i + 1) for i in range(40)]
    assert kt.run_chunks(kernel, (7,), chunks) == [7 + i * 100 + i + 1 for i in range(40)]
    if kt.n_threads() > 1:
        assert len(names) == 2  # the caller and one pool thread


def test_a_failing_chunk_raises_after_the_running_ones_finish() -> None:
    done: list[int] = []

    def kernel(lo: int, hi: int) -> int:
        if lo == 3:
            raise ValueError("chunk 3")
        done.append(lo)
        return lo

    with pytest.raises(ValueError, match="chunk 3"):
        kt.run_chunks(kernel, (), [(i, i + 1) for i in range(8)])
    assert 3 not in done
    # the pool is usable afterwards
    assert kt.run_chunks(lambda lo, hi: hi - lo, (), [(0, 2), (2, 5)]) == [2, 3]


def test_a_kernel_may_run_chunks_itself() -> None:
    """Nested calls (a chunk that cuts its own rows) finish even with the pool busy: the
    caller works its own chunks, and helpers that never started are cancelled."""

    def inner(lo: int, hi: int) -> int:
        return hi - lo

    def outer(lo: int, hi: int) -> int:
        return sum(kt.run_chunks(inner, (), [(lo, lo + 1), (lo + 1, hi)]))

    assert kt.run_chunks(outer, (), [(i * 10, i * 10 + 10) for i in range(6)]) == [10] * 6


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5_000_000), st.integers(1, 100_000))
def test_guided_chunks_cover_the_rows_once_and_shrink(n: int, min_rows: int) -> None:
    chunks = kt.guided_chunks(n, min_rows)
    starts = [lo for lo, _ in chunks]
    ends = [hi for _, hi in chunks]
    assert starts == [0, *ends[:-1]][: len(starts)]  # back to back from row 0
    assert (ends[-1] if chunks else 0) == n
    sizes = [hi - lo for lo, hi in chunks]
    assert all(s > 0 for s in sizes)
    assert all(s >= min_rows for s in sizes[:-1])  # only the last may be short
    assert sizes == sorted(sizes, reverse=True)  # big ones first
    if n >= 8 * min_rows * kt.n_threads():
        assert sizes[0] == n // (2 * kt.n_threads())
