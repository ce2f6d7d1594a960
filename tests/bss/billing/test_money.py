from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bss.billing.money import (
    from_micros,
    micros_to_decimal_array,
    minor_units,
    mul_ratio_half_even,
    round_to_minor,
    to_micros,
)

micros = st.integers(min_value=-(10**15), max_value=10**15)


@given(micros, st.integers(0, 10**6), st.integers(1, 10**6))
def test_mul_ratio_matches_decimal_half_even(value: int, num: int, den: int) -> None:
    expected = (Decimal(value) * num / den).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert mul_ratio_half_even(value, num, den) == int(expected)


@given(micros)
def test_round_to_minor_matches_decimal(value: int) -> None:
    expected = (Decimal(value) / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * 10_000
    assert round_to_minor(value, "EUR") == int(expected)
    assert round_to_minor(value, "JPY") % 1_000_000 == 0


@given(micros)
def test_micros_round_trip(value: int) -> None:
    assert to_micros(from_micros(value)) == value


def test_to_micros_refuses_silent_rounding() -> None:
    assert to_micros("19.99") == 19_990_000
    with pytest.raises(ValueError, match="more than 6 decimals"):
        to_micros("0.0000001")


def test_minor_units() -> None:
    assert (minor_units("EUR"), minor_units("JPY"), minor_units("KWD")) == (2, 0, 3)


@given(st.lists(micros, max_size=50))
def test_decimal_array_is_exact(values: list[int]) -> None:
    arr = micros_to_decimal_array(pa.array(values, pa.int64()))
    assert arr.type == pa.decimal128(18, 6)
    assert arr.to_pylist() == [from_micros(v) for v in values]
