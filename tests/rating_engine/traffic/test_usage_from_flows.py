"""Attributed flow volume per block and bucket as data usage records."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ip_flow_builders import HOUR_US, T0_US, address, block, contains, flows, subscriptions

from collectors.schemas import USAGE_SCHEMA
from rating_engine.errors import RatingError
from rating_engine.traffic.attribution import attribute_flows, build_prefix_index
from rating_engine.traffic.usage_from_flows import (
    combine_usage,
    record_id_for_key,
    record_ids_for_keys,
    usage_and_stats,
    usage_from_flows,
)

BUCKET_US = {"5min": 300_000_000, "hour": HOUR_US, "day": 24 * HOUR_US}


def test_record_id_definition() -> None:
    key = "flows:1:10.0.0.0/24:1767225600000000:3600000000"
    digest = hashlib.blake2b(key.encode()).digest()[:8]  # USAGE_SCHEMA.record_id's definition
    assert record_id_for_key(key) == int.from_bytes(digest, "little", signed=True)
    keys = [key, "x", "", "é"]
    assert record_ids_for_keys(keys).tolist() == [record_id_for_key(k) for k in keys]
    assert record_ids_for_keys(pa.array(keys)).tolist() == [record_id_for_key(k) for k in keys]


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.text(max_size=300), max_size=20), start=st.integers(0, 3))
def test_vectorised_ids_equal_hashlib(keys: list[str], start: int) -> None:
    keys = [*keys, "a" * 127, "b" * 128, "c" * 129, "d" * 256, "e" * 257]
    arr = pa.array(keys, pa.string()).slice(min(start, len(keys)))
    expected = [record_id_for_key(k) for k in keys[min(start, len(keys)) :]]
    assert record_ids_for_keys(arr).tolist() == expected
    assert record_ids_for_keys(arr.cast(pa.large_string())).tolist() == expected
    # one definition for every usage record id: the first 8 bytes of the BLAKE2b digest
    cdr = [
        int.from_bytes(hashlib.blake2b(k.encode()).digest()[:8], "little", signed=True)
        for k in keys[min(start, len(keys)) :]
    ]
    assert expected == cdr


def test_hand_case_hourly() -> None:
    subs = subscriptions([(7, "10.0.0.0/24", None, None), (8, "2001:db8::/64", None, None)])
    idx = build_prefix_index(subs)
    table = flows(
        [
            {"src": "10.0.0.1", "dst": "8.8.8.8", "bytes": 1000, "start": T0_US + 5},
            {
                "src": "8.8.8.8",
                "dst": "10.0.0.2",
                "bytes": 300,
                "sampling_interval": 10,
                "start": T0_US + HOUR_US - 1,
            },
            {"src": "10.0.0.1", "dst": "10.0.0.9", "bytes": 7, "start": T0_US + HOUR_US},
            {
                "src": "2001:db8::1",
                "dst": "::1",
                "bytes": 50,
                "sampling_interval": 0,
                "start": T0_US,
            },
            {"src": "1.1.1.1", "dst": "2.2.2.2", "bytes": 999, "start": T0_US},
        ]
    )
    usage, stats = usage_and_stats(table, idx, bucket="hour", source_file="f.parquet")
    assert usage.schema.equals(USAGE_SCHEMA, check_metadata=True)
    rows = usage.select(
        ["record_key", "subscriber_key", "volume_up", "volume_down", "duration_ms", "service"]
    ).to_pylist()
    assert rows == [
        {
            "record_key": f"flows:7:10.0.0.0/24:{T0_US}:{HOUR_US}",
            "subscriber_key": "10.0.0.0/24",
            "volume_up": 1000,
            "volume_down": 3000,
            "duration_ms": 3_600_000,
            "service": "data",
        },
        {
            "record_key": f"flows:7:10.0.0.0/24:{T0_US + HOUR_US}:{HOUR_US}",
            "subscriber_key": "10.0.0.0/24",
            "volume_up": 7,
            "volume_down": 7,
            "duration_ms": 3_600_000,
            "service": "data",
        },
        {
            "record_key": f"flows:8:2001:db8::/64:{T0_US}:{HOUR_US}",
            "subscriber_key": "2001:db8::/64",
            "volume_up": 50,
            "volume_down": 0,
            "duration_ms": 3_600_000,
            "service": "data",
        },
    ]
    assert usage.column("record_id").to_pylist() == [
        record_id_for_key(r["record_key"]) for r in rows
    ]
    assert set(usage.column("subscriber_key_type").to_pylist()) == {"ip"}
    assert set(usage.column("source_file").to_pylist()) == {"f.parquet"}
    assert stats.unattributed == 1
    assert stats.unattributed_bytes == 999
    assert stats.flows == 5
    # attributed input (entries already there) gives the same records
    assert usage_from_flows(
        attribute_flows(table, idx), idx, bucket="hour", source_file="f.parquet"
    ).equals(usage)


def test_bad_bucket_refused() -> None:
    idx = build_prefix_index(subscriptions([(1, "10.0.0.0/24", None, None)]))
    with pytest.raises(RatingError, match="1min"):
        usage_from_flows(flows([{"src": "10.0.0.1", "dst": "::1"}]), idx, bucket="1min")


def test_empty_input() -> None:
    idx = build_prefix_index(subscriptions([(1, "10.0.0.0/24", None, None)]))
    empty = flows([]).slice(0, 0)
    assert usage_from_flows(empty, idx).num_rows == 0
    assert combine_usage([]).schema.equals(USAGE_SCHEMA)


def _reference(
    bindings: list[tuple[int, str, int | None, int | None]],
    rows: list[dict[str, int | str]],
    width: int,
) -> dict[str, tuple[int, int]]:
    """Twin: record_key -> (volume_up, volume_down), longest-prefix by brute force."""
    import ipaddress

    def match(addr: str) -> tuple[int, str] | None:
        best = None
        for sub, cidr, _f, _t in bindings:
            if contains(cidr, addr):
                plen = ipaddress.ip_network(cidr).prefixlen
                if best is None or plen > best[0]:
                    best = (plen, sub, cidr)
        return None if best is None else (best[1], best[2])

    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        vol = int(r["bytes"]) * max(int(r["sampling_interval"]), 1)
        bucket = int(r["start"]) // width * width
        for side, addr in ((0, r["src"]), (1, r["dst"])):
            m = match(str(addr))
            if m is not None:
                out[f"flows:{m[0]}:{m[1]}:{bucket}:{width}"][side] += vol
    return {k: (v[0], v[1]) for k, v in out.items()}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    blocks=st.lists(block(), min_size=1, max_size=10, unique=True),
    rows=st.lists(
        st.tuples(
            address(),
            address(),
            st.integers(0, 10**12),
            st.integers(0, 100),
            st.integers(0, 3 * HOUR_US),
        ),
        min_size=1,
        max_size=40,
    ),
    bucket=st.sampled_from(["5min", "hour", "day"]),
    cut=st.integers(0, 40),
)
def test_matches_reference_and_partitions_combine(
    blocks: list[str], rows: list[tuple[str, str, int, int, int]], bucket: str, cut: int
) -> None:
    bindings = [(i + 1, b, None, None) for i, b in enumerate(blocks)]
    idx = build_prefix_index(subscriptions(bindings))
    flow_rows = [
        {"src": s, "dst": d, "bytes": b, "sampling_interval": m, "start": T0_US + t}
        for s, d, b, m, t in rows
    ]
    table = flows(flow_rows)
    usage = usage_from_flows(table, idx, bucket=bucket)
    got = {
        r["record_key"]: (r["volume_up"], r["volume_down"])
        for r in usage.select(["record_key", "volume_up", "volume_down"]).to_pylist()
    }
    assert got == _reference(bindings, flow_rows, BUCKET_US[bucket])
    cut = min(cut, table.num_rows)
    parts = [
        usage_from_flows(table.slice(0, cut), idx, bucket=bucket),
        usage_from_flows(table.slice(cut), idx, bucket=bucket),
    ]
    assert combine_usage(parts).equals(usage)


def test_subscriber_key_is_canonical_block_text() -> None:
    idx = build_prefix_index(
        subscriptions([(1, " 2001:DB8:0::/48", None, None), (2, "::ffff:10.0.0.0/120", None, None)])
    )
    table = flows([{"src": "2001:db8::1", "dst": "10.0.0.7"}])
    keys = usage_from_flows(table, idx).column("subscriber_key").to_pylist()
    assert sorted(keys) == ["2001:db8::/48", "::ffff:a00:0/120"]
