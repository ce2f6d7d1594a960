"""Invoice settings versions never reach back over issued bills (review finding 2 of
issue #23): a version from on or before the latest bill's date is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from bss.errors import ValidationError
from bss.invoice.settings import InvoiceSettings, put_settings, settings_on


def test_a_settings_version_cannot_start_on_or_before_an_issued_bill(
    billed: duckdb.DuckDBPyConnection,
) -> None:
    (issued,) = billed.execute("SELECT max(bill_date) FROM bill").fetchall()[0]
    start = datetime.combine(issued, datetime.min.time(), UTC)
    for valid_from in (datetime(1970, 1, 1, tzinfo=UTC), start, start + timedelta(hours=23)):
        with pytest.raises(ValidationError, match=f"bills up to {issued.isoformat()}"):
            put_settings(billed, InvoiceSettings(valid_from, "Other SA", rounding="half-up"))
    assert settings_on(billed, issued) is None  # the issued bills keep what they had
    later = InvoiceSettings(start + timedelta(days=1), "Other SA", rounding="half-up")
    assert put_settings(billed, later) is True
    assert put_settings(billed, later) is False  # loading the same version again is fine
    assert settings_on(billed, issued) is None
