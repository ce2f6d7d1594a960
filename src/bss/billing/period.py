"""Billing periods: calendar months in UTC, named ``YYYY-MM``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from bss.errors import ValidationError

__all__ = ["Period", "parse_period"]


@dataclass(frozen=True)
class Period:
    """A half-open interval ``[start, end)`` of whole UTC days."""

    name: str
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def bill_date(self) -> date:
        """Bills are dated the first day after the period."""
        return self.end.date()

    def start_us(self) -> int:
        return int(self.start.timestamp()) * 1_000_000

    def end_us(self) -> int:
        return int(self.end.timestamp()) * 1_000_000


def parse_period(text: str) -> Period:
    """``'2026-10'`` -> the month of October 2026, UTC."""
    if not re.fullmatch(r"\d{4}-\d{2}", text):
        raise ValidationError(f"period {text!r} is not YYYY-MM")
    year, month = int(text[:4]), int(text[5:])
    if not 1 <= month <= 12:
        raise ValidationError(f"period {text!r}: month {month} out of range")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return Period(text, start, end)
