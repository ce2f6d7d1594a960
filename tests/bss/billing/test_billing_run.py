"""Billing runs: exact, idempotent, immutable once final, late usage on the next bill."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from package_data import DEMO

from bss.billing.export import bills_for_period, bills_sha256
from bss.billing.run import run_billing
from bss.errors import BillingError
from bss.seed import apply_seed, load_seed_file
from collectors.dataset import read_dataset, write_partitioned
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.schemas import RATED_SCHEMA
from rating_engine.traffic.usage_from_flows import record_id_for_key

DEMO = DEMO
NOW = datetime(2026, 12, 15, tzinfo=UTC)


def _usage(rows: list[dict[str, object]]) -> pa.Table:
    full = []
    for n, row in enumerate(rows):
        key = str(row.get("record_key", f"test-{n}-{row['start_time']}"))
        full.append(
            {
                "record_id": record_id_for_key(key), "record_key": key, "source_file": "t.csv",
                "source_line": n + 2, "subscriber_key_type": "msisdn", "duration_ms": 0,
                "volume_up": 0, "volume_down": 0, "destination": None, "origin": None,
                "location": None, **row,
            }
        )  # fmt: skip
    return pa.Table.from_pylist(full, schema=USAGE_SCHEMA)


def _call(msisdn: str, when: datetime, seconds: int, dest: str, key: str) -> dict[str, object]:
    return {
        "record_key": key, "subscriber_key": msisdn, "service": "voice", "start_time": when,
        "duration_ms": seconds * 1000, "destination": dest,
    }  # fmt: skip


@pytest.fixture
def billed_ws(conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths) -> WorkspacePaths:
    shutil.copytree(DEMO / "tariffs", workspace.tariffs, dirs_exist_ok=True)
    apply_seed(conn, load_seed_file(DEMO / "bss.toml"), "demo")
    usage = _usage(
        [
            _call("4915110000001", datetime(2026, 10, 5, 10, tzinfo=UTC), 65, "4930123456", "a"),
            _call("4915110000001", datetime(2026, 10, 6, 22, tzinfo=UTC), 3601, "1212555", "b"),
            _call("33612345678", datetime(2026, 10, 7, 9, tzinfo=UTC), 30, "33140000000", "c"),
            _call("4917620000003", datetime(2026, 10, 20, 9, tzinfo=UTC), 10, "4989123", "d"),
            # before Erika's order started: rejected to suspense, never priced zero
            _call("4917620000003", datetime(2026, 10, 2, 9, tzinfo=UTC), 10, "4989123", "e"),
            _call("4915199999999", datetime(2026, 10, 2, 9, tzinfo=UTC), 10, "4989123", "f"),
        ]
    )
    write_partitioned(usage, workspace.usage, time_column="start_time", part_name="t1")
    return workspace


def test_bill_invariants(conn: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths) -> None:
    result = run_billing(conn, billed_ws, "2026-10", now=NOW)
    assert result.changed
    assert (result.rated, result.suspense) == (4, 2)
    assert result.suspense_by_reason == {"unknown_subscription": 2}
    rated = read_dataset(billed_ws.rated, RATED_SCHEMA)
    bills = bills_for_period(conn, "2026-10")
    assert {b["account"] for b in bills} == {"A001", "A002", "A003"}
    for bill in bills:
        lines = [Decimal(ln["amount"]) for ln in bill["lines"]]
        assert sum(lines) == Decimal(bill["amount_excl_tax"])
        excl, tax = Decimal(bill["amount_excl_tax"]), Decimal(bill["tax_amount"])
        assert excl + tax == Decimal(bill["amount_incl_tax"])
        # the invoice policy's default: lines on the cent grid, tax on their sum, half-even
        cents = Decimal("0.01")
        assert all(Decimal(ln["amount"]) == Decimal(ln["amount_exact"]).quantize(cents)
                   for ln in bill["lines"])  # fmt: skip
        assert tax == (excl * Decimal(bill["tax_rate"])).quantize(cents)
        assert Decimal(bill["amount_due"]) == excl + tax
        usage_lines = sum(
            Decimal(ln["amount_exact"]) for ln in bill["lines"] if ln["line_type"] == "usage"
        )
        mine = rated.filter(pc.equal(rated.column("account_id"), bill["account_id"]))
        assert usage_lines * 1_000_000 == sum(mine.column("cost").to_pylist())
    billed = conn.execute("SELECT count(*), count(DISTINCT record_id) FROM billed_usage")
    assert billed.fetchone() == (4, 4)


def test_recurring_prorated_and_one_time_once(
    conn: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    run_billing(conn, billed_ws, "2026-10", now=NOW)
    (erika,) = [b for b in bills_for_period(conn, "2026-10") if b["account"] == "A002"]
    fee = next(ln for ln in erika["lines"] if ln["line_type"] == "recurring")
    # ordered 15 Oct: active on 17 of 31 days; 7.99 * 17 / 31 = 4.381612.9.. -> half-even
    assert (fee["quantity"], fee["amount_exact"], fee["amount"]) == (17, "4.381613", "4.380000")
    assert [ln["amount"] for ln in erika["lines"] if ln["line_type"] == "oneTime"] == ["9.950000"]
    run_billing(conn, billed_ws, "2026-11", now=NOW)
    (nov,) = [b for b in bills_for_period(conn, "2026-11") if b["account"] == "A002"]
    assert [ln["line_type"] for ln in nov["lines"]] == ["recurring"]
    assert nov["lines"][0]["amount"] == "7.990000"


def test_rerun_changes_nothing(conn: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths) -> None:
    first = run_billing(conn, billed_ws, "2026-10", now=NOW)
    second = run_billing(conn, billed_ws, "2026-10", now=NOW)
    assert not second.changed
    assert second.bills_sha256 == first.bills_sha256
    assert conn.execute("SELECT count(*) FROM bill").fetchone() == (3,)


def test_late_usage_goes_on_the_next_bill(
    conn: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    october = run_billing(conn, billed_ws, "2026-10", now=NOW)
    late = _usage([_call("4915110000002", datetime(2026, 10, 30, 12, tzinfo=UTC), 120,
                         "4930999", "late-1")])  # fmt: skip
    write_partitioned(late, billed_ws.usage, time_column="start_time", part_name="t2")
    run_billing(conn, billed_ws, "2026-11", now=NOW)
    assert bills_sha256(conn, "2026-10") == october.bills_sha256
    (nordwind,) = [b for b in bills_for_period(conn, "2026-11") if b["account"] == "A001"]
    late_lines = [ln for ln in nordwind["lines"] if "earlier periods" in ln["description"]]
    assert len(late_lines) == 1
    assert late_lines[0]["quantity"] == 120


def test_open_period_is_refused(conn: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths) -> None:
    with pytest.raises(BillingError, match="has not ended"):
        run_billing(conn, billed_ws, "2026-12", now=NOW)
    assert conn.execute("SELECT count(*) FROM bill").fetchone() == (0,)
    assert not billed_ws.rated.exists()


def test_corrected_tariff_adjusts_on_the_next_bill_once(
    conn: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    october = run_billing(conn, billed_ws, "2026-10", now=NOW)
    billed_before = dict(
        conn.execute("SELECT record_id, cost FROM billed_usage WHERE period = '2026-10'").fetchall()
    )
    assert run_billing(conn, billed_ws, "2026-11", now=NOW).adjusted_records == 0
    tariff = billed_ws.tariffs / "mobile-2026.toml"
    # the world rate's cap was wrong: 15.00 -> 10.00 (a correction after October was final)
    tariff.write_text(tariff.read_text().replace('max_cost = "15.00"', 'max_cost = "10.00"'))
    december = run_billing(conn, billed_ws, "2026-12", now=datetime(2027, 1, 5, tzinfo=UTC))
    assert bills_sha256(conn, "2026-10") == october.bills_sha256  # final bills never change
    assert december.adjusted_records == 1  # only the call to 1212... was priced by that rate
    (nordwind,) = [b for b in bills_for_period(conn, "2026-12") if b["account"] == "A001"]
    (line,) = [ln for ln in nordwind["lines"] if ln["description"].startswith("re-rating")]
    # 3601 s at 0.79 per started minute = 48.19, capped: 15.00 then, 10.00 now
    assert (line["line_type"], Decimal(line["amount"])) == ("credit", Decimal("-5"))
    delta = conn.execute("SELECT record_id, delta FROM usage_adjustment").fetchall()
    assert len(delta) == 1
    assert (billed_before[delta[0][0]], delta[0][1]) == (Decimal(15), Decimal(-5))
    january = run_billing(conn, billed_ws, "2027-01", now=datetime(2027, 2, 5, tzinfo=UTC))
    assert january.adjusted_records == 0  # a correction is applied exactly once
