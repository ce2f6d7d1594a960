"""Prorated metered quantities in a billing run (issue #25): quantity-change records in
W/quantities priced by a tariff's prorated pricing on the bill, the same however the work is
cut; records that cannot be priced go to suspense naming file, record and field."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from package_data import DEMO

from bss.billing.run import run_billing
from bss.cli.main import main
from bss.db import connect
from bss.seed import apply_seed, load_seed_file
from bss.subscriptions import subscription_table
from collectors.dataset import read_dataset, write_partitioned
from collectors.schemas import REJECT_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.rating.prorated import QUANTITY_CHANGE_SCHEMA

NOW = datetime(2026, 12, 15, tzinfo=UTC)
LINES = """
[period_pricing.extra_lines]
measure = "prorated"
metric = "extra_lines"
mode = "graduated"
tiers = [{ upto = 2, rate = "5.00" }, { rate = "4.00" }]
rounding_method = "half-even"
rounding_decimals = 2
"""


def _changes(rows: list[tuple[int, int, str, datetime, int]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"record_id": r, "subscription_id": s, "metric": m, "valid_from": t, "change": c}
         for r, s, m, t, c in rows],
        schema=QUANTITY_CHANGE_SCHEMA,
    )  # fmt: skip


def _seeded(root: Path) -> tuple[WorkspacePaths, int]:
    """A demo workspace whose mobile tariff prices extra_lines, and the subscription
    (product) of 4915110000001."""
    ws = WorkspacePaths(root).ensure()
    shutil.copytree(DEMO / "tariffs", ws.tariffs, dirs_exist_ok=True)
    tariff = ws.tariffs / "mobile-2026.toml"
    tariff.write_text(tariff.read_text(encoding="utf-8") + LINES, encoding="utf-8")
    conn = connect(ws)
    try:
        apply_seed(conn, load_seed_file(DEMO / "bss.toml"), "demo")
        subs = subscription_table(conn, datetime(2026, 11, 1, tzinfo=UTC))
    finally:
        conn.close()
    keys = subs.filter(pc.equal(subs.column("key"), "4915110000001"))
    return ws, int(keys.column("subscription_id")[0].as_py())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws, sub = _seeded(tmp_path_factory.mktemp("prorated") / "ws")
    # 2 lines from September, +3 on 17 October 00:00 (15 of 31 days), -1 on the 27th (5 days)
    # and one record of a metric the tariff does not price; in two files of different days
    write_partitioned(
        _changes([(1, sub, "extra_lines", datetime(2026, 9, 20, tzinfo=UTC), 2)]),
        ws.quantities, time_column="valid_from", part_name="a",
    )  # fmt: skip
    write_partitioned(
        _changes([(2, sub, "extra_lines", datetime(2026, 10, 27, tzinfo=UTC), -1),
                  (3, sub, "extra_lines", datetime(2026, 10, 17, tzinfo=UTC), 3),
                  (4, sub, "seats", datetime(2026, 10, 17, tzinfo=UTC), 1),
                  (5, sub, "extra_lines", datetime(2026, 11, 2, tzinfo=UTC), 9)]),
        ws.quantities, time_column="valid_from", part_name="b",
    )  # fmt: skip
    return ws.root


def _bill(root: Path, target: Path, **cut: int) -> tuple[str, list[dict]]:
    shutil.copytree(root, target)
    ws = WorkspacePaths(target)
    conn = connect(ws)
    try:
        result = run_billing(conn, ws, "2026-10", now=NOW, export=False, **cut)
    finally:
        conn.close()
    return result.bills_sha256, read_dataset(ws.suspense, REJECT_SCHEMA).to_pylist()


def test_prorated_lines_on_the_bill(template: Path, tmp_path: Path) -> None:
    root = template
    sha, suspense = _bill(root, tmp_path / "whole", chunk_rows=1 << 40, buckets=1)
    # average 2 + 3 x 15/31 - 1 x 5/31 = 102/31 = 3.290323 lines:
    # 2 x 5.00 + 40/31 x 4.00 = 15.161290... -> 15.16
    conn = connect(WorkspacePaths(tmp_path / "whole"))
    try:
        lines = conn.execute(
            "SELECT description, quantity, amount FROM bill_line WHERE description LIKE "
            "'extra_lines graduated pricing%'"
        ).fetchall()
    finally:
        conn.close()
    assert len(lines) == 1
    description, quantity, amount = lines[0]
    assert "average ~3.290323 extra_lines (3 changes)" in description
    assert quantity == 3
    assert amount == Decimal("15.16")
    rejected = [r for r in suspense if r["reason"] == "unpriced_metric"]
    assert len(rejected) == 1
    assert rejected[0]["record_id"] == 4
    assert rejected[0]["field"] == "metric"
    assert "part-b.parquet" in rejected[0]["source_file"]
    assert "tariff mobile-2026 prices no 'seats'" in rejected[0]["message"]
    cut = _bill(root, tmp_path / "cut", chunk_rows=1, buckets=3)
    assert cut[0] == sha


def test_quantities_ingested_through_the_cli_are_billed(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same changes as ``template``'s, as a user gives them: a CSV naming the product,
    through ``rating-engine ingest quantities``; the bill is the one of the API path."""
    ws, sub = _seeded(tmp_path / "cli")
    csv_file = tmp_path / "lines.csv"
    csv_file.write_text(
        "product,metric,valid_from,change\n"
        f"{sub},extra_lines,2026-09-20,2\n"
        f"{sub},extra_lines,2026-10-27T00:00:00Z,-1\n"
        f"{sub},extra_lines,2026-10-17T02:00:00+02:00,+3\n"
        f"{sub},seats,2026-10-17,1\n"
        f"{sub},extra_lines,2026-11-02,9\n"
        f"{sub + 999},extra_lines,2026-10-02,9\n",
        encoding="utf-8",
    )
    for expected in ((5, 0), (0, 5)):  # the second ingest adds nothing
        with pytest.raises(SystemExit) as done:
            main(["-w", str(ws.root), "--json", "ingest", "quantities", str(csv_file)])
        assert done.value.code in (0, None)
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (out["ingested"], out["duplicates"]) == expected
        assert out["rejected_by_reason"] == {"unknown_product": 1}
    api = _bill(template, tmp_path / "api", chunk_rows=1 << 40, buckets=1)
    sha, suspense = _bill(ws.root, tmp_path / "billed", chunk_rows=1 << 40, buckets=1)
    assert sha == api[0]
    conn = connect(WorkspacePaths(tmp_path / "billed"))
    try:
        amount = conn.execute(
            "SELECT amount FROM bill_line WHERE description LIKE 'extra_lines graduated%'"
        ).fetchall()
    finally:
        conn.close()
    assert amount == [(Decimal("15.16"),)]
    assert [r["reason"] for r in suspense if r["field"] == "metric"] == ["unpriced_metric"]
