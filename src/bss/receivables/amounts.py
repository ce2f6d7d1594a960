"""Amounts of receivables: decimal text <-> integer minor units of a currency (ISO 4217).

The ledger counts in minor units (EUR cents, JPY yen, BHD fils). An amount typed by a
person is refused when it has more decimals than its currency has, never rounded: a
payment of ``12.345`` EUR did not happen.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from bss.billing.money import minor_units, mul_ratio_half_even
from bss.currencies import MAX_AMOUNT
from bss.errors import ValidationError

__all__ = ["format_minor", "micros_to_minor", "parse_amount"]


def parse_amount(text: str, currency: str, *, what: str = "amount") -> int:
    """``"12.50"`` in EUR -> 1250. Refuses non-numbers, too many decimals, zero, negative
    amounts and amounts beyond what the bills' DECIMAL(18, 6) can hold."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValidationError(f"{what} {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValidationError(f"{what} {text!r} is not a decimal number")
    if value <= 0:
        raise ValidationError(f"{what} {text} must be positive")
    if value > MAX_AMOUNT:
        raise ValidationError(f"{what} {text} is beyond the largest amount ({MAX_AMOUNT})")
    digits = minor_units(currency)
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        raise ValidationError(
            f"{what} {text}: {currency} has {digits} decimal"
            f"{'' if digits == 1 else 's'}; more is not an amount of money"
        )
    return int(minor)


def micros_to_minor(micros: int, currency: str) -> int:
    """Micro-units (bills' DECIMAL(18, 6)) to minor units, rounded half-even."""
    return mul_ratio_half_even(micros, 1, 10 ** (6 - minor_units(currency)))


def format_minor(amount: int, currency: str) -> str:
    """1250 EUR -> ``"12.50"``, -5 JPY -> ``"-5"``: exact, with the currency's decimals."""
    digits = minor_units(currency)
    return str(Decimal(amount).scaleb(-digits).quantize(Decimal(1).scaleb(-digits)))
