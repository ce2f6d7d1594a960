"""The values of CGRateS TariffPlan CSV fields, read as CGRateS reads them.

Durations follow Go's ``time.ParseDuration`` (``60s``, ``1m30s``, ``1.5h``, ``100ms``) and a
bare number is nanoseconds (CGRateS's ``ParseDurationWithNanosecs``: ``0``, ``1`` for one
SMS). Lists are separated by ``;``, and ``*any`` or an empty field means any. Amounts are
kept as the exact decimal that was written (CGRateS reads them as binary floats).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from rating_engine.errors import TariffError

__all__ = [
    "ANY",
    "TpField",
    "parse_amount",
    "parse_duration_ns",
    "parse_int_list",
    "parse_text_list",
    "parse_time_of_day",
    "parse_timestamp",
]

#: CGRateS's wildcard.
ANY = "*any"

_UNITS_NS = {
    "ns": Decimal(1),
    "us": Decimal(1_000),
    "µs": Decimal(1_000),
    "μs": Decimal(1_000),
    "ms": Decimal(1_000_000),
    "s": Decimal(1_000_000_000),
    "m": Decimal(60_000_000_000),
    "h": Decimal(3_600_000_000_000),
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})")


class TpField:
    """Where a value comes from: file, line and column, for error messages."""

    def __init__(self, file: str, line: int, field: str) -> None:
        self.file, self.line, self.field = file, line, field

    def fail(self, message: str) -> TariffError:
        """The error naming this file, line and field."""
        return TariffError(f"{message} (file {self.file}, line {self.line}, field {self.field})")


def parse_duration_ns(text: str, where: TpField) -> int:
    """Nanoseconds of a CGRateS duration; a bare number is nanoseconds, empty is 0."""
    s = text.strip()
    if s in ("", "0"):
        return 0
    if _NUMBER.fullmatch(s):
        value = Decimal(s)
    else:
        pos = 0
        value = Decimal(0)
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            value += Decimal(m[1]) * _UNITS_NS[m[2]]
            pos = m.end()
        if pos != len(s) or pos == 0:
            raise where.fail(f"not a duration: {text!r} (e.g. 60s, 1m, 1h30m, 100ms, 0)")
    if value < 0:
        raise where.fail(f"a negative duration: {text!r}")
    if value != value.to_integral_value():
        raise where.fail(f"a duration finer than a nanosecond: {text!r}")
    return int(value)


def parse_amount(text: str, where: TpField) -> Decimal:
    """An amount >= 0 as written (empty is 0, as CGRateS reads an empty number)."""
    s = text.strip()
    if s == "":
        return Decimal(0)
    if not _NUMBER.fullmatch(s):
        raise where.fail(f"not a number: {text!r}")
    try:
        value = Decimal(s)
    except InvalidOperation:
        raise where.fail(f"not a number: {text!r}") from None
    if value < 0:
        raise where.fail(f"a negative amount: {text!r}")
    return value


def parse_text_list(text: str) -> tuple[str, ...]:
    """A ``;`` list of texts; ``*any`` or empty is the empty tuple (any)."""
    s = text.strip()
    if s in ("", ANY):
        return ()
    return tuple(p.strip() for p in s.split(";") if p.strip())


def parse_int_list(text: str, lo: int, hi: int, where: TpField) -> tuple[int, ...]:
    """A ``;`` list of integers lo..hi; ``*any`` or empty is the empty tuple (any)."""
    out = []
    for part in parse_text_list(text):
        if not part.isdigit() or not lo <= int(part) <= hi:
            raise where.fail(f"expected integers {lo}..{hi} separated by ';': {text!r}")
        out.append(int(part))
    return tuple(out)


def parse_time_of_day(text: str, where: TpField) -> int:
    """Seconds after midnight of ``HH:MM:SS`` (empty or ``*any``: midnight)."""
    s = text.strip()
    if s in ("", ANY):
        return 0
    m = _CLOCK.fullmatch(s)
    if not m or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3]) > 59:
        raise where.fail(f"expected a time of day HH:MM:SS: {text!r}")
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])


def parse_timestamp(text: str, zone: ZoneInfo, where: TpField) -> datetime:
    """An activation time as CGRateS reads one: RFC 3339, ``YYYY-MM-DD HH:MM:SS`` or
    ``YYYY-MM-DDTHH:MM:SS`` in ``zone``, or Unix seconds; empty is the beginning of time."""
    s = text.strip()
    if s == "":
        return datetime(1970, 1, 1, tzinfo=UTC)
    if s.isdigit():
        return datetime.fromtimestamp(int(s), tz=UTC)
    try:
        value = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise where.fail(f"not a time (RFC 3339, e.g. 2014-01-14T00:00:00Z): {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)
