"""Top-N, time buckets and the 95th percentile as a task per day of flows - in process and
on a local Dask cluster - equal the one-pass results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from distributed import Client, LocalCluster
from ip_flow_builders import HOUR_US, T0_US, flows, subscriptions

from collectors.dataset import write_partitioned
from rating_engine.scale.traffic import bucket_traffic_tasks, percentile_95_tasks, top_n_tasks
from rating_engine.traffic.aggregate import bucket_traffic, top_n
from rating_engine.traffic.attribution import build_prefix_index
from rating_engine.traffic.flow_query import bucket_traffic_dataset, top_n_dataset
from rating_engine.traffic.percentile import percentile_95

DAY_US = 24 * HOUR_US
P0 = T0_US - T0_US % DAY_US  # the days of the test's flows, whole


def _table() -> pa.Table:
    rows = [
        {
            "src": f"10.0.{i % 3}.{i % 17}",
            "dst": f"192.0.2.{i % 5}" if i % 4 else f"10.0.1.{i % 9}",
            "bytes": (i * 7919) % 10_000,
            "packets": i % 13 + 1,
            "sampling_interval": i % 3,
            "start": T0_US + (i * 997_000_003) % (3 * DAY_US),
            "end": T0_US + (i * 997_000_003) % (3 * DAY_US) + (i % 7) * 400_000_000,
        }
        for i in range(600)
    ]
    return flows(rows)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flows") / "flows"
    table = _table()
    write_partitioned(table.slice(0, 300), root, time_column="flow_start", part_name="a",
                      hourly=True)  # fmt: skip
    write_partitioned(table.slice(300), root, time_column="flow_start", part_name="b")
    return root


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")  # fmt: skip
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


INDEX = build_prefix_index(
    subscriptions(
        [
            (1, "10.0.0.0/24", None, None),
            (2, "10.0.1.0/24", None, None),
            (3, "192.0.2.0/30", None, None),
        ]
    )
)


@pytest.mark.parametrize("by", ["src_addr", ["src_addr", "dst_addr"], "dst_port"])
def test_top_n(dataset: Path, client: Client, by: str | list[str]) -> None:
    reference = top_n(_table(), by, "bytes", 7)
    assert top_n_tasks(dataset, by, "bytes", 7).equals(reference)
    assert top_n_dataset(dataset, by, "bytes", 7, client=client).equals(reference)


@pytest.mark.parametrize(("key", "bucket"), [("subscription", "5min"), ("dst_port", "hour")])
def test_time_buckets(dataset: Path, client: Client, key: str, bucket: str) -> None:
    reference = bucket_traffic(_table(), key, bucket, index=INDEX)
    assert bucket_traffic_tasks(dataset, key, bucket, index=INDEX).equals(reference)
    got = bucket_traffic_dataset(dataset, key, bucket, index=INDEX, client=client)
    assert got.equals(reference)


def test_95th_percentile(dataset: Path, client: Client) -> None:
    reference = percentile_95(_table(), INDEX, P0, P0 + 4 * DAY_US)
    assert reference.column("p95_bps").to_pylist() != [0, 0, 0]
    assert percentile_95_tasks(dataset, INDEX, P0, P0 + 4 * DAY_US).equals(reference)
    got = percentile_95_tasks(dataset, INDEX, P0, P0 + 4 * DAY_US, client=client)
    assert got.equals(reference)
