from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from bss import catalog, customers
from bss.errors import IllegalTransitionError, NotFoundError, ValidationError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def seeded(conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    customers.set_tax_rate(conn, "DE", "VAT", "0.19")
    customers.create_customer(conn, "C1", "Ada")
    catalog.add_specification(conn, "mobile", "Mobile")
    catalog.add_offering(conn, "m", "mobile", "Mobile M", valid_from=T0)
    return conn


def test_account_lifecycle_and_history(seeded: duckdb.DuckDBPyConnection) -> None:
    account = customers.create_account(
        seeded, "A1", "C1", "Ada main", currency="EUR", tax_jurisdiction="DE"
    )
    assert account.status == "active"
    assert customers.set_account_status(seeded, "A1", "suspended").status == "suspended"
    assert customers.set_account_status(seeded, "A1", "active").status == "active"
    customers.set_account_status(seeded, "A1", "closed")
    with pytest.raises(IllegalTransitionError, match="closed to active"):
        customers.set_account_status(seeded, "A1", "active")
    history = seeded.execute(
        "SELECT from_state, to_state FROM state_history WHERE entity = 'billing_account' "
        "ORDER BY id"
    ).fetchall()
    assert history == [
        (None, "active"),
        ("active", "suspended"),
        ("suspended", "active"),
        ("active", "closed"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"currency": "eur", "tax_jurisdiction": "DE"}, "ISO 4217"),
        ({"currency": "EUR", "tax_jurisdiction": "XX"}, "unknown tax jurisdiction"),
    ],
)
def test_bad_accounts_write_nothing(
    seeded: duckdb.DuckDBPyConnection, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        customers.create_account(seeded, "A9", "C1", "x", **kwargs)
    assert seeded.execute("SELECT count(*) FROM billing_account").fetchone() == (0,)


def test_unknown_customer(seeded: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(NotFoundError, match="unknown customer C404"):
        customers.create_account(seeded, "A9", "C404", "x", currency="EUR", tax_jurisdiction="DE")


def test_price_rules(seeded: duckdb.DuckDBPyConnection) -> None:
    catalog.add_price(
        seeded,
        "p1",
        "m",
        "fee",
        "recurring",
        valid_from=T0,
        valid_to=datetime(2026, 7, 1, tzinfo=UTC),
        amount="9.99",
        currency="EUR",
    )
    with pytest.raises(ValidationError, match="overlaps price p1"):
        catalog.add_price(
            seeded,
            "p2",
            "m",
            "fee",
            "recurring",
            valid_from=datetime(2026, 6, 1, tzinfo=UTC),
            amount="8",
            currency="EUR",
        )
    later = catalog.add_price(
        seeded,
        "p3",
        "m",
        "fee",
        "recurring",
        valid_from=datetime(2026, 7, 1, tzinfo=UTC),
        amount="8",
        currency="EUR",
    )
    assert str(later.amount) == "8.000000"
    with pytest.raises(ValidationError, match="needs a currency"):
        catalog.add_price(seeded, "p4", "m", "setup", "oneTime", valid_from=T0, amount="5")
    with pytest.raises(ValidationError, match="more than 6 decimals"):
        catalog.add_price(
            seeded, "p5", "m", "x", "oneTime", valid_from=T0, amount="0.0000001", currency="EUR"
        )
    with pytest.raises(ValidationError, match="needs a tariff_id"):
        catalog.add_price(seeded, "p6", "m", "usage", "usage", valid_from=T0)


def test_offering_lifecycle(seeded: duckdb.DuckDBPyConnection) -> None:
    assert catalog.set_offering_status(seeded, "m", "retired").lifecycle_status == "retired"
    with pytest.raises(IllegalTransitionError):
        catalog.set_offering_status(seeded, "m", "active")
