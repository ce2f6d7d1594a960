"""Humanised quantities (data in the tariff's multiples, h:mm:ss, SMS) and the versioned
invoice settings (seller, rounding policy) with the policy a billing run uses."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from package_data import DEMO

from bss.billing.export import bills_for_period
from bss.billing.run import run_billing
from bss.cli.main import main
from bss.errors import ValidationError
from bss.invoice.rounding import DEFAULT_POLICY, RoundingPolicy
from bss.invoice.settings import InvoiceSettings, policy_on, put_settings, settings_on
from bss.invoice.units import (
    BINARY,
    DECIMAL,
    data_base,
    duration_text,
    quantity_text,
    volume_text,
)
from bss.seed import apply_seed, load_seed_file
from collectors.workspace import WorkspacePaths
from rating_engine.tariff.load import load_tariff_file


def test_volumes_in_the_tariffs_multiples() -> None:
    assert volume_text(188_512_256, BINARY) == "179.78 MiB"
    assert volume_text(188_512_256, DECIMAL) == "188.51 MB"
    assert volume_text(1023, BINARY) == "1023 B"
    assert volume_text(5 * 1024**3, BINARY) == "5.00 GiB"
    assert volume_text(2_500_000_000, DECIMAL) == "2.50 GB"
    # per MiB in 1 KiB blocks (the demo's tariffs): binary
    assert data_base(load_tariff_file(DEMO / "tariffs" / "fiber-2026.toml")) == BINARY
    assert data_base(None) == DECIMAL


def test_durations_and_other_units() -> None:
    assert duration_text(5852) == "1:37:32"
    assert duration_text(59) == "0:00:59"
    assert duration_text(90_061) == "25:01:01"  # hours do not wrap at a day
    assert quantity_text(20, "event") == "20 SMS"
    assert quantity_text(31, "day") == "31 days"
    assert quantity_text(1, "day") == "1 day"
    assert quantity_text(12, "records") == "12 records"
    assert quantity_text(1, "") == ""


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**7))
def test_duration_text_reads_back(seconds: int) -> None:
    hours, minutes, secs = (int(x) for x in duration_text(seconds).split(":"))
    assert 0 <= minutes < 60
    assert 0 <= secs < 60
    assert hours * 3600 + minutes * 60 + secs == seconds


def _seller(day: str, **extra: str) -> InvoiceSettings:
    return InvoiceSettings(datetime.fromisoformat(day).replace(tzinfo=UTC), "Seller AG", **extra)


def test_settings_versions(conn: duckdb.DuckDBPyConnection) -> None:
    assert settings_on(conn, date(2026, 11, 1)) is None
    assert policy_on(conn, date(2026, 11, 1)) == DEFAULT_POLICY
    assert put_settings(conn, _seller("2026-01-01")) is True
    assert put_settings(conn, _seller("2026-01-01")) is False  # the same version again
    with pytest.raises(ValidationError, match="seller_address"):
        put_settings(conn, _seller("2026-01-01", seller_address="elsewhere"))
    put_settings(conn, _seller("2026-11-01", rounding="half-up", tax_basis="line"))
    assert policy_on(conn, date(2026, 10, 31)) == DEFAULT_POLICY
    # a version from a date applies to bills of that date
    assert policy_on(conn, date(2026, 11, 1)) == RoundingPolicy("half-up", "line")
    with pytest.raises(ValidationError, match="rounding"):
        _seller("2026-12-01", rounding="bankers")
    with pytest.raises(ValidationError, match="seller_name"):
        InvoiceSettings(datetime(2026, 1, 1, tzinfo=UTC), " ")


def test_the_billing_run_rounds_by_the_settings_in_force(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths
) -> None:
    """A fee of 0.125 EUR a month: half-up (the settings from the bill date) gives 0.13
    where the default half-even gives 0.12; the tax is on the rounded line."""
    shutil.copytree(DEMO / "tariffs", workspace.tariffs, dirs_exist_ok=True)
    seed = load_seed_file(DEMO / "bss.toml")
    seed["offering"].append({
        "id": "token", "specification": "mobile", "name": "Token", "valid_from": "2026-01-01",
        "price": [{"id": "token-monthly", "name": "monthly fee", "type": "recurring",
                   "amount": "0.125", "currency": "EUR"}],
    })  # fmt: skip
    seed["order"].append({"id": "O-9", "account": "A002", "requested_start": "2026-09-01",
                          "item": [{"offering": "token", "service_ids": []}]})  # fmt: skip
    apply_seed(conn, seed, "test")
    put_settings(conn, _seller("2026-11-01", rounding="half-up"))
    run_billing(conn, workspace, "2026-10", now=datetime(2026, 12, 15, tzinfo=UTC), export=False)
    (bill,) = [b for b in bills_for_period(conn, "2026-10") if b["account"] == "A002"]
    (line,) = [ln for ln in bill["lines"] if ln["description"] == "Token: monthly fee"]
    assert (line["amount_exact"], line["amount"]) == ("0.125000", "0.130000")
    excl = sum(Decimal(ln["amount"]) for ln in bill["lines"])
    assert Decimal(bill["amount_excl_tax"]) == excl
    assert Decimal(bill["tax_amount"]) == (excl * Decimal("0.19")).quantize(
        Decimal("0.01"), ROUND_HALF_UP
    )


def test_account_address_and_vat_id_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = ["-w", str(tmp_path / "ws"), "--json"]
    for argv in (["customers", "tax", "FR", "TVA 20 %", "0.20"], ["customers", "add", "C1", "Ada"],
                 ["customers", "account", "A1", "C1", "Ada SARL", "--tax", "FR",
                  "--address", "1 rue X\\n75001 Paris", "--vat-id", "FR40123456789"]):  # fmt: skip
        with pytest.raises(SystemExit) as done:
            main([*ws, *argv])
        assert (done.value.code or 0) == 0
    account = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (account["address"], account["vat_id"]) == ("1 rue X\n75001 Paris", "FR40123456789")
