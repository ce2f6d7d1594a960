"""``top_talkers`` / ``flow_buckets`` and ``rating-engine query`` against polars references."""

from __future__ import annotations

import ipaddress
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bss.analyst.query as query
import rating_engine.traffic.flow_query as flow_query
from bss.analyst.query import (
    BY_KEYS,
    address_text,
    flow_buckets,
    parse_window,
    to_us,
    top_talkers,
)
from bss.errors import ValidationError
from collectors.dataset import write_partitioned
from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import WorkspacePaths

T0 = to_us("2026-10-05T00:00:00")
HOUR = 3_600_000_000
ADDRESSES = [
    "192.0.2.1",
    "192.0.2.2",
    "198.51.100.7",
    "203.0.113.9",
    "2001:db8::1",
    "2001:db8:ffff::2",
    "10.1.2.3",
]


def _addr(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return (b"\x00" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed


def _text(value: bytes | None) -> str | None:
    """Independent reference for address text (not collectors.addresses)."""
    if value is None:
        return None
    v6 = ipaddress.IPv6Address(value)
    return str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)


def make_flows(n: int, seed: int, *, hours: int = 48) -> pa.Table:
    """Flows over few keys (many ties), sampled and unsampled, a null exporter."""
    rng = np.random.default_rng(seed)
    addrs = [_addr(a) for a in ADDRESSES]

    def pick() -> list[bytes]:
        return [addrs[i] for i in rng.integers(0, len(addrs), n)]

    start = T0 + rng.integers(0, hours * HOUR, n)
    exporters = [None, _addr("192.0.2.254"), _addr("2001:db8::fe")]
    cols = {
        "exporter": pa.array([exporters[i] for i in rng.integers(0, 3, n)], pa.binary(16)),
        "observation_domain": pa.array(np.zeros(n, np.uint32)),
        "flow_start": pa.array(start).cast(pa.timestamp("us", tz="UTC")),
        "flow_end": pa.array(start + rng.integers(0, 60_000_000, n)).cast(
            pa.timestamp("us", tz="UTC")
        ),
        "src_addr": pa.array(pick(), pa.binary(16)),
        "dst_addr": pa.array(pick(), pa.binary(16)),
        "src_port": pa.array(rng.choice([53, 443, 40000, 40001], n).astype(np.uint16)),
        "dst_port": pa.array(rng.choice([53, 80, 443], n).astype(np.uint16)),
        "protocol": pa.array(rng.choice([1, 6, 17], n).astype(np.uint8)),
        "tcp_flags": pa.array(np.zeros(n, np.uint16)),
        "tos": pa.array(np.zeros(n, np.uint8)),
        "bytes": pa.array(rng.integers(40, 3000, n).astype(np.uint64)),
        "packets": pa.array(rng.integers(1, 5, n).astype(np.uint64)),
        "input_if": pa.array(rng.integers(0, 3, n).astype(np.uint32)),
        "output_if": pa.array(rng.integers(0, 3, n).astype(np.uint32)),
        "src_as": pa.array(rng.choice([0, 64500, 64501], n).astype(np.uint32)),
        "dst_as": pa.array(rng.choice([0, 64500], n).astype(np.uint32)),
        "next_hop": pa.nulls(n, pa.binary(16)),
        "vlan": pa.array(np.zeros(n, np.uint16)),
        # 0 means "unsampled" like 1; 10 is renormalised
        "sampling_interval": pa.array(rng.choice([0, 1, 10], n).astype(np.uint32)),
        "direction": pa.nulls(n, pa.uint8()),
        "source_format": pa.array(["ipfix"] * n),
    }
    # nullable columns not set here (MPLS, enrichment) are null
    return pa.table(
        [cols.get(f.name, pa.nulls(n, f.type)) for f in FLOW_SCHEMA], schema=FLOW_SCHEMA
    )


def write_workspace(root: Path, flows: pa.Table) -> WorkspacePaths:
    paths = WorkspacePaths(root).ensure()
    write_partitioned(flows, paths.flows, time_column="flow_start", part_name="t", hourly=True)
    return paths


def reference(
    flows: pa.Table,
    by: str,
    metric: str,
    n: int | None,
    window: tuple[int, int] | None = None,
    renormalise: bool = True,
) -> pl.DataFrame:
    """Polars group-by / sort over the same flows (text keys, nfdump's percentages)."""
    df = pl.from_arrow(flows)
    assert isinstance(df, pl.DataFrame)
    zero = b"\x00" * 16
    df = df.with_columns(pl.col("exporter").fill_null(zero))
    if renormalise:
        m = pl.max_horizontal(pl.col("sampling_interval"), pl.lit(1)).cast(pl.UInt64)
        df = df.with_columns(pl.col("bytes") * m, pl.col("packets") * m)
    if window is not None:
        t = pl.col("flow_start").dt.epoch("us")
        df = df.filter((t >= window[0]) & (t < window[1]))
    keys = list(BY_KEYS[by])
    if by == "conversation":
        lo = pl.min_horizontal("src_addr", "dst_addr")
        hi = pl.max_horizontal("src_addr", "dst_addr")
        df = df.with_columns(lo.alias("src_addr"), hi.alias("dst_addr"))
    if keys[0] in ("input_if", "output_if"):
        keys = ["exporter", keys[0]]
    totals = {"flows": df.height, "packets": df["packets"].sum(), "bytes": df["bytes"].sum()}
    agg = df.group_by(keys).agg(
        pl.len().cast(pl.UInt64).alias("flows"), pl.col("packets").sum(), pl.col("bytes").sum()
    )
    agg = agg.sort([metric, *keys], descending=[True] + [False] * len(keys))
    if n is not None:
        agg = agg.head(n)
    for k in keys:
        if agg.schema[k] == pl.Binary:
            agg = agg.with_columns(pl.col(k).map_elements(_text, return_dtype=pl.String))
    for name in ("flows", "packets", "bytes"):
        agg = agg.with_columns(
            (pl.col(name).cast(pl.Float64) * 100.0 / max(totals[name] or 0, 1)).alias(f"{name}_pct")
        )
    return agg


def _compare(got: pa.Table, want: pl.DataFrame, by: str) -> None:
    g = pl.from_arrow(got)
    assert isinstance(g, pl.DataFrame)
    exact = [c for c in want.columns if not c.endswith("_pct")]
    assert g["rank"].to_list() == list(range(1, want.height + 1))
    for col in exact:
        assert g[col].to_list() == want[col].to_list(), (by, col)
    for name in ("flows", "packets", "bytes"):
        assert g[f"{name}_pct"].to_list() == pytest.approx(want[f"{name}_pct"].to_list())


@pytest.fixture(scope="module")
def flows_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[WorkspacePaths, pa.Table]:
    flows = make_flows(3000, seed=1)
    return write_workspace(tmp_path_factory.mktemp("q") / "ws", flows), flows


@pytest.mark.parametrize(
    "by",
    ["src_ip", "dst_ip", "src_port", "dst_port", "proto", "conversation", "pair", "exporter",
     "input_if", "output_if", "src_as", "dst_as"],
)  # fmt: skip
@pytest.mark.parametrize("metric", ["bytes", "packets", "flows"])
@pytest.mark.parametrize("engine", ["arrow", "kernels", "polars"])
def test_top_talkers_equals_polars(
    flows_ws: tuple[WorkspacePaths, pa.Table],
    by: str,
    metric: str,
    engine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(query, "ENGINE", engine)
    paths, flows = flows_ws
    got = top_talkers(paths, by, metric, 5)
    _compare(got, reference(flows, by, metric, 5), by)
    meta = got.schema.metadata
    assert int(meta[b"total_flows"]) == flows.num_rows


def test_window_and_raw_volumes(flows_ws: tuple[WorkspacePaths, pa.Table]) -> None:
    paths, flows = flows_ws
    window = (T0 + 5 * HOUR, T0 + 29 * HOUR)
    got = top_talkers(paths, "src_ip", "bytes", 4, window, renormalise=False)
    _compare(got, reference(flows, "src_ip", "bytes", 4, window, renormalise=False), "src_ip")
    text = top_talkers(
        paths, "src_ip", "bytes", 4, ("2026-10-05T05:00", "2026-10-06T05:00"), renormalise=False
    )
    assert text.to_pylist() == got.to_pylist()


def test_percentages_sum_to_at_most_100(flows_ws: tuple[WorkspacePaths, pa.Table]) -> None:
    paths, _flows = flows_ws
    for n in (3, 1000):
        got = top_talkers(paths, "src_ip", "bytes", n)
        for name in ("flows_pct", "packets_pct", "bytes_pct"):
            total = sum(got.column(name).to_pylist())
            assert total <= 100.0 + 1e-9
            if n == 1000:  # every key listed: the shares add up to the whole
                assert total == pytest.approx(100.0)


def test_streaming_merge_equals_one_shot(
    flows_ws: tuple[WorkspacePaths, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, flows = flows_ws
    monkeypatch.setattr(query, "_CHUNK_ROWS", 1)  # one partial per batch (per file here)
    monkeypatch.setattr(query, "_ARROW_CHUNK_ROWS", 1)
    monkeypatch.setattr(query, "_MERGE_ROWS", 1)  # merged after every batch
    got = top_talkers(paths, "conversation", "bytes", 10)
    _compare(got, reference(flows, "conversation", "bytes", 10), "conversation")


def test_prefix_keys_show_their_length(flows_ws: tuple[WorkspacePaths, pa.Table]) -> None:
    paths, _flows = flows_ws
    got = top_talkers(paths, "src_prefix", "flows", 100).column("src_prefix").to_pylist()
    assert set(got) == {"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "10.1.2.0/24",
                        "2001:db8::/48", "2001:db8:ffff::/48"}  # fmt: skip


@pytest.mark.parametrize("engine", ["arrow", "kernels", "polars"])
def test_buckets_equal_polars(
    flows_ws: tuple[WorkspacePaths, pa.Table], engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "ENGINE", engine)
    paths, flows = flows_ws
    got = pl.from_arrow(flow_buckets(paths, "proto", "hour"))
    assert isinstance(got, pl.DataFrame)
    df = pl.from_arrow(flows)
    assert isinstance(df, pl.DataFrame)
    m = pl.max_horizontal(pl.col("sampling_interval"), pl.lit(1)).cast(pl.UInt64)
    want = (
        df.with_columns(
            (pl.col("bytes") * m).alias("bytes"),
            pl.col("flow_start").dt.truncate("1h").alias("bucket_start"),
        )
        .group_by("bucket_start", "protocol")
        .agg(pl.col("bytes").sum(), pl.len().cast(pl.UInt64).alias("flows"))
        .sort("bucket_start", "protocol")
    )
    assert got["protocol"].to_list() == want["protocol"].to_list()
    assert got["bucket_start"].to_list() == want["bucket_start"].to_list()
    assert got["bytes"].to_list() == want["bytes"].to_list()
    assert got["flows"].to_list() == want["flows"].to_list()


def test_empty_and_missing_dataset(tmp_path: Path) -> None:
    paths = WorkspacePaths(tmp_path / "none")
    got = top_talkers(paths, "src_ip", "bytes", 10)
    assert got.num_rows == 0
    assert got.schema.names[:2] == ["rank", "src_addr"]
    assert got.schema.metadata[b"total_bytes"] == b"0"
    assert flow_buckets(paths, "dst_port", "day").num_rows == 0


def test_bad_arguments(flows_ws: tuple[WorkspacePaths, pa.Table]) -> None:
    paths, _flows = flows_ws
    with pytest.raises(ValidationError, match="group by 'nope'"):
        top_talkers(paths, "nope")
    with pytest.raises(ValidationError, match="metric"):
        top_talkers(paths, "src_ip", "octets")
    with pytest.raises(ValidationError, match="n=0"):
        top_talkers(paths, "src_ip", "bytes", 0)


def test_parse_window() -> None:
    assert parse_window("2026-10-05T00:00/2026-10-06T00:00") == (T0, T0 + 24 * HOUR)
    assert parse_window("2026-10-05T02:00+02:00/2026-10-06") == (T0, T0 + 24 * HOUR)
    assert parse_window("/2026-10-06") == (-(2**63), T0 + 24 * HOUR)
    assert parse_window(None) is None
    assert to_us(datetime(2026, 10, 5, tzinfo=UTC)) == T0
    for bad in ("2026-10-05", "2026-10-06/2026-10-05", "x/y"):
        with pytest.raises(ValidationError):
            parse_window(bad)


def test_address_text_handles_nulls_and_blobs() -> None:
    col = pa.array([_addr("192.0.2.1"), None, _addr("2001:db8::1")], pa.binary(16))
    assert address_text(col).to_pylist() == ["192.0.2.1", None, "2001:db8::1"]
    blobs = pa.chunked_array([pa.array([_addr("10.0.0.1"), b"\x01\x02", None], pa.binary())])
    assert address_text(blobs).to_pylist() == ["10.0.0.1", None, None]


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_flows=st.integers(0, 120),
    seed=st.integers(0, 2**16),
    by=st.sampled_from(["src_ip", "dst_port", "conversation", "exporter", "output_if"]),
    metric=st.sampled_from(["bytes", "packets", "flows"]),
    n=st.integers(1, 12),
)
def test_property_top_n_equals_reference(
    n_flows: int, seed: int, by: str, metric: str, n: int
) -> None:
    flows = make_flows(n_flows, seed, hours=3)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_workspace(Path(tmp) / "ws", flows)
        got = top_talkers(paths, by, metric, n)
    _compare(got, reference(flows, by, metric, n), by)


def test_cli_top_json_matches_function(
    flows_ws: tuple[WorkspacePaths, pa.Table], capsys: pytest.CaptureFixture[str]
) -> None:
    from bss.cli.main import main

    paths, flows = flows_ws
    window = "2026-10-05T00:00/2026-10-06T00:00"
    args = ["--workspace", str(paths.root), "query", "top", "--by", "dst_port"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--metric", "packets", "-n", "3", "--window", window, "--json"])
    assert done.value.code in (0, None)
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    want = top_talkers(paths, "dst_port", "packets", 3, parse_window(window))
    assert [r["dst_port"] for r in payload["rows"]] == want.column("dst_port").to_pylist()
    assert [r["packets"] for r in payload["rows"]] == want.column("packets").to_pylist()
    assert payload["totals"]["flows"] == int(want.schema.metadata[b"total_flows"])
    with pytest.raises(SystemExit) as done:
        main(["--workspace", str(paths.root), "query", "buckets", "--by", "proto", "--json"])
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert sum(r["flows"] for r in rows) == flows.num_rows
    with pytest.raises(SystemExit) as done:
        main([*args, "--by", "nonsense"])
    assert done.value.code == 3


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_flows=st.integers(0, 150),
    seed=st.integers(0, 2**16),
    by=st.sampled_from(["src_ip", "dst_port", "pair", "conversation", "input_if", "proto"]),
    bucket=st.sampled_from([None, "5min", "hour", 7_000_000]),
    chunk=st.sampled_from([1, 50, 10_000]),
    before_1970=st.booleans(),
)
def test_property_engines_agree(
    n_flows: int, seed: int, by: str, bucket: str | int | None, chunk: int, before_1970: bool
) -> None:
    """Arrow's hash aggregation, the Numba kernels and polars' scan give the same partial:
    the same groups, sums and types, for any chunking (partials merged by either engine),
    buckets before the epoch included (floor division)."""
    flows = make_flows(n_flows, seed, hours=3)
    if before_1970:  # the same flows 60 years earlier
        shift = pa.scalar(60 * 365 * 24 * HOUR, pa.duration("us"))
        i = flows.schema.get_field_index("flow_start")
        flows = flows.set_column(i, "flow_start", pc.subtract(flows.column("flow_start"), shift))
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_workspace(Path(tmp) / "ws", flows)
        for engine in ("arrow", "kernels", "polars"):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(query, "ENGINE", engine)
                mp.setattr(query, "_CHUNK_ROWS", chunk)
                mp.setattr(query, "_ARROW_CHUNK_ROWS", chunk)
                mp.setattr(query, "_MERGE_ROWS", chunk)
                if bucket is None:
                    tables[engine] = top_talkers(paths, by, "bytes", 1000, text=False)
                else:  # buckets are directed: a conversation's are its pair's
                    key = "pair" if by == "conversation" else by
                    tables[engine] = flow_buckets(paths, key, bucket, text=False)
    for engine in ("kernels", "polars"):
        assert tables["arrow"].schema == tables[engine].schema
        assert tables["arrow"].to_pylist() == tables[engine].to_pylist()
    assert tables["arrow"].num_rows <= n_flows


def test_engine_choice(flows_ws: tuple[WorkspacePaths, pa.Table]) -> None:
    """Subscriptions and prefixes always go to the kernels; plain keys to polars once it
    is loaded, or when the window holds enough Parquet to pay for its import (one
    address: the kernels once Numba is loaded); else to the kernels when Numba is
    loaded, else to Arrow."""
    import sys

    import numba  # noqa: F401  (loaded, then hidden below)

    paths, _flows = flows_ws

    def window() -> int:
        return sum(p.stat().st_size for p in paths.flows.rglob("*.parquet"))

    assert query._engine(BY_KEYS["src_prefix"]) == "kernels"
    assert query._engine(BY_KEYS["subscription"]) == "kernels"
    assert query._engine(BY_KEYS["src_ip"]) == "kernels"  # one address, Numba loaded
    assert query._engine(BY_KEYS["pair"]) == "polars"  # loaded by this test module
    assert query._engine(BY_KEYS["dst_port"]) == "polars"
    with pytest.MonkeyPatch.context() as mp:
        mp.delitem(sys.modules, "polars")
        assert query._engine(BY_KEYS["pair"], window) == "kernels"
        mp.delitem(sys.modules, "numba")
        assert query._engine(BY_KEYS["src_ip"], window) == "arrow"
        assert query._engine(BY_KEYS["output_if"]) == "arrow"
        mp.setattr(flow_query, "_POLARS_BYTES", 1)
        assert query._engine(BY_KEYS["dst_port"], window) == "polars"
        assert query._engine(BY_KEYS["dst_port"], int) == "arrow"  # nothing in the window
