"""The allowance consumption order: equal to a 3-key lexsort (subscription, start, record)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rating_engine.tariff.allowances import _time_order

_I64 = st.integers(-(1 << 62), (1 << 62) - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5), _I64), max_size=60))
def test_order_equals_lexsort_with_ties(rows: list[tuple[int, int, int]]) -> None:
    sub, start, rid = np.array(rows, np.int64).reshape(-1, 3).T
    assert _time_order(sub, start, rid).tolist() == np.lexsort((rid, start, sub)).tolist()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(_I64, _I64, _I64), min_size=1, max_size=30))
def test_order_equals_lexsort_beyond_one_key(rows: list[tuple[int, int, int]]) -> None:
    # ranges too wide to pack (subscription, start) in one int64 take the lexsort
    sub, start, rid = np.array(rows, np.int64).reshape(-1, 3).T
    assert _time_order(sub, start, rid).tolist() == np.lexsort((rid, start, sub)).tolist()
