"""Aggregations streamed from a Parquet flows dataset equal the in-memory ones."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from ip_flow_builders import HOUR_US, T0_US, flows, subscriptions

from collectors.dataset import write_partitioned
from rating_engine.errors import RatingError
from rating_engine.traffic import flow_query
from rating_engine.traffic.aggregate import bucket_traffic, top_n
from rating_engine.traffic.attribution import build_prefix_index
from rating_engine.traffic.flow_query import bucket_traffic_dataset, top_n_dataset

DAY_US = 24 * HOUR_US


def _table() -> pa.Table:
    rows = []
    for i in range(400):
        rows.append(
            {
                "src": f"10.0.{i % 3}.{i % 17}",
                "dst": f"192.0.2.{i % 5}",
                "bytes": (i * 7919) % 10_000,
                "packets": i % 13,
                "sampling_interval": i % 3,
                "start": T0_US + (i * 997) % (3 * DAY_US),
            }
        )
    return flows(rows)


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # several blocks per query so the partial + combine path runs
    monkeypatch.setattr(flow_query, "_BLOCK_ROWS", 50)
    root = tmp_path / "flows"
    write_partitioned(_table(), root, time_column="flow_start", part_name="t")
    return root


@pytest.mark.parametrize("engine", ["kernels", "polars"])
@pytest.mark.parametrize("window", [None, (T0_US + DAY_US // 2, T0_US + 2 * DAY_US)])
@pytest.mark.parametrize("by", ["src_addr", "dst_port", "src_prefix", ["dst_addr", "src_port"]])
def test_top_n_dataset_equals_in_memory(
    dataset: Path,
    window: tuple[int, int] | None,
    by: str | list[str],
    engine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flow_query, "ENGINE", engine)  # prefixes: kernels either way
    for metric, n in (("bytes", 5), ("flows", 3), ("packets", 1000)):
        got = top_n_dataset(dataset, by, metric, n, window)
        assert got.equals(top_n(_table(), by, metric, n, window)), metric


@pytest.mark.parametrize("bucket", [None, "hour", 100_000])
@pytest.mark.parametrize("key", ["dst_addr", "src_port", ["src_addr", "dst_port"], "input_if"])
def test_bucket_traffic_dataset_by_polars_equals_the_kernels(
    dataset: Path, key: str | list[str], bucket: str | int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Summed by polars, a plain key's buckets are the kernels': values, types, order."""
    window = (T0_US + 50_000, T0_US + 350_000)  # the flows start within 0.4 s of T0
    got = {}
    for engine in ("kernels", "polars"):
        monkeypatch.setattr(flow_query, "ENGINE", engine)
        got[engine] = bucket_traffic_dataset(dataset, key, bucket, window=window)
    assert got["polars"].equals(got["kernels"])
    assert got["polars"].equals(bucket_traffic(_table(), key, bucket, window=window))


def test_bucket_traffic_dataset_equals_in_memory(dataset: Path) -> None:
    idx = build_prefix_index(
        subscriptions([(1, "10.0.0.0/24", None, None), (2, "10.0.1.0/24", None, None)])
    )
    got = bucket_traffic_dataset(dataset, "subscription", "hour", index=idx)
    assert got.equals(bucket_traffic(_table(), "subscription", "hour", index=idx))
    got = bucket_traffic_dataset(dataset, "subscription", None, index=idx)
    assert got.equals(bucket_traffic(_table(), "subscription", None, index=idx))
    got = bucket_traffic_dataset(dataset, ["exporter", "protocol"], "day")
    assert got.equals(bucket_traffic(_table(), ["exporter", "protocol"], "day"))


def test_empty_window_and_errors(dataset: Path, tmp_path: Path) -> None:
    assert top_n_dataset(dataset, window=(0, 1)).num_rows == 0
    with pytest.raises(RatingError, match="no flows"):
        bucket_traffic_dataset(dataset, "protocol", window=(0, 1))
    with pytest.raises(RatingError, match="missing field"):
        top_n_dataset(dataset, "nope")
    with pytest.raises(RatingError, match="cannot open"):
        top_n_dataset(tmp_path / "absent")


def test_unsampled_row_groups_skip_the_interval_column(tmp_path: Path) -> None:
    """Row-group statistics showing every interval 0, 1 or null: the column is not read
    (nothing to renormalise) and the results equal the in-memory ones; one sampled row
    group anywhere and it is read again."""
    table = _table()
    intervals = [None if i % 7 == 0 else i % 2 for i in range(table.num_rows)]
    plain = table.set_column(
        table.schema.get_field_index("sampling_interval"),
        "sampling_interval",
        pa.array(intervals, pa.uint32()),
    )
    root = tmp_path / "plain"
    write_partitioned(plain, root, time_column="flow_start", part_name="t")
    cols = ["src_addr", "bytes", "packets", "sampling_interval"]
    batches = list(flow_query.scan_flows(root, cols, drop_unsampled=True))
    assert all(b.schema.names == cols[:3] for b in batches)
    assert sum(b.num_rows for b in batches) == plain.num_rows
    assert top_n_dataset(root, "src_addr", "bytes", 5).equals(top_n(plain, "src_addr", "bytes", 5))
    sampled = tmp_path / "sampled"
    write_partitioned(table, sampled, time_column="flow_start", part_name="t")
    batches = list(flow_query.scan_flows(sampled, cols, drop_unsampled=True))
    assert all(b.schema.names == cols for b in batches)
    assert top_n_dataset(sampled, "src_addr", "bytes", 5).equals(
        top_n(table, "src_addr", "bytes", 5)
    )
    # the polars path asks the footers the same question
    assert flow_query.unsampled_files(list(root.rglob("*.parquet")))
    assert not flow_query.unsampled_files(list(sampled.rglob("*.parquet")))
    for engine in ("polars", "kernels"):
        flow_query.ENGINE = engine
        try:
            for data, flows in ((root, plain), (sampled, table)):
                got = top_n_dataset(data, "dst_port", "packets", 3)
                assert got.equals(top_n(flows, "dst_port", "packets", 3)), engine
        finally:
            flow_query.ENGINE = None


def test_polars_path_renormalises_a_sampled_part_after_unsampled_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The polars path guesses "unsampled" from the first and last parts' footers and runs
    that plan while it reads the others: a sampled part between (here the middle day)
    drops the guess, and the sums are the renormalised ones."""
    rows = [{"src": f"10.0.{i % 3}.{i % 17}", "dst": f"192.0.2.{i % 5}",
             "bytes": (i * 7919) % 10_000, "packets": 1 + i % 13, "dst_port": i % 7,
             "sampling_interval": 4 if i % 3 == 1 else i % 2,
             "start": T0_US + (i % 3) * DAY_US + i * 1_000_000} for i in range(300)]  # fmt: skip
    mixed = flows(rows)
    root = tmp_path / "mixed"
    write_partitioned(mixed, root, time_column="flow_start", part_name="t")
    files = sorted(str(f) for f in root.rglob("*.parquet"))
    assert flow_query.unsampled_files([files[0], files[-1]])  # the middle day's is sampled
    assert not flow_query.unsampled_files(files)
    monkeypatch.setattr(flow_query, "ENGINE", "polars")
    for by, metric in (("dst_port", "bytes"), ("src_addr", "packets")):
        got = top_n_dataset(root, by, metric, 4)
        assert got.equals(top_n(mixed, by, metric, 4)), by
        assert not got.equals(top_n_dataset(root, by, metric, 4, renormalise=False))
    got = bucket_traffic_dataset(root, "dst_port", "hour")
    monkeypatch.setattr(flow_query, "ENGINE", "kernels")
    assert got.equals(bucket_traffic_dataset(root, "dst_port", "hour"))


def test_numpy_array_keeps_values_and_types() -> None:
    import numpy as np

    strided = np.arange(12, dtype=np.uint8).reshape(4, 3)[:, 1]
    big = np.arange(5, dtype=np.uint64) * 2**61
    for values in (big, np.array([-3, 0, 7], np.int64), np.array([0.5, -1.25]), strided):
        got = flow_query.numpy_array(values)
        assert got.type == pa.from_numpy_dtype(values.dtype)
        assert got.null_count == 0
        assert got.to_pylist() == values.tolist()
    for bad in (np.array([True, False]), np.zeros((2, 2)), np.array(["a"], object)):
        with pytest.raises(TypeError):
            flow_query.numpy_array(bad)


@pytest.mark.parametrize(("ahead", "rows"), [(1, 1), (4, 1), (4, 150), (4, 10**9)])
def test_scan_reads_ahead_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: int, rows: int
) -> None:
    """Whatever number of row groups (and rows) are read ahead, the batches come in
    file and row-group order, every row once, with a window and a filter too."""
    import pyarrow.parquet as pq

    from rating_engine.traffic.flow_filter import compile_filter

    monkeypatch.setattr(flow_query, "_READ_AHEAD", ahead)
    monkeypatch.setattr(flow_query, "_READ_AHEAD_ROWS", rows)
    table = _table()
    files = []
    for i in range(3):  # three files of several small row groups
        part = table.slice(i * 130, 130)
        files.append(tmp_path / f"part-{i}.parquet")
        pq.write_table(part, files[-1], row_group_size=40)
    cols = ["src_addr", "dst_port", "bytes"]
    want = table.slice(0, 390).select(cols)
    got = pa.Table.from_batches(list(flow_query.scan_flows(files, cols)))
    assert got.equals(want)
    window = (T0_US + 100_000, T0_US + 300_000)
    got = pa.Table.from_batches(list(flow_query.scan_flows(files, cols, window)))
    start = table.slice(0, 390).column("flow_start").cast(pa.int64()).to_pylist()
    keep = [window[0] <= t < window[1] for t in start]
    assert 0 < sum(keep) < len(keep)
    assert got.equals(want.filter(pa.array(keep)))
    flt = compile_filter("dst port 80 or bytes > 5000")
    got = pa.Table.from_batches(list(flow_query.scan_flows(files, cols, None, flt)))
    assert got.equals(want.filter(flt.arrow))
