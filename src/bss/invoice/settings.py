"""The workspace's invoice settings: who sells (printed on every invoice) and how it rounds.

Settings come in versions (table ``invoice_settings``, one row per ``valid_from``): the
version in force on a bill's date - the latest ``valid_from`` on or before it - is the
seller printed on that bill and the rounding policy its billing run used, so a change
(a new address, another rounding mode) never alters an issued bill. They are loaded from
the ``[invoice]`` table of the business data file (``rating-engine load``,
docs/business-data.md); a workspace without them bills with the default policy and prints
no seller block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time

import duckdb

from bss.errors import ValidationError
from bss.invoice.rounding import DEFAULT_POLICY, RoundingPolicy

__all__ = ["InvoiceSettings", "policy_on", "put_settings", "settings_on"]

_COLUMNS = ("valid_from", "seller_name", "seller_address", "seller_vat_id", "seller_email",
            "payment_details", "rounding", "tax_basis")  # fmt: skip


@dataclass(frozen=True)
class InvoiceSettings:
    """One version of the invoice settings (``rounding`` is the policy's mode)."""

    valid_from: datetime
    seller_name: str
    seller_address: str = ""
    seller_vat_id: str = ""
    seller_email: str = ""
    payment_details: str = ""
    rounding: str = "half-even"
    tax_basis: str = "rate-group"

    def __post_init__(self) -> None:
        if not self.seller_name.strip():
            raise ValidationError("invoice settings: seller_name is empty")
        self.policy()  # refuses an unknown mode or basis

    def policy(self) -> RoundingPolicy:
        return RoundingPolicy(self.rounding, self.tax_basis)


def _instant(day: date | datetime) -> datetime:
    if isinstance(day, datetime):
        return day if day.tzinfo else day.replace(tzinfo=UTC)
    return datetime.combine(day, time(23, 59, 59, 999999), tzinfo=UTC)


def settings_on(conn: duckdb.DuckDBPyConnection, day: date | datetime) -> InvoiceSettings | None:
    """The version in force on ``day`` (a date: at its end, UTC); None before the first."""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM invoice_settings WHERE valid_from <= ? "
        "ORDER BY valid_from DESC LIMIT 1",
        [_instant(day)],
    ).fetchall()  # not fetchone: DuckDB 2 refuses a conn.sql after an unfinished result
    if not rows:
        return None
    (row,) = rows
    values = dict(zip(_COLUMNS, row, strict=True))
    values["valid_from"] = values["valid_from"].astimezone(UTC)
    return InvoiceSettings(**values)


def policy_on(conn: duckdb.DuckDBPyConnection, day: date | datetime) -> RoundingPolicy:
    """The rounding policy in force on ``day`` (the default without settings)."""
    found = settings_on(conn, day)
    return DEFAULT_POLICY if found is None else found.policy()


def put_settings(conn: duckdb.DuckDBPyConnection, settings: InvoiceSettings) -> bool:
    """Add a version; True if added, False if the same version exists already. A version
    with the same ``valid_from`` and other values is refused (issued bills rest on it:
    a change is a new version from a later date), and so is a new version from on or
    before the latest bill's date (it would change invoices already issued)."""
    found = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM invoice_settings WHERE valid_from = ?",
        [settings.valid_from],
    ).fetchall()  # (valid_from is the key: one row at most)
    have = found[0] if found else None
    want = asdict(settings)
    if have is not None:
        stored = dict(zip(_COLUMNS, have, strict=True))
        diff = [f"{k}: {stored[k]!r} in the workspace, {want[k]!r} in the file"
                for k in _COLUMNS[1:] if stored[k] != want[k]]  # fmt: skip
        if diff:
            raise ValidationError(
                f"invoice settings valid from {settings.valid_from.isoformat()} differ: "
                + "; ".join(diff)
                + " (a change is a new version: give it a later valid_from)"
            )
        return False
    issued = conn.execute("SELECT max(bill_date) FROM bill").fetchall()[0][0]
    if issued is not None and settings.valid_from <= _instant(issued):
        raise ValidationError(
            f"invoice settings valid from {settings.valid_from.isoformat()}: bills up to "
            f"{issued.isoformat()} were issued under the settings then in force; a new "
            f"version must start after {issued.isoformat()}"
        )
    conn.execute(
        f"INSERT INTO invoice_settings ({', '.join(_COLUMNS)}) VALUES "
        f"({', '.join('?' for _ in _COLUMNS)})",
        [want[k] for k in _COLUMNS],
    )
    return True
