"""Group-by kernels and traffic aggregations against pure-Python twins."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ip_flow_builders import HOUR_US, T0_US, address, flows, subscriptions

from collectors.addresses import address_from_bytes, address_to_bytes
from rating_engine.errors import RatingError
from rating_engine.traffic import bucket_kernel, groupby_kernel
from rating_engine.traffic.aggregate import (
    bucket_traffic,
    combine_peer_pairs,
    combine_traffic,
    count_peers,
    distinct_peers,
    finish_top_n,
    hour_of_week_profile,
    peer_pairs,
    top_conversations,
    top_n,
    with_address_text,
)
from rating_engine.traffic.attribution import build_prefix_index
from rating_engine.traffic.bucket_kernel import aggregate_by_code
from rating_engine.traffic.groupby_kernel import (
    _sorted,
    hash_aggregate,
    hash_aggregate_parallel,
    radix_aggregate,
)

WIDTH = {"1min": 60_000_000, "5min": 300_000_000, "hour": HOUR_US, "day": 24 * HOUR_US}
SUBS = [
    (1, "10.0.0.0/22", None, None),
    (2, "10.0.1.0/24", None, None),
    (3, "2001:db8::/120", None, None),
]

flow_row = st.fixed_dictionaries(
    {
        "src": address(),
        "dst": address(),
        "start": st.integers(T0_US - HOUR_US, T0_US + 30 * HOUR_US),
        "bytes": st.integers(0, 10**10),
        "packets": st.integers(0, 10**6),
        "sampling_interval": st.integers(0, 3),
        "protocol": st.sampled_from([1, 6, 17]),
        "dst_port": st.integers(0, 70),
        "input_if": st.integers(0, 3),
        "exporter": st.sampled_from(["192.0.2.1", "2001:db8:ff::1"]).map(address_to_bytes),
    }
)


def _key_of(r: dict[str, Any], key: str) -> Any:
    if key in ("src_prefix", "dst_prefix"):
        ip = ipaddress.ip_address(r[key[:3]])
        plen = 24 if ip.version == 4 else 48
        return address_to_bytes(ipaddress.ip_network(f"{ip}/{plen}", strict=False).network_address)
    if key in ("src", "dst"):
        return address_to_bytes(r[key])
    return r[key]


def _twin(
    rows: list[dict[str, Any]], keys: list[str], width: int | None, renorm: bool
) -> dict[tuple[Any, ...], list[int]]:
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        m = max(r["sampling_interval"], 1) if renorm else 1
        k = tuple(_key_of(r, key) for key in keys)
        if width:
            k += (r["start"] // width * width,)
        acc = out[k]
        acc[0] += r["bytes"] * m
        acc[1] += r["packets"] * m
        acc[2] += 1
    return dict(out)


def _as_dict(table: pa.Table, cols: list[str]) -> dict[tuple[Any, ...], list[int]]:
    d = table.to_pydict()
    if "bucket_start" in d:
        d["bucket_start"] = [int(v.timestamp()) * 1_000_000 for v in d["bucket_start"]]
        cols = [*cols, "bucket_start"]
    return {
        tuple(d[c][i] for c in cols): [d["bytes"][i], d["packets"][i], d["flows"][i]]
        for i in range(table.num_rows)
    }


KEYS = {
    "protocol": (["protocol"], ["protocol"]),
    "dst_port": (["dst_port"], ["dst_port"]),
    "src_addr": (["src"], ["src_addr"]),
    "src_prefix": (["src_prefix"], ["src_prefix"]),
    "input_if": (["exporter", "input_if"], ["exporter", "input_if"]),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(flow_row, min_size=1, max_size=40),
    key=st.sampled_from(sorted(KEYS)),
    bucket=st.sampled_from([None, "1min", "5min", "hour", "day"]),
    renorm=st.booleans(),
    cut=st.integers(0, 40),
)
def test_bucket_traffic_matches_twin_and_combines(
    rows: list[dict[str, Any]], key: str, bucket: str | None, renorm: bool, cut: int
) -> None:
    twin_keys, cols = KEYS[key]
    table = flows(rows)
    got = bucket_traffic(table, key, bucket, renormalise=renorm)
    assert _as_dict(got, cols) == _twin(rows, twin_keys, WIDTH.get(bucket or ""), renorm)
    cut = min(cut, len(rows))
    parts = [
        bucket_traffic(table.slice(0, cut), key, bucket, renormalise=renorm),
        bucket_traffic(table.slice(cut), key, bucket, renormalise=renorm),
    ]
    assert combine_traffic(parts).equals(combine_traffic([got]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(flow_row, min_size=1, max_size=40), bucket=st.sampled_from(["5min", "day"]))
def test_bucket_by_subscription_matches_twin(rows: list[dict[str, Any]], bucket: str) -> None:
    idx = build_prefix_index(subscriptions(SUBS))

    def sub_of(addr: str) -> int | None:
        ip = ipaddress.ip_address(addr)
        best = None
        for sid, cidr, _f, _t in SUBS:
            net = ipaddress.ip_network(cidr)
            if (
                net.version == ip.version
                and ip in net
                and (best is None or net.prefixlen > best[0])
            ):
                best = (net.prefixlen, sid)
        return None if best is None else best[1]

    keyed = []
    for r in rows:
        sid = sub_of(r["dst"]) or sub_of(r["src"])
        if sid is not None:
            keyed.append({**r, "sub": sid})
    got = bucket_traffic(flows(rows), "subscription", bucket, index=idx)
    assert _as_dict(got, ["subscription_id"]) == _twin(keyed, ["sub"], WIDTH[bucket], True)


@pytest.mark.parametrize("limits", [(1 << 22, 1 << 25), (4, 1 << 25), (4, 8)])
def test_three_strategies_agree(monkeypatch: pytest.MonkeyPatch, limits: tuple[int, int]) -> None:
    """Dense, chunked-dense and hash paths of aggregate_by_code give identical results."""
    monkeypatch.setattr(bucket_kernel, "DENSE_MAX_CELLS", limits[0])
    monkeypatch.setattr(bucket_kernel, "_GLOBAL_MAX_CELLS", limits[1])
    monkeypatch.setattr(bucket_kernel, "_CHUNK_ROWS", 1 << 16)
    rng = np.random.default_rng(3)
    n = 150_000
    codes = rng.integers(-1, 50, n).astype(np.int64)
    t = np.sort(rng.integers(0, 10 * HOUR_US, n)).astype(np.int64)
    b = rng.integers(0, 1 << 40, n).astype(np.uint64)
    p = rng.integers(0, 1000, n).astype(np.uint64)
    mult = rng.integers(0, 4, n).astype(np.uint32)
    c, start, sb, sp, sf = aggregate_by_code(codes, 50, t, HOUR_US, b, p, mult=mult)
    ref: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for i in np.flatnonzero(codes >= 0).tolist():
        m = max(int(mult[i]), 1)
        acc = ref[(int(t[i]) // HOUR_US * HOUR_US, int(codes[i]))]
        acc[0] += int(b[i]) * m
        acc[1] += int(p[i]) * m
        acc[2] += 1
    got = {
        (s, k): [x, y, z]
        for s, k, x, y, z in zip(
            start.tolist(), c.tolist(), sb.tolist(), sp.tolist(), sf.tolist(), strict=True
        )
    }
    assert got == dict(ref)
    assert list(got) == sorted(got)  # bucket-major, then code


def test_wide_codes_with_microsecond_buckets() -> None:
    """Codes spanning 32-bit AS numbers with 1-us buckets over three days: buckets x codes
    passes 2^63, so the hash path must not number cells (it gave starts off by 2^32 us)."""
    rng = np.random.default_rng(11)
    n = 5_000
    nkeys = (1 << 32) - 64_500
    codes = rng.choice(np.array([0, 1, nkeys - 1], np.int64), n)
    t = np.sort(rng.integers(T0_US, T0_US + 72 * HOUR_US, n)).astype(np.int64)
    b = rng.integers(0, 1 << 20, n).astype(np.uint64)
    c, start, sb, _, sf = aggregate_by_code(codes, nkeys, t, 1, b, b)
    ref: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for k, ti, bi in zip(codes.tolist(), t.tolist(), b.tolist(), strict=True):
        ref[(ti, k)][0] += bi
        ref[(ti, k)][1] += 1
    got = {
        (s, k): [x, z]
        for s, k, x, z in zip(start.tolist(), c.tolist(), sb.tolist(), sf.tolist(), strict=True)
    }
    assert got == dict(ref)
    assert list(got) == sorted(got)  # bucket-major, then code


@pytest.mark.parametrize(("bits", "chunks"), [(1, 1), (3, 2), (8, 2)])
@pytest.mark.parametrize("width", [0, 300_000_000])
def test_radix_equals_single_table(bits: int, chunks: int, width: int) -> None:
    rng = np.random.default_rng(5)
    n = 50_000
    keys = rng.integers(0, 3000, (n, 2)).astype(np.uint64)
    t = rng.integers(0, HOUR_US, n).astype(np.int64)
    b = rng.integers(0, 1 << 30, n).astype(np.uint64)
    mult = rng.integers(0, 3, n).astype(np.uint32)
    sel = (rng.random(n) < 0.9).astype(np.uint8)
    e64 = np.empty(0, np.uint64)
    one = hash_aggregate(keys, t, 0, width, b, b, e64, mult, sel, 0, n)
    many = radix_aggregate(keys, t, 0, width, b, b, e64, mult, sel, bits, chunks)
    for x, y in zip(_sorted(*one), _sorted(*many), strict=True):
        assert np.array_equal(x, y)


def _rank_twin(totals: dict[Any, list[int]], metric: int, n: int) -> list[tuple[Any, int]]:
    order = sorted(totals.items(), key=lambda kv: (-kv[1][metric], kv[0]))
    return [(k, v[metric]) for k, v in order[:n]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(flow_row, min_size=0, max_size=50),
    metric=st.sampled_from(["bytes", "packets", "flows"]),
    n=st.integers(1, 6),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 10), st.integers(0, 30))),
    cut=st.integers(0, 50),
)
def test_top_n_matches_twin(
    rows: list[dict[str, Any]], metric: str, n: int, window: tuple[int, int] | None, cut: int
) -> None:
    win = None if window is None else (T0_US + window[0] * HOUR_US, T0_US + window[1] * HOUR_US)
    kept = [r for r in rows if win is None or win[0] <= r["start"] < win[1]]
    twin = _twin(kept, ["src"], None, True)
    mi = ["bytes", "packets", "flows"].index(metric)
    expected = _rank_twin({k[0]: v for k, v in twin.items()}, mi, n)
    table = flows(rows)
    got = top_n(table, "src_addr", metric, n, win)
    assert [(r["src_addr"], r[metric]) for r in got.to_pylist()] == expected
    assert got.column("rank").to_pylist() == list(range(1, len(expected) + 1))
    cut = min(cut, len(rows))
    parts = [
        top_n(table.slice(0, cut), "src_addr", metric, None, win),
        top_n(table.slice(cut), "src_addr", metric, None, win),
    ]
    assert finish_top_n(combine_traffic(parts), metric, n).equals(got)


def test_top_conversations_bidirectional() -> None:
    rows = [
        {"src": "10.0.0.1", "dst": "10.0.0.2", "bytes": 10},
        {"src": "10.0.0.2", "dst": "10.0.0.1", "bytes": 15},
        {"src": "10.0.0.3", "dst": "10.0.0.1", "bytes": 20},
    ]
    got = top_conversations(flows(rows), n=5).to_pylist()
    pairs = [
        (str(address_from_bytes(r["src_addr"])), str(address_from_bytes(r["dst_addr"])), r["bytes"])
        for r in got
    ]
    assert pairs == [("10.0.0.1", "10.0.0.2", 25), ("10.0.0.1", "10.0.0.3", 20)]
    one_way = top_conversations(flows(rows), n=5, bidirectional=False)
    assert one_way.num_rows == 3


def test_hour_of_week_profile() -> None:
    idx = build_prefix_index(subscriptions(SUBS))
    monday = T0_US  # 2026-03-02 is a Monday
    rows = [
        {"src": "8.8.8.8", "dst": "10.0.0.1", "bytes": 5, "start": monday + 30 * 60 * 10**6},
        {"src": "10.0.0.1", "dst": "8.8.8.8", "bytes": 7, "start": monday + 7 * 24 * HOUR_US},
        {"src": "10.0.1.1", "dst": "10.0.0.1", "bytes": 9, "start": monday + 167 * HOUR_US},
    ]
    got = hour_of_week_profile(flows(rows), idx).to_pylist()
    assert got == [
        {
            "subscription_id": 1,
            "hour_of_week": 0,
            "bytes_down": 5,
            "bytes_up": 7,
            "flows_down": 1,
            "flows_up": 1,
        },
        {
            "subscription_id": 1,
            "hour_of_week": 167,
            "bytes_down": 9,
            "bytes_up": 0,
            "flows_down": 1,
            "flows_up": 0,
        },
        {
            "subscription_id": 2,
            "hour_of_week": 167,
            "bytes_down": 0,
            "bytes_up": 9,
            "flows_down": 0,
            "flows_up": 1,
        },
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(flow_row, min_size=1, max_size=50), cut=st.integers(0, 50))
def test_distinct_peers_matches_twin(rows: list[dict[str, Any]], cut: int) -> None:
    peers: dict[bytes, set[bytes]] = defaultdict(set)
    for r in rows:
        peers[address_to_bytes(r["src"])].add(address_to_bytes(r["dst"]))
    table = flows(rows)
    got = distinct_peers(table)
    assert {r["src_addr"]: r["peers"] for r in got.to_pylist()} == {
        k: len(v) for k, v in peers.items()
    }
    counts = got.column("peers").to_pylist()
    assert counts == sorted(counts, reverse=True)
    cut = min(cut, len(rows))
    parts = [peer_pairs(table.slice(0, cut)), peer_pairs(table.slice(cut))]
    assert count_peers(combine_peer_pairs(parts)).equals(got)


def test_errors_name_the_problem() -> None:
    table = flows([{"src": "10.0.0.1", "dst": "10.0.0.2"}])
    with pytest.raises(RatingError, match="pass index"):
        bucket_traffic(table, "subscription")
    with pytest.raises(RatingError, match="no field nope"):
        bucket_traffic(table, "nope")
    with pytest.raises(RatingError, match="metric"):
        top_n(table, metric="octets")
    with pytest.raises(ValueError, match="unknown bucket"):
        bucket_traffic(table, "protocol", "week")


def test_aliases_and_address_text() -> None:
    rows = [
        {"src": "10.0.0.1", "dst": "2001:db8::1", "bytes": 5},
        {"src": "10.0.0.1", "dst": "2001:db8::2", "bytes": 6},
        {"src": "2001:db8::9", "dst": "10.0.0.2", "bytes": 7},
    ]
    table = flows(rows)
    assert top_n(table, "src_ip").equals(top_n(table, "src_addr"))
    text = with_address_text(top_n(table, "srcip", n=2)).to_pylist()
    assert [(r["src_addr"], r["bytes"]) for r in text] == [("10.0.0.1", 11), ("2001:db8::9", 7)]


@pytest.mark.parametrize("width", [0, 300_000_000])
@pytest.mark.parametrize("distinct", [1, 3000])
def test_constant_key_words_left_out_and_restored(width: int, distinct: int) -> None:
    """Above the radix threshold a key word equal on every row (the zero half of
    IPv4-mapped addresses) is dropped from the hashed rows and restored on the groups:
    the same groups and sums as the single table over the full keys."""
    rng = np.random.default_rng(11)
    n = groupby_kernel._RADIX_MIN_ROWS + 5_000
    keys = np.empty((n, 3), np.uint64)
    keys[:, 0] = 0
    keys[:, 1] = rng.integers(0, distinct, n).astype(np.uint64) << np.uint64(32)
    keys[:, 2] = 0xFFFF0000
    t = rng.integers(0, HOUR_US, n).astype(np.int64)
    b = rng.integers(0, 1 << 30, n).astype(np.uint64)
    mult = rng.integers(0, 3, n).astype(np.uint32)
    e64, e8 = np.empty(0, np.uint64), np.empty(0, np.uint8)
    one = _sorted(*hash_aggregate(keys, t, 0, width, b, b, e64, mult, e8, 0, n))
    many = hash_aggregate_parallel(keys, t, 0, width, b, b, mult=mult)
    for x, y in zip(one, many, strict=True):
        assert np.array_equal(x, y)
