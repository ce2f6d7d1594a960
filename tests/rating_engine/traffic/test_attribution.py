"""Longest-prefix attribution of flows to IP-block subscriptions."""

from __future__ import annotations

import ipaddress

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ip_flow_builders import HOUR_US, T0_US, address, block, contains, flows, subscriptions

from rating_engine.errors import RatingError
from rating_engine.traffic.attribution import attribute_batches, attribute_flows, build_prefix_index


def _attr(subs: pa.Table, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    out = attribute_flows(flows(rows), build_prefix_index(subs))
    return out.select(
        ["src_subscription_id", "dst_subscription_id", "subscription_id", "traffic_direction"]
    ).to_pylist()


def test_longest_prefix_wins_and_directions() -> None:
    subs = subscriptions(
        [
            (1, "10.0.0.0/8", None, None),
            (2, "10.1.0.0/16", None, None),
            (3, "2001:db8::/32", None, None),
            (4, "2001:db8:1::/48", None, None),
        ]
    )
    got = _attr(
        subs,
        [
            {"src": "8.8.8.8", "dst": "10.1.2.3"},  # download for 2 (longer than /8)
            {"src": "10.2.0.1", "dst": "8.8.8.8"},  # upload for 1
            {"src": "10.2.0.1", "dst": "10.1.0.1"},  # both: up for 1, down for 2
            {"src": "8.8.8.8", "dst": "9.9.9.9"},  # unattributed
            {"src": "2001:db8:1::7", "dst": "2001:db8:2::1"},  # both, v6
        ],
    )
    assert got == [
        {
            "src_subscription_id": None,
            "dst_subscription_id": 2,
            "subscription_id": 2,
            "traffic_direction": "download",
        },
        {
            "src_subscription_id": 1,
            "dst_subscription_id": None,
            "subscription_id": 1,
            "traffic_direction": "upload",
        },
        {
            "src_subscription_id": 1,
            "dst_subscription_id": 2,
            "subscription_id": 2,
            "traffic_direction": "both",
        },
        {
            "src_subscription_id": None,
            "dst_subscription_id": None,
            "subscription_id": None,
            "traffic_direction": None,
        },
        {
            "src_subscription_id": 4,
            "dst_subscription_id": 3,
            "subscription_id": 3,
            "traffic_direction": "both",
        },
    ]


def test_inactive_longer_block_does_not_hide_active_shorter() -> None:
    mid = T0_US + 10 * HOUR_US
    subs = subscriptions(
        [
            (1, "10.0.0.0/24", None, None),
            (2, "10.0.0.0/28", mid, None),
            (3, "10.0.1.0/24", None, mid),
        ]
    )
    rows = [
        {"src": "10.0.0.5", "dst": "1.1.1.1", "start": mid - 1},
        {"src": "10.0.0.5", "dst": "1.1.1.1", "start": mid},
        {"src": "10.0.1.5", "dst": "1.1.1.1", "start": mid - 1},
        {"src": "10.0.1.5", "dst": "1.1.1.1", "start": mid},  # binding ended (exclusive)
    ]
    assert [r["src_subscription_id"] for r in _attr(subs, rows)] == [1, 2, 3, None]


def test_block_reassigned_over_time() -> None:
    mid = T0_US + HOUR_US
    subs = subscriptions([(1, "10.9.0.0/24", None, mid), (2, "10.9.0.0/24", mid, None)])
    rows = [{"src": "1.1.1.1", "dst": "10.9.0.1", "start": s} for s in (mid - 1, mid)]
    assert [r["dst_subscription_id"] for r in _attr(subs, rows)] == [1, 2]


def test_at_snapshot_keeps_only_active_bindings() -> None:
    mid = T0_US + HOUR_US
    subs = subscriptions([(1, "10.9.0.0/24", None, mid), (2, "10.8.0.0/24", None, None)])
    idx = build_prefix_index(subs, at=mid)
    assert idx.subscription_id.tolist() == [2]


def test_mapped_ipv6_notation_is_an_ipv4_block() -> None:
    subs = subscriptions([(5, "::ffff:10.0.0.0/120", None, None)])
    got = _attr(subs, [{"src": "10.0.0.9", "dst": "1.1.1.1"}, {"src": "10.0.1.9", "dst": "::2"}])
    assert [r["src_subscription_id"] for r in got] == [5, None]


def test_bad_block_and_overlapping_bindings_are_refused() -> None:
    with pytest.raises(RatingError, match=r"row 1 \(subscription_id 1\), field key"):
        build_prefix_index(subscriptions([(1, "10.0.0.1/24", None, None)]))
    with pytest.raises(RatingError, match="overlapping"):
        build_prefix_index(
            subscriptions([(1, "10.0.0.0/24", None, None), (2, "10.0.0.0/24", None, None)])
        )


def test_non_ip_rows_ignored_and_empty_index() -> None:
    subs = subscriptions([(1, "10.0.0.0/24", None, None)])
    subs = subs.set_column(2, "key_type", pa.array(["msisdn"]))
    idx = build_prefix_index(subs)
    assert idx.n_entries == 0
    out = attribute_flows(flows([{"src": "10.0.0.1", "dst": "::1"}]), idx)
    assert out.column("traffic_direction").null_count == 1


def test_batches_equal_table() -> None:
    subs = subscriptions([(1, "10.0.0.0/24", None, None), (2, "2001:db8::/64", None, None)])
    idx = build_prefix_index(subs)
    table = flows([{"src": a, "dst": "2001:db8::5"} for a in ["10.0.0.1", "10.0.1.1", "::1"] * 3])
    whole = attribute_flows(table, idx)
    parts = pa.Table.from_batches(list(attribute_batches(table.to_batches(max_chunksize=2), idx)))
    assert parts.equals(whole)


def _reference(
    bindings: list[tuple[int, str, int | None, int | None]], addr: str, t: int
) -> int | None:
    """Pure-Python twin: the longest active block containing ``addr`` at ``t``."""
    best: tuple[int, int] | None = None
    for sub, cidr, frm, to in bindings:
        active = (frm is None or frm <= t) and (to is None or t < to)
        if active and contains(cidr, addr):
            plen = ipaddress.ip_network(cidr).prefixlen
            if best is None or plen > best[0]:
                best = (plen, sub)
    return None if best is None else best[1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    blocks=st.lists(st.tuples(block(), st.integers(0, 3)), min_size=0, max_size=12),
    rows=st.lists(st.tuples(address(), address(), st.integers(0, 4)), min_size=1, max_size=40),
)
def test_kernel_matches_reference(
    blocks: list[tuple[str, int]], rows: list[tuple[str, str, int]]
) -> None:
    # windows: 0 open, 1 until T0+2h, 2 from T0+2h, 3 from T0+1h to T0+3h
    windows = {
        0: (None, None),
        1: (None, T0_US + 2 * HOUR_US),
        2: (T0_US + 2 * HOUR_US, None),
        3: (T0_US + HOUR_US, T0_US + 3 * HOUR_US),
    }
    seen: set[str] = set()
    bindings = []
    for i, (cidr, w) in enumerate(blocks):
        if cidr in seen:  # one binding per block keeps windows from overlapping
            continue
        seen.add(cidr)
        bindings.append((i + 1, cidr, *windows[w]))
    idx = build_prefix_index(subscriptions(bindings))
    flow_rows = [{"src": s, "dst": d, "start": T0_US + h * HOUR_US} for s, d, h in rows]
    out = attribute_flows(flows(flow_rows), idx)
    got_src = out.column("src_subscription_id").to_pylist()
    got_dst = out.column("dst_subscription_id").to_pylist()
    for i, r in enumerate(flow_rows):
        assert got_src[i] == _reference(bindings, r["src"], r["start"]), r
        assert got_dst[i] == _reference(bindings, r["dst"], r["start"]), r


def test_attributing_again_replaces_columns() -> None:
    idx = build_prefix_index(subscriptions([(1, "10.0.0.0/24", None, None)]))
    once = attribute_flows(flows([{"src": "10.0.0.1", "dst": "::1"}]), idx)
    twice = attribute_flows(once, idx)
    assert twice.equals(once)
