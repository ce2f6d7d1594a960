"""Billing as Dask tasks on a local cluster: the same bills as in process, byte for byte,
also when a worker dies in the middle of a task; and a cluster that cannot do the work is
refused before anything is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from billing_workspaces import synthetic_workspace
from distributed import Client, LocalCluster
from scale_faults import BlindWorker, KillAfterFirstPart, NoPackage

from bss.billing.run import BillingRunResult, run_billing
from bss.db import connect
from collectors.dataset import dataset_files, read_dataset
from collectors.workspace import WorkspacePaths
from rating_engine.errors import ScaleOutError
from rating_engine.scale.cluster import open_client, parse_scheduler
from rating_engine.schemas import RATED_SCHEMA, decode_labels

NOW = datetime(2027, 3, 1, tzinfo=UTC)
CLI = [sys.executable, "-c", "from bss.cli.main import main; main()"]


def _cluster(workers: int) -> tuple[LocalCluster, Client]:
    # ":0": its own port (a second cluster on the default one warns, and warnings fail tests)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0")  # fmt: skip
    return cluster, Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    cluster, client = _cluster(2)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dask")
    return {"synthetic": synthetic_workspace(root / "synthetic", accounts=30, records=3000).root}


@pytest.fixture
def copy_of(tmp_path: Path, templates: dict[str, Path]) -> Callable[[str, str], WorkspacePaths]:
    def make(name: str, label: str) -> WorkspacePaths:
        shutil.copytree(templates[name], tmp_path / label)
        return WorkspacePaths(tmp_path / label)

    return make


def _bill(ws: WorkspacePaths, period: str = "2026-10", **kw: Any) -> BillingRunResult:
    conn = connect(ws)
    try:
        return run_billing(conn, ws, period, now=NOW, export=False, **kw)
    finally:
        conn.close()


def _rated(ws: WorkspacePaths) -> pa.Table:
    return decode_labels(read_dataset(ws.rated, RATED_SCHEMA)).sort_by("record_id")


def test_same_bills_on_the_cluster(client: Client, copy_of: Callable) -> None:
    """(The demo's flows and CDRs on a cluster: the CLI test below.)"""
    here, there = copy_of("synthetic", "here"), copy_of("synthetic", "there")
    local = _bill(here)
    remote = _bill(there, client=client, chunk_rows=400)  # four buckets: split, then rate
    assert remote.bills_sha256 == local.bills_sha256
    assert (remote.rated, remote.suspense, remote.suspense_by_reason) == (
        local.rated, local.suspense, local.suspense_by_reason,
    )  # fmt: skip
    assert _rated(there).equals(_rated(here))
    assert {p.name for p in dataset_files(there.rated)} <= {
        f"part-run-2026-10-b{b:03d}.parquet" for b in range(4)
    }


def test_rerating_on_the_cluster(client: Client, copy_of: Callable) -> None:
    results = []
    for label, kw in (("here", {}), ("there", {"client": client})):
        ws = copy_of("synthetic", label)
        _bill(ws, **kw)
        tariff = ws.tariffs / "mobile-2026.toml"
        tariff.write_text(tariff.read_text().replace('max_cost = "15.00"', 'max_cost = "2.00"'))
        november = _bill(ws, "2026-11", **kw)
        assert november.adjusted_records > 0
        results.append((november.bills_sha256, november.adjusted_records))
    assert results[0] == results[1]


def test_a_worker_killed_mid_task(copy_of: Callable, tmp_path: Path) -> None:
    """A worker dies after writing one rated part of its bucket: the scheduler runs the
    task again, which writes the same part names; the bills are the same and no rated
    record is there twice."""
    here, there = copy_of("synthetic", "here"), copy_of("synthetic", "there")
    local = _bill(here)
    marker = tmp_path / "killed"
    cluster, client = _cluster(2)
    try:
        client.register_plugin(KillAfterFirstPart(str(marker)))
        remote = _bill(there, client=client, chunk_rows=400)
    finally:
        client.close()
        cluster.close()
    assert marker.exists()  # the fault happened
    assert remote.bills_sha256 == local.bills_sha256
    rated = _rated(there)
    assert rated.num_rows == len(set(rated.column("record_id").to_pylist()))
    assert rated.equals(_rated(here))


def _nothing_written(ws: WorkspacePaths, before: set[Path]) -> None:
    assert set(ws.root.rglob("*")) == before


def test_unreachable_scheduler(copy_of: Callable) -> None:
    ws = copy_of("synthetic", "ws")
    before = set(ws.root.rglob("*"))
    spec = parse_scheduler("tcp://127.0.0.1:9")
    assert spec is not None
    with (
        pytest.raises(ScaleOutError, match="cannot reach the Dask scheduler"),
        open_client(spec, ws.root),
    ):
        pass
    _nothing_written(ws, before)


@pytest.mark.parametrize(
    ("fault", "message"),
    [("package", "cannot import the package"), ("workspace", "sees nothing at workspace")],
)
def test_a_worker_unfit_for_the_work(fault: str, message: str, copy_of: Callable) -> None:
    ws = copy_of("synthetic", "ws")
    before = set(ws.root.rglob("*"))
    cluster, client = _cluster(1)
    try:
        client.register_plugin(NoPackage() if fault == "package" else BlindWorker(str(ws.root)))
        conn = connect(ws)
        before = set(ws.root.rglob("*"))
        try:
            with pytest.raises(ScaleOutError, match=message):
                run_billing(conn, ws, "2026-10", now=NOW, export=False, client=client)
        finally:
            conn.close()
    finally:
        client.close()
        cluster.close()
    _nothing_written(ws, before)


def test_scheduler_spec() -> None:
    assert parse_scheduler(None) is None
    assert parse_scheduler("none") is None
    local = parse_scheduler("local:3")
    assert local is not None
    assert local.local_workers == 3
    remote = parse_scheduler("10.0.0.5:8786")
    assert remote is not None
    assert remote.address == "tcp://10.0.0.5:8786"
    for bad in ("local:0", "local:x", "tcp://host", "http://host:8786"):
        with pytest.raises(ScaleOutError):
            parse_scheduler(bad)


def test_demo_on_a_local_cluster_prints_the_same_bills(tmp_path: Path) -> None:
    """``rating-engine demo --scheduler local:2 --json`` and the in-process demo agree."""
    outputs = []
    for label, extra in (("in-process", []), ("cluster", ["--scheduler", "local:2"])):
        proc = subprocess.run(
            [*CLI, "--workspace", str(tmp_path / label), "--json", "demo", *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(proc.stdout.strip().splitlines()[-1])
    first, second = (json.loads(o) for o in outputs)
    assert second["bills_sha256"] == first["bills_sha256"]
    assert second["rated"] == first["rated"]


def test_bill_with_an_unreachable_scheduler_writes_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc = subprocess.run(
        [*CLI, "--workspace", str(ws), "bill", "--period", "2026-10", "--scheduler",
         "tcp://127.0.0.1:9"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (ws / "bss.duckdb").exists()


def test_exceptions_and_the_supplementary_pass_on_the_cluster(
    client: Client, copy_of: Callable
) -> None:
    """An account set aside, then billed after the fix: the same on the cluster."""
    outcomes = []
    for label, kw in (("here", {}), ("there", {"client": client, "chunk_rows": 400})):
        ws = copy_of("synthetic", label)
        conn = connect(ws)
        try:
            conn.execute("UPDATE billing_account SET currency = 'USD' WHERE id = 4")
        finally:
            conn.close()
        first = _bill(ws, **kw)
        conn = connect(ws)
        try:
            conn.execute("UPDATE billing_account SET currency = 'EUR' WHERE id = 4")
        finally:
            conn.close()
        second = _bill(ws, **kw)
        assert (first.exceptions_by_reason, second.new_bills) == ({"currency_mismatch": 1}, 1)
        outcomes.append((first.bills_sha256, first.exceptions, second.bills_sha256,
                         second.rated))  # fmt: skip
    assert outcomes[0] == outcomes[1]
