"""A billing run never stops on one account, and a billed period bills what was missing.

An account whose bill cannot be made is set aside with the reason while the others are
billed exactly as they would be without it; running the period again after the fix
bills that account alone, on a supplementary bill, and leaves the issued bills as they
are; accounts and products that appear after a period was billed are billed for it the
same way; a run killed in the middle gives the same result when run again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from billing_workspaces import add_accounts, synthetic_usage, synthetic_workspace

from bss.billing.export import bills_for_period, sha256_of
from bss.billing.run import BillingRunResult, run_billing
from bss.db import connect
from collectors.dataset import write_partitioned
from collectors.workspace import WorkspacePaths

NOW = datetime(2027, 3, 1, tzinfo=UTC)
BAD = 5  # the account set aside
CLI = [sys.executable, "-c", "from bss.cli.main import main; main()"]


def _sql(ws: WorkspacePaths, *statements: str) -> list[tuple]:
    conn = connect(ws)
    try:
        rows: list[tuple] = []
        for statement in statements:
            rows = conn.execute(statement).fetchall()
        return rows
    finally:
        conn.close()


def _bill(ws: WorkspacePaths, period: str = "2026-10", **kw: object) -> BillingRunResult:
    conn = connect(ws)
    try:
        return run_billing(conn, ws, period, now=NOW, export=False, **kw)  # type: ignore[arg-type]
    finally:
        conn.close()


def _bills(ws: WorkspacePaths, period: str = "2026-10") -> list[dict]:
    conn = connect(ws)
    try:
        return bills_for_period(conn, period)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_workspace(tmp_path_factory.mktemp("exc") / "ws", accounts=12,
                               records=1500).root  # fmt: skip


@pytest.fixture
def copy_of(tmp_path: Path, template: Path) -> Callable[[str], WorkspacePaths]:
    def make(label: str) -> WorkspacePaths:
        shutil.copytree(template, tmp_path / label)
        return WorkspacePaths(tmp_path / label)

    return make


def _move_to(ws: WorkspacePaths, account: int, offering: str) -> None:
    """Account ``account``'s subscription, now on ``offering`` (a new product; DuckDB will
    not update a row other rows reference)."""
    _sql(
        ws,
        f"DELETE FROM service_identifier WHERE product_id = {account}",
        f"DELETE FROM product WHERE id = {account}",
        "INSERT INTO product (id, account_id, offering_id, status, start_date) VALUES "
        f"({900 + account}, {account}, '{offering}', 'active', TIMESTAMPTZ '2026-09-01')",
        f"INSERT INTO service_identifier VALUES ({900 + account}, 'msisdn', "
        f"'{4915000000000 + account}', TIMESTAMPTZ '2026-09-01', NULL)",
    )


def _usd(ws: WorkspacePaths, account: int = BAD) -> None:
    """The operator's mistake: the account bills in USD, its product is priced in EUR."""
    _sql(ws, f"UPDATE billing_account SET currency = 'USD' WHERE id = {account}")


def test_one_account_set_aside_the_others_billed_as_without_it(copy_of: Callable) -> None:
    bad, without = copy_of("bad"), copy_of("without")
    _usd(bad)
    # the reference: the same workspace without the account's product
    _sql(without, f"DELETE FROM service_identifier WHERE product_id = {BAD}",
         f"DELETE FROM product WHERE id = {BAD}")  # fmt: skip
    result = _bill(bad)
    reference = _bill(without)
    assert result.bills_sha256 == reference.bills_sha256
    assert result.accounts == reference.accounts == 11
    assert {e["account_id"] for e in result.exceptions} == {BAD}
    # set aside before rating: its usage is not rated for this pass at all
    assert result.exceptions_by_reason == {"currency_mismatch": 1}
    assert "price" in result.exceptions[0]["message"]
    assert result.pass_no == 1
    assert not result.supplementary
    # its usage is left unbilled, for the pass that bills it
    assert _sql(bad, f"SELECT count(*) FROM billed_usage WHERE account_id = {BAD}") == [(0,)]
    assert _sql(bad, "SELECT account_id, reason FROM billing_exception") == [
        (BAD, "currency_mismatch")
    ]


def test_usage_in_another_currency_found_after_rating(copy_of: Callable) -> None:
    """An account with only usage prices: its mismatch shows once its usage is rated, and
    its records are taken out of the run's rated parts (they stay unbilled)."""
    ws, without = copy_of("ws"), copy_of("without")
    _sql(
        ws,
        "INSERT INTO product_offering VALUES ('usage-only', 'mobile', 'Usage only', "
        "'active', TIMESTAMPTZ '2026-01-01', NULL)",
        "INSERT INTO product_offering_price (id, offering_id, name, price_type, tariff_id, "
        "valid_from) VALUES ('usage-only-u', 'usage-only', 'usage', 'usage', 'mobile-2026', "
        "TIMESTAMPTZ '2026-01-01')",
    )
    _move_to(ws, 9, "usage-only")
    _usd(ws, 9)
    _sql(without, "DELETE FROM service_identifier WHERE product_id = 9",
         "DELETE FROM product WHERE id = 9")  # fmt: skip
    result = _bill(ws, chunk_rows=200, buckets=2)
    reference = _bill(without)
    assert result.exceptions_by_reason == {"usage_currency_mismatch": 1}
    assert "rated in EUR, account 9 bills in USD" in result.exceptions[0]["message"]
    assert result.bills_sha256 == reference.bills_sha256
    assert result.rated == reference.rated  # its records are not counted as billed either
    assert _sql(ws, "SELECT count(*) FROM billed_usage WHERE account_id = 9") == [(0,)]
    assert _sql(ws, "SELECT count(*) FROM billed_usage") == _sql(
        without, "SELECT count(*) FROM billed_usage"
    )


def test_the_rerun_after_the_fix_bills_the_last_one(copy_of: Callable) -> None:
    ws, clean = copy_of("ws"), copy_of("clean")
    _usd(ws)
    first = _bill(ws)
    issued = _bills(ws)
    _sql(ws, f"UPDATE billing_account SET currency = 'EUR' WHERE id = {BAD}")
    second = _bill(ws)
    assert (second.pass_no, second.supplementary, second.new_bills) == (2, True, 1)
    assert not second.exceptions
    after = _bills(ws)
    # issued bills untouched: the same bytes for them
    assert sha256_of([b for b in after if b["account_id"] != BAD]) == first.bills_sha256
    assert [b for b in after if b["account_id"] != BAD] == issued
    # the last one is what a run without the mistake gives it, marked supplementary
    (late,) = [b for b in after if b["account_id"] == BAD]
    _bill(clean)
    (normal,) = [b for b in _bills(clean) if b["account_id"] == BAD]
    assert late.pop("kind") == "supplementary"
    assert late == normal
    # all its usage billed now, once; and then nothing is missing
    assert _sql(ws, f"SELECT count(*) FROM billed_usage WHERE account_id = {BAD}") == _sql(
        clean, f"SELECT count(*) FROM billed_usage WHERE account_id = {BAD}"
    )
    third = _bill(ws)
    assert (third.changed, third.pass_no, third.bills_sha256) == (False, 0, second.bills_sha256)


def test_accounts_and_products_added_after_billing(copy_of: Callable) -> None:
    ws = copy_of("ws")
    first = _bill(ws)
    issued = _bills(ws)
    conn = connect(ws)
    try:
        add_accounts(conn, 99, 1)  # a new account, subscribed since September
        conn.execute(
            "INSERT INTO product (id, account_id, offering_id, status, start_date) "
            "VALUES (500, 3, 'mobile-business-m', 'active', TIMESTAMPTZ '2026-10-20')"
        )
        conn.execute(
            "INSERT INTO service_identifier VALUES (500, 'msisdn', '4915000000500', "
            "TIMESTAMPTZ '2026-10-20', NULL)"
        )
    finally:
        conn.close()
    usage = synthetic_usage(1, 40, seed=3, first_id=10**6)
    keys = pa.array(["4915000000099"] * 20 + ["4915000000500"] * 20)
    usage = usage.set_column(usage.schema.get_field_index("subscriber_key"), "subscriber_key", keys)
    write_partitioned(usage, ws.usage, time_column="start_time", part_name="added")
    second = _bill(ws)
    assert (second.pass_no, second.new_bills) == (2, 2)
    after = {b["bill_no"]: b for b in _bills(ws)}
    assert [after[b["bill_no"]] for b in issued] == issued  # issued bills untouched
    assert after["B202610-000099"]["kind"] == "supplementary"
    extra = after["B202610-000003-S2"]
    assert extra["kind"] == "supplementary"
    assert {ln["product_id"] for ln in extra["lines"]} == {500}
    fee = next(ln for ln in extra["lines"] if ln["line_type"] == "recurring")
    assert fee["quantity"] == 12  # 20 to 31 October
    late_usage = [ln for ln in extra["lines"] if ln["line_type"] == "usage"]
    assert late_usage  # the new product's October usage, on its supplementary bill
    assert first.bills_sha256 != second.bills_sha256  # the period's digest covers them all
    assert not _bill(ws).changed


def test_a_missing_tariff_is_an_exception(copy_of: Callable) -> None:
    ws = copy_of("ws")
    _sql(
        ws,
        "INSERT INTO product_offering VALUES ('ghost-o', 'mobile', 'Ghost', 'active', "
        "TIMESTAMPTZ '2026-01-01', NULL)",
        "INSERT INTO product_offering_price (id, offering_id, name, price_type, tariff_id, "
        "valid_from) VALUES ('ghost-u', 'ghost-o', 'usage', 'usage', 'ghost-2026', "
        "TIMESTAMPTZ '2026-01-01')",
    )
    _move_to(ws, 7, "ghost-o")
    result = _bill(ws)
    assert [(e["account_id"], e["reason"]) for e in result.exceptions] == [(7, "missing_tariff")]
    assert "ghost-2026" in result.exceptions[0]["message"]
    assert result.accounts == 11


def _cli_bill(ws: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--workspace", str(ws), "--json", "bill", "--period", "2026-10"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize("delay", [2.0])
def test_killed_during_a_run_with_exceptions(copy_of: Callable, delay: float) -> None:
    reference, ws = copy_of("reference"), copy_of("killed")
    _usd(reference)
    _usd(ws)
    done = _cli_bill(reference.root)
    assert done.returncode == 10, done.stderr[-2000:]  # completed with exceptions
    expected = json.loads(done.stdout.strip().splitlines()[-1])
    proc = subprocess.Popen(
        [*CLI, "--workspace", str(ws.root), "--json", "bill", "--period", "2026-10"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    time.sleep(delay)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    again = _cli_bill(ws.root)
    assert again.returncode in (0, 10), again.stderr[-2000:]
    got = json.loads(again.stdout.strip().splitlines()[-1])
    # killed before the commit: the whole first pass again; after it: a second pass that
    # finds the account still set aside, reports it and records nothing
    assert got["pass_no"] in (1, 2)
    assert got["changed"] == (got["pass_no"] == 1)
    assert got["exceptions"] == expected["exceptions"]
    assert got["bills_sha256"] == expected["bills_sha256"]
    assert _sql(ws, "SELECT count(*), count(DISTINCT record_id) FROM billed_usage") == _sql(
        reference, "SELECT count(*), count(DISTINCT record_id) FROM billed_usage"
    )
