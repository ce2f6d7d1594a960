"""Workspaces ready to bill, for the billing tests: the demo's, and a synthetic many-account one.

The synthetic one is small but has what cutting a run into pieces could get wrong:
allowances that run out in the middle of the month (so which calls were free depends on
the order), usage of an earlier period arriving late, keys no subscription knows, and
days of very different sizes.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from package_data import DEMO

from bss.db import connect
from bss.seed import apply_seed, load_seed_file
from collectors.cdr.ingest import ingest_cdr_files
from collectors.cdr.mapping import load_mapping
from collectors.dataset import write_partitioned
from collectors.pcap.ingest import ingest_pcap_files
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths

__all__ = ["add_accounts", "demo_prebill", "synthetic_usage", "synthetic_workspace"]

_OCT = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * 1e6)
_DAY = 86_400 * 10**6


def _tariffs(ws: WorkspacePaths) -> None:
    ws.tariffs.mkdir(parents=True, exist_ok=True)
    for tariff in (DEMO / "tariffs").glob("*.toml"):
        shutil.copyfile(tariff, ws.tariffs / tariff.name)


def demo_prebill(root: Path) -> WorkspacePaths:
    """The demo's workspace just before its billing run (flows, CDRs, business data)."""
    ws = WorkspacePaths(root).ensure()
    _tariffs(ws)
    conn = connect(ws)
    try:
        apply_seed(conn, load_seed_file(DEMO / "bss.toml"), "demo")
    finally:
        conn.close()
    ingest_pcap_files([DEMO / "traffic.pcap.gz"], ws)
    ingest_cdr_files([DEMO / "cdrs.csv"], load_mapping("generic"), ws)
    return ws


def add_accounts(
    conn: duckdb.DuckDBPyConnection, first: int, count: int, *, currency: str = "EUR"
) -> None:
    """Accounts ``first..first+count-1``, each with one mobile subscription (MSISDN
    ``4915000000000 + id``) since September 2026."""
    last = first + count - 1
    conn.execute(
        f"""
        INSERT INTO customer (id, external_id, name, created_at)
        SELECT i, 'C' || i, 'Customer ' || i, TIMESTAMPTZ '2026-01-01' FROM range({first}, {last} + 1) t(i);
        INSERT INTO billing_account (id, external_id, customer_id, name, currency,
            tax_jurisdiction, created_at)
        SELECT i, 'A' || i, i, 'Account ' || i, '{currency}', 'DE', TIMESTAMPTZ '2026-01-01'
        FROM range({first}, {last} + 1) t(i);
        INSERT INTO product (id, account_id, offering_id, status, start_date)
        SELECT i, i, 'mobile-business-m', 'active', TIMESTAMPTZ '2026-09-01'
        FROM range({first}, {last} + 1) t(i);
        INSERT INTO service_identifier
        SELECT i, 'msisdn', (4915000000000 + i)::VARCHAR, TIMESTAMPTZ '2026-09-01', NULL
        FROM range({first}, {last} + 1) t(i);
        """  # noqa: E501
    )


def synthetic_usage(accounts: int, records: int, seed: int, *, first_id: int = 0) -> pa.Table:
    """Calls, SMS and data of ``accounts`` subscribers over October 2026 (days of uneven
    size), a few records from September, and a few of unknown subscribers."""
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + records, dtype=np.int64)
    service = rng.choice(np.array(["voice", "sms", "data"]), records, p=[0.6, 0.3, 0.1])
    # days skewed towards the month's start: some days hold many more records than others
    day = np.minimum((rng.exponential(8.0, records)).astype(np.int64), 30)
    start = _OCT + day * _DAY + rng.integers(0, _DAY, records)
    start[:3] = _OCT - _DAY * np.array([1, 3, 20])  # late: September
    subscriber = (4915000000001 + rng.integers(0, accounts, records)).astype(str)
    subscriber[3:5] = "4915999999999"  # nobody's
    dest = np.char.add(rng.choice(np.array(["4930", "4989", "49151", "1212", "33"]), records),
                       rng.integers(100_000, 999_999, records).astype(str))  # fmt: skip
    is_data = service == "data"
    return pa.table(
        {
            "record_id": ids * 2654435761 % (1 << 62) + 1,
            "record_key": pa.array(np.char.add("syn-", ids.astype(str))),
            "source_file": pa.array(np.full(records, "syn.csv")),
            "source_line": ids + 2,
            "subscriber_key": pa.array(subscriber),
            "subscriber_key_type": pa.array(np.full(records, "msisdn")),
            "service": pa.array(service),
            "start_time": pa.array(start, pa.timestamp("us", tz="UTC")),
            "duration_ms": np.where(service == "voice", rng.integers(1_000, 900_000, records), 0),
            "volume_up": np.where(is_data, rng.integers(0, 10**6, records), 0).astype(np.uint64),
            "volume_down": np.where(is_data, rng.integers(0, 10**7, records), 0).astype(np.uint64),
            "destination": pa.array(np.where(is_data, None, dest)),
            "origin": pa.array(np.full(records, None), pa.string()),
            "location": pa.array(np.full(records, None), pa.string()),
        }
    ).cast(USAGE_SCHEMA)


def synthetic_workspace(root: Path, accounts: int = 40, records: int = 6000,
                        seed: int = 7) -> WorkspacePaths:  # fmt: skip
    """``accounts`` demo-priced mobile accounts and their October usage, in two files."""
    ws = WorkspacePaths(root).ensure()
    _tariffs(ws)
    conn = connect(ws)
    try:
        seed_data = load_seed_file(DEMO / "bss.toml")
        apply_seed(conn, {k: seed_data[k] for k in ("tax_rate", "specification", "offering")},
                   "synthetic")  # fmt: skip
        add_accounts(conn, 1, accounts)
    finally:
        conn.close()
    usage = synthetic_usage(accounts, records, seed)
    half = records // 2
    write_partitioned(usage.slice(0, half), ws.usage, time_column="start_time", part_name="s1")
    write_partitioned(usage.slice(half), ws.usage, time_column="start_time", part_name="s2")
    return ws
