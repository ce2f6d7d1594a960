"""The reduction tree keeps order and loses nothing, whatever its fan-in."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating_engine.scale.executor import InProcessExecutor, tree_reduce


@given(st.lists(st.text(max_size=3), min_size=1, max_size=80), st.integers(2, 9))
def test_same_as_a_left_fold(parts: list[str], fanin: int) -> None:
    # string concatenation is associative but not commutative: the order must hold
    assert tree_reduce(lambda *xs: "".join(xs), parts, fanin) == reduce(lambda a, b: a + b, parts)


def test_in_process_executor_maps_in_order_and_shares_by_value() -> None:
    ex = InProcessExecutor()
    shared = ex.share({"k": 3})
    assert ex.map(lambda i, s: i * s["k"], range(5), name="t", s=shared) == [0, 3, 6, 9, 12]
    assert ex.reduce(lambda *xs: sum(xs), [1, 2, 3], name="t") == 6


def test_nothing_to_reduce_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing"):
        tree_reduce(lambda *xs: xs, [])
