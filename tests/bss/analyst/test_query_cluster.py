"""``query top`` / ``buckets`` / ``p95`` as a task per day of flows on a local Dask cluster:
the same tables and totals as in process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from billing_workspaces import demo_prebill
from distributed import Client, LocalCluster

from bss.analyst.query import flow_buckets, top_talkers
from collectors.workspace import WorkspacePaths

CLI = [sys.executable, "-c", "from bss.cli.main import main; main()"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> WorkspacePaths:
    return demo_prebill(tmp_path_factory.mktemp("query") / "ws")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")  # fmt: skip
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("by", ["conversation", "subscription"])
def test_top_talkers(ws: WorkspacePaths, client: Client, by: str) -> None:
    here = top_talkers(ws, by, "bytes", 8)
    there = top_talkers(ws, by, "bytes", 8, client=client)
    assert there.equals(here)
    assert there.schema.metadata == here.schema.metadata  # the totals


@pytest.mark.parametrize(("by", "bucket"), [("proto", "hour")])
def test_flow_buckets(ws: WorkspacePaths, client: Client, by: str, bucket: str) -> None:
    assert flow_buckets(ws, by, bucket, client=client).equals(flow_buckets(ws, by, bucket))


def test_cli_p95_on_a_cluster(ws: WorkspacePaths) -> None:
    out = []
    for extra in ([], ["--scheduler", "local:1"]):
        proc = subprocess.run(
            [*CLI, "--workspace", str(ws.root), "--json", "query", "p95", "--period", "2026-10",
             *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert out[1] == out[0]
    assert out[0]["rows"]  # one row per subscription with an IP block in the period
