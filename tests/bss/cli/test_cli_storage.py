"""`rating-engine expire` keeps the flows issued bills rest on (and those a bill to come will),
removes the rest oldest first; `compact` merges collector parts with every row kept once."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from cli_runs import run
from package_data import DEMO

from bss.billing.run import run_billing
from bss.db import connect
from bss.seed import apply_seed, load_seed_file
from collectors.addresses import address_to_bytes
from collectors.dataset import dataset_files, read_dataset, write_partitioned
from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import WorkspacePaths


def flows(when: datetime, dst: str, n: int = 3) -> pa.Table:
    start = int(when.timestamp() * 1_000_000)
    values = {
        "exporter": [address_to_bytes("192.0.2.254")] * n,
        "flow_start": [start + i for i in range(n)],
        "flow_end": [start + i for i in range(n)],
        "src_addr": [address_to_bytes("203.0.113.200")] * n,
        "dst_addr": [address_to_bytes(dst)] * n,
        "dst_port": [443] * n,
        "protocol": [6] * n,
        "bytes": [1_000_000 + i for i in range(n)],
        "packets": [1000] * n,
        "source_format": ["ipfix"] * n,
    }
    arrays = []
    for f in FLOW_SCHEMA:
        if f.name in values:
            array = pa.array(values[f.name], pa.int64() if f.name.startswith("flow_") else f.type)
            arrays.append(array.cast(f.type))
        elif f.nullable:
            arrays.append(pa.nulls(n, f.type))
        else:
            arrays.append(pa.array([0] * n, f.type))
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


@pytest.fixture
def billed(tmp_path: Path) -> WorkspacePaths:
    """The demo business, October 2026 billed with a subscriber's flows; other flows beside."""
    ws = WorkspacePaths(tmp_path / "ws").ensure()
    shutil.copytree(DEMO / "tariffs", ws.tariffs, dirs_exist_ok=True)
    subscriber = "198.51.100.5"  # fiber-100 of account A001, ordered 2026-09-01
    parts = {
        "aug": flows(datetime(2026, 8, 10, 12, tzinfo=UTC), subscriber),  # before any IP order
        "oct-billed": flows(datetime(2026, 10, 5, 12, tzinfo=UTC), subscriber),
        "oct-nobody": flows(datetime(2026, 10, 6, 12, tzinfo=UTC), "192.0.2.77"),
        "nov": flows(datetime(2026, 11, 3, 12, tzinfo=UTC), subscriber),  # not billed yet
    }
    for name, table in parts.items():
        write_partitioned(
            table, ws.flows, time_column="flow_start", part_name=f"udp-{name}", hourly=True
        )
    conn = connect(ws)
    try:
        apply_seed(conn, load_seed_file(DEMO / "bss.toml"), "demo")
        result = run_billing(
            conn, ws, "2026-10", now=datetime(2026, 12, 1, tzinfo=UTC), export=False
        )
        assert result.rated > 0
    finally:
        conn.close()
    return ws


def test_expire_keeps_what_bills_rest_on(
    billed: WorkspacePaths, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ["-w", str(billed.root), "--json"]
    code, out, _ = run(
        [*w, "expire", "--dataset", "flows", "--older-than", "7d", "--dry-run"], capsys
    )
    assert code == 0
    dry = json.loads(out)
    assert dry["dry_run"]
    assert len(dataset_files(billed.flows)) == 4  # nothing removed by a dry run
    code, out, _ = run([*w, "expire", "--dataset", "flows", "--older-than", "7d"], capsys)
    assert code == 0
    done = json.loads(out)
    assert (
        done["removed_partitions"]
        == dry["removed_partitions"]
        == [
            "date=2026-08-10/hour=12",
            "date=2026-10-06/hour=12",
        ]
    )
    reasons = {p["partition"]: p["reason"] for p in done["protected"]}
    assert reasons.keys() == {"date=2026-10-05/hour=12", "date=2026-11-03/hour=12"}
    assert "an issued bill rests on it" in reasons["date=2026-10-05/hour=12"]
    assert "period 2026-11 is not billed yet" in reasons["date=2026-11-03/hour=12"]
    left = read_dataset(billed.flows, FLOW_SCHEMA)
    assert left.num_rows == 6
    # the human form says what was kept and why
    code, out, _ = run(["-w", str(billed.root), "expire", "--max-size", "1"], capsys)
    assert code == 0
    assert "issued bill rests on it" in out
    assert "still above --max-size 1" in out
    assert read_dataset(billed.flows, FLOW_SCHEMA).num_rows == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["expire", "--dataset", "usage", "--older-than", "1d"], "billing data is never expired"),
        (["expire", "--dataset", "flows"], "give --older-than DURATION, --max-size SIZE"),
        (["expire", "--older-than", "ninety days"], "--older-than: 'ninety days' is not"),
        (["expire", "--max-size", "lots"], "--max-size: 'lots' is not a size"),
        (["compact", "--dataset", "rated"], "--dataset 'rated'"),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, _ = run(["-w", str(tmp_path / "ws"), "--json", *args], capsys)
    assert code == 3
    assert message in json.loads(out)["error"]["message"]


def test_compact_keeps_every_row_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = WorkspacePaths(tmp_path / "ws").ensure()
    when = datetime(2026, 11, 20, 7, tzinfo=UTC)
    for i in range(5):
        write_partitioned(
            flows(when, f"198.51.100.{i}", 10 + i),
            ws.flows,
            time_column="flow_start",
            part_name=f"udp-x-{i:06d}",
            hourly=True,
        )
    before = Counter(tuple(r.values()) for r in read_dataset(ws.flows, FLOW_SCHEMA).to_pylist())
    code, out, _ = run(["-w", str(ws.root), "--json", "compact"], capsys)
    assert code == 0
    result = json.loads(out)
    assert (result["parts_before"], result["parts_after"], result["rows"]) == (5, 1, 60)
    after = Counter(tuple(r.values()) for r in read_dataset(ws.flows, FLOW_SCHEMA).to_pylist())
    assert after == before
    assert len(dataset_files(ws.flows)) == 1
