"""Flows whose exporter announced no sampling rate (``sampling_interval`` null) count once."""

from __future__ import annotations

import pyarrow as pa
from ip_flow_builders import T0_US, flows, subscriptions

from rating_engine.traffic.aggregate import bucket_traffic
from rating_engine.traffic.attribution import build_prefix_index
from rating_engine.traffic.groupby_kernel import sampling_multipliers
from rating_engine.traffic.percentile import percentile_samples
from rating_engine.traffic.usage_from_flows import usage_from_flows

ROWS = [
    {"src": "10.0.0.1", "dst": "8.8.8.8", "bytes": 100, "sampling_interval": None},
    {"src": "10.0.0.1", "dst": "8.8.8.8", "bytes": 10, "sampling_interval": 10},
    {"src": "10.0.0.1", "dst": "8.8.8.8", "bytes": 1, "sampling_interval": 0},
]


def test_null_interval_is_the_volume_as_exported() -> None:
    table = flows(ROWS)
    assert table.column("sampling_interval").null_count == 1
    assert sampling_multipliers(table).tolist() == [0, 10, 0]  # 0: the kernels' "count once"
    idx = build_prefix_index(subscriptions([(7, "10.0.0.0/24", None, None)]))
    usage = usage_from_flows(table, idx, bucket="hour")
    assert usage.column("volume_up").to_pylist() == [100 + 10 * 10 + 1]
    traffic = bucket_traffic(table, "src_ip", "hour")
    assert traffic.column("bytes").to_pylist() == [201]
    raw = bucket_traffic(table, "src_ip", "hour", renormalise=False)
    assert raw.column("bytes").to_pylist() == [111]
    samples = percentile_samples(table, idx, T0_US, T0_US + 3_600_000_000)
    assert pa.compute.sum(samples.column("bytes_up")).as_py() == 201
