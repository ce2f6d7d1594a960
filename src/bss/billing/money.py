"""Exact money for bills: integer micro-units, Decimal only at the edges, explicit rounding.

Rounding rules (documented for every bill, docs/invoices.md):
- usage lines are the exact sum of the rated records' costs (already rounded per tariff);
- recurring charges prorate as ``amount * active_days / days_in_period`` rounded half-even
  to the micro-unit; discounts are a share of those, rounded half-even to the micro-unit;
- the invoice then rounds each line to the currency's minor unit (ISO 4217,
  :func:`bss.currencies.minor_units`) and computes the tax by the workspace's rounding
  policy (:mod:`bss.invoice.rounding`): lines + tax = total = amount due, exactly in minor
  units; each line's exact amount is kept beside its rounded one.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from bss.currencies import minor_units as _iso_minor_units

__all__ = [
    "MICROS",
    "from_micros",
    "micros_to_decimal_array",
    "minor_units",
    "mul_ratio_half_even",
    "mul_ratio_half_even_array",
    "mul_ratio_half_up",
    "mul_ratio_half_up_array",
    "round_to_minor",
    "round_to_minor_array",
    "to_micros",
]

MICROS = 1_000_000


def minor_units(currency: str) -> int:
    """Decimals of the currency's minor unit (EUR 2, JPY 0, KWD 3): ISO 4217's list."""
    return _iso_minor_units(currency)


def to_micros(value: Decimal | str | int) -> int:
    """Exact conversion; more than 6 decimals is an error, never a silent rounding."""
    number = Decimal(value) * MICROS
    if number != number.to_integral_value():
        raise ValueError(f"{value} has more than 6 decimals")
    return int(number)


def from_micros(micros: int) -> Decimal:
    """Micro-units to a Decimal with 6 decimals."""
    return (Decimal(micros) / MICROS).quantize(Decimal("0.000001"))


def mul_ratio_half_even(micros: int, numerator: int, denominator: int) -> int:
    """``micros * numerator / denominator`` rounded half-even, in integers only."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(micros * numerator, denominator)
    twice = 2 * r
    if twice > denominator or (twice == denominator and q % 2 == 1):
        q += 1
    return q


def mul_ratio_half_up(micros: int, numerator: int, denominator: int) -> int:
    """``micros * numerator / denominator`` rounded half away from zero, exactly."""
    prod = micros * numerator
    q, r = divmod(abs(prod), denominator)
    q += 2 * r >= denominator
    return q if prod >= 0 else -q


def mul_ratio_half_even_array(
    values: npt.ArrayLike, numerator: npt.ArrayLike, denominator: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """:func:`mul_ratio_half_even` element-wise, exact (see :func:`_mul_ratio_array`)."""
    return _mul_ratio_array(values, numerator, denominator, half_up=False)


def mul_ratio_half_up_array(
    values: npt.ArrayLike, numerator: npt.ArrayLike, denominator: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """:func:`mul_ratio_half_up` element-wise, exact (see :func:`_mul_ratio_array`)."""
    return _mul_ratio_array(values, numerator, denominator, half_up=True)


def _mul_ratio_array(
    values: npt.ArrayLike, numerator: npt.ArrayLike, denominator: npt.ArrayLike, half_up: bool
) -> npt.NDArray[np.int64]:
    """Element-wise and exact: in int64 when no product can overflow, else with Python
    integers (a result outside int64 is an error)."""
    v = np.asarray(values, dtype=np.int64)
    num = np.broadcast_to(np.asarray(numerator, dtype=np.int64), v.shape)
    den = np.broadcast_to(np.asarray(denominator, dtype=np.int64), v.shape)
    if v.size == 0:
        return np.zeros(0, np.int64)
    if int(den.min()) <= 0:
        raise ValueError("denominator must be positive")
    big = max(abs(int(v.min())), abs(int(v.max()))) * max(abs(int(num.min())), abs(int(num.max())))
    if big >= 1 << 62:
        one = mul_ratio_half_up if half_up else mul_ratio_half_even
        return np.array(
            [one(int(a), int(b), int(c))
             for a, b, c in zip(v.tolist(), num.tolist(), den.tolist(), strict=True)],
            dtype=np.int64,
        )  # fmt: skip
    prod = v * num
    out: npt.NDArray[np.int64]
    if half_up:
        mag = np.abs(prod)
        q = mag // den
        q = q + (2 * (mag - q * den) >= den)
        out = np.where(prod < 0, -q, q)
        return out
    q = np.floor_divide(prod, den)
    twice = 2 * (prod - q * den)
    out = q + ((twice > den) | ((twice == den) & (q % 2 == 1)))
    return out


def round_to_minor_array(micros: npt.ArrayLike, currencies: list[str]) -> npt.NDArray[np.int64]:
    """:func:`round_to_minor` element-wise (one currency per value)."""
    steps = np.array([10 ** (6 - minor_units(c)) for c in currencies], dtype=np.int64)
    return mul_ratio_half_even_array(micros, 1, steps) * steps


def round_to_minor(micros: int, currency: str) -> int:
    """Round micro-units half-even to the currency's minor unit (result still in micros)."""
    step: int = 10 ** (6 - minor_units(currency))
    return mul_ratio_half_even(micros, 1, step) * step


def micros_to_decimal_array(micros: pa.Array | pa.ChunkedArray) -> pa.Array:
    """int64 micro-units to ``decimal128(18, 6)`` exactly, without a per-value Python loop.

    A decimal128 value is its unscaled 128-bit integer, so micro-units with scale 6 are
    the int64 values sign-extended to 128 bits.
    """
    values = micros.combine_chunks() if isinstance(micros, pa.ChunkedArray) else micros
    if values.null_count:
        raise ValueError("money columns are never null")
    low = values.to_numpy(zero_copy_only=False).astype(np.int64)
    wide = np.empty((len(low), 2), dtype=np.int64)
    wide[:, 0] = low
    wide[:, 1] = np.where(low < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(18, 6), len(low), [None, pa.py_buffer(wide)])
