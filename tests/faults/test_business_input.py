"""``load`` never reports success while discarding a change; bad values are refused naming
file, entry and field; commands given a bad period say so; errors under ``--json`` are one
JSON object."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_cli import DEMO, PERIOD, cli, last_json, no_traceback

MONTHLY = """  [[offering.price]]
  id = "mobile-business-m-monthly"
  name = "monthly fee"
  type = "recurring"
  amount = "19.99"
  currency = "EUR"
"""


def _seed(path: Path, old: str, new: str, count: int = 1) -> Path:
    text = (DEMO / "bss.toml").read_text()
    assert text.count(old) >= count, old
    path.write_text(text.replace(old, new, count))
    return path


def _price(ws: Path, price_id: str) -> dict[str, object]:
    prices = last_json(cli(ws, "--json", "catalog", "list"))["prices"]
    return next(p for p in prices if p["id"] == price_id)


def test_a_changed_price_is_refused_with_the_difference(
    billed: tuple[Path, str], copy_of: Callable[[Path], Path], tmp_path: Path
) -> None:
    ws = copy_of(billed[0])
    seed = _seed(tmp_path / "dearer.toml", 'amount = "19.99"', 'amount = "29.99"')
    run = cli(ws, "load", str(seed))
    no_traceback(run)
    assert run.returncode == 3
    assert "offering[0].price[0] (price mobile-business-m-monthly)" in run.stderr
    assert "amount: 19.99 in the workspace, 29.99 in the file" in run.stderr
    assert "nothing was loaded" in run.stderr
    assert _price(ws, "mobile-business-m-monthly")["amount"] == "19.990000"
    same = cli(ws, "--json", "load", str(DEMO / "bss.toml"))  # the unchanged file: no-op
    assert same.returncode == 0
    assert last_json(same)["created"] == {}


def test_a_price_version_from_a_date_leaves_issued_bills_alone(
    billed: tuple[Path, str], copy_of: Callable[[Path], Path], tmp_path: Path
) -> None:
    ws, reference = copy_of(billed[0]), billed[1]
    versioned = (
        MONTHLY
        + '  valid_to = "{d}"\n'
        + MONTHLY.replace('"mobile-business-m-monthly"', '"mobile-business-m-monthly-v2"').replace(
            '"19.99"', '"29.99"'
        )
        + '  valid_from = "{d}"\n'
    )
    early = _seed(tmp_path / "early.toml", MONTHLY, versioned.format(d="2026-10-15T00:00:00Z"))
    refused = cli(ws, "load", str(early))
    assert refused.returncode == 3
    assert "bills up to 2026-11-01" in refused.stderr  # October is billed at 19.99
    later = _seed(tmp_path / "later.toml", MONTHLY, versioned.format(d="2026-11-01T00:00:00Z"))
    done = cli(ws, "--json", "load", str(later))
    assert done.returncode == 0, done.stderr
    summary = last_json(done)
    assert summary["updated"] == {"price": 1}
    assert summary["created"] == {"price": 1}
    assert _price(ws, "mobile-business-m-monthly")["valid_to"].startswith("2026-11-01")
    assert _price(ws, "mobile-business-m-monthly-v2")["amount"] == "29.990000"
    again = cli(ws, "--json", "load", str(later))  # loading it twice changes nothing more
    assert last_json(again)["updated"] == {}
    shown = last_json(cli(ws, "--json", "bill", "--period", PERIOD))
    assert shown["bills_sha256"] == reference  # the issued bills are as they were
    assert shown["changed"] is False


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('amount = "19.99"', 'amount = "12345678901234567890"', "amount"),
        ('amount = "19.99"', 'amount = "1.1234567"', "amount"),
        ('amount = "19.99"', "amount = 19.99", "amount"),
        ('currency = "EUR"', 'currency = "EUROS"', "currency"),
        ('currency = "EUR"', 'currency = "eur"', "currency"),
        ('rate = "0.19"', 'rate = "nineteen"', "rate"),
        ("payment_terms_days = 30", "payment_terms_days = 9999", "payment_terms_days"),
        ('name = "Mobile Business M"', "name = 5", "name"),
        ('requested_start = "2026-09-01T00:00:00+00:00"', 'requested_start = "soon"', "soon"),
    ],
)
def test_bad_values_are_refused_naming_file_entry_and_field(
    tmp_path: Path, old: str, new: str, where: str
) -> None:
    seed = _seed(tmp_path / "bad.toml", old, new)
    run = cli(tmp_path / "ws", "--json", "load", str(seed))
    no_traceback(run)
    assert run.returncode == 3, run.stdout + run.stderr
    message = last_json(run)["error"]["message"]
    assert message.startswith(f"{seed}: "), message
    assert re.search(r"(tax_rate|offering|customer|order)\[\d+\]", message), message
    assert where in message
    listed = cli(tmp_path / "ws", "--json", "customers", "list")
    assert last_json(listed)["accounts"] == []  # all or nothing


@pytest.mark.parametrize(
    "args",
    [
        ("bills", "show", "2026-13"),
        ("bills", "show", "garbage"),
        ("bills", "export", "garbage", "{tmp}/out"),
        ("bills", "show", "2026-09"),
        ("bills", "show", PERIOD, "--bill-no", "B000000-000000"),
    ],
)
def test_bills_commands_refuse_what_they_cannot_show(
    billed: tuple[Path, str], tmp_path: Path, args: tuple[str, ...]
) -> None:
    run = cli(billed[0], *(a.replace("{tmp}", str(tmp_path)) for a in args))
    no_traceback(run)
    assert run.returncode == 3, run.stdout + run.stderr
    assert run.stdout == ""
    assert run.stderr.startswith("error: ")
    assert not (tmp_path / "out").exists()  # nothing exported


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("bill", "--no-such-option"), 2),
        (("bill",), 2),
        (("bills", "show", "2026-13"), 3),
        (("bill", "--period", "2099-01"), 5),
    ],
)
def test_errors_under_json_are_one_object(tmp_path: Path, args: tuple[str, ...], code: int) -> None:
    run = cli(tmp_path / "ws", "--json", *args)
    assert run.returncode == code
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, run.stdout
    error = json.loads(lines[0])["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in run.stderr
