from __future__ import annotations

import duckdb
import pytest
from package_data import DEMO

from bss.errors import ValidationError
from bss.orders import list_products
from bss.seed import apply_seed, load_seed_file

DEMO = DEMO / "bss.toml"


def test_demo_seed_applies_once(conn: duckdb.DuckDBPyConnection) -> None:
    data = load_seed_file(DEMO)
    first = apply_seed(conn, data, str(DEMO))
    assert first.created["customer"] == 3
    assert first.created["order"] == 3
    second = apply_seed(conn, data, str(DEMO))
    assert "customer" not in second.created
    assert second.existing["order"] == 3
    products = list_products(conn)
    assert len(products) == 6
    assert any("ip:2001:db8:100::/48" in p.service_ids for p in products)


def test_a_bad_seed_writes_nothing(conn: duckdb.DuckDBPyConnection) -> None:
    data = load_seed_file(DEMO)
    data["order"][-1]["item"][0]["offering"] = "mobile-legacy"  # retired
    with pytest.raises(ValidationError, match=r"O-1003.*retired"):
        apply_seed(conn, data, "demo")
    assert conn.execute("SELECT count(*) FROM customer").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM product_offering").fetchone() == (0,)
