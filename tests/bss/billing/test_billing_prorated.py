"""Prorated metered quantities in a billing run (issue #25): quantity-change records in
W/quantities priced by a tariff's prorated pricing on the bill, the same however the work is
cut; records that cannot be priced go to suspense naming file, record and field."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from package_data import DEMO

from bss.billing.run import run_billing
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


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = WorkspacePaths(tmp_path_factory.mktemp("prorated") / "ws").ensure()
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
    sub = int(keys.column("subscription_id")[0].as_py())
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
