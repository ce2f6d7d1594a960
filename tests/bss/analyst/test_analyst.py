"""``bss.analyst.api.Workspace`` on a demo workspace, checked against independent computations."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bss.analyst.api import ALARM_COLUMNS, TICKET_COLUMNS, Workspace
from bss.errors import ValidationError, WorkspaceLockedError
from collectors.dataset import dataset_files
from collectors.schemas import FLOW_SCHEMA

CLI = [sys.executable, "-c", "from bss.cli.main import main; main()"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("analyst") / "ws"
    proc = subprocess.run(
        [*CLI, "--workspace", str(ws), "--quiet", "demo"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return ws


@pytest.fixture(scope="module")
def ws(demo_root: Path) -> Workspace:
    return Workspace.open(demo_root)


def _duck(sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _bss(root: Path, sql: str) -> pa.Table:
    con = duckdb.connect(str(root / "bss.duckdb"), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def _text(value: bytes) -> str:
    v6 = ipaddress.IPv6Address(value)
    return str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)


def test_flows_equal_the_parquet(ws: Workspace, demo_root: Path) -> None:
    glob = f"{demo_root}/flows/**/*.parquet"
    rows, nbytes, first = _duck(
        f"SELECT count(*), sum(bytes), min(flow_start) FROM read_parquet('{glob}')"
    )[0]
    flows = ws.flows()
    assert flows.height == rows
    assert flows["bytes"].sum() == nbytes
    assert flows["flow_start"][0] == first  # start-time order
    assert flows.schema["src_addr"] == pl.String
    raw = ws.arrow.flows()
    assert [(f.name, f.type) for f in raw.schema] == [(f.name, f.type) for f in FLOW_SCHEMA]
    assert raw.schema.field("src_addr").type == pa.binary(16)
    texts = [_text(v) for v in raw.column("src_addr").to_pylist()]
    assert flows["src_addr"].to_list() == texts


def test_flow_window(ws: Workspace, demo_root: Path) -> None:
    glob = f"{demo_root}/flows/**/*.parquet"
    want = _duck(
        f"SELECT count(*) FROM read_parquet('{glob}') WHERE flow_start >= "
        "TIMESTAMPTZ '2026-10-06 00:00:00+00' AND flow_start < TIMESTAMPTZ '2026-10-07 00:00:00+00'"
    )[0][0]
    day = ws.flows("2026-10-06", datetime(2026, 10, 7, tzinfo=UTC))
    assert day.height == want
    assert day.height > 0
    assert ws.flows(end="2026-10-06").height + ws.flows(start="2026-10-06").height == (
        ws.flows().height
    )


def test_usage_rated_suspense_rejected(ws: Workspace, demo_root: Path) -> None:
    for name, method in (("usage", ws.usage), ("rated", ws.rated), ("suspense", ws.suspense),
                         ("rejected", ws.rejected)):  # fmt: skip
        rows = sum(pq.read_metadata(f).num_rows for f in dataset_files(demo_root / name))
        assert method().height == rows, name
    rated = pa.concat_tables(pq.read_table(f) for f in dataset_files(demo_root / "rated"))
    assert ws.rated()["cost"].sum() == pc.sum(rated.column("cost")).as_py()
    assert ws.arrow.rated().schema.field("cost").type == pa.int64()


def test_bills_equal_the_bill_table(ws: Workspace, demo_root: Path) -> None:
    want = _bss(demo_root, "SELECT * FROM bill ORDER BY period, bill_no")
    got = ws.arrow.bills()
    assert got.to_pylist() == want.to_pylist()
    assert ws.bills("2026-10").height == want.num_rows == 3
    assert ws.bills("2026-09").height == 0
    lines = _bss(demo_root, "SELECT sum(amount) AS s, count(*) AS n FROM bill_line").to_pylist()[0]
    got_lines = ws.bill_lines("2026-10")
    assert got_lines.height == lines["n"]
    assert sum(got_lines["amount"].to_list(), Decimal(0)) == lines["s"]
    with pytest.raises(ValidationError):
        ws.bills("October")


def test_customers_accounts_subscriptions(ws: Workspace, demo_root: Path) -> None:
    assert ws.customers()["name"].to_list() == [
        r["name"] for r in _bss(demo_root, "SELECT name FROM customer ORDER BY id").to_pylist()
    ]
    assert ws.accounts().height == 3
    subs = ws.subscriptions()
    n = _bss(demo_root, "SELECT count(*) AS n FROM service_identifier").to_pylist()[0]["n"]
    assert subs.height == n
    assert set(subs["key_type"].to_list()) <= {"msisdn", "imsi", "ip"}
    labels = ws.subscription_labels()
    assert all(name.endswith(f"({sid})") for sid, name in labels.items())


def test_sql_joins_bss_tables_and_datasets(ws: Workspace, demo_root: Path) -> None:
    got = ws.sql(
        "SELECT c.name, b.amount_due FROM bill b JOIN billing_account a ON a.id = b.account_id "
        "JOIN customer c ON c.id = a.customer_id ORDER BY c.name"
    )
    want = _bss(
        demo_root,
        "SELECT c.name, b.amount_due FROM bill b JOIN billing_account a ON a.id = b.account_id "
        "JOIN customer c ON c.id = a.customer_id ORDER BY c.name",
    )
    assert got.to_dicts() == want.to_pylist()
    top = ws.sql(
        "SELECT src_ip, sum(bytes)::UBIGINT AS bytes FROM flows GROUP BY 1 "
        "ORDER BY 2 DESC, 1 LIMIT 3"
    )
    assert top["src_ip"].to_list() == ws.top_n("src_ip", "bytes", 3)["src_addr"].to_list()
    assert ws.sql("SELECT count(*) AS n FROM usage")["n"][0] == ws.usage().height
    assert ws.sql("SELECT ip_text(dst_addr) AS d FROM flows LIMIT 1")["d"].dtype == pl.String
    assert ws.sql("SELECT ? + 1 AS x", [41])["x"][0] == 42
    names = ws.tables()
    assert {"flows", "usage", "rated", "bill", "customer"} <= set(names)
    with pytest.raises(ValidationError, match="sql"):
        ws.sql("SELECT * FROM no_such_table")


def test_top_n_and_conversations_equal_polars(ws: Workspace) -> None:
    flows = ws.flows()  # demo flows are unsampled (interval 1)
    want = (
        flows.group_by("dst_addr")
        .agg(pl.col("packets").sum())
        .sort(["packets", "dst_addr"], descending=[True, False])
        .head(5)
    )
    got = ws.top_n("dst_ip", "packets", 5)
    assert got["packets"].to_list() == want["packets"].to_list()
    assert set(got["dst_addr"].to_list()) == set(want["dst_addr"].to_list())
    conv = ws.top_conversations("bytes", 3)
    pair = flows.with_columns(
        pl.min_horizontal(
            pl.col("src_addr").map_elements(_key, return_dtype=pl.Binary),
            pl.col("dst_addr").map_elements(_key, return_dtype=pl.Binary),
        ).alias("a"),
        pl.max_horizontal(
            pl.col("src_addr").map_elements(_key, return_dtype=pl.Binary),
            pl.col("dst_addr").map_elements(_key, return_dtype=pl.Binary),
        ).alias("b"),
    )
    best = pair.group_by("a", "b").agg(pl.col("bytes").sum()).sort("bytes", descending=True)
    assert conv["bytes"].to_list() == best["bytes"].head(3).to_list()


def _key(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return (b"\x00" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed


def _ip_blocks(ws: Workspace) -> list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    subs = ws.subscriptions().filter(pl.col("key_type") == "ip")
    return [(r["subscription_id"], ipaddress.ip_network(r["key"])) for r in subs.to_dicts()]


def _owner(
    addr: str, blocks: list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]]
) -> int | None:
    ip = ipaddress.ip_address(addr)
    best = None
    for sid, net in blocks:
        if ip.version == net.version and ip in net and (best is None or net.prefixlen > best[1]):
            best = (sid, net.prefixlen)
    return None if best is None else best[0]


def test_bucket_traffic_and_profile_equal_a_python_attribution(ws: Workspace) -> None:
    blocks = _ip_blocks(ws)
    flows = ws.flows().to_dicts()
    down: dict[tuple[int, int], int] = {}
    primary: dict[int, int] = {}
    for f in flows:
        d, s = _owner(f["dst_addr"], blocks), _owner(f["src_addr"], blocks)
        start: datetime = f["flow_start"]
        how = start.weekday() * 24 + start.hour
        if d is not None:
            down[(d, how)] = down.get((d, how), 0) + f["bytes"]
        who = d if d is not None else s
        if who is not None:
            primary[who] = primary.get(who, 0) + f["bytes"]
    profile = ws.hour_of_week_profile()
    got = {
        (r["subscription_id"], r["hour_of_week"]): r["bytes_down"]
        for r in profile.to_dicts()
        if r["bytes_down"]
    }
    assert got == down
    buckets = ws.bucket_traffic("subscription", "day")
    per_sub = buckets.group_by("subscription_id").agg(pl.col("bytes").sum())
    assert dict(per_sub.iter_rows()) == primary
    assert set(buckets["bucket_start"].dt.hour().to_list()) == {0}
    top = ws.arrow.top_n("subscription", "bytes", 10)
    assert dict(zip(top.column("subscription_id").to_pylist(), top.column("bytes").to_pylist(),
                    strict=True)) == primary  # fmt: skip
    # shares are of every flow in the window, attributed or not
    assert int(top.schema.metadata[b"total_flows"]) == len(flows)
    total_bytes = sum(f["bytes"] for f in flows)
    assert top.column("bytes_pct").to_pylist() == pytest.approx(
        [b * 100 / total_bytes for b in top.column("bytes").to_pylist()]
    )


def test_distinct_peers_and_percentile(ws: Workspace) -> None:
    flows = ws.flows()
    want = flows.group_by("src_addr").agg(pl.col("dst_addr").n_unique().alias("peers"))
    got = ws.distinct_peers("src_ip", "dst_ip")
    assert dict(got.iter_rows()) == dict(want.iter_rows())
    p95 = ws.percentile_95("2026-10")
    ip_subs = {sid for sid, _net in _ip_blocks(ws)}
    assert set(p95["subscription_id"].to_list()) == ip_subs
    assert set(p95["samples"].to_list()) == {31 * 288}
    with pytest.raises(ValidationError, match="not a single flow column"):
        ws.distinct_peers("conversation")


def test_alarms_and_tickets_read_the_assurance_tables(demo_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(demo_root, root)
    with Workspace.open(root) as before:
        alarms = before.arrow.alarms()
        if "alarm" not in before.tables():
            # assurance migration not present: the documented empty frames
            assert alarms.schema.names == list(ALARM_COLUMNS)
            assert before.arrow.tickets().schema.names == list(TICKET_COLUMNS)
            return
        assert alarms.num_rows == 0
    con = duckdb.connect(str(root / "bss.duckdb"))
    t = "TIMESTAMPTZ '2026-10-05 10:00:00+00'"
    con.execute(
        "INSERT INTO alarm (alarmed_object, alarm_type, probable_cause, perceived_severity, "
        f"state, raised_time, changed_time) VALUES ('exporter 192.0.2.254', "
        f"'communicationsAlarm', 'lossOfSignal', 'major', 'raised', {t}, {t})"
    )
    con.execute(
        "INSERT INTO trouble_ticket (name, severity, priority, status, origin, created_at, "
        f"updated_at) VALUES ('exporter silent', 'major', 2, 'acknowledged', 'alarm', {t}, {t})"
    )
    con.execute(f"INSERT INTO ticket_alarm VALUES (1, 1, {t})")
    con.close()
    with Workspace.open(root) as after:
        got = after.alarms()
        assert got["alarmed_object"].to_list() == ["exporter 192.0.2.254"]
        assert got["perceived_severity"].to_list() == ["major"]
        tickets = after.tickets()
        assert tickets["alarm_ids"].to_list() == [[1]]
        assert tickets["customer_ids"].to_list() == [[]]


def test_reader_never_blocks_a_writer(ws: Workspace, demo_root: Path) -> None:
    ws.bills()
    ws.sql("SELECT count(*) FROM bill")
    code = textwrap.dedent(f"""
        from bss.db import connect
        from collectors.workspace import WorkspacePaths
        from pathlib import Path
        connect(WorkspacePaths(Path({str(demo_root)!r}))).close()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_locked_by_a_writer_is_reported(demo_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(demo_root, root)
    hold = textwrap.dedent(f"""
        import sys, duckdb
        con = duckdb.connect({str(root / "bss.duckdb")!r})
        print("ready", flush=True)
        sys.stdin.read()
    """)
    with subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        try:
            assert holder.stdout.readline().strip() == "ready"
            with Workspace.open(root) as locked:
                assert locked.flows().height > 0  # Parquet needs no lock
                with pytest.raises(WorkspaceLockedError, match="another process"):
                    locked.bills()
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)


def test_empty_workspace(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    with Workspace.open(root) as empty:
        assert empty.flows().columns == FLOW_SCHEMA.names
        assert empty.bills().height == 0
        assert empty.alarms().columns == list(ALARM_COLUMNS)
        assert empty.sql("SELECT count(*) AS n FROM flows")["n"][0] == 0
        assert empty.top_n().height == 0
    assert not (root / "bss.duckdb").exists()  # reading created nothing
    # datasets without a fixed schema get a view once they appear
    stats = root / "collector_stats" / "date=2026-10-05"
    stats.mkdir(parents=True)
    pq.write_table(pa.table({"exporter": ["192.0.2.1", "192.0.2.2"], "datagrams": [5, 7]}),
                   stats / "part-a.parquet")  # fmt: skip
    with Workspace.open(root) as later:
        assert "collector_stats" in later.tables()
        got = later.sql("SELECT sum(datagrams) AS n, min(date) AS d FROM collector_stats")
        assert got.row(0) == (12, datetime(2026, 10, 5).date())
    with pytest.raises(ValidationError, match="does not exist"):
        Workspace.open(tmp_path / "missing")
