"""Times and windows of the flow queries: ISO 8601, nfdump's ``yyyy/MM/dd.hh:mm:ss``,
datetimes or microseconds since the epoch (UTC unless an offset is given)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bss.errors import ValidationError

__all__ = ["TimeLike", "parse_window", "to_us", "window_of"]

TimeLike = datetime | str | int
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1

#: nfdump's time: ``yyyy/MM/dd[.hh[:mm[:ss]]]``.
_NFDUMP_TIME = re.compile(
    r"^(\d{4})/(\d{1,2})/(\d{1,2})(?:\.(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?)?$"
)


def _nfdump_time(text: str) -> datetime | None:
    m = _NFDUMP_TIME.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in m.groups())
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ValidationError(f"time {text!r}: {exc}") from exc


def to_us(value: TimeLike) -> int:
    """Microseconds since the epoch from an aware/naive (= UTC) datetime, ISO 8601 text,
    nfdump's ``yyyy/MM/dd.hh:mm:ss`` (UTC) or an int."""
    if isinstance(value, bool):
        raise ValidationError(f"time {value!r}: not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        parsed = _nfdump_time(value)
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError as exc:
                raise ValidationError(
                    f"time {value!r}: neither ISO 8601 nor nfdump's yyyy/MM/dd.hh:mm:ss ({exc})"
                ) from exc
        value = parsed
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_window(text: str | None) -> tuple[int, int] | None:
    """``START/END`` (ISO 8601, UTC unless an offset is given; either side may be empty)
    or nfdump's ``yyyy/MM/dd.hh:mm:ss[-yyyy/MM/dd.hh:mm:ss]`` (UTC; no end: open)."""
    if text is None or not text.strip():
        return None
    if re.match(r"^\s*\d{4}/\d", text):
        start_text, _, end_text = text.strip().partition("-")
        start = to_us(start_text)
        end = to_us(end_text) if end_text.strip() else _I64_MAX
        if end <= start:
            raise ValidationError(f"window {text!r}: end must be after start")
        return start, end
    if "/" not in text:
        raise ValidationError(f"window {text!r}: expected START/END, e.g. 2026-10-05/2026-10-06")
    start_text, end_text = text.split("/", 1)
    start = to_us(start_text) if start_text.strip() else _I64_MIN
    end = to_us(end_text) if end_text.strip() else _I64_MAX
    if end <= start:
        raise ValidationError(f"window {text!r}: end must be after start")
    return start, end


def window_of(start: TimeLike | None, end: TimeLike | None) -> tuple[int, int] | None:
    """``(start_us, end_us)`` from optional bounds; None when both are open."""
    if start is None and end is None:
        return None
    lo = _I64_MIN if start is None else to_us(start)
    hi = _I64_MAX if end is None else to_us(end)
    if hi <= lo:
        raise ValidationError(f"window [{start}, {end}): end must be after start")
    return lo, hi
