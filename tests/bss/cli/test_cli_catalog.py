"""``catalog add/price/show/retire`` and business ids (C1, A1, offering ids) in every listing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_runs import run


def ok(ws: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(["-w", str(ws), "--json", *argv], capsys)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.fixture
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "ws"
    ok(root, capsys, "customers", "tax", "DE", "USt 19 %", "0.19")
    ok(root, capsys, "customers", "add", "C100", "Ada Lovelace")
    ok(root, capsys, "customers", "add", "C200", "Grace Hopper")
    ok(root, capsys, "customers", "account", "A100", "C100", "Ada home")
    ok(root, capsys, "customers", "account", "A200", "C200", "Grace office", "--terms", "30")
    return root


def add_mobile(ws: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return ok(ws, capsys, "catalog", "add", "mobile-s", "Mobile S", "--specification", "mobile",
              "--monthly", "9.99", "--one-time", "4.95", "--tariff", "mobile-2026",
              "--discount", "0.10", "--valid-from", "2026-01-01")  # fmt: skip


def test_add_offering_with_prices_and_show_it(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    added = add_mobile(ws, capsys)
    shown = ok(ws, capsys, "catalog", "show", "mobile-s")
    assert added == shown
    assert (shown["id"], shown["name"], shown["lifecycle_status"]) == (
        "mobile-s",
        "Mobile S",
        "active",
    )
    assert shown["specification"] == {"id": "mobile", "name": "mobile", "description": ""}
    assert shown["valid_from"].startswith("2026-01-01T00:00:00")
    assert shown["valid_to"] is None
    prices = {p["id"]: p for p in shown["prices"]}
    assert sorted(prices) == [
        "mobile-s-discount", "mobile-s-monthly", "mobile-s-one-time", "mobile-s-usage"
    ]  # fmt: skip
    monthly = prices["mobile-s-monthly"]
    assert (monthly["price_type"], monthly["amount"], monthly["currency"]) == (
        "recurring", "9.990000", "EUR"
    )  # fmt: skip
    assert (prices["mobile-s-one-time"]["price_type"], prices["mobile-s-one-time"]["amount"]) == (
        "oneTime", "4.950000"
    )  # fmt: skip
    assert prices["mobile-s-usage"]["tariff_id"] == "mobile-2026"
    assert prices["mobile-s-usage"]["currency"] is None
    assert prices["mobile-s-discount"]["name"] == "discount 10 %"
    assert prices["mobile-s-discount"]["percentage"] == "0.100000"
    assert all(p["valid_from"] == shown["valid_from"] for p in shown["prices"])

    code, out, _ = run(["-w", str(ws), "catalog", "show", "mobile-s"], capsys)
    assert code == 0
    for text in ("Mobile S", "9.99 EUR", "4.95 EUR", "mobile-2026", "0.10", "2026-01-01 .. open"):
        assert text in out
    # the offering can be ordered and shows in the catalog list
    listed = ok(ws, capsys, "catalog", "list")
    assert [o["id"] for o in listed["offerings"]] == ["mobile-s"]


def test_add_is_all_or_nothing(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["-w", str(ws), "catalog", "add", "bad", "Bad", "--specification", "s",
                        "--monthly", "9.9999999"], capsys)  # fmt: skip
    assert code == 3
    assert "price bad-monthly of offering bad: amount: 9.9999999 has more than 6 decimals" in err
    code, _, err = run(["-w", str(ws), "catalog", "show", "bad"], capsys)
    assert code == 3
    assert "unknown product offering bad" in err
    # the specification made on the way was rolled back too: a later add creates it named
    added = ok(ws, capsys, "catalog", "add", "good", "Good", "--specification", "s",
               "--specification-name", "Something", "--monthly", "1")  # fmt: skip
    assert added["specification"]["name"] == "Something"


def test_add_refuses_a_bad_currency_and_a_duplicate(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["-w", str(ws), "catalog", "add", "x", "X", "--specification", "s",
                        "--monthly", "5", "--currency", "EURO"], capsys)  # fmt: skip
    assert code == 3
    assert "currency 'EURO' is not an ISO 4217 code" in err
    add_mobile(ws, capsys)
    code, _, err = run(["-w", str(ws), "catalog", "add", "mobile-s", "Again", "--specification",
                        "mobile"], capsys)  # fmt: skip
    assert code == 3
    assert "offering mobile-s exists already" in err


def test_price_versions(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_mobile(ws, capsys)
    # an overlapping price of the same name and type is refused ...
    code, _, err = run(["-w", str(ws), "catalog", "price", "mobile-s", "mobile-s-monthly-2027",
                        "monthly fee", "--type", "recurring", "--amount", "10.99",
                        "--currency", "EUR", "--valid-from", "2027-01-01"], capsys)  # fmt: skip
    assert code == 3
    assert "validity overlaps price mobile-s-monthly" in err
    # ... a price with its own validity is a new version
    shown = ok(ws, capsys, "catalog", "price", "mobile-s", "mobile-s-roaming", "roaming pack",
               "--type", "recurring", "--amount", "2.50", "--currency", "EUR",
               "--valid-from", "2026-06-01", "--valid-to", "2027-01-01")  # fmt: skip
    roaming = next(p for p in shown["prices"] if p["id"] == "mobile-s-roaming")
    assert roaming["valid_to"].startswith("2027-01-01")
    assert roaming["amount"] == "2.500000"


def test_retire_and_illegal_moves(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_mobile(ws, capsys)
    ok(ws, capsys, "orders", "add", "O1", "A100", "--offering", "mobile-s",
       "--service-id", "msisdn:4915100000001", "--start", "2026-03-01")  # fmt: skip
    retired = ok(ws, capsys, "catalog", "retire", "mobile-s", "--reason", "replaced by M")
    assert retired["lifecycle_status"] == "retired"
    code, _, err = run(["-w", str(ws), "catalog", "retire", "mobile-s"], capsys)
    assert code == 3
    assert "offering mobile-s: cannot go from retired to retired" in err
    code, _, err = run(["-w", str(ws), "catalog", "status", "mobile-s", "active"], capsys)
    assert code == 3
    code, _, err = run(["-w", str(ws), "orders", "add", "O2", "A100", "--offering", "mobile-s",
                        "--service-id", "msisdn:4915100000002", "--start", "2026-04-01"],
                       capsys)  # fmt: skip
    assert code == 3
    assert "offering mobile-s is retired, not orderable" in err
    # what was sold keeps running
    products = ok(ws, capsys, "orders", "products")["products"]
    assert [(p["account"], p["offering_id"], p["status"]) for p in products] == [
        ("A100", "mobile-s", "active")
    ]
    code, _, err = run(["-w", str(ws), "catalog", "retire", "nothing"], capsys)
    assert code == 3
    assert "unknown product offering nothing" in err


def test_listings_show_business_ids(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    accounts = ok(ws, capsys, "customers", "list")["accounts"]
    assert [(a["account"], a["customer"]) for a in accounts] == [("A100", "C100"), ("A200", "C200")]
    assert [a["external_id"] for a in accounts] == ["A100", "A200"]  # unchanged keys stay
    code, out, _ = run(["-w", str(ws), "customers", "list"], capsys)
    assert code == 0
    rows = [line for line in out.splitlines() if "A200" in line]
    assert len(rows) == 1
    assert "C200" in rows[0]
    assert "30 d" in rows[0]

    add_mobile(ws, capsys)
    order = ok(ws, capsys, "orders", "add", "O1", "A200", "--offering", "mobile-s",
               "--service-id", "msisdn:4915100000001", "--start", "2026-03-01")  # fmt: skip
    assert (order["account"], order["state"]) == ("A200", "completed")
    code, out, _ = run(["-w", str(ws), "orders", "products"], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if "mobile-s" in line)
    assert "A200" in row
    assert "msisdn:49151" in row  # (rich shortens the column to fit 80 characters)
    products = ok(ws, capsys, "orders", "products", "--account", "A200")["products"]
    assert [(p["product"], p["account"]) for p in products] == [(1, "A200")]

    ticket = ok(ws, capsys, "tickets", "open", "line down", "--severity", "major",
                "--customer", "C200")  # fmt: skip
    assert ticket["customers"] == ["C200"]
    listed = ok(ws, capsys, "tickets", "list")["tickets"]
    assert [t["customers"] for t in listed] == [["C200"]]
    code, out, _ = run(["-w", str(ws), "tickets", "list"], capsys)
    assert code == 0
    assert "C200" in out
    code, _, err = run(["-w", str(ws), "tickets", "open", "x", "--severity", "minor",
                        "--customer", "C999"], capsys)  # fmt: skip
    assert code == 3
    assert "unknown customer C999" in err
