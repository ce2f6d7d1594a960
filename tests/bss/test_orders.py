from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from bss import catalog, customers, orders
from bss.errors import IllegalTransitionError, ValidationError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.fixture
def shop(conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    customers.set_tax_rate(conn, "DE", "VAT", "0.19")
    customers.create_customer(conn, "C1", "Ada")
    customers.create_account(conn, "A1", "C1", "Ada", currency="EUR", tax_jurisdiction="DE")
    catalog.add_specification(conn, "s", "spec")
    catalog.add_offering(conn, "m", "s", "Mobile", valid_from=T0)
    catalog.add_offering(conn, "l", "s", "Large", valid_from=T0)
    catalog.add_offering(conn, "old", "s", "Old", valid_from=T0, lifecycle_status="retired")
    return conn


def test_order_creates_product_bound_to_identifiers(shop: duckdb.DuckDBPyConnection) -> None:
    item = orders.OrderItem(
        "add", offering_id="m", service_ids=("msisdn:4915100000001", "ip:192.0.2.0/28")
    )
    order = orders.create_order(shop, "O1", "A1", [item], requested_start=T1)
    assert order.state == "acknowledged"
    done = orders.process_order(shop, "O1")
    assert done.state == "completed"
    (product,) = orders.list_products(shop, "A1")
    assert product.service_ids == ("ip:192.0.2.0/28", "msisdn:4915100000001")
    assert product.start_date == T1
    states = shop.execute(
        "SELECT to_state FROM state_history WHERE entity = 'product_order' ORDER BY id"
    ).fetchall()
    assert [s[0] for s in states] == ["acknowledged", "inProgress", "completed"]


def test_modify_and_delete(shop: duckdb.DuckDBPyConnection) -> None:
    add = orders.OrderItem("add", offering_id="m", service_ids=("msisdn:4915100000001",))
    orders.create_order(shop, "O1", "A1", [add], requested_start=T1)
    orders.process_order(shop, "O1")
    (first,) = orders.list_products(shop, "A1")
    later = datetime(2026, 4, 1, tzinfo=UTC)
    modify = orders.OrderItem("modify", offering_id="l", product_id=first.id)
    orders.create_order(shop, "O2", "A1", [modify], requested_start=later)
    assert orders.process_order(shop, "O2").state == "completed"
    old, new = orders.list_products(shop, "A1")
    assert (old.status, old.termination_date) == ("terminated", later)
    assert (new.offering_id, new.service_ids, new.start_date) == ("l", first.service_ids, later)
    delete = orders.OrderItem("delete", product_id=new.id)
    orders.create_order(
        shop, "O3", "A1", [delete], requested_start=datetime(2026, 5, 1, tzinfo=UTC)
    )
    orders.process_order(shop, "O3")
    assert orders.get_product(shop, new.id).status == "terminated"


def test_retired_offering_and_bad_ids_are_refused(shop: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ValidationError, match="retired, not orderable"):
        orders.create_order(
            shop, "O1", "A1", [orders.OrderItem("add", offering_id="old")], requested_start=T1
        )
    with pytest.raises(ValidationError, match="MSISDN"):
        orders.create_order(
            shop,
            "O1",
            "A1",
            [orders.OrderItem("add", offering_id="m", service_ids=("msisdn:+49151",))],
            requested_start=T1,
        )
    with pytest.raises(ValidationError, match="host bits set"):
        orders.create_order(
            shop,
            "O1",
            "A1",
            [orders.OrderItem("add", offering_id="m", service_ids=("ip:192.0.2.1/24",))],
            requested_start=T1,
        )
    assert shop.execute("SELECT count(*) FROM product_order").fetchone() == (0,)


def test_identifier_in_use_fails_item(shop: duckdb.DuckDBPyConnection) -> None:
    item = orders.OrderItem("add", offering_id="m", service_ids=("msisdn:4915100000001",))
    orders.create_order(shop, "O1", "A1", [item], requested_start=T1)
    orders.process_order(shop, "O1")
    other = orders.OrderItem("add", offering_id="l", service_ids=("msisdn:4915100000002",))
    orders.create_order(shop, "O2", "A1", [item, other], requested_start=T1)
    assert orders.process_order(shop, "O2").state == "partial"
    assert len(orders.list_products(shop)) == 2


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], "completed"),
        (["rejected"], "inProgress"),
        (["inProgress", "held", "cancelled"], "inProgress"),
        (["pending"], "completed"),
    ],
)
def test_illegal_transitions(
    shop: duckdb.DuckDBPyConnection, path: list[str], illegal: str
) -> None:
    orders.create_order(
        shop, "O1", "A1", [orders.OrderItem("add", offering_id="m")], requested_start=T1
    )
    for state in path:
        orders.transition_order(shop, "O1", state)
    with pytest.raises(IllegalTransitionError):
        orders.transition_order(shop, "O1", illegal)
    assert orders.get_order(shop, "O1").state == (path[-1] if path else "acknowledged")


def test_every_listed_transition_is_allowed(shop: duckdb.DuckDBPyConnection) -> None:
    for n, (source, targets) in enumerate(orders.ORDER_TRANSITIONS.items()):
        for target in targets:
            key = f"O{n}-{target}"
            orders.create_order(
                shop, key, "A1", [orders.OrderItem("add", offering_id="m")], requested_start=T1
            )
            shop.execute("UPDATE product_order SET state = ? WHERE external_id = ?", [source, key])
            assert orders.transition_order(shop, key, target).state == target
