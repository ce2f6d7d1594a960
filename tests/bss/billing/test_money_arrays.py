"""Whole-column money arithmetic equals the exact scalar rules, overflow-prone sizes too."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bss.billing.money import (
    mul_ratio_half_even,
    mul_ratio_half_even_array,
    round_to_minor,
    round_to_minor_array,
)

small = st.integers(-(10**12), 10**12)
big = st.integers(-(2**62), 2**62)


@given(st.lists(st.tuples(st.one_of(small, big), st.integers(0, 10**6),
                          st.integers(1, 10**6)), max_size=40))  # fmt: skip
def test_mul_ratio_half_even_array(rows: list[tuple[int, int, int]]) -> None:
    expected = []
    for v, n, d in rows:
        r = mul_ratio_half_even(v, n, d)
        if not -(2**63) <= r < 2**63:
            return  # a result outside int64 is refused; covered below
        expected.append(r)
    got = mul_ratio_half_even_array([r[0] for r in rows], [r[1] for r in rows],
                                    [r[2] for r in rows])  # fmt: skip
    assert got.tolist() == expected


def test_results_outside_int64_are_refused() -> None:
    with pytest.raises(OverflowError):
        mul_ratio_half_even_array(np.array([2**62], np.int64), 4, 1)


@given(st.lists(st.tuples(small, st.sampled_from(["EUR", "JPY", "KWD", "CLP"])), max_size=30))
def test_round_to_minor_array(rows: list[tuple[int, str]]) -> None:
    got = round_to_minor_array([r[0] for r in rows], [r[1] for r in rows])
    assert got.tolist() == [round_to_minor(v, c) for v, c in rows]
