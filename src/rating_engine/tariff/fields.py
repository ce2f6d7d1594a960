"""Typed field readers for tariff TOML; each failure names the file, tariff and field."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from rating_engine.errors import TariffError
from rating_engine.tariff.model import ROUNDING_METHODS, Rounding

__all__ = [
    "ID_PATTERN",
    "MONEY_DECIMALS",
    "RATE_DECIMALS",
    "FieldContext",
    "check_keys",
    "get_field",
    "parse_money",
    "parse_rounding",
    "parse_time_of_day",
    "parse_timestamp",
]

#: Rates may carry up to 9 decimals (nano-units); fees and limits up to 6 (micro-units).
RATE_DECIMALS = 9
MONEY_DECIMALS = 6

_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]+$")


class FieldContext:
    """Builds error messages naming file, tariff and field."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tariff = "?"

    def fail(self, field: str, message: str) -> TariffError:
        """The error for ``field``, naming the file and the tariff too."""
        return TariffError(f"{message} (file {self.source}, tariff {self.tariff}, field {field})")


def get_field(
    ctx: FieldContext, table: dict[str, Any], key: str, field: str, kind: type, default: Any = ...
) -> Any:
    """``table[key]``, checked to be a ``kind`` (a bool is no int); ``default`` if
    absent, or required when no default is given."""
    if key not in table:
        if default is ...:
            raise ctx.fail(f"{field}.{key}" if field else key, "missing required field")
        return default
    value = table[key]
    if kind is int and isinstance(value, bool):
        raise ctx.fail(f"{field}.{key}" if field else key, "expected an integer")
    if not isinstance(value, kind):
        raise ctx.fail(f"{field}.{key}" if field else key, f"expected {kind.__name__}")
    return value


def check_keys(ctx: FieldContext, table: dict[str, Any], allowed: set[str], field: str) -> None:
    """Reject the first key of ``table`` (sorted) that is not in ``allowed``."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ctx.fail(f"{field}.{unknown[0]}" if field else unknown[0], "unknown field")


def parse_money(ctx: FieldContext, value: Any, field: str, decimals: int) -> Decimal:
    """An amount >= 0 from a decimal string, with at most ``decimals`` decimals."""
    # Money comes as a decimal string so that TOML floats never round it on the way in.
    if not isinstance(value, str):
        raise ctx.fail(field, 'money must be a decimal string, e.g. "0.0125"')
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ctx.fail(field, f"not a decimal number: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ctx.fail(field, f"must be a finite amount >= 0: {value!r}")
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > decimals:
        raise ctx.fail(field, f"at most {decimals} decimals allowed: {value!r}")
    if amount >= Decimal(9_000_000):
        raise ctx.fail(field, f"amount too large: {value!r}")
    return amount


def parse_rounding(
    ctx: FieldContext, method: Any, decimals: Any, field: str, most: int = 6
) -> Rounding:
    """A rounding method and its decimals (0..``most``: 6 for costs, which are micro-units;
    up to 9, nano-units, for CGRateS's rounding of increments)."""
    if method not in ROUNDING_METHODS:
        raise ctx.fail(f"{field}_method", f"must be one of {', '.join(ROUNDING_METHODS)}")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= most:
        raise ctx.fail(f"{field}_decimals", f"must be an integer 0..{most}")
    return Rounding(method, decimals)


def parse_time_of_day(ctx: FieldContext, value: Any, field: str) -> int:
    """Seconds after midnight of ``"HH:MM"`` or ``"HH:MM:SS"`` (up to 24:00)."""
    if not isinstance(value, str) or not (m := _TIME.match(value)):
        raise ctx.fail(field, 'expected "HH:MM" or "HH:MM:SS"')
    h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
    seconds = h * 3600 + mi * 60 + s
    if mi > 59 or s > 59 or seconds > 86400:
        raise ctx.fail(field, f"not a time of day: {value!r}")
    return seconds


def parse_timestamp(ctx: FieldContext, value: Any, zone: ZoneInfo, field: str) -> int:
    """UTC microseconds of a TOML or ISO date-time; a naive one is in ``zone``."""
    # TOML datetimes arrive parsed; a local (naive) one is read in the tariff's zone.
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ctx.fail(field, f"not an ISO date-time: {value!r}") from None
    if not isinstance(value, datetime):
        raise ctx.fail(field, "expected a date-time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    delta = value - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    return int((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)
