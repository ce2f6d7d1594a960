from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bss.billing.period import parse_period
from bss.errors import ValidationError


def test_month_bounds_and_days() -> None:
    p = parse_period("2026-02")
    assert (p.start, p.end, p.days) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
        28,
    )
    assert parse_period("2028-02").days == 29
    dec = parse_period("2026-12")
    assert dec.end == datetime(2027, 1, 1, tzinfo=UTC)
    assert dec.bill_date == date(2027, 1, 1)
    assert p.end_us() - p.start_us() == 28 * 86_400 * 1_000_000


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-01", "2026/01", ""])
def test_bad_periods(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_period(text)
