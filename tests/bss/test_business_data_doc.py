"""docs/business-data.md: its full example loads into a fresh workspace, uses every field
the page documents, and the page documents every key the loader (bss/seed.py) reads."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bss.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "business-data.md"
SEED = ROOT / "src" / "bss" / "seed.py"


def _example() -> str:
    blocks = re.findall(r"^```toml\n(.*?)^```$", DOC.read_text(), re.S | re.M)
    assert len(blocks) == 1, "the page has one ```toml block: the full example"
    return str(blocks[0])


def _documented() -> dict[str, set[str]]:
    """Entity path (``offering.price``) -> the fields its table lists."""
    fields: dict[str, set[str]] = {}
    entity = None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^#+ `\[\[([\w.]+)\]\]`", line)
        if heading:
            entity = heading.group(1)
            fields[entity] = set()
        elif line.startswith("## "):
            entity = None
        elif entity and (row := re.match(r"^\| `(\w+)` \|", line)):
            fields[entity].add(row.group(1))
    return fields


def _entries(data: dict[str, Any], path: str) -> list[dict[str, Any]]:
    top, _, sub = path.partition(".")
    found = data.get(top, [])
    return [child for entry in found for child in entry.get(sub, [])] if sub else found


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    assert done.value.code in (0, None), err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_example_uses_every_documented_field() -> None:
    data = tomllib.loads(_example())
    documented = _documented()
    assert set(documented) == {"invoice", "tax_rate", "specification", "offering",
                               "offering.price", "customer", "customer.account", "order",
                               "order.item"}  # fmt: skip
    for entity, names in documented.items():
        used = {key for entry in _entries(data, entity) for key in entry}
        assert names <= used, f"{entity}: documented, not in the example: {names - used}"
        children = {k for k in used if k in ("price", "account", "item")}
        assert used - children <= names, f"{entity}: in the example, not documented"


def test_every_key_the_loader_reads_is_documented() -> None:
    source = SEED.read_text()
    read = set(re.findall(r'(?:_text|_money|_int)\(\w+, "(\w+)"', source))
    read |= set(re.findall(r'\b(?:tax|spec|off|price|cust|acct|order|item)\["(\w+)"\]', source))
    read |= set(re.findall(r'\b(?:tax|spec|off|price|cust|acct|order|item)\.get\("(\w+)"', source))
    assert len(read) > 20, "the patterns above no longer find the loader's keys"
    documented = set().union(*_documented().values()) | {"price", "account", "item"}
    assert read <= documented, f"read by bss/seed.py, missing from the page: {read - documented}"


def test_example_loads_into_a_fresh_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "business.toml"
    file.write_text(_example())
    ws = ["-w", str(tmp_path / "ws"), "--json"]
    first = run([*ws, "load", str(file)], capsys)
    assert first["created"] == {"invoice": 1, "tax_rate": 2, "offering": 5, "price": 9,
                                "customer": 2, "account": 3, "order": 5}  # fmt: skip
    again = run([*ws, "load", str(file)], capsys)
    assert again["created"] == {}
    assert again["updated"] == {}
    assert again["existing"]["order"] == 5

    accounts = run([*ws, "customers", "list"], capsys)["accounts"]
    assert [(a["account"], a["customer"], a["payment_terms_days"]) for a in accounts] == [
        ("A100", "C100", 30), ("A101", "C100", 14), ("A200", "C200", 14)
    ]  # fmt: skip
    products = run([*ws, "orders", "products"], capsys)["products"]
    assert [(p["product"], p["account"], p["offering_id"], p["status"]) for p in products] == [
        (1, "A100", "mobile-s", "terminated"),
        (2, "A100", "fiber-100-startup", "active"),
        (3, "A101", "mobile-s", "terminated"),
        (4, "A100", "mobile-m", "active"),
    ]
    assert products[3]["service_ids"] == ["msisdn:4915110000001"]  # modify kept the MSISDN
    assert products[1]["service_ids"] == ["ip:198.51.100.0/28", "ip:2001:db8:100::/48"]

    mobile_s = run([*ws, "catalog", "show", "mobile-s"], capsys)
    monthly = {p["id"]: (p["amount"], p["valid_to"]) for p in mobile_s["prices"]}
    assert monthly["mobile-s-monthly"][0] == "9.990000"
    assert monthly["mobile-s-monthly"][1].startswith("2026-10-01T00:00:00")
    assert monthly["mobile-s-monthly-2026-10"] == ("10.990000", None)
    assert run([*ws, "catalog", "show", "mobile-5g"], capsys)["lifecycle_status"] == "inDesign"

    waiting = run([*ws, "orders", "transition", "O-1005", "completed"], capsys)
    assert (waiting["account"], waiting["state"]) == ("A200", "completed")
