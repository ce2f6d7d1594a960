"""The invoice rounding policy: bill lines in micro-units -> amounts in the currency's minor unit.

Rated detail, prorated fees and discounts stay exact in micro-units (1e-6 of the
currency). An invoice states amounts a customer can pay, in the currency's minor unit
(ISO 4217: EUR cents, JPY yen, BHD fils; :func:`bss.currencies.minor_units`), and they
must add up: lines + tax = total = amount due, to the minor unit. The policy
(:class:`RoundingPolicy`, workspace invoice settings, docs/invoices.md):

- every line is rounded to the minor unit by ``mode``: ``half-even`` (default; banker's
  rounding, no drift over many lines) or ``half-up`` (half away from zero, "commercial");
  the difference (rounded - exact) is kept per line;
- ``tax_basis = "rate-group"`` (default, as EU VAT invoices state it: per rate, the taxable
  amount and the tax): the rounded lines of one rate are summed and the tax is that sum
  times the rate, rounded once by ``mode``; ``"line"``: each rounded line's tax is rounded
  by ``mode`` and the line taxes summed (the per-line tax some jurisdictions require);
- total excluding tax = sum of the rounded lines, total = that + the tax, amount due =
  total: no further rounding, so the printed lines always add up to what is owed.

Everything here is whole-column integer arithmetic (numpy), exact: a product that could
leave int64 is computed with Python integers instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bss.billing.money import MICROS, mul_ratio_half_even_array, mul_ratio_half_up_array
from bss.currencies import minor_units
from bss.errors import ValidationError

__all__ = [
    "DEFAULT_POLICY",
    "MODES",
    "TAX_BASES",
    "GroupTax",
    "RoundingPolicy",
    "group_tax",
    "minor_steps",
    "mul_ratio_round_array",
    "round_amounts",
]

I64 = npt.NDArray[np.int64]
MODES = ("half-even", "half-up")
TAX_BASES = ("rate-group", "line")


@dataclass(frozen=True)
class RoundingPolicy:
    """How an invoice rounds: ``mode`` (half-even | half-up) and ``tax_basis``
    (rate-group | line); see the module's doc."""

    mode: str = "half-even"
    tax_basis: str = "rate-group"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValidationError(f"rounding {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.tax_basis not in TAX_BASES:
            raise ValidationError(
                f"tax_basis {self.tax_basis!r}: expected one of {', '.join(TAX_BASES)}"
            )


DEFAULT_POLICY = RoundingPolicy()


def minor_steps(currencies: list[str]) -> I64:
    """Micro-units per minor unit of each currency (EUR 10_000, JPY 1_000_000, BHD 1_000)."""
    step = {c: 10 ** (6 - minor_units(c)) for c in set(currencies)}  # a few distinct codes
    return np.fromiter(map(step.__getitem__, currencies), np.int64, len(currencies))


def mul_ratio_round_array(
    values: npt.ArrayLike, numerator: npt.ArrayLike, denominator: npt.ArrayLike, mode: str
) -> I64:
    """``values * numerator / denominator`` rounded to an integer by ``mode``, exactly."""
    if mode == "half-even":
        return mul_ratio_half_even_array(values, numerator, denominator)
    if mode != "half-up":
        raise ValidationError(f"rounding {mode!r}: expected one of {', '.join(MODES)}")
    return mul_ratio_half_up_array(values, numerator, denominator)


def round_amounts(micros: npt.ArrayLike, steps: npt.ArrayLike, mode: str) -> I64:
    """Micro-units rounded to a multiple of ``steps`` (per value) by ``mode``."""
    step = np.asarray(steps, dtype=np.int64)
    return mul_ratio_round_array(micros, 1, step, mode) * step


@dataclass(frozen=True)
class GroupTax:
    """Per tax group (consecutive lines of one bill and one rate): the taxable amount
    (sum of the rounded lines) and the tax, in micro-units on the minor-unit grid."""

    taxable: I64
    tax: I64


def group_tax(
    rounded: I64, starts: I64, rate_micros: I64, steps: I64, policy: RoundingPolicy
) -> GroupTax:
    """The tax of each group of ``rounded`` lines (groups begin at ``starts``; one rate in
    micro-units, 190_000 = 19 %, and one minor step per group), by the policy's basis."""
    if len(starts) == 0:
        empty = np.zeros(0, np.int64)
        return GroupTax(empty, empty)
    taxable = np.add.reduceat(rounded, starts)
    den = steps * MICROS
    if policy.tax_basis == "rate-group":
        tax = mul_ratio_round_array(taxable, rate_micros, den, policy.mode) * steps
    else:
        sizes = np.diff(np.r_[starts, len(rounded)])
        per_line = mul_ratio_round_array(
            rounded, np.repeat(rate_micros, sizes), np.repeat(den, sizes), policy.mode
        ) * np.repeat(steps, sizes)
        tax = np.add.reduceat(per_line, starts)
    return GroupTax(taxable.astype(np.int64), tax.astype(np.int64))
